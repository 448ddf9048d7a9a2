//! Just the `sizes` array of an `.idx`, for building an index. `IndexFile::open` validates every
//! pointer and doc_idx entry, which reads the whole file (4.2 GB for the Pile) into the page
//! cache and the process's resident set; the index needs only the sizes (0.8 GB). The header
//! and the file size are still checked, and negative sizes are refused by `plan`.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::gpt2_index::Sizes;
use crate::error::IoContext;
use crate::indexed::{DType, HEADER_LEN, MAGIC};
use crate::{Error, Result};

pub struct IdxSizes {
    path: PathBuf,
    map: Mmap,
    len: usize,
}

impl IdxSizes {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = crate::files::open_regular(&path)?;
        // SAFETY: read-only map of a file this process does not modify.
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let bad = |m: String| Err(Error::corrupt(&path, m));
        if map.len() < HEADER_LEN || &map[..9] != MAGIC {
            return bad(
                "not a Megatron/GPT-NeoX mmap .idx file (bad magic or truncated header)".into(),
            );
        }
        let u64_at = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap());
        if u64_at(9) != 1 {
            return bad(format!("unsupported .idx version {}", u64_at(9)));
        }
        DType::from_code(map[17]).map_err(|e| Error::corrupt(&path, e.to_string()))?;
        let (len, doc_count) = (u64_at(18), u64_at(26));
        let expected = len as u128 * 12 + doc_count as u128 * 8 + HEADER_LEN as u128;
        if expected != map.len() as u128 {
            return bad(format!(
                "file is {} bytes but its header ({len} items, {doc_count} doc_idx entries) needs \
                 exactly {expected}: truncated or corrupt",
                map.len()
            ));
        }
        Ok(IdxSizes {
            path,
            map,
            len: len as usize,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sizes(&self) -> Sizes<'_> {
        Sizes::from_le_bytes(&self.map[HEADER_LEN..HEADER_LEN + 4 * self.len])
    }
}
