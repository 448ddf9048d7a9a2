//! Bindings for `pythia_engine::indexed`. Arrays reach Python as numpy views over the engine's
//! memory maps: `MappedBytes` exports a read-only buffer and keeps the map alive.

use std::ffi::c_int;
use std::sync::Arc;

use memmap2::Mmap;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use pythia_engine::indexed::{self, DType};

use crate::errors::IntoPy;

/// A read-only buffer over a memory map, for `numpy.frombuffer`. numpy keeps this object as the
/// array's base, so the map lives as long as any view of it.
#[pyclass(frozen, module = "pythia_data._core")]
pub struct MappedBytes {
    map: Arc<Mmap>,
}

#[pymethods]
impl MappedBytes {
    fn __len__(&self) -> usize {
        self.map.len()
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & pyo3::ffi::PyBUF_WRITABLE == pyo3::ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("the memory map is read-only"));
        }
        let map = &slf.get().map;
        // An empty map has a dangling pointer; any non-null pointer is fine for zero bytes.
        let ptr = if map.is_empty() {
            std::ptr::NonNull::<u8>::dangling().as_ptr()
        } else {
            map.as_ptr() as *mut u8
        };
        let rc = pyo3::ffi::PyBuffer_FillInfo(
            view,
            slf.as_ptr(),
            ptr as *mut std::ffi::c_void,
            map.len() as pyo3::ffi::Py_ssize_t,
            1,
            flags,
        );
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}
}

pub fn mapped(map: &Arc<Mmap>) -> MappedBytes {
    MappedBytes { map: map.clone() }
}

/// Raw bytes of gathered items and their token offsets.
type Gathered<'py> = (Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<i64>>);

/// An opened, validated `PREFIX.bin` + `PREFIX.idx`.
#[pyclass(frozen, module = "pythia_data._core")]
pub struct IndexedDataset {
    pub inner: Arc<indexed::IndexedDataset>,
}

#[pymethods]
impl IndexedDataset {
    #[new]
    fn new(py: Python<'_>, prefix: std::path::PathBuf) -> PyResult<Self> {
        let inner = py
            .detach(|| indexed::IndexedDataset::open(&prefix))
            .py_err()?;
        Ok(IndexedDataset {
            inner: Arc::new(inner),
        })
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.dtype().numpy_name()
    }
    #[getter]
    fn doc_count(&self) -> usize {
        self.inner.index().doc_count()
    }
    #[getter]
    fn total_tokens(&self) -> u64 {
        self.inner.index().total_tokens()
    }
    /// The `.bin` file, or its shards in order.
    #[getter]
    fn bin_paths(&self) -> Vec<std::path::PathBuf> {
        self.inner
            .bin()
            .shards()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }
    /// Byte offset of each shard's first byte in the logical `.bin`.
    #[getter]
    fn shard_starts(&self) -> Vec<u64> {
        self.inner.bin().shards().iter().map(|s| s.start).collect()
    }
    #[getter]
    fn idx_path(&self) -> std::path::PathBuf {
        self.inner.index().path().to_path_buf()
    }
    /// Byte offsets of the sizes, pointers and doc_idx arrays inside `idx_buffer()`.
    #[getter]
    fn array_offsets(&self) -> (usize, usize, usize) {
        let i = self.inner.index();
        (i.sizes_offset(), i.pointers_offset(), i.doc_idx_offset())
    }
    fn idx_buffer(&self) -> MappedBytes {
        mapped(self.inner.index().map())
    }
    /// One read-only buffer per `.bin` shard (a single one for an unsharded dataset).
    fn bin_buffers(&self) -> Vec<MappedBytes> {
        self.inner
            .bin()
            .shards()
            .iter()
            .map(|s| mapped(&s.map))
            .collect()
    }
    /// Copy bytes [start, stop) of the logical `.bin` (for ranges that span shards).
    fn read_bin<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        stop: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let inner = self.inner.clone();
        let data = py
            .detach(|| inner.bin().slice(start, stop).map(|c| c.into_owned()))
            .py_err()?;
        Ok(PyBytes::new(py, &data))
    }
    /// Items `indices` as (bytes of the concatenated tokens, int64 token offsets).
    fn gather<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Gathered<'py>> {
        let indices = indices.as_slice()?;
        let inner = self.inner.clone();
        let (data, offsets) = py.detach(|| inner.gather(indices)).py_err()?;
        // Both vectors move into numpy without a copy.
        Ok((data.into_pyarray(py), offsets.into_pyarray(py)))
    }
    /// Byte range (start, stop) in the `.bin` of tokens [offset, offset+length) of item i.
    #[pyo3(signature = (i, offset=0, length=None))]
    fn byte_range(&self, i: usize, offset: usize, length: Option<usize>) -> PyResult<(u64, u64)> {
        let r = self.inner.byte_range(i, offset, length).py_err()?;
        Ok((r.start, r.end))
    }
}

/// Writes a dataset atomically; see the engine's `IndexedDatasetBuilder`.
#[pyclass(module = "pythia_data._core")]
pub struct IndexedDatasetBuilder {
    inner: Option<indexed::IndexedDatasetBuilder>,
}

impl IndexedDatasetBuilder {
    fn get(&mut self) -> PyResult<&mut indexed::IndexedDatasetBuilder> {
        self.inner.as_mut().ok_or_else(|| {
            crate::errors::PythiaDataError::new_err("this builder is already finished")
        })
    }
}

#[pymethods]
impl IndexedDatasetBuilder {
    #[new]
    fn new(prefix: std::path::PathBuf, dtype: &str) -> PyResult<Self> {
        let dtype = DType::from_numpy_name(dtype).py_err()?;
        Ok(IndexedDatasetBuilder {
            inner: Some(indexed::IndexedDatasetBuilder::create(prefix, dtype).py_err()?),
        })
    }
    #[getter]
    fn dtype(&mut self) -> PyResult<&'static str> {
        Ok(self.get()?.dtype().numpy_name())
    }
    fn add_item(&mut self, py: Python<'_>, tokens: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let tokens = tokens.as_slice()?;
        let b = self.get()?;
        py.detach(|| b.add_item_i64(tokens)).py_err()
    }
    fn add_item_bytes(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let b = self.get()?;
        py.detach(|| b.add_item_bytes(data)).py_err()
    }
    fn end_document(&mut self) -> PyResult<()> {
        self.get()?.end_document();
        Ok(())
    }
    fn append_dataset(&mut self, py: Python<'_>, other: &IndexedDataset) -> PyResult<()> {
        let b = self.get()?;
        let o = other.inner.clone();
        py.detach(|| b.append_dataset(&o)).py_err()
    }
    /// `with_files`: (temporary, destination) pairs renamed into place just before the
    /// dataset's own files; `remove`: files removed just before (see the engine's
    /// `finish_with`).
    #[pyo3(signature = (with_files = Vec::new(), remove = Vec::new()))]
    fn finish(
        &mut self,
        py: Python<'_>,
        with_files: Vec<(std::path::PathBuf, std::path::PathBuf)>,
        remove: Vec<std::path::PathBuf>,
    ) -> PyResult<std::path::PathBuf> {
        let b = self.inner.take().ok_or_else(|| {
            crate::errors::PythiaDataError::new_err("this builder is already finished")
        })?;
        py.detach(|| b.finish_with(&with_files, &remove)).py_err()
    }
    /// Discard the temporary files without writing anything.
    fn abort(&mut self) {
        self.inner = None;
    }
}

/// Raise unless `prefix` can name an output dataset (not empty, not a directory).
#[pyfunction]
fn check_output_prefix(prefix: std::path::PathBuf) -> PyResult<()> {
    indexed::check_output_prefix(&prefix).py_err()
}

/// Remove the temporaries of `dest` left by killed runs; returns the files removed.
#[pyfunction]
fn remove_stale_temps(dest: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    pythia_engine::atomic::remove_stale_temps(&dest)
}

/// The temporary this process writes `dest` through when separate jobs may write it at once
/// (the index files): `.NAME.tmp-PID-HOST-TOKEN`.
#[pyfunction]
fn shared_temp_path(dest: std::path::PathBuf) -> std::path::PathBuf {
    pythia_engine::atomic::shared_temp_path(&dest)
}

#[pyfunction]
fn merge_datasets(
    py: Python<'_>,
    out: std::path::PathBuf,
    inputs: Vec<std::path::PathBuf>,
) -> PyResult<std::path::PathBuf> {
    py.detach(|| indexed::merge_datasets(&out, &inputs))
        .py_err()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<MappedBytes>()?;
    m.add_class::<IndexedDataset>()?;
    m.add_class::<IndexedDatasetBuilder>()?;
    m.add_function(wrap_pyfunction!(merge_datasets, m)?)?;
    m.add_function(wrap_pyfunction!(check_output_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(remove_stale_temps, m)?)?;
    m.add_function(wrap_pyfunction!(shared_temp_path, m)?)?;
    Ok(())
}
