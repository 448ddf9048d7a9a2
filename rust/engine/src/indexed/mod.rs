//! Megatron / GPT-NeoX indexed datasets: `PREFIX.bin` (tokens) + `PREFIX.idx` (sizes, pointers,
//! doc_idx). Format: shared/spec/data-pipeline.md §1.

mod bin_file;
mod builder;
mod dtype;
mod index_file;
mod reader;

pub use bin_file::{find_shards, BinFile, BinShard};
pub use builder::{merge_datasets, IndexedDatasetBuilder};
pub use dtype::DType;
pub use index_file::{IndexFile, HEADER_LEN, MAGIC};
pub use reader::IndexedDataset;

use std::path::{Path, PathBuf};

/// `PREFIX.idx` for a dataset prefix (the prefix never includes the extension).
pub fn idx_path(prefix: impl AsRef<Path>) -> PathBuf {
    with_suffix(prefix, ".idx")
}

/// `PREFIX.bin` for a dataset prefix.
pub fn bin_path(prefix: impl AsRef<Path>) -> PathBuf {
    with_suffix(prefix, ".bin")
}

pub(crate) fn with_suffix(prefix: impl AsRef<Path>, suffix: &str) -> PathBuf {
    let mut s = prefix.as_ref().as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests;
