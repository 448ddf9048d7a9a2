//! Outputs appear atomically: written to a temporary file in the destination's directory (so
//! the final rename is atomic), synced, then renamed over the destination. An interrupted run
//! leaves at most a hidden `.NAME.tmp-PID` file, never a half-written file under the real name.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::Result;

/// A temporary name beside `dest`, unique per process.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write `bytes` to `dest` through a temporary file and a rename.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(dest);
    let result = (|| {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, dest).at(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
