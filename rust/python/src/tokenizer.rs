//! Bindings for `pythia_engine::tokenizer`: ids leave as numpy uint32 arrays (no per-token Python
//! objects), every call releases the GIL, and batches run on all cores through rayon.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use rayon::prelude::*;

use pythia_engine::tokenizer;

use crate::errors::IntoPy;

/// (ids of all texts concatenated, offsets).
type FlatIds<'py> = (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>);

#[pyclass(frozen, module = "pythia_data._core", name = "Tokenizer")]
pub struct Tokenizer {
    pub inner: Arc<tokenizer::Tokenizer>,
}

#[pymethods]
impl Tokenizer {
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py
            .detach(|| tokenizer::Tokenizer::from_file(&path))
            .py_err()?;
        Ok(Tokenizer {
            inner: Arc::new(inner),
        })
    }

    #[staticmethod]
    fn from_json(py: Python<'_>, json: &[u8]) -> PyResult<Self> {
        let inner = py
            .detach(|| tokenizer::Tokenizer::from_json(json))
            .py_err()?;
        Ok(Tokenizer {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn eod_id(&self) -> Option<u32> {
        self.inner.eod_id()
    }

    #[getter]
    fn sha256(&self) -> &str {
        self.inner.sha256()
    }

    fn encode<'py>(&self, py: Python<'py>, text: &str) -> Bound<'py, PyArray1<u32>> {
        py.detach(|| self.inner.encode(text)).into_pyarray(py)
    }

    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<u32>>>> {
        let all: Vec<Vec<u32>> = py
            .detach(|| {
                pythia_engine::in_pool(|| texts.par_iter().map(|t| self.inner.encode(t)).collect())
            })
            .py_err()?;
        Ok(all.into_iter().map(|ids| ids.into_pyarray(py)).collect())
    }

    /// (ids of all texts concatenated, offsets): text i is `ids[offsets[i]:offsets[i + 1]]`.
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
    ) -> PyResult<FlatIds<'py>> {
        let (ids, offsets) = py
            .detach(|| pythia_engine::in_pool(|| self.inner.encode_batch_flat(&texts)))
            .py_err()?;
        Ok((ids.into_pyarray(py), offsets.into_pyarray(py)))
    }

    /// Ids outside 0..vocab_size (negative ones included) are ignored, as by the reference.
    #[pyo3(signature = (ids, skip_special_tokens = true))]
    fn decode(
        &self,
        py: Python<'_>,
        ids: PyReadonlyArray1<'_, i64>,
        skip_special_tokens: bool,
    ) -> PyResult<String> {
        // Out of u32's range is out of the vocabulary: ignored, as any id past it.
        let narrow = |&i: &i64| u32::try_from(i).unwrap_or(u32::MAX);
        if let Ok(ids) = ids.as_slice() {
            // Read in place, without the GIL: no narrowed copy of a long id array.
            return Ok(py.detach(|| {
                self.inner
                    .decode_iter(ids.iter().map(narrow), skip_special_tokens)
            }));
        }
        let ids: Vec<u32> = ids.as_array().iter().map(narrow).collect();
        Ok(py.detach(|| self.inner.decode(&ids, skip_special_tokens)))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tokenizer>()
}
