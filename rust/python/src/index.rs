//! Bindings for `pythia_engine::index`: numpy's legacy RandomState and the GPT2Dataset index
//! builder.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use pythia_engine::index::{self, IndexRequest, IndexSummary, Sizes};

use crate::errors::IntoPy;

/// numpy's legacy `RandomState(seed)`, reimplemented (for tests and tools).
#[pyclass(module = "pythia_data._core")]
pub struct RandomState {
    inner: index::RandomState,
}

#[pymethods]
impl RandomState {
    #[new]
    fn new(seed: i128) -> PyResult<Self> {
        let seed = u32::try_from(seed).map_err(|_| {
            crate::errors::PythiaDataError::new_err(format!(
                "seed {seed} is out of range: numpy's RandomState takes seeds in [0, 4294967295]"
            ))
        })?;
        Ok(RandomState {
            inner: index::RandomState::from_u32(seed),
        })
    }
    /// `count` raw 32-bit outputs.
    fn next_u32<'py>(&mut self, py: Python<'py>, count: usize) -> Bound<'py, PyArray1<u32>> {
        let v: Vec<u32> = (0..count).map(|_| self.inner.next_u32()).collect();
        v.into_pyarray(py)
    }
    /// `RandomState.randint(low, high, size=count, dtype=np.int64)`.
    fn randint<'py>(
        &mut self,
        py: Python<'py>,
        low: i64,
        high: i64,
        count: usize,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let v = (0..count)
            .map(|_| self.inner.randint(low, high))
            .collect::<pythia_engine::Result<Vec<i64>>>()
            .py_err()?;
        Ok(v.into_pyarray(py))
    }
    /// `RandomState.permutation(n)` (int64), i.e. shuffling `arange(n)`.
    fn permutation<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyArray1<i64>> {
        let mut v: Vec<i64> = (0..n as i64).collect();
        let rng = &mut self.inner;
        py.detach(|| rng.shuffle(&mut v));
        v.into_pyarray(py)
    }
    /// Advance exactly as shuffling `n` elements would.
    fn skip_shuffle(&mut self, py: Python<'_>, n: usize) {
        let rng = &mut self.inner;
        py.detach(|| rng.skip_shuffle(n));
    }
}

fn summary_dict<'py>(py: Python<'py>, s: &IndexSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let p = &s.plan;
    d.set_item("documents", p.documents)?;
    d.set_item("num_samples", p.num_samples)?;
    d.set_item("seq_length", p.seq_length)?;
    d.set_item("seed", p.seed)?;
    d.set_item("tokens_per_epoch", p.tokens_per_epoch)?;
    d.set_item("num_epochs", p.num_epochs)?;
    d.set_item("num_index_samples", p.n)?;
    d.set_item("dataset_len", p.dataset_len())?;
    d.set_item("separate_last_epoch", p.separate_last_epoch)?;
    d.set_item(
        "sample_idx_dtype",
        if p.sample_idx_i64 { "int64" } else { "int32" },
    )?;
    d.set_item(
        "shuffle_idx_dtype",
        if p.shuffle_idx_i64 { "int64" } else { "uint32" },
    )?;
    d.set_item("doc_idx_path", &s.paths.doc_idx)?;
    d.set_item("sample_idx_path", &s.paths.sample_idx)?;
    d.set_item("shuffle_idx_path", &s.paths.shuffle_idx)?;
    d.set_item("meta_path", &s.paths.meta)?;
    d.set_item("reused", s.reused)?;
    Ok(d)
}

fn request(
    name: String,
    num_samples: u64,
    seq_length: u64,
    seed: u64,
    documents: Option<(usize, usize)>,
    separate_last_epoch: bool,
) -> IndexRequest {
    IndexRequest {
        name,
        num_samples,
        seq_length,
        seed,
        documents,
        separate_last_epoch,
    }
}

/// Build (or reuse) the index of the dataset whose `.idx` is `idx_path`; files go under
/// `cache_prefix`. `progress(stage, done, total)` is called now and then.
#[pyfunction]
#[pyo3(signature = (idx_path, cache_prefix, name, num_samples, seq_length, seed, documents=None, separate_last_epoch=false, overwrite=false, progress=None))]
#[allow(clippy::too_many_arguments)]
fn build_index<'py>(
    py: Python<'py>,
    idx_path: PathBuf,
    cache_prefix: PathBuf,
    name: String,
    num_samples: u64,
    seq_length: u64,
    seed: u64,
    documents: Option<(usize, usize)>,
    separate_last_epoch: bool,
    overwrite: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let req = request(
        name,
        num_samples,
        seq_length,
        seed,
        documents,
        separate_last_epoch,
    );
    // An exception in the callback, or a pending signal (Ctrl-C arrives as KeyboardInterrupt),
    // stops the build and is re-raised once the engine has cleaned up. Signals are checked with
    // or without a callback, so a quiet build stops on Ctrl-C too.
    let raised: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
    let report = |stage: &str, done: u64, total: u64| -> bool {
        Python::attach(|py| {
            let result = py.check_signals().and_then(|_| match &progress {
                Some(cb) => cb.call1(py, (stage, done, total)).map(drop),
                None => Ok(()),
            });
            match result {
                Ok(_) => true,
                Err(e) => {
                    *raised.lock().unwrap() = Some(e);
                    false
                }
            }
        })
    };
    let result =
        py.detach(|| index::build_index_for(&idx_path, &cache_prefix, &req, overwrite, &report));
    if let Some(e) = raised.lock().unwrap().take() {
        return Err(e);
    }
    let s = result.py_err()?;
    summary_dict(py, &s)
}

/// The same from an in-memory int32 sizes array (benchmarks, tests).
#[pyfunction]
#[pyo3(signature = (sizes, cache_prefix, name, num_samples, seq_length, seed, documents=None, separate_last_epoch=false, overwrite=false))]
#[allow(clippy::too_many_arguments)]
fn build_index_from_sizes<'py>(
    py: Python<'py>,
    sizes: PyReadonlyArray1<'py, i32>,
    cache_prefix: PathBuf,
    name: String,
    num_samples: u64,
    seq_length: u64,
    seed: u64,
    documents: Option<(usize, usize)>,
    separate_last_epoch: bool,
    overwrite: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let sizes = sizes.as_slice()?;
    let req = request(
        name,
        num_samples,
        seq_length,
        seed,
        documents,
        separate_last_epoch,
    );
    let paths = index::index_paths(&cache_prefix, &req.name, num_samples, seq_length, seed);
    let s = py
        .detach(|| {
            index::build_index_files(
                Sizes::from_slice(sizes),
                &req,
                &paths,
                overwrite,
                &|_, _, _| true,
            )
        })
        .py_err()?;
    summary_dict(py, &s)
}

/// GPT-NeoX's cache file names for these parameters: (doc_idx, sample_idx, shuffle_idx).
#[pyfunction]
fn index_paths(
    cache_prefix: PathBuf,
    name: &str,
    num_samples: u64,
    seq_length: u64,
    seed: u64,
) -> (PathBuf, PathBuf, PathBuf) {
    let p = index::index_paths(&cache_prefix, name, num_samples, seq_length, seed);
    (p.doc_idx, p.sample_idx, p.shuffle_idx)
}

/// The `sizes_fnv1a` an index record holds for documents `[start, stop)` of this `.idx`.
#[pyfunction]
fn sizes_fnv1a(py: Python<'_>, idx_path: PathBuf, start: usize, stop: usize) -> PyResult<String> {
    py.detach(|| {
        let sizes = index::IdxSizes::open(&idx_path)?;
        let n = sizes.sizes().len();
        if start > stop || stop > n {
            return Err(pythia_engine::Error::invalid(format!(
                "documents [{start}, {stop}) are outside the dataset's {n} items"
            )));
        }
        Ok(format!(
            "{:016x}",
            index::sizes_fnv1a(sizes.sizes(), start, stop)
        ))
    })
    .py_err()
}

#[pyfunction]
fn num_samples_for(iters: u64, global_batch: u64) -> PyResult<u64> {
    index::num_samples_for(iters, global_batch).py_err()
}

#[pyfunction]
fn blend_num_samples(weights: Vec<f64>, total: u64) -> PyResult<(Vec<f64>, Vec<u64>)> {
    index::blend_num_samples(&weights, total).py_err()
}

type BlendingArrays<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<i64>>);

/// BlendableDataset's (dataset_index uint8, dataset_sample_index int64).
#[pyfunction]
fn blending_indices<'py>(
    py: Python<'py>,
    weights: Vec<f64>,
    size: usize,
) -> PyResult<BlendingArrays<'py>> {
    let (d, s) = py
        .detach(|| index::build_blending_indices(&weights, size))
        .py_err()?;
    Ok((d.into_pyarray(py), s.into_pyarray(py)))
}

/// Where a blend of components of `lengths` samples stops having rows (see the engine's).
#[pyfunction]
fn blend_readable_len(py: Python<'_>, weights: Vec<f64>, lengths: Vec<u64>) -> PyResult<u64> {
    py.detach(|| index::blend_readable_len(&weights, &lengths))
        .py_err()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RandomState>()?;
    m.add_function(wrap_pyfunction!(build_index, m)?)?;
    m.add_function(wrap_pyfunction!(build_index_from_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(index_paths, m)?)?;
    m.add_function(wrap_pyfunction!(num_samples_for, m)?)?;
    m.add_function(wrap_pyfunction!(sizes_fnv1a, m)?)?;
    m.add_function(wrap_pyfunction!(blend_num_samples, m)?)?;
    m.add_function(wrap_pyfunction!(blending_indices, m)?)?;
    m.add_function(wrap_pyfunction!(blend_readable_len, m)?)?;
    Ok(())
}
