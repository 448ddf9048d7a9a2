//! Bindings for `pythia_engine::tokenize`: the whole pipeline runs with the GIL released; the
//! progress callback takes the GIL briefly about every 100 ms (and is where Ctrl-C arrives).

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use pythia_engine::tokenize::{self, OnError, TokenizeOptions};

use crate::errors::IntoPy;
use crate::tokenizer::Tokenizer;

#[pyfunction]
#[pyo3(signature = (tokenizer, inputs, prefix, *, text_key = "text".to_string(), meta_key = None,
                    on_error = "fail", threads = 0, chunk_bytes = 1 << 20,
                    checkpoint_seconds = 30.0, progress = None))]
#[allow(clippy::too_many_arguments)]
fn tokenize_files<'py>(
    py: Python<'py>,
    tokenizer: &Tokenizer,
    inputs: Vec<PathBuf>,
    prefix: PathBuf,
    text_key: String,
    meta_key: Option<String>,
    on_error: &str,
    threads: usize,
    chunk_bytes: usize,
    checkpoint_seconds: f64,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let on_error = match on_error {
        "fail" => OnError::Fail,
        "skip" => OnError::Skip,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "on_error must be 'fail' or 'skip', not {other:?}"
            )))
        }
    };
    let mut opts = TokenizeOptions::new(inputs, prefix);
    opts.text_key = text_key;
    opts.meta_key = meta_key.filter(|k| !k.is_empty());
    opts.on_error = on_error;
    opts.threads = threads;
    opts.chunk_bytes = chunk_bytes;
    opts.checkpoint_interval = Duration::from_secs_f64(checkpoint_seconds.max(0.0));
    let tok = tokenizer.inner.clone();
    let mut callback_error: Option<PyErr> = None;
    let result = py.detach(|| {
        tokenize::tokenize_files(&tok, &opts, &mut |p| {
            Python::attach(|py| {
                let r = py.check_signals().and_then(|_| match &progress {
                    Some(f) => f
                        .call1(
                            py,
                            (
                                p.documents,
                                p.tokens,
                                p.input_bytes_read,
                                p.input_bytes_total,
                                p.text_bytes,
                            ),
                        )
                        .map(|_| ()),
                    None => Ok(()),
                });
                match r {
                    Ok(()) => true,
                    Err(e) => {
                        callback_error = Some(e);
                        false
                    }
                }
            })
        })
    });
    if let Some(e) = callback_error {
        return Err(e);
    }
    let report = result.py_err()?;
    let d = PyDict::new(py);
    d.set_item("documents", report.counts.documents)?;
    d.set_item("tokens", report.counts.tokens)?;
    d.set_item("empty_skipped", report.counts.empty_skipped)?;
    d.set_item("errors_skipped", report.counts.errors_skipped)?;
    d.set_item("resumed_documents", report.resumed_documents)?;
    d.set_item("skipped_examples", report.skipped_examples)?;
    d.set_item("dtype", report.dtype.map(|t| t.numpy_name()))?;
    Ok(d)
}

/// Join the `PREFIX.subsets.{npy,json}` of datasets merged in this order.
#[pyfunction]
fn merge_subsets(py: Python<'_>, output: PathBuf, inputs: Vec<PathBuf>) -> PyResult<()> {
    py.detach(|| tokenize::merge_subsets(&output, &inputs))
        .py_err()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tokenize_files, m)?)?;
    m.add_function(wrap_pyfunction!(merge_subsets, m)?)
}
