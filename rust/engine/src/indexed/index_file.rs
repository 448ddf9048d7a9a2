//! The `.idx` file: header, sizes, pointers and doc_idx, memory-mapped and validated once so
//! that every later access can trust it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::DType;
use crate::error::IoContext;
use crate::{Error, Result};

pub const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// The arrays start right after the header, at byte 34, which is not aligned for i32/i64:
/// every read below is an unaligned little-endian load.
pub const HEADER_LEN: usize = 34;

#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    map: Arc<Mmap>,
    dtype: DType,
    len: usize,
    doc_count: usize,
    total_tokens: u64,
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl IndexFile {
    /// Map and validate `path`. Checks the magic, version, dtype code, the exact file size, that
    /// every size is non-negative, that pointers are the running sum of sizes × itemsize, and
    /// that doc_idx starts at 0, never decreases and stays within `len`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = crate::files::open_regular(&path)?;
        // SAFETY: the map is read-only; a file truncated underneath us by another process is
        // outside what any mmap reader can defend against (the same holds for numpy.memmap).
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let b: &[u8] = &map;
        if b.len() < HEADER_LEN {
            return Err(Error::corrupt(
                &path,
                format!(
                    "file is {} bytes, shorter than the {HEADER_LEN}-byte .idx header (truncated or \
                     not an index file)",
                    b.len()
                ),
            ));
        }
        if &b[..9] != MAGIC {
            return Err(Error::corrupt(
                &path,
                "bad magic: not a Megatron/GPT-NeoX mmap .idx file (expected bytes 'MMIDIDX\\0\\0'; \
                 the older 'lazy'/'cached' formats are not supported)",
            ));
        }
        let version = read_u64(b, 9);
        if version != 1 {
            return Err(Error::corrupt(
                &path,
                format!("unsupported .idx version {version} (only version 1 exists)"),
            ));
        }
        let dtype = DType::from_code(b[17]).map_err(|e| Error::corrupt(&path, e.to_string()))?;
        let len = read_u64(b, 18);
        let doc_count = read_u64(b, 26);
        let expected = (len as u128) * 12 + (doc_count as u128) * 8 + HEADER_LEN as u128;
        if expected != b.len() as u128 {
            return Err(Error::corrupt(
                &path,
                format!(
                    "file is {} bytes but its header ({len} items, {doc_count} doc_idx entries) \
                     needs exactly {expected}: truncated or corrupt",
                    b.len()
                ),
            ));
        }
        let len = len as usize;
        let doc_count = doc_count as usize;
        let idx = IndexFile {
            path,
            map: Arc::new(map),
            dtype,
            len,
            doc_count,
            total_tokens: 0,
        };
        idx.validate()
    }

    fn validate(mut self) -> Result<Self> {
        let itemsize = self.dtype.itemsize() as i64;
        let mut expected_ptr: i64 = 0;
        let mut total: u64 = 0;
        for i in 0..self.len {
            let size = self.size(i);
            if size < 0 {
                return Err(Error::corrupt(
                    &self.path,
                    format!("item {i} has negative size {size}"),
                ));
            }
            let ptr = self.pointer(i);
            if ptr != expected_ptr {
                return Err(Error::corrupt(
                    &self.path,
                    format!(
                        "pointer of item {i} is {ptr} but the sizes before it add up to byte \
                         {expected_ptr}: sizes and pointers disagree"
                    ),
                ));
            }
            expected_ptr += size as i64 * itemsize;
            total += size as u64;
        }
        let mut prev = 0i64;
        for d in 0..self.doc_count {
            let v = self.doc_idx(d);
            if (d == 0 && v != 0) || v < prev || v as u64 > self.len as u64 {
                return Err(Error::corrupt(
                    &self.path,
                    format!(
                        "doc_idx[{d}] = {v} is invalid (doc_idx must start at 0, never decrease \
                         and stay within the {} items)",
                        self.len
                    ),
                ));
            }
            prev = v;
        }
        self.total_tokens = total;
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of items (sequences); one per document for GPT-NeoX's preprocessing.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Length of the doc_idx array (number of documents + 1 for a well-formed file).
    pub fn doc_count(&self) -> usize {
        self.doc_count
    }
    /// Sum of all sizes, in tokens.
    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }
    /// Bytes the `.bin` must hold.
    pub fn bin_bytes(&self) -> u64 {
        self.total_tokens * self.dtype.itemsize() as u64
    }
    /// The raw map, shared, for zero-copy views (see the byte offsets below).
    pub fn map(&self) -> &Arc<Mmap> {
        &self.map
    }
    pub fn sizes_offset(&self) -> usize {
        HEADER_LEN
    }
    pub fn pointers_offset(&self) -> usize {
        HEADER_LEN + 4 * self.len
    }
    pub fn doc_idx_offset(&self) -> usize {
        HEADER_LEN + 12 * self.len
    }

    #[inline]
    pub fn size(&self, i: usize) -> i32 {
        let at = HEADER_LEN + 4 * i;
        i32::from_le_bytes(self.map[at..at + 4].try_into().unwrap())
    }
    #[inline]
    pub fn pointer(&self, i: usize) -> i64 {
        let at = self.pointers_offset() + 8 * i;
        i64::from_le_bytes(self.map[at..at + 8].try_into().unwrap())
    }
    #[inline]
    pub fn doc_idx(&self, d: usize) -> i64 {
        let at = self.doc_idx_offset() + 8 * d;
        i64::from_le_bytes(self.map[at..at + 8].try_into().unwrap())
    }

    /// All sizes, copied into an aligned vector (what the index builder works on).
    pub fn sizes_vec(&self) -> Vec<i32> {
        self.map[HEADER_LEN..HEADER_LEN + 4 * self.len]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    pub fn doc_idx_vec(&self) -> Vec<i64> {
        let at = self.doc_idx_offset();
        self.map[at..at + 8 * self.doc_count]
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}
