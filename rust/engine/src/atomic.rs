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

/// Write `bytes` to `dest` through a temporary file and a rename. Temporaries of `dest` left
/// by killed runs go first: the run that writes `dest` now is the one to clean up after them.
pub fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    remove_stale_temps(dest);
    let tmp = temp_path(dest);
    // Errors name `dest`: the temporary is removed on the way out.
    let result = (|| {
        let mut f = File::create(&tmp).at(dest)?;
        f.write_all(bytes).at(dest)?;
        f.sync_all().at(dest)?;
        std::fs::rename(&tmp, dest).at(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An exclusive lock on `dir`, for putting a set of files in place there: two processes
/// renaming the files of one output at once would leave one's `.bin` beside the other's `.idx`.
/// None where the folder cannot be opened to lock (write-only), rather than refusing it.
pub fn lock_folder(dir: &Path) -> Result<Option<File>> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let folder = match File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(crate::Error::io(dir, e)),
    };
    folder.lock().at(dir)?;
    Ok(Some(folder))
}

/// Remove the temporaries of `dest` (`.NAME.tmp-PID`, as [`temp_path`] names them) whose process
/// no longer runs: a run killed with SIGKILL or lost with its node cannot clean up, and a merge's
/// temporary is as large as its output. A process of this PID namespace is checked through
/// `/proc`; a run on another host sharing the directory looks dead, so two runs on different
/// hosts must not write the same output (they would replace each other's result anyway).
/// Returns the files removed.
pub fn remove_stale_temps(dest: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new(); // the caller's own create reports a missing or unreadable directory
    };
    let start = format!(".{}.tmp-", name.to_string_lossy());
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&start)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !process_is_gone(pid) {
            continue;
        }
        let path = entry.path();
        // Best effort: a temporary that cannot be removed costs space, not correctness.
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(target_os = "linux")]
fn process_is_gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Without `/proc`, no temporary can be shown to be abandoned: keep them all.
#[cfg(not(target_os = "linux"))]
fn process_is_gone(_pid: u32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("pythia-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.bin");
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(4_194_304);
        let dead = dir.join(format!(".out.bin.tmp-{}", pid_max + 1));
        let alive = temp_path(&dest);
        let other = dir.join(format!(".out.idx.tmp-{}", pid_max + 1));
        let not_a_pid = dir.join(".out.bin.tmp-x1");
        for f in [&dead, &alive, &other, &not_a_pid] {
            std::fs::write(f, b"tokens").unwrap();
        }
        let removed = remove_stale_temps(&dest);
        if cfg!(target_os = "linux") {
            assert_eq!(removed, vec![dead.clone()]);
            assert!(!dead.exists());
        } else {
            assert!(removed.is_empty() && dead.exists());
        }
        assert!(alive.exists() && other.exists() && not_a_pid.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
