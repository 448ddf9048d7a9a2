//! The one error type of the engine. Every variant that concerns a file names it, so a user
//! reading the message knows which file to look at and what is wrong with it.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching `path`.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its contents are not what its format requires.
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// A compressed stream failed its checksum: some data already read from it is wrong, and
    /// nobody can tell which, so unlike other damage this cannot be skipped.
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
