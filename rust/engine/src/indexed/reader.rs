//! Reading an indexed dataset: the validated `.idx` plus the memory-mapped `.bin`.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::{bin_path, idx_path, DType, IndexFile};
use crate::error::IoContext;
use crate::{Error, Result};

#[derive(Debug)]
pub struct IndexedDataset {
    prefix: PathBuf,
    index: IndexFile,
    bin: Arc<Mmap>,
    bin_path: PathBuf,
}

impl IndexedDataset {
    /// Open `PREFIX.idx` + `PREFIX.bin`, checking that the `.bin` holds exactly the bytes the
    /// index describes.
    pub fn open(prefix: impl AsRef<Path>) -> Result<Self> {
        let prefix = prefix.as_ref().to_path_buf();
        let index = IndexFile::open(idx_path(&prefix))?;
        let bin_path = bin_path(&prefix);
        let file = File::open(&bin_path).at(&bin_path)?;
        // SAFETY: read-only map; see IndexFile::open.
        let bin = unsafe { Mmap::map(&file) }.at(&bin_path)?;
        if bin.len() as u64 != index.bin_bytes() {
            return Err(Error::corrupt(
                &bin_path,
                format!(
                    "file is {} bytes but {} says its {} tokens of {} need {} bytes: the two \
                     files do not belong together, or one is truncated",
                    bin.len(),
                    index.path().display(),
                    index.total_tokens(),
                    index.dtype().numpy_name(),
                    index.bin_bytes()
                ),
            ));
        }
        Ok(IndexedDataset {
            prefix,
            index,
            bin: Arc::new(bin),
            bin_path,
        })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }
    pub fn index(&self) -> &IndexFile {
        &self.index
    }
    pub fn dtype(&self) -> DType {
        self.index.dtype()
    }
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    pub fn bin_path(&self) -> &Path {
        &self.bin_path
    }
    pub fn bin_map(&self) -> &Arc<Mmap> {
        &self.bin
    }

    fn check_item(&self, i: usize) -> Result<()> {
        if i >= self.len() {
            return Err(Error::invalid(format!(
                "item {i} is out of range for {} ({} items)",
                self.prefix.display(),
                self.len()
            )));
        }
        Ok(())
    }

    /// Byte range in `.bin` of `length` tokens of item `i` starting at token `offset`
    /// (`length = None`: to the end of the item), like GPT-NeoX's `get(idx, offset, length)`.
    pub fn byte_range(
        &self,
        i: usize,
        offset: usize,
        length: Option<usize>,
    ) -> Result<std::ops::Range<usize>> {
        self.check_item(i)?;
        let size = self.index.size(i) as usize;
        let length = length.unwrap_or(size.saturating_sub(offset));
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(Error::invalid(format!(
                "tokens [{offset}, {offset}+{length}) are outside item {i} of size {size}"
            )));
        }
        let itemsize = self.dtype().itemsize();
        let start = self.index.pointer(i) as usize + offset * itemsize;
        Ok(start..start + length * itemsize)
    }

    /// The raw little-endian bytes of a token range: borrowed from the map (a range that spans
    /// two `.bin` shards is the only case that copies).
    pub fn get_bytes(
        &self,
        i: usize,
        offset: usize,
        length: Option<usize>,
    ) -> Result<Cow<'_, [u8]>> {
        let r = self.byte_range(i, offset, length)?;
        Ok(Cow::Borrowed(&self.bin[r]))
    }

    /// Copy `out.len() / itemsize` tokens of item `i`, from token `offset`, into `out` as raw
    /// little-endian bytes (the loader's hot path: no allocation).
    pub fn read_into(&self, i: usize, offset: usize, out: &mut [u8]) -> Result<()> {
        let itemsize = self.dtype().itemsize();
        let r = self.byte_range(i, offset, Some(out.len() / itemsize))?;
        out.copy_from_slice(&self.bin[r]);
        Ok(())
    }

    /// Copy raw `.bin` bytes `[start, start + out.len())` (may cross items and shards).
    pub fn read_bin_into(&self, start: u64, out: &mut [u8]) -> Result<()> {
        let end = start + out.len() as u64;
        if end > self.bin.len() as u64 {
            return Err(Error::invalid(format!(
                "bytes [{start}, {end}) are beyond the end of {} ({} bytes)",
                self.bin_path.display(),
                self.bin.len()
            )));
        }
        out.copy_from_slice(&self.bin[start as usize..end as usize]);
        Ok(())
    }

    /// Tokens of a range widened to i64.
    pub fn get_i64(&self, i: usize, offset: usize, length: Option<usize>) -> Result<Vec<i64>> {
        let dtype = self.dtype();
        let bytes = self.get_bytes(i, offset, length)?;
        Ok(bytes
            .chunks_exact(dtype.itemsize())
            .map(|c| dtype.read_i64(c))
            .collect())
    }
}
