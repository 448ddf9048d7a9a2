//! Training rows in GPT-NeoX's order: item k of GPT2Dataset is the L+1 tokens from
//! `sample_idx[shuffle_idx[k]]` up to and including `sample_idx[shuffle_idx[k] + 1]`, read
//! straight from the indexed dataset. Batches are assembled on all cores.
//! Facts: shared/spec/data-pipeline.md §2.8 and §4.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use crate::index::{index_paths, IndexPaths, NpyArray, NpyDType};
use crate::indexed::{DType, IndexedDataset};
use crate::{Error, Result};

// Parallel assembly is only used in the process that owns rayon's pool (see
// `crate::may_use_rayon`); a forked child (a DataLoader worker) assembles rows on its own thread.
use crate::may_use_rayon;

/// One piece of a row: `length` tokens of dataset item `document` from token `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub document: usize,
    pub offset: usize,
    pub length: usize,
}

#[derive(Debug)]
pub struct GptDataset {
    dataset: Arc<IndexedDataset>,
    doc_idx: NpyArray,
    sample_idx: NpyArray,
    shuffle_idx: NpyArray,
    seq_length: usize,
    len: usize,
}

impl GptDataset {
    /// Open the index files named like GPT-NeoX's cache for these parameters.
    pub fn open_cache(
        dataset: Arc<IndexedDataset>,
        cache_prefix: &Path,
        name: &str,
        num_samples: u64,
        seq_length: u64,
        seed: u64,
    ) -> Result<Self> {
        let p = index_paths(cache_prefix, name, num_samples, seq_length, seed);
        Self::open(dataset, &p, seq_length as usize)
    }

    /// Open and cross-check the three index arrays against each other and the dataset.
    pub fn open(
        dataset: Arc<IndexedDataset>,
        paths: &IndexPaths,
        seq_length: usize,
    ) -> Result<Self> {
        // Claims the rayon pool for this process before anything (here or elsewhere) starts it.
        may_use_rayon();
        for p in [&paths.doc_idx, &paths.sample_idx, &paths.shuffle_idx] {
            if !p.exists() {
                return Err(Error::io(
                    p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "index file not found (build it with `pythia-data build-index`)",
                    ),
                ));
            }
        }
        let doc_idx = NpyArray::open(&paths.doc_idx)?;
        let sample_idx = NpyArray::open(&paths.sample_idx)?;
        let shuffle_idx = NpyArray::open(&paths.shuffle_idx)?;
        let bad = |p: &Path, m: String| Err(Error::corrupt(p, m));
        if doc_idx.dtype() != NpyDType::I32 || doc_idx.shape().len() != 1 {
            return bad(
                &paths.doc_idx,
                format!(
                    "doc_idx must be 1-D int32, found {} {:?}",
                    doc_idx.dtype().descr(),
                    doc_idx.shape()
                ),
            );
        }
        if !matches!(sample_idx.dtype(), NpyDType::I32 | NpyDType::I64)
            || sample_idx.shape().len() != 2
            || sample_idx.shape()[1] != 2
            || sample_idx.shape()[0] == 0
        {
            return bad(
                &paths.sample_idx,
                format!(
                    "sample_idx must be int32/int64 of shape (N+1, 2), found {} {:?}",
                    sample_idx.dtype().descr(),
                    sample_idx.shape()
                ),
            );
        }
        let n = sample_idx.shape()[0] - 1;
        if !matches!(shuffle_idx.dtype(), NpyDType::U32 | NpyDType::I64)
            || shuffle_idx.shape() != [n]
        {
            return bad(
                &paths.shuffle_idx,
                format!(
                    "shuffle_idx must be uint32/int64 of shape ({n},) to match {}, found {} {:?}",
                    paths.sample_idx.display(),
                    shuffle_idx.dtype().descr(),
                    shuffle_idx.shape()
                ),
            );
        }
        // Cheap consistency checks that catch files from another dataset or seq_length.
        let last_pos = sample_idx.get_i64(2 * n);
        if last_pos < 0 || last_pos as usize >= doc_idx.len().max(1) {
            return bad(
                &paths.sample_idx,
                format!(
                    "its last row points at doc_idx position {last_pos}, beyond {}'s {} entries",
                    paths.doc_idx.display(),
                    doc_idx.len()
                ),
            );
        }
        let ds = &dataset;
        let max_doc = (0..doc_idx.len().min(4096))
            .map(|i| doc_idx.get_i64(i))
            .max()
            .unwrap_or(0);
        if max_doc < 0 || max_doc as usize >= ds.len() {
            return bad(
                &paths.doc_idx,
                format!("refers to document {max_doc}, but {} has {} items: the index belongs to another dataset", ds.prefix().display(), ds.len()),
            );
        }
        let g = GptDataset {
            dataset,
            doc_idx,
            sample_idx,
            shuffle_idx,
            seq_length,
            len: n.saturating_sub(1),
        };
        if g.len > 0 {
            let spans = g.spans_of_sample(0)?;
            let total: usize = spans.iter().map(|s| s.length).sum();
            if total != seq_length + 1 {
                return bad(
                    &paths.sample_idx,
                    format!("sample 0 spans {total} tokens, not seq_length + 1 = {}: wrong seq_length or another dataset", seq_length + 1),
                );
            }
        }
        Ok(g)
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn seq_length(&self) -> usize {
        self.seq_length
    }
    pub fn dataset(&self) -> &Arc<IndexedDataset> {
        &self.dataset
    }
    pub fn row_len(&self) -> usize {
        self.seq_length + 1
    }

    fn check_row(&self, k: usize) -> Result<()> {
        if k >= self.len {
            return Err(Error::invalid(format!(
                "row {k} is beyond the index ({} rows = {} full steps of 1024)",
                self.len,
                self.len / 1024
            )));
        }
        Ok(())
    }

    fn spans_of_sample(&self, j: usize) -> Result<Vec<Span>> {
        // sample_idx has at least one row (checked on open); `j + 1` could overflow.
        if j >= self.sample_idx.shape()[0] - 1 {
            return Err(Error::corrupt(
                self.shuffle_idx.path(),
                format!(
                    "names sample {j}, but {} has only {} samples",
                    self.sample_idx.path().display(),
                    self.sample_idx.shape()[0] - 1
                ),
            ));
        }
        let (p0, o0) = (
            self.sample_idx.get_i64(2 * j),
            self.sample_idx.get_i64(2 * j + 1),
        );
        let (p1, o1) = (
            self.sample_idx.get_i64(2 * j + 2),
            self.sample_idx.get_i64(2 * j + 3),
        );
        let bad = || {
            Error::corrupt(
                self.sample_idx.path(),
                format!("rows {j} and {} do not describe a valid sample", j + 1),
            )
        };
        if p0 < 0 || p1 < p0 || o0 < 0 || o1 < 0 || p1 as usize >= self.doc_idx.len() {
            return Err(bad());
        }
        let doc = |p: i64| -> Result<usize> {
            let d = self.doc_idx.get_i64(p as usize);
            if d < 0 || d as usize >= self.dataset.len() {
                return Err(Error::corrupt(
                    self.doc_idx.path(),
                    format!(
                        "entry {p} names document {d}, outside the dataset's {} items",
                        self.dataset.len()
                    ),
                ));
            }
            Ok(d as usize)
        };
        let size = |d: usize| self.dataset.index().size(d) as usize;
        // A sample ends on a token of its last document (GPT-NeoX's sample_idx holds that
        // token's offset), which damaged or foreign index files need not: GPT-NeoX would read
        // on into the next documents.
        let ends_inside = |d: usize| -> Result<()> {
            if o1 as u64 >= size(d) as u64 {
                return Err(Error::corrupt(
                    self.sample_idx.path(),
                    format!(
                        "sample {j} ends at offset {o1} of document {d}, which has {} tokens: \
                         the index files are damaged or were built for other data",
                        size(d)
                    ),
                ));
            }
            Ok(())
        };
        let mut spans = Vec::with_capacity((p1 - p0 + 1) as usize);
        if p0 == p1 {
            let d = doc(p0)?;
            if o1 < o0 {
                return Err(bad());
            }
            ends_inside(d)?;
            spans.push(Span {
                document: d,
                offset: o0 as usize,
                length: (o1 - o0 + 1) as usize,
            });
        } else {
            let d0 = doc(p0)?;
            spans.push(Span {
                document: d0,
                offset: o0 as usize,
                length: size(d0).checked_sub(o0 as usize).ok_or_else(bad)?,
            });
            for p in p0 + 1..p1 {
                let d = doc(p)?;
                spans.push(Span {
                    document: d,
                    offset: 0,
                    length: size(d),
                });
            }
            let last = doc(p1)?;
            ends_inside(last)?;
            spans.push(Span {
                document: last,
                offset: 0,
                length: o1 as usize + 1,
            });
        }
        spans.retain(|s| s.length > 0);
        Ok(spans)
    }

    /// The sample behind row k (its position in sample_idx).
    pub fn sample_of_row(&self, k: usize) -> Result<usize> {
        self.check_row(k)?;
        let j = self.shuffle_idx.get_i64(k);
        usize::try_from(j).map_err(|_| {
            Error::corrupt(
                self.shuffle_idx.path(),
                format!("entry {k} is {j}, not a sample number"),
            )
        })
    }

    /// Where row k's tokens come from: documents, offsets and lengths, in order.
    pub fn provenance(&self, k: usize) -> Result<Vec<Span>> {
        let j = self.sample_of_row(k)?;
        self.spans_of_sample(j)
    }

    /// Row k as raw little-endian tokens of the dataset's dtype into `out` (L+1 tokens).
    pub fn row_into(&self, k: usize, out: &mut [u8]) -> Result<()> {
        let itemsize = self.dataset.dtype().itemsize();
        if out.len() != self.row_len() * itemsize {
            return Err(Error::invalid(
                "internal error: row buffer of the wrong size",
            ));
        }
        let mut at = 0;
        for s in self.provenance(k)? {
            let n = s.length * itemsize;
            if at + n > out.len() {
                return Err(Error::corrupt(
                    self.sample_idx.path(),
                    format!(
                        "row {k} has more than seq_length + 1 = {} tokens: the index \
                         files are damaged or were built for other data",
                        self.row_len()
                    ),
                ));
            }
            self.dataset
                .read_into(s.document, s.offset, &mut out[at..at + n])?;
            at += n;
        }
        if at != out.len() {
            return Err(Error::corrupt(
                self.sample_idx.path(),
                format!(
                    "row {k} has {} tokens, not seq_length + 1 = {}: the index files \
                     are damaged or were built for other data",
                    at / itemsize,
                    self.row_len()
                ),
            ));
        }
        Ok(())
    }

    /// Rows `[start, stop)` into `out` (row-major, raw dtype bytes), in parallel.
    pub fn rows_into(&self, start: usize, stop: usize, out: &mut [u8]) -> Result<()> {
        if start > stop || stop > self.len {
            return Err(Error::invalid(format!(
                "rows [{start}, {stop}) are outside the index's {} rows",
                self.len
            )));
        }
        let row_bytes = self.row_len() * self.dataset.dtype().itemsize();
        if out.len() != (stop - start) * row_bytes {
            return Err(Error::invalid(
                "internal error: batch buffer of the wrong size",
            ));
        }
        if !may_use_rayon() {
            return out
                .chunks_mut(row_bytes)
                .enumerate()
                .try_for_each(|(i, row)| self.row_into(start + i, row));
        }
        out.par_chunks_mut(row_bytes)
            .with_min_len(16)
            .enumerate()
            .try_for_each(|(i, row)| self.row_into(start + i, row))
    }

    /// Row k widened to int64, straight from the dataset's bytes.
    pub fn row_into_i64(&self, k: usize, out: &mut [i64]) -> Result<()> {
        let dtype = self.dataset.dtype();
        let mut at = 0;
        for s in self.provenance(k)? {
            if at + s.length > out.len() {
                return Err(Error::corrupt(
                    self.sample_idx.path(),
                    format!(
                        "row {k} has more than seq_length + 1 = {} tokens: the index \
                         files are damaged or were built for other data",
                        self.row_len()
                    ),
                ));
            }
            let bytes = self
                .dataset
                .get_bytes(s.document, s.offset, Some(s.length))?;
            widen(dtype, &bytes, &mut out[at..at + s.length]);
            at += s.length;
        }
        if at != out.len() {
            return Err(Error::corrupt(
                self.sample_idx.path(),
                format!(
                    "row {k} has {at} tokens, not seq_length + 1 = {}: the index files \
                     are damaged or were built for other data",
                    self.row_len()
                ),
            ));
        }
        Ok(())
    }

    /// Rows `[start, stop)` widened to int64.
    pub fn rows_into_i64(&self, start: usize, stop: usize, out: &mut [i64]) -> Result<()> {
        let l1 = self.row_len();
        if start > stop || stop > self.len {
            return Err(Error::invalid(format!(
                "rows [{start}, {stop}) are outside the index's {} rows",
                self.len
            )));
        }
        if out.len() != (stop - start) * l1 {
            return Err(Error::invalid(
                "internal error: batch buffer of the wrong size",
            ));
        }
        if !may_use_rayon() {
            return out
                .chunks_mut(l1)
                .enumerate()
                .try_for_each(|(i, row)| self.row_into_i64(start + i, row));
        }
        out.par_chunks_mut(l1)
            .with_min_len(16)
            .enumerate()
            .try_for_each(|(i, row)| self.row_into_i64(start + i, row))
    }
}

/// Little-endian tokens of `dtype` to i64, one typed loop per dtype (so it vectorises).
fn widen(dtype: DType, bytes: &[u8], out: &mut [i64]) {
    macro_rules! go {
        ($t:ty, $n:expr) => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                *o = <$t>::from_le_bytes(c.try_into().unwrap()) as i64;
            }
        };
    }
    match dtype {
        DType::U8 => go!(u8, 1),
        DType::I8 => go!(i8, 1),
        DType::I16 => go!(i16, 2),
        DType::U16 => go!(u16, 2),
        DType::I32 => go!(i32, 4),
        DType::I64 => go!(i64, 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{build_index_files, IndexRequest, Sizes};
    use crate::indexed::{DType, IndexedDatasetBuilder};

    #[test]
    fn rows_are_the_concatenated_stream_slices() {
        let dir = std::env::temp_dir().join(format!("loader-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = dir.join("toy");
        let sizes = [3usize, 5, 0, 1, 7, 4, 6, 4];
        let mut b = IndexedDatasetBuilder::create(&prefix, DType::U16).unwrap();
        for (i, &n) in sizes.iter().enumerate() {
            let toks: Vec<i64> = (0..n as i64).map(|j| 100 * i as i64 + j).collect();
            b.add_item_i64(&toks).unwrap();
            b.end_document();
        }
        b.finish().unwrap();
        let ds = Arc::new(IndexedDataset::open(&prefix).unwrap());
        let req = IndexRequest {
            name: "train_0".into(),
            num_samples: 9,
            seq_length: 4,
            seed: 1234,
            documents: None,
            separate_last_epoch: false,
        };
        let s32: Vec<i32> = sizes.iter().map(|&s| s as i32).collect();
        let paths = index_paths(&prefix, "train_0", 9, 4, 1234);
        let summary =
            build_index_files(Sizes::from_slice(&s32), &req, &paths, false, &|_, _, _| {
                true
            })
            .unwrap();
        let g = GptDataset::open(ds.clone(), &paths, 4).unwrap();
        assert_eq!(g.len() as u64, summary.plan.n - 1);
        // The stream S in doc_idx order; sample j is S[4j ..= 4j+4].
        let doc_idx = NpyArray::open(&paths.doc_idx).unwrap();
        let mut stream = Vec::new();
        for p in 0..doc_idx.len() {
            let d = doc_idx.get_i64(p) as usize;
            stream.extend((0..sizes[d] as i64).map(|j| 100 * d as i64 + j));
        }
        let mut out = vec![0i64; g.len() * 5];
        g.rows_into_i64(0, g.len(), &mut out).unwrap();
        let shuffle = NpyArray::open(&paths.shuffle_idx).unwrap();
        for k in 0..g.len() {
            let j = shuffle.get_i64(k) as usize;
            assert_eq!(&out[5 * k..5 * k + 5], &stream[4 * j..4 * j + 5], "row {k}");
        }
        assert!(g.row_into(g.len(), &mut [0u8; 10]).is_err());
        // A shuffle_idx entry past the samples is a clear error, not a panic.
        let at = NpyArray::open(&paths.shuffle_idx).unwrap().data_offset();
        let mut raw = std::fs::read(&paths.shuffle_idx).unwrap();
        raw[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        std::fs::write(&paths.shuffle_idx, &raw).unwrap();
        let g = GptDataset::open(ds.clone(), &paths, 4).unwrap();
        let e = g.provenance(0).unwrap_err().to_string();
        assert!(e.contains("names sample 1000000"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
