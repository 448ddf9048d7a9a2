//! Opening the files this crate maps into memory.

use std::fs::File;
use std::path::Path;

use crate::error::IoContext;
use crate::{Error, Result};

/// Open `path` for reading, refusing anything but a regular file (a link to one is fine): a FIFO
/// would block the open until some writer came, and a directory or device cannot be mapped
/// ("No such device").
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).at(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(Error::corrupt(
            path,
            format!("{what}, where a data file belongs"),
        ));
    }
    File::open(path).at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_fifos_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("pythia-open-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = open_regular(&dir).unwrap_err().to_string();
        assert!(
            err.contains("a directory, where a data file belongs"),
            "{err}"
        );
        #[cfg(unix)]
        {
            let fifo = dir.join("fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            let err = open_regular(&fifo).unwrap_err().to_string();
            assert!(err.contains("not a regular file (a FIFO"), "{err}");
        }
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(open_regular(&file).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
