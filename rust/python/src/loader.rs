//! Bindings for `pythia_engine::loader`: rows and batches come back as fresh numpy arrays filled
//! by the engine with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{Element, PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use pythia_engine::index::IndexPaths;
use pythia_engine::indexed::DType;
use pythia_engine::loader;

use crate::errors::IntoPy;
use crate::indexed::IndexedDataset;

#[pyclass(frozen, module = "pythia_data._core")]
pub struct GptDataset {
    inner: Arc<loader::GptDataset>,
}

fn fill<'py, T: Element>(
    py: Python<'py>,
    g: &Arc<loader::GptDataset>,
    start: usize,
    stop: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let rows = stop.saturating_sub(start);
    let arr = PyArray2::<T>::zeros(py, [rows, g.row_len()], false);
    {
        // SAFETY: the array was just created here and is not shared yet.
        let slice = unsafe { arr.as_slice_mut()? };
        let bytes: &mut [u8] = unsafe {
            std::slice::from_raw_parts_mut(
                slice.as_mut_ptr() as *mut u8,
                std::mem::size_of_val(slice),
            )
        };
        let g = g.clone();
        py.detach(move || g.rows_into(start, stop, bytes))
            .py_err()?;
    }
    Ok(arr.into_any())
}

#[pymethods]
impl GptDataset {
    #[new]
    fn new(
        py: Python<'_>,
        dataset: &IndexedDataset,
        doc_idx: PathBuf,
        sample_idx: PathBuf,
        shuffle_idx: PathBuf,
        seq_length: usize,
    ) -> PyResult<Self> {
        let paths = IndexPaths {
            meta: PathBuf::new(),
            doc_idx,
            sample_idx,
            shuffle_idx,
        };
        let ds = dataset.inner.clone();
        let inner = py
            .detach(|| loader::GptDataset::open(ds, &paths, seq_length))
            .py_err()?;
        Ok(GptDataset {
            inner: Arc::new(inner),
        })
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    #[getter]
    fn seq_length(&self) -> usize {
        self.inner.seq_length()
    }
    /// Rows `[start, stop)` as a (n, seq_length + 1) array of the dataset's dtype, or int64.
    #[pyo3(signature = (start, stop, int64=false))]
    fn rows<'py>(
        &self,
        py: Python<'py>,
        start: usize,
        stop: usize,
        int64: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let g = &self.inner;
        if int64 {
            let rows = stop.saturating_sub(start);
            let arr = PyArray2::<i64>::zeros(py, [rows, g.row_len()], false);
            {
                // SAFETY: freshly created, not shared.
                let out = unsafe { arr.as_slice_mut()? };
                let g = g.clone();
                py.detach(move || g.rows_into_i64(start, stop, out))
                    .py_err()?;
            }
            return Ok(arr.into_any());
        }
        match g.dataset().dtype() {
            DType::U8 => fill::<u8>(py, g, start, stop),
            DType::I8 => fill::<i8>(py, g, start, stop),
            DType::I16 => fill::<i16>(py, g, start, stop),
            DType::I32 => fill::<i32>(py, g, start, stop),
            DType::I64 => fill::<i64>(py, g, start, stop),
            DType::U16 => fill::<u16>(py, g, start, stop),
        }
    }
    /// The position in sample_idx that row k reads.
    fn sample_of_row(&self, k: usize) -> PyResult<usize> {
        self.inner.sample_of_row(k).py_err()
    }
    /// [(document, offset, length), ...] making up row k.
    fn provenance(&self, k: usize) -> PyResult<Vec<(usize, usize, usize)>> {
        Ok(self
            .inner
            .provenance(k)
            .py_err()?
            .into_iter()
            .map(|s| (s.document, s.offset, s.length))
            .collect())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GptDataset>()
}
