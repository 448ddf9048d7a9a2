//! Reading an indexed dataset: the validated `.idx` plus the memory-mapped `.bin` (or its shards).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::{idx_path, BinFile, DType, IndexFile};
use crate::{Error, Result};

#[derive(Debug)]
pub struct IndexedDataset {
    prefix: PathBuf,
    index: IndexFile,
    bin: BinFile,
}

impl IndexedDataset {
    /// Open `PREFIX.idx` + `PREFIX.bin` (or `PREFIX-NNNNN-of-NNNNN.bin` shards), checking that the
    /// token data holds exactly the bytes the index describes.
    pub fn open(prefix: impl AsRef<Path>) -> Result<Self> {
        let prefix = prefix.as_ref().to_path_buf();
        let index = IndexFile::open(idx_path(&prefix))?;
        let bin = BinFile::open(&prefix)?;
        if bin.len() != index.bin_bytes() {
            let what = if bin.is_sharded() {
                format!("its {} shards hold", bin.shards().len())
            } else {
                "it holds".to_string()
            };
            let hint = if bin.is_sharded() && bin.len() < index.bin_bytes() {
                " (with Pythia's numbering, where '-of-N' names the last index, is shard N \
                 missing?)"
            } else {
                ""
            };
            return Err(Error::corrupt(
                &bin.shards()[0].path,
                format!(
                    "{what} {} bytes but {} says its {} tokens of {} need {} bytes: the files \
                     do not belong together, or one is truncated{hint}",
                    bin.len(),
                    index.path().display(),
                    index.total_tokens(),
                    index.dtype().numpy_name(),
                    index.bin_bytes()
                ),
            ));
        }
        Ok(IndexedDataset { prefix, index, bin })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }
    pub fn index(&self) -> &IndexFile {
        &self.index
    }
    pub fn bin(&self) -> &BinFile {
        &self.bin
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

    /// Byte range in the logical `.bin` of `length` tokens of item `i` starting at token
    /// `offset` (`length = None`: to the end of the item), like GPT-NeoX's
    /// `get(idx, offset, length)`.
    pub fn byte_range(
        &self,
        i: usize,
        offset: usize,
        length: Option<usize>,
    ) -> Result<std::ops::Range<u64>> {
        self.check_item(i)?;
        let size = self.index.size(i) as usize;
        if offset > size {
            return Err(Error::invalid(format!(
                "offset {offset} is beyond the end of item {i} of size {size}"
            )));
        }
        let length = length.unwrap_or(size - offset);
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(Error::invalid(format!(
                "tokens [{offset}, {offset}+{length}) are outside item {i} of size {size}"
            )));
        }
        let itemsize = self.dtype().itemsize() as u64;
        let start = self.index.pointer(i) as u64 + offset as u64 * itemsize;
        Ok(start..start + length as u64 * itemsize)
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
        self.bin.slice(r.start, r.end)
    }

    /// Copy `out.len() / itemsize` tokens of item `i`, from token `offset`, into `out` as raw
    /// little-endian bytes (the loader's hot path: no allocation).
    pub fn read_into(&self, i: usize, offset: usize, out: &mut [u8]) -> Result<()> {
        let itemsize = self.dtype().itemsize();
        if !out.len().is_multiple_of(itemsize) {
            return Err(Error::invalid(format!(
                "a buffer of {} bytes does not hold whole {itemsize}-byte tokens",
                out.len()
            )));
        }
        let r = self.byte_range(i, offset, Some(out.len() / itemsize))?;
        self.bin.read_into(r.start, out)
    }

    /// Copy raw `.bin` bytes `[start, start + out.len())` (may cross items and shards).
    pub fn read_bin_into(&self, start: u64, out: &mut [u8]) -> Result<()> {
        self.bin.read_into(start, out)
    }

    /// Items `indices` concatenated as raw bytes, plus token offsets (`len + 1` of them) where
    /// each item starts. Negative indices count from the end, as in Python.
    pub fn gather(&self, indices: &[i64]) -> Result<(Vec<u8>, Vec<i64>)> {
        let n = self.len() as i64;
        let mut offsets = Vec::with_capacity(indices.len() + 1);
        offsets.push(0i64);
        let mut items = Vec::with_capacity(indices.len());
        for &i in indices {
            let k = if i < 0 { i + n } else { i };
            if !(0..n).contains(&k) {
                return Err(Error::invalid(format!(
                    "item {i} is out of range for {} ({n} items)",
                    self.prefix.display()
                )));
            }
            let k = k as usize;
            items.push(k);
            offsets.push(offsets.last().unwrap() + self.index.size(k) as i64);
        }
        let itemsize = self.dtype().itemsize();
        let mut out = vec![0u8; *offsets.last().unwrap() as usize * itemsize];
        for (j, &k) in items.iter().enumerate() {
            let a = offsets[j] as usize * itemsize;
            let b = offsets[j + 1] as usize * itemsize;
            self.bin
                .read_into(self.index.pointer(k) as u64, &mut out[a..b])?;
        }
        Ok((out, offsets))
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
