//! The one error type of the engine. Every variant that concerns a file names it, so a user
//! reading the message knows which file to look at and what is wrong with it.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching `path`, in the system's words without Rust's
    /// "(os error N)".
    #[error("{path}: {}", os_text(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its contents are not what its format requires.
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Data already read from a file cannot be trusted (a compressed stream failed its
    /// checksum, or the file changed while it was read): nobody can tell which part is wrong,
    /// so unlike other damage this cannot be skipped.
    #[error("{path}: {message}")]
    Damaged { path: PathBuf, message: String },
    /// The caller asked for something impossible (index out of range, bad parameter...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn corrupt(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// An error creating `made` (a temporary file or a work directory) beside the output
    /// `dest`: named by the folder, which is what lacks room or permission, and by the output,
    /// since the user never named `made`.
    pub fn creating(dest: impl AsRef<Path>, made: &Path, source: std::io::Error) -> Self {
        // The nearest folder that exists: missing ones above `made` are created with it.
        let folder = made
            .ancestors()
            .skip(1)
            .find(|p| p.as_os_str().is_empty() || p.exists())
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let text = format!("{} (writing {})", os_text(&source), dest.as_ref().display());
        Error::io(folder, std::io::Error::new(source.kind(), text))
    }
}

/// `e`'s message without the " (os error N)" Rust appends to the system's text.
pub fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => text[..at].to_string(),
        _ => text,
    }
}

/// Attach a path to a `std::io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_errors_read_without_rusts_os_error_number() {
        let e = Error::io("d/x.idx", std::io::Error::from_raw_os_error(2));
        assert_eq!(e.to_string(), "d/x.idx: No such file or directory");
        // Named by the nearest folder that exists: the one lacking room or permission.
        let tmp = std::env::temp_dir();
        let made = tmp.join("no-such-folder").join(".x.bin.tmp-1");
        let e = Error::creating("out/x.bin", &made, std::io::Error::from_raw_os_error(13));
        let want = format!("{}: Permission denied (writing out/x.bin)", tmp.display());
        assert_eq!(e.to_string(), want);
    }
}
