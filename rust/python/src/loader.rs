//! Bindings for `pythia_engine::loader`: rows and batches come back as fresh numpy arrays filled
//! by the engine with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{Element, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
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

/// `out` is filled as raw row-major bytes: a Fortran-ordered array (also "contiguous" to
/// numpy) would silently get its rows scrambled.
fn check_out<T: Element>(a: &Bound<'_, PyArray2<T>>, want: &[usize; 2]) -> PyResult<()> {
    if !a.is_c_contiguous() {
        return Err(crate::errors::PythiaDataError::new_err(
            "out must be a C-contiguous array (np.ascontiguousarray, or order='C')",
        ));
    }
    check_shape(a.shape(), want)
}

fn check_shape(got: &[usize], want: &[usize; 2]) -> PyResult<()> {
    if got != want {
        return Err(crate::errors::PythiaDataError::new_err(format!(
            "out has shape {got:?}, the rows need {want:?}"
        )));
    }
    Ok(())
}

fn fill_into<T: Element>(
    py: Python<'_>,
    g: &Arc<loader::GptDataset>,
    start: usize,
    stop: usize,
    out: &Bound<'_, PyAny>,
    want: &[usize; 2],
) -> PyResult<()> {
    let a = out.cast::<PyArray2<T>>().map_err(|_| {
        crate::errors::PythiaDataError::new_err(format!(
            "out must be a C-contiguous array of the dataset's dtype ({}) or int64",
            g.dataset().dtype().numpy_name()
        ))
    })?;
    check_out(a, want)?;
    let mut rw = a.try_readwrite()?;
    let slice = rw.as_slice_mut()?;
    // SAFETY: reinterpreting plain integers as their bytes.
    let bytes: &mut [u8] = unsafe {
        std::slice::from_raw_parts_mut(slice.as_mut_ptr() as *mut u8, std::mem::size_of_val(slice))
    };
    let g = g.clone();
    py.detach(move || g.rows_into(start, stop, bytes)).py_err()
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
    /// Fill `out`, a C-contiguous (stop − start, seq_length + 1) array of the dataset's dtype or
    /// int64, with rows `[start, stop)` (reusing a buffer avoids fresh pages on every batch).
    fn rows_into(
        &self,
        py: Python<'_>,
        start: usize,
        stop: usize,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let g = &self.inner;
        let want = [stop.saturating_sub(start), g.row_len()];
        if let Ok(a) = out.cast::<PyArray2<i64>>() {
            if g.dataset().dtype() != DType::I64 {
                check_out(a, &want)?;
                let mut rw = a.try_readwrite()?;
                let slice = rw.as_slice_mut()?;
                let g = g.clone();
                return py
                    .detach(move || g.rows_into_i64(start, stop, slice))
                    .py_err();
            }
        }
        match g.dataset().dtype() {
            DType::U8 => fill_into::<u8>(py, g, start, stop, out, &want),
            DType::I8 => fill_into::<i8>(py, g, start, stop, out, &want),
            DType::I16 => fill_into::<i16>(py, g, start, stop, out, &want),
            DType::I32 => fill_into::<i32>(py, g, start, stop, out, &want),
            DType::I64 => fill_into::<i64>(py, g, start, stop, out, &want),
            DType::U16 => fill_into::<u16>(py, g, start, stop, out, &want),
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
