//! `pythia_data._core`: the native module. Each submodule here only converts types between
//! Python and the engine and releases the GIL around engine calls.

use pyo3::prelude::*;

mod errors;
mod index;
mod indexed;
mod loader;
mod tokenize;
mod tokenizer;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    indexed::register(m)?;
    index::register(m)?;
    loader::register(m)?;
    tokenizer::register(m)?;
    tokenize::register(m)?;
    Ok(())
}
