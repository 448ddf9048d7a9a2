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
    // The numpy crate looks numpy's C API up when it builds its first array, running Python
    // code there: a signal handler raising at that moment (Ctrl-C during the first encode)
    // made the lookup fail and the crate panic. Looked up now, at import, it is done once.
    // numpy is imported, and its version read (Python code), where an error (Ctrl-C while it
    // loads) can be raised: the crate's own lookup then finds both done, and runs no Python
    // code of its own, where a failure is a panic.
    numpy::get_array_module(m.py())?;
    numpy::PyArray1::<u32>::zeros(m.py(), 0, false);
    errors::register(m)?;
    indexed::register(m)?;
    index::register(m)?;
    loader::register(m)?;
    tokenizer::register(m)?;
    tokenize::register(m)?;
    Ok(())
}
