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

use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// `PREFIX.idx` for a dataset prefix (the prefix never includes the extension).
pub fn idx_path(prefix: impl AsRef<Path>) -> PathBuf {
    with_suffix(prefix, ".idx")
}

/// `PREFIX.bin` for a dataset prefix.
pub fn bin_path(prefix: impl AsRef<Path>) -> PathBuf {
    with_suffix(prefix, ".bin")
}

/// Refuse an output prefix that names no file: empty, ending in a separator, `.` or `..`, or
/// an existing directory (`-o out/` would otherwise write `out/.bin`, a hidden file); one below
/// a file, or whose `.bin`, `.idx` or subsets files would replace a directory.
pub fn check_output_prefix(prefix: impl AsRef<Path>) -> Result<()> {
    let prefix = prefix.as_ref();
    let text = prefix.as_os_str().to_string_lossy();
    let names_a_file = !text.is_empty()
        && !text.ends_with(std::path::MAIN_SEPARATOR)
        && !text.ends_with('/')
        && matches!(prefix.components().next_back(), Some(Component::Normal(_)));
    if !names_a_file || prefix.is_dir() {
        return Err(Error::invalid(format!(
            "the output {text:?} is not a dataset prefix: give a path like out/pile, which \
             writes out/pile.bin and out/pile.idx{}",
            if prefix.is_dir() {
                " (this one is a directory)"
            } else {
                ""
            }
        )));
    }
    // Missing folders are created; one that exists must be a folder. Checked now, before any
    // work, rather than found when the output is moved into place.
    let existing = prefix
        .ancestors()
        .skip(1)
        .find(|p| !p.as_os_str().is_empty() && std::fs::metadata(p).is_ok());
    if let Some(file) = existing.filter(|p| !p.is_dir()) {
        // In the words of Python's `prepare_output_folder`, which the other commands use.
        let bin = with_suffix(prefix, ".bin");
        return Err(Error::invalid(if Some(file) == prefix.parent() {
            format!(
                "cannot write {}: its folder {} is not a folder",
                bin.display(),
                file.display()
            )
        } else {
            format!(
                "cannot write {}: {} is a file, not a folder",
                bin.display(),
                file.display()
            )
        }));
    }
    for suffix in [".bin", ".idx", ".subsets.npy", ".subsets.json"] {
        let dest = with_suffix(prefix, suffix);
        if dest.is_dir() {
            return Err(Error::invalid(format!(
                "cannot write {}: a directory of that name is in the way; move it away or choose \
                 another output",
                dest.display()
            )));
        }
    }
    Ok(())
}

pub(crate) fn with_suffix(prefix: impl AsRef<Path>, suffix: &str) -> PathBuf {
    let mut s = prefix.as_ref().as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests;
