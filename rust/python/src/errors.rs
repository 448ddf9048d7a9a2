//! Engine errors become `pythia_data.PythiaDataError` (a `ValueError`), or `FileNotFoundError` /
//! `OSError` for operating-system errors, always carrying the engine's message with the path.

use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;

use pythia_engine::Error;

// Named for the package users import it from: as `_core.PythiaDataError` it could not be
// pickled (no module `_core`), so one raised in a multiprocessing worker reached the parent as
// an encoding error that had lost the message.
create_exception!(
    pythia_data,
    PythiaDataError,
    PyValueError,
    "A data file is corrupt or does not match, or a request is invalid."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PythiaDataError", m.py().get_type::<PythiaDataError>())
}

pub fn to_py(e: Error) -> PyErr {
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PythiaDataError::new_err(e.to_string()),
    }
}

/// `?` on engine results inside binding functions.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for pythia_engine::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
