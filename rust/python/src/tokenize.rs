//! Bindings for `pythia_engine::tokenize`: the whole pipeline runs with the GIL released; the
//! progress callback takes the GIL briefly about every 100 ms (and is where Ctrl-C arrives).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;

use pythia_engine::corpus::{Row, StringColumn};
use pythia_engine::indexed::DType;
use pythia_engine::tokenize::{self, OnError, Position, TokenizeOptions, TokenizedOutput};

use crate::errors::IntoPy;
use crate::tokenizer::Tokenizer;

/// A time interval in seconds: negative means "every time", too large or infinite "never".
fn interval(name: &str, seconds: f64) -> PyResult<Duration> {
    if seconds.is_nan() {
        return Err(PyValueError::new_err(format!(
            "{name} must be a number of seconds, not NaN"
        )));
    }
    Ok(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX))
}

#[pyfunction]
#[pyo3(signature = (tokenizer, inputs, prefix, *, text_key = "text".to_string(), meta_key = None,
                    on_error = "fail", threads = 0, parallel_files = 0, part_bytes = 64 << 20,
                    chunk_bytes = 8 << 20,
                    checkpoint_seconds = 30.0, progress = None,
                    progress_seconds = 0.1))]
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
    parallel_files: usize,
    part_bytes: u64,
    chunk_bytes: usize,
    checkpoint_seconds: f64,
    progress: Option<Py<PyAny>>,
    progress_seconds: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let on_error = match on_error {
        "fail" => OnError::Fail,
        "skip" => OnError::Skip,
        other => {
            return Err(PyValueError::new_err(format!(
                "on_error must be 'fail' or 'skip', not {other:?}"
            )))
        }
    };
    let mut opts = TokenizeOptions::new(inputs, prefix);
    opts.text_key = text_key;
    opts.meta_key = meta_key.filter(|k| !k.is_empty());
    opts.on_error = on_error;
    opts.threads = threads;
    // 0: chosen by the number of workers.
    opts.parallel_files = (parallel_files > 0).then_some(parallel_files);
    opts.part_bytes = part_bytes;
    opts.chunk_bytes = chunk_bytes;
    opts.checkpoint_interval = interval("checkpoint_seconds", checkpoint_seconds)?;
    opts.progress_interval = interval("progress_seconds", progress_seconds)?;
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
    d.set_item("restart_note", report.restart_note)?;
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

/// The merged `.subsets.npy` and `.subsets.json` bytes, every input checked, nothing written.
#[pyfunction]
fn join_subsets(py: Python<'_>, inputs: Vec<PathBuf>) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let (npy, json) = py.detach(|| tokenize::join_subsets(&inputs)).py_err()?;
    Ok((
        PyBytes::new(py, &npy).unbind(),
        PyBytes::new(py, &json).unbind(),
    ))
}

/// A digest of sampled blocks of `path`, which a resumed run checks with its size and time.
#[pyfunction]
fn sampled_digest(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| tokenize::sampled_digest(&path)).py_err()
}

/// A string column's Arrow buffers as Python passes them (`_string_buffers` in
/// `pythia_data.tokenize`): uint8 views of the offsets (i64), the data and the validity bitmap
/// (None when no row is null), Arrow's array offset, and the number of rows.
type ColumnBuffers<'py> = (
    PyReadonlyArray1<'py, u8>,
    PyReadonlyArray1<'py, u8>,
    Option<PyReadonlyArray1<'py, u8>>,
    usize,
    usize,
);

fn string_column<'a>(c: &'a ColumnBuffers<'_>) -> PyResult<StringColumn<'a>> {
    let validity = c.2.as_ref().map(|v| v.as_slice()).transpose()?;
    StringColumn::new(c.0.as_slice()?, c.1.as_slice()?, validity, c.3, c.4).py_err()
}

/// The rows of a string column that hold no text: (row, why), why None for a null.
#[pyfunction]
fn string_column_problems(
    py: Python<'_>,
    column: ColumnBuffers<'_>,
) -> PyResult<Vec<(usize, Option<String>)>> {
    let column = string_column(&column)?;
    Ok(py.detach(|| {
        column
            .rows()
            .enumerate()
            .filter(|(_, row)| !matches!(row, Row::Text(_)))
            .map(|(i, row)| (i, row.problem()))
            .collect()
    }))
}

/// The checkpointed output fed with batches of texts from Python (Parquet files and Hugging Face
/// `save_to_disk` datasets, read with pyarrow): the same resumable files and layout as
/// `tokenize_files`, with the position (source index, rows consumed) kept by the caller.
#[pyclass(frozen, module = "pythia_data._core")]
pub struct TokenizeWriter {
    tokenizer: Arc<pythia_engine::tokenizer::Tokenizer>,
    eod: u32,
    out: Mutex<Option<TokenizedOutput>>,
}

impl TokenizeWriter {
    fn with_out<T>(
        &self,
        f: impl FnOnce(&mut TokenizedOutput) -> pythia_engine::Result<T>,
    ) -> PyResult<T> {
        let mut guard = self.out.lock().unwrap();
        let out = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the writer is already finished or discarded"))?;
        f(out).py_err()
    }
}

#[pymethods]
impl TokenizeWriter {
    /// Start, or resume the checkpoint in PREFIX.partial/ if `fingerprint` matches it.
    #[new]
    #[pyo3(signature = (tokenizer, prefix, fingerprint, meta_key = None))]
    fn new(
        py: Python<'_>,
        tokenizer: &Tokenizer,
        prefix: PathBuf,
        fingerprint: &str,
        meta_key: Option<String>,
    ) -> PyResult<Self> {
        let tok = tokenizer.inner.clone();
        let eod = tok
            .eod_id()
            .ok_or_else(|| PyValueError::new_err("the tokenizer has no <|endoftext|> token"))?;
        let dtype = DType::best_fitting(tok.vocab_size());
        let fingerprint = format!("{fingerprint}\ntokenizer={}", tok.sha256());
        let out = py
            .detach(|| TokenizedOutput::open(&prefix, dtype, &fingerprint, meta_key.as_deref()))
            .py_err()?;
        Ok(TokenizeWriter {
            tokenizer: tok,
            eod,
            out: Mutex::new(Some(out)),
        })
    }

    /// (source index, rows of it consumed): where to continue reading.
    #[getter]
    fn position(&self) -> PyResult<(usize, u64)> {
        self.with_out(|o| Ok((o.position.file, o.position.line)))
    }

    #[getter]
    fn resumed_documents(&self) -> PyResult<u64> {
        self.with_out(|o| Ok(o.resumed_documents))
    }

    /// The first few skipped problems, this run's and those of the run it resumed.
    #[getter]
    fn skipped_examples(&self) -> PyResult<Vec<String>> {
        self.with_out(|o| Ok(o.skipped_examples.clone()))
    }

    /// Why a checkpoint in the work directory was not resumed from, if one was there.
    #[getter]
    fn restart_note(&self) -> PyResult<Option<String>> {
        self.with_out(|o| Ok(o.restart_note.clone()))
    }

    /// Counts so far: documents, tokens, empty_skipped, errors_skipped.
    #[getter]
    fn counts(&self) -> PyResult<(u64, u64, u64, u64)> {
        self.with_out(|o| {
            let c = &o.counts;
            Ok((c.documents, c.tokens, c.empty_skipped, c.errors_skipped))
        })
    }

    /// `tokenize::add_string_columns` (rows of string columns, taken as one column, tokenized
    /// in parallel and appended, all but the `skip` rows); then the position becomes (`source`,
    /// `end_row`). `skipped` bad rows are counted as errors, and `examples` (what was wrong with
    /// them) noted for the report. Returns the bytes of text appended.
    #[pyo3(signature = (columns, skip, metas, source, end_row, skipped = 0, examples = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn add_strings(
        &self,
        py: Python<'_>,
        columns: Vec<ColumnBuffers<'_>>,
        skip: Vec<usize>,
        metas: Option<Vec<Option<String>>>,
        source: usize,
        end_row: u64,
        skipped: u64,
        examples: Vec<String>,
    ) -> PyResult<u64> {
        let columns = columns
            .iter()
            .map(string_column)
            .collect::<PyResult<Vec<_>>>()?;
        let mut guard = self.out.lock().unwrap();
        let out = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the writer is already finished or discarded"))?;
        let (tok, eod) = (&self.tokenizer, self.eod);
        py.detach(|| {
            let added =
                tokenize::add_string_columns(out, tok, eod, &columns, &skip, metas.as_deref())?;
            out.counts.errors_skipped += skipped;
            for example in examples {
                out.add_skipped_example(|| example);
            }
            out.position = Position {
                file: source,
                line: end_row,
            };
            Ok(added)
        })
        .py_err()
    }

    /// Where the run keeps its work (`PREFIX.partial/`, deleted by `finish`): the caller's
    /// intermediate datasets go there too.
    #[getter]
    fn work_dir(&self) -> PyResult<PathBuf> {
        self.with_out(|o| Ok(o.work_dir().to_path_buf()))
    }

    /// Append the finished dataset `prefix` (tokenized from the inputs before `end_source`, with
    /// `empty_skipped` and `errors_skipped` documents skipped and `examples` noted); then the
    /// position becomes (`end_source`, 0). `progress(documents, tokens)` is called between
    /// windows of 16 MB; an exception it raises (or Ctrl-C) stops the append and is raised, and
    /// the output then ends inside the dataset, which only its next checkpoint would record.
    #[pyo3(signature = (prefix, end_source, empty_skipped = 0, errors_skipped = 0,
                        examples = Vec::new(), progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn append_dataset(
        &self,
        py: Python<'_>,
        prefix: PathBuf,
        end_source: usize,
        empty_skipped: u64,
        errors_skipped: u64,
        examples: Vec<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let mut guard = self.out.lock().unwrap();
        let out = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the writer is already finished or discarded"))?;
        let mut callback_error: Option<PyErr> = None;
        let end = Position {
            file: end_source,
            line: 0,
        };
        let skipped = (empty_skipped, errors_skipped);
        let appended = py.detach(|| {
            out.append_dataset(&prefix, skipped, examples, end, &mut |c| {
                Python::attach(|py| {
                    let r = py.check_signals().and_then(|_| match &progress {
                        Some(f) => f.call1(py, (c.documents, c.tokens)).map(|_| ()),
                        None => Ok(()),
                    });
                    r.map_err(|e| callback_error = Some(e)).is_ok()
                })
            })
        });
        if let Some(e) = callback_error {
            return Err(e);
        }
        if !appended.py_err()? {
            return Err(PyValueError::new_err("the append was stopped"));
        }
        Ok(())
    }

    /// Make the work so far resumable; nothing to do once the writer is finished (an interrupt
    /// can arrive just after `finish`) or discarded.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.out.lock().unwrap().as_mut() {
            Some(o) => o.checkpoint(o.position).py_err(),
            None => Ok(()),
        })
    }

    /// Move the dataset into place; returns (documents, tokens, empty_skipped, errors_skipped).
    /// On failure the writer stays open, for `discard` or `keep_if_resumable`.
    fn finish(&self, py: Python<'_>) -> PyResult<(u64, u64, u64, u64)> {
        let c = py.detach(|| self.with_out(|o| o.finish()))?;
        self.out.lock().unwrap().take();
        Ok((c.documents, c.tokens, c.empty_skipped, c.errors_skipped))
    }

    /// Give up: delete the work directory (for bad input; an interruption keeps it instead).
    fn discard(&self) {
        if let Some(out) = self.out.lock().unwrap().take() {
            out.discard();
        }
    }

    /// Stop after an OS error: keep the work directory if it holds a checkpoint, returning
    /// what to tell the user; otherwise delete it and return None.
    fn keep_if_resumable(&self) -> Option<String> {
        self.out
            .lock()
            .unwrap()
            .take()
            .and_then(TokenizedOutput::keep_if_resumable)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TokenizeWriter>()?;
    m.add_function(wrap_pyfunction!(tokenize_files, m)?)?;
    m.add_function(wrap_pyfunction!(merge_subsets, m)?)?;
    m.add_function(wrap_pyfunction!(join_subsets, m)?)?;
    m.add_function(wrap_pyfunction!(sampled_digest, m)?)?;
    m.add_function(wrap_pyfunction!(string_column_problems, m)?)
}
