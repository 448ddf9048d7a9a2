//! Writing an indexed dataset byte-for-byte like GPT-NeoX's `MMapIndexedDatasetBuilder`, but
//! atomically: tokens and index go to temporary files beside the destination and are renamed into
//! place only by `finish`, `.bin` first and `.idx` last, so an interrupted run never leaves a pair
//! of files that looks valid.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::bin_file::BinShard;
use super::{bin_path, idx_path, DType, IndexedDataset, HEADER_LEN, MAGIC};
use crate::atomic::{lock_folder, remove_stale_temps, temp_path};
use crate::error::IoContext;
use crate::{Error, Result};

pub struct IndexedDatasetBuilder {
    prefix: PathBuf,
    dtype: DType,
    bin_tmp: PathBuf,
    bin: Option<BufWriter<File>>,
    sizes: Vec<i32>,
    doc_idx: Vec<i64>,
    scratch: Vec<u8>,
}

impl IndexedDatasetBuilder {
    pub fn create(prefix: impl AsRef<Path>, dtype: DType) -> Result<Self> {
        let prefix = prefix.as_ref().to_path_buf();
        super::check_output_prefix(&prefix)?;
        let bin_tmp = temp_path(&bin_path(&prefix));
        if let Some(parent) = bin_tmp.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        // A killed earlier run left its temporaries; a merge's is as large as its output.
        for dest in [bin_path(&prefix), idx_path(&prefix)] {
            remove_stale_temps(&dest);
        }
        let file =
            File::create(&bin_tmp).map_err(|e| Error::creating(bin_path(&prefix), &bin_tmp, e))?;
        Ok(IndexedDatasetBuilder {
            prefix,
            dtype,
            bin_tmp,
            bin: Some(BufWriter::with_capacity(1 << 22, file)),
            sizes: Vec::new(),
            doc_idx: vec![0],
            scratch: Vec::new(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn num_items(&self) -> usize {
        self.sizes.len()
    }
    pub fn num_documents(&self) -> usize {
        self.doc_idx.len() - 1
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let w = self.bin.as_mut().expect("builder used after finish");
        w.write_all(bytes)
            .map_err(|e| Error::io(bin_path(&self.prefix), e))
    }

    fn push_size(&mut self, n: usize) -> Result<()> {
        let n = i32::try_from(n).map_err(|_| {
            Error::invalid(format!(
                "an item of {n} tokens does not fit the .idx format's int32 sizes"
            ))
        })?;
        self.sizes.push(n);
        Ok(())
    }

    /// Append one item from values that must fit the dataset's dtype.
    pub fn add_item_i64(&mut self, tokens: &[i64]) -> Result<()> {
        let (lo, hi) = self.dtype.value_range();
        if let Some(bad) = tokens.iter().find(|&&t| t < lo || t > hi) {
            return Err(Error::invalid(format!(
                "token {bad} does not fit dtype {} (range {lo}..={hi})",
                self.dtype.numpy_name()
            )));
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        for &t in tokens {
            self.dtype.write_le(t, &mut buf);
        }
        let r = self.write(&buf);
        self.scratch = buf;
        r?;
        self.push_size(tokens.len())
    }

    /// Append one item of token ids (what a tokenizer produces).
    pub fn add_item_u32(&mut self, tokens: &[u32]) -> Result<()> {
        let (_, hi) = self.dtype.value_range();
        if let Some(bad) = tokens.iter().find(|&&t| t as i64 > hi) {
            return Err(Error::invalid(format!(
                "token id {bad} does not fit dtype {}; use int32 for vocabularies of 65,500 ids \
                 or more",
                self.dtype.numpy_name()
            )));
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.reserve(tokens.len() * self.dtype.itemsize());
        for &t in tokens {
            self.dtype.write_le(t as i64, &mut buf);
        }
        let r = self.write(&buf);
        self.scratch = buf;
        r?;
        self.push_size(tokens.len())
    }

    /// Append one item given as raw little-endian bytes of the dataset's dtype.
    pub fn add_item_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let itemsize = self.dtype.itemsize();
        if !bytes.len().is_multiple_of(itemsize) {
            return Err(Error::invalid(format!(
                "{} bytes is not a whole number of {}-byte tokens",
                bytes.len(),
                itemsize
            )));
        }
        self.write(bytes)?;
        self.push_size(bytes.len() / itemsize)
    }

    /// Close the current document: GPT-NeoX records the running item count in doc_idx.
    pub fn end_document(&mut self) {
        self.doc_idx.push(self.sizes.len() as i64);
    }

    /// One item that is one document (what `preprocess_data.py` writes per input document).
    pub fn add_document_u32(&mut self, tokens: &[u32]) -> Result<()> {
        self.add_item_u32(tokens)?;
        self.end_document();
        Ok(())
    }

    /// Append every item of `other` (same dtype), shifting its doc_idx like GPT-NeoX's
    /// `merge_file_`.
    pub fn append_dataset(&mut self, other: &IndexedDataset) -> Result<()> {
        if other.dtype() != self.dtype {
            return Err(Error::invalid(format!(
                "cannot merge {} ({}) into a {} dataset: dtypes differ",
                other.prefix().display(),
                other.dtype().numpy_name(),
                self.dtype.numpy_name()
            )));
        }
        let offset = self.sizes.len() as i64;
        self.sizes.extend(other.index().sizes_vec());
        let doc_idx = other.index().doc_idx_vec();
        self.doc_idx
            .extend(doc_idx.iter().skip(1).map(|&d| offset + d));
        for shard in other.bin().shards() {
            self.append_shard(shard)?;
        }
        Ok(())
    }

    /// Append the bytes of `shard`. While its path still names the file that was mapped, they
    /// go through the kernel: `io::copy` from one file to another is `copy_file_range`, which
    /// copies without passing the bytes through this process, and on XFS and btrfs shares
    /// blocks instead where the offsets are block-aligned. A file renamed over it since (or
    /// removed) is another dataset's: the mapped bytes, which its index was checked against,
    /// are written instead.
    fn append_shard(&mut self, shard: &BinShard) -> Result<()> {
        use std::io::Read;
        let len = shard.map.len() as u64;
        let same = File::open(&shard.path)
            .ok()
            .filter(|f| shard.id.is_some() && super::bin_file::file_id(f) == shard.id);
        let Some(file) = same else {
            return self.write(&shard.map);
        };
        let w = self.bin.as_mut().expect("builder used after finish");
        let copied = std::io::copy(&mut file.take(len), w)
            .map_err(|e| Error::io(bin_path(&self.prefix), e))?;
        if copied != len {
            return Err(Error::corrupt(
                &shard.path,
                format!("shrank from {len} to {copied} bytes while being merged"),
            ));
        }
        Ok(())
    }

    /// Serialise the `.idx` exactly as GPT-NeoX does, into `out` a block at a time: built whole
    /// in memory first, it was 20 bytes per item on top of the sizes and doc_idx held already
    /// (4 GB more for a merge of the Pile's 210 M documents).
    fn write_index(&self, out: &mut impl Write) -> std::io::Result<()> {
        /// Values per block: 64 KB of pointers.
        const BLOCK: usize = 8192;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&1u64.to_le_bytes());
        header.push(self.dtype.code());
        header.extend_from_slice(&(self.sizes.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.doc_idx.len() as u64).to_le_bytes());
        out.write_all(&header)?;
        let mut block = Vec::with_capacity(8 * BLOCK);
        for sizes in self.sizes.chunks(BLOCK) {
            block.clear();
            block.extend(sizes.iter().flat_map(|s| s.to_le_bytes()));
            out.write_all(&block)?;
        }
        let itemsize = self.dtype.itemsize() as i64;
        let mut ptr: i64 = 0;
        for sizes in self.sizes.chunks(BLOCK) {
            block.clear();
            for &s in sizes {
                block.extend_from_slice(&ptr.to_le_bytes());
                ptr += s as i64 * itemsize;
            }
            out.write_all(&block)?;
        }
        for docs in self.doc_idx.chunks(BLOCK) {
            block.clear();
            block.extend(docs.iter().flat_map(|d| d.to_le_bytes()));
            out.write_all(&block)?;
        }
        Ok(())
    }

    /// Flush, sync and rename both files into place.
    pub fn finish(self) -> Result<PathBuf> {
        self.finish_with(&[], &[])
    }

    /// [`Self::finish`], renaming also `with` ((temporary, destination) pairs of files already
    /// written and synced, such as subsets that belong with this dataset) into place first, and
    /// removing `remove` (files of an earlier dataset of this name that would describe other
    /// items). Both files of the dataset are written and synced before anything is removed or
    /// renamed, so a full disk or a write error leaves every file as it was (an earlier dataset
    /// of this name whole), and the renames, the `.idx` last, follow one another within moments.
    pub fn finish_with(
        mut self,
        with: &[(PathBuf, PathBuf)],
        remove: &[PathBuf],
    ) -> Result<PathBuf> {
        let w = self.bin.take().expect("builder finished twice");
        let idx_tmp = temp_path(&idx_path(&self.prefix));
        let result = self.finish_files(w, &idx_tmp, with, remove);
        if result.is_err() {
            // A full disk fails the last flush or sync: no temporary file may stay behind.
            let _ = std::fs::remove_file(&self.bin_tmp);
            let _ = std::fs::remove_file(&idx_tmp);
        }
        result
    }

    fn finish_files(
        &self,
        w: BufWriter<File>,
        idx_tmp: &Path,
        with: &[(PathBuf, PathBuf)],
        remove: &[PathBuf],
    ) -> Result<PathBuf> {
        let file = w
            .into_inner()
            .map_err(|e| Error::io(bin_path(&self.prefix), e.into_error()))?;
        file.sync_all().at(bin_path(&self.prefix))?;
        drop(file);
        let bin_dest = bin_path(&self.prefix);
        let idx_dest = idx_path(&self.prefix);
        remove_stale_temps(&idx_dest);
        // Errors name the destinations: the temporaries are removed on the way out.
        let mut idx = File::create(idx_tmp).at(&idx_dest)?;
        self.write_index(&mut idx).at(&idx_dest)?;
        idx.sync_all().at(&idx_dest)?;
        drop(idx);
        // Another process putting this output in place at the same moment would interleave
        // its renames with these.
        let _lock = lock_folder(bin_dest.parent().unwrap_or(Path::new("")))?;
        // A stale .idx from an earlier run must not pair with the new .bin if we die between
        // the renames; nor may other files that described that run (`remove`).
        for stale in std::iter::once(&idx_dest).chain(remove) {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(stale, e))
                }
                _ => {}
            }
        }
        for (from, to) in with {
            std::fs::rename(from, to).at(to)?;
        }
        std::fs::rename(&self.bin_tmp, &bin_dest).at(&bin_dest)?;
        std::fs::rename(idx_tmp, &idx_dest).at(&idx_dest)?;
        Ok(self.prefix.clone())
    }
}

impl Drop for IndexedDatasetBuilder {
    fn drop(&mut self) {
        // Not finished: the temporary .bin is half a dataset; remove it.
        if self.bin.take().is_some() {
            let _ = std::fs::remove_file(&self.bin_tmp);
        }
    }
}

/// Concatenate datasets, in order, into `out` (GPT-NeoX's `tools/merge_datasets.py`).
pub fn merge_datasets(out: impl AsRef<Path>, inputs: &[impl AsRef<Path>]) -> Result<PathBuf> {
    if inputs.is_empty() {
        return Err(Error::invalid("merge needs at least one input dataset"));
    }
    super::check_output_prefix(&out)?;
    let datasets = inputs
        .iter()
        .map(IndexedDataset::open)
        .collect::<Result<Vec<_>>>()?;
    let out = out.as_ref();
    // Compared as files, not prefixes: an output named like an input's shard (or reached by
    // another path) would be renamed over a file still being read.
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    for d in &datasets {
        let inputs = d
            .bin()
            .shards()
            .iter()
            .map(|s| s.path.as_path())
            .chain([d.index().path()]);
        for f in inputs {
            if same(f, &bin_path(out)) || same(f, &idx_path(out)) {
                return Err(Error::invalid(format!(
                    "the output {} would overwrite {}, an input",
                    out.display(),
                    f.display()
                )));
            }
        }
    }
    let mut builder = IndexedDatasetBuilder::create(out, datasets[0].dtype())?;
    for d in &datasets {
        builder.append_dataset(d)?;
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the largest single write and everything written.
    #[derive(Default)]
    struct Recorder {
        largest: usize,
        bytes: Vec<u8>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.largest = self.largest.max(buf.len());
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_index_is_written_a_block_at_a_time() {
        let dir = std::env::temp_dir().join(format!("pythia-builder-idx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut b = IndexedDatasetBuilder::create(dir.join("d"), DType::U16).unwrap();
        let items = 200_000;
        for i in 0..items {
            b.add_item_u32(&vec![7; i % 5]).unwrap();
            if i % 3 == 2 {
                b.end_document();
            }
        }
        let mut rec = Recorder::default();
        b.write_index(&mut rec).unwrap();
        // 4.4 MB of index, never more than a block of it in memory at once.
        assert!(rec.largest <= 64 << 10, "{}", rec.largest);
        let prefix = b.finish().unwrap();
        assert_eq!(rec.bytes, std::fs::read(idx_path(&prefix)).unwrap());
        let ds = IndexedDataset::open(&prefix).unwrap();
        assert_eq!(ds.len(), items);
        assert_eq!(ds.index().size(items - 1), ((items - 1) % 5) as i32);
        assert_eq!(ds.index().doc_idx_vec().len(), items / 3 + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
