//! GPT-NeoX v1.0's three index arrays for one dataset (`GPT2Dataset._build_index_mappings` and
//! `helpers.build_sample_idx`): doc_idx, sample_idx, shuffle_idx.
//! Facts: shared/spec/data-pipeline.md §2.

use super::huge::HugeVec;
use super::npy::Pod;
use super::random_state::RandomState;
use crate::{Error, Result};

/// Document sizes as stored in an `.idx` (i32 little-endian, possibly unaligned) or any i32 array.
#[derive(Clone, Copy)]
pub struct Sizes<'a> {
    bytes: &'a [u8],
}

impl<'a> Sizes<'a> {
    /// Raw little-endian i32 values; length must be a multiple of 4.
    pub fn from_le_bytes(bytes: &'a [u8]) -> Self {
        assert!(bytes.len().is_multiple_of(4));
        Sizes { bytes }
    }
    pub fn from_slice(v: &'a [i32]) -> Self {
        Sizes {
            bytes: super::npy::as_bytes(v),
        }
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        i32::from_le_bytes(self.bytes[4 * i..4 * i + 4].try_into().unwrap()) as i64
    }
    #[inline]
    fn prefetch(&self, i: usize) {
        if 4 * i < self.bytes.len() {
            super::random_state::prefetch(self.bytes.as_ptr().wrapping_add(4 * i));
        }
    }
}

/// Everything about an index that follows from the inputs without building it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPlan {
    /// Items of the indexed dataset used as documents: `[start, stop)`.
    pub documents: (usize, usize),
    pub num_samples: u64,
    pub seq_length: u64,
    pub seed: u32,
    pub tokens_per_epoch: u64,
    pub num_epochs: u64,
    /// `N = (E·T − 1) div L`: sample_idx has N + 1 rows, shuffle_idx N entries.
    pub n: u64,
    /// Megatron-LM's variant; false for GPT-NeoX (Pythia).
    pub separate_last_epoch: bool,
    /// Samples of the first E − 1 epochs when `separate_last_epoch`, else N.
    pub n_first: u64,
    pub sample_idx_i64: bool,
    pub shuffle_idx_i64: bool,
    /// FNV-1a over the documents' sizes: tells an index of other data with the same shapes.
    pub sizes_hash: u64,
    /// Items the indexed dataset held: documents appended later make the index stale even
    /// when `documents` was the whole dataset and is unchanged.
    pub items: usize,
}

impl IndexPlan {
    pub fn num_documents(&self) -> usize {
        self.documents.1 - self.documents.0
    }
    pub fn doc_idx_len(&self) -> usize {
        self.num_documents() * self.num_epochs as usize
    }
    /// `len(GPT2Dataset)`.
    pub fn dataset_len(&self) -> u64 {
        self.n.saturating_sub(1)
    }
}

/// Work out epochs and sizes (`_num_epochs`, `_num_tokens` of GPT-NeoX).
pub fn plan(
    sizes: Sizes<'_>,
    documents: (usize, usize),
    num_samples: u64,
    seq_length: u64,
    seed: u64,
    separate_last_epoch: bool,
) -> Result<IndexPlan> {
    let seed = u32::try_from(seed).map_err(|_| {
        Error::invalid(format!(
            "seed {seed} is out of range: GPT-NeoX seeds numpy's RandomState, which takes [0, 4294967295]"
        ))
    })?;
    if seq_length == 0 {
        return Err(Error::invalid("seq_length must be at least 1"));
    }
    // A sample is seq_length + 1 tokens, which GPT-NeoX's helper counts in an int32.
    if seq_length >= i32::MAX as u64 {
        return Err(Error::invalid(format!(
            "seq_length {seq_length} is too large: GPT-NeoX counts a sample's seq_length + 1 \
             tokens in int32, so at most {}",
            i32::MAX - 1
        )));
    }
    let (start, stop) = documents;
    if start > stop || stop > sizes.len() {
        return Err(Error::invalid(format!(
            "documents [{start}, {stop}) are outside the dataset's {} items",
            sizes.len()
        )));
    }
    let mut tokens: u64 = 0;
    for i in start..stop {
        let s = sizes.get(i);
        if s < 0 {
            return Err(Error::invalid(format!("item {i} has negative size {s}")));
        }
        tokens += s as u64;
    }
    let sizes_hash = sizes_fnv1a(sizes, start, stop);
    if tokens == 0 {
        return Err(Error::invalid(format!(
            "the {} documents hold no tokens: there is nothing to sample",
            stop - start
        )));
    }
    // Smallest E >= 1 with (E·T − 1) div L >= num_samples, that is ceil((num_samples·L + 1) / T),
    // in u128: with a huge num_samples the u64 products wrapped and the search never ended.
    let e = (num_samples as u128 * seq_length as u128 + 1)
        .div_ceil(tokens as u128)
        .max(1);
    let doc_idx_len = (stop - start) as u128 * e;
    if doc_idx_len > i32::MAX as u128 || stop > i32::MAX as usize {
        return Err(Error::invalid(format!(
            "doc_idx would have {doc_idx_len} entries ({e} epochs of {} documents); GPT-NeoX stores \
             it as int32, which cannot hold that",
            stop - start
        )));
    }
    // Now E·T <= 2^31 · 2^31 (at most i32::MAX documents' worth of i32 sizes): no overflow.
    let e = e as u64;
    let n = (e * tokens - 1) / seq_length;
    debug_assert!(
        n >= num_samples && (e == 1 || ((e - 1) * tokens - 1) / seq_length < num_samples)
    );
    let (sle, n_first) = if separate_last_epoch && e > 1 {
        let n_prev = ((e - 1) * tokens - 1) / seq_length;
        let last = num_samples - n_prev;
        let per_epoch = (tokens - 1) / seq_length;
        // Megatron-LM: `last_epoch_num_samples < int(0.80 * num_samples_per_epoch)`.
        let threshold = (0.80f64 * per_epoch as f64) as u64;
        if last < threshold {
            (true, n_prev)
        } else {
            (false, n)
        }
    } else {
        (false, n)
    };
    Ok(IndexPlan {
        documents,
        num_samples,
        seq_length,
        seed,
        tokens_per_epoch: tokens,
        num_epochs: e,
        n,
        separate_last_epoch: sle,
        n_first,
        // Later GPT-NeoX switches to int64 exactly here; v1.0 would overflow.
        sample_idx_i64: sample_idx_needs_i64(e * tokens - 1, seq_length),
        shuffle_idx_i64: n >= u32::MAX as u64 - 1,
        sizes_hash,
        items: sizes.len(),
    })
}

/// Later GPT-NeoX's `2 * (num_samples + 1) < np.iinfo(np.int32).max`, negated, where
/// `num_samples = (num_epochs * tokens_per_epoch - 1) / seq_length` is Python's true division,
/// not N: at N = 2^30 − 2 with a remainder of at least half of seq_length it writes int64 where
/// the floored N kept int32. Compared exactly, `2·(X/L + 1) ≥ M` as `2·X + 2·L ≥ M·L`.
fn sample_idx_needs_i64(tokens_minus_one: u64, seq_length: u64) -> bool {
    let (x, l) = (tokens_minus_one as u128, seq_length as u128);
    2 * x + 2 * l >= i32::MAX as u128 * l
}

/// FNV-1a over the sizes of documents `[start, stop)`, one 64-bit word each: the index
/// record's `sizes_fnv1a`, which tells an index of these documents from one of other data
/// with the same token count.
pub fn sizes_fnv1a(sizes: Sizes, start: usize, stop: usize) -> u64 {
    (start..stop).fold(0xcbf2_9ce4_8422_2325, |hash, i| {
        (hash ^ sizes.get(i) as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// doc_idx before its shuffle: the document ids repeated E times.
pub fn unshuffled_doc_idx(plan: &IndexPlan) -> Result<HugeVec<i32>> {
    let (start, stop) = plan.documents;
    let d = stop - start;
    let mut doc_idx = HugeVec::<i32>::zeroed(plan.doc_idx_len())?;
    if d > 0 {
        for epoch in doc_idx.chunks_exact_mut(d) {
            for (x, id) in epoch.iter_mut().zip(start as i32..stop as i32) {
                *x = id;
            }
        }
    }
    Ok(doc_idx)
}

/// `_build_doc_idx`: the document ids repeated E times, shuffled in one go (or, Megatron-LM's
/// variant, the first E − 1 epochs and the last epoch shuffled separately).
pub fn build_doc_idx(plan: &IndexPlan, rng: &mut RandomState) -> Result<HugeVec<i32>> {
    let d = plan.num_documents();
    let mut doc_idx = unshuffled_doc_idx(plan)?;
    if plan.separate_last_epoch {
        let cut = d * (plan.num_epochs as usize - 1);
        let (first, last) = doc_idx.split_at_mut(cut);
        rng.shuffle(first);
        rng.shuffle(last);
    } else {
        rng.shuffle(&mut doc_idx);
    }
    Ok(doc_idx)
}

/// Advance `rng` past `build_doc_idx` without building it.
pub fn skip_doc_idx(plan: &IndexPlan, rng: &mut RandomState) {
    let len = plan.doc_idx_len();
    if plan.separate_last_epoch {
        let d = plan.num_documents();
        rng.skip_shuffle(len - d);
        rng.skip_shuffle(d);
    } else {
        rng.skip_shuffle(len);
    }
}

/// `helpers.build_sample_idx`: rows (position in doc_idx, offset in that document) where each of
/// the N + 1 sample boundaries falls, handed to `sink` in chunks so they can stream to disk.
///
/// GPT-NeoX walks L+1 tokens per sample; equivalently (spec §2.5) boundary k ≥ 1 is the token
/// k·L of the documents concatenated in doc_idx order, found in the first document whose end
/// lies past it. One pass over doc_idx with a running token count does that with one size
/// lookup per document (prefetched: sizes are read in shuffled order).
pub fn build_sample_idx(
    plan: &IndexPlan,
    sizes: Sizes<'_>,
    doc_idx: &[i32],
    mut sink: impl FnMut(&[[i64; 2]]) -> Result<()>,
) -> Result<()> {
    const CHUNK: usize = 1 << 16;
    const AHEAD: usize = 64;
    let mut buf: Vec<[i64; 2]> = Vec::with_capacity(CHUNK);
    buf.push([0, 0]);
    let l = plan.seq_length;
    let n = plan.n;
    let mut k: u64 = 1;
    let mut next: u64 = l;
    let mut cum: u64 = 0;
    for (p, &d) in doc_idx.iter().enumerate() {
        if k > n {
            break;
        }
        if let Some(&ahead) = doc_idx.get(p + AHEAD) {
            sizes.prefetch(ahead as usize);
        }
        let end = cum + sizes.get(d as usize) as u64;
        while next < end && k <= n {
            buf.push([p as i64, (next - cum) as i64]);
            k += 1;
            next += l;
            if buf.len() == CHUNK {
                sink(&buf)?;
                buf.clear();
            }
        }
        cum = end;
    }
    if k <= n {
        return Err(Error::invalid(format!(
            "internal error: doc_idx ran out after {k} of {n} samples"
        )));
    }
    if !buf.is_empty() {
        sink(&buf)?;
    }
    Ok(())
}

/// shuffle_idx before its shuffle: `arange(N)`.
pub fn unshuffled_shuffle_idx<T>(plan: &IndexPlan) -> Result<HugeVec<T>>
where
    T: Pod + TryFrom<u64>,
    <T as TryFrom<u64>>::Error: std::fmt::Debug,
{
    let mut v = HugeVec::<T>::zeroed(plan.n as usize)?;
    for (i, x) in v.iter_mut().enumerate() {
        *x = T::try_from(i as u64).unwrap();
    }
    Ok(v)
}

/// The shuffle of `_build_shuffle_idx` (in two parts for Megatron-LM's variant).
pub fn shuffle_shuffle_idx<T>(plan: &IndexPlan, v: &mut [T], rng: &mut RandomState) {
    let (first, last) = v.split_at_mut(plan.n_first as usize);
    rng.shuffle(first);
    rng.shuffle(last);
}

/// `_build_shuffle_idx`: a permutation of `arange(N)`.
pub fn build_shuffle_idx<T>(plan: &IndexPlan, rng: &mut RandomState) -> Result<HugeVec<T>>
where
    T: Pod + TryFrom<u64>,
    <T as TryFrom<u64>>::Error: std::fmt::Debug,
{
    let mut v = unshuffled_shuffle_idx::<T>(plan)?;
    shuffle_shuffle_idx(plan, &mut v, rng);
    Ok(v)
}

/// BlendableDataset (`helpers.build_blending_indices`): for each output position, which dataset
/// and which of its samples. Weights must already be normalised.
pub fn build_blending_indices(weights: &[f64], size: usize) -> Result<(Vec<u8>, Vec<i64>)> {
    let mut dataset_index = Vec::with_capacity(size);
    let mut dataset_sample_index = Vec::with_capacity(size);
    blend_order(weights, size, |_, d, sample| {
        dataset_index.push(d as u8);
        dataset_sample_index.push(sample);
        true
    })?;
    Ok((dataset_index, dataset_sample_index))
}

/// The positions of a blend that have rows: GPT-NeoX's length is the sum of the components'
/// `lengths`, but the greedy order reaches the end of some component before that, and its
/// rows end there. Counts only, so that a Pythia-size blend (its order is 1.3 GB of arrays)
/// can say where it ends before anything reads it.
pub fn blend_readable_len(weights: &[f64], lengths: &[u64]) -> Result<u64> {
    if lengths.len() != weights.len() {
        return Err(Error::invalid(format!(
            "{} weights for {} datasets",
            weights.len(),
            lengths.len()
        )));
    }
    let size: u64 = lengths.iter().sum();
    let size = usize::try_from(size)
        .map_err(|_| Error::invalid(format!("a blend of {size} samples is too large")))?;
    let mut readable = size as u64;
    blend_order(weights, size, |s, d, sample| {
        if sample as u64 >= lengths[d] {
            readable = s as u64;
            return false;
        }
        true
    })?;
    Ok(readable)
}

/// `build_blending_indices`'s greedy choice, position by position: position s takes the next
/// sample of the dataset whose weight most exceeds its share so far (ties to the lowest
/// index). `visit(s, dataset, its sample)` returns false to stop.
fn blend_order(
    weights: &[f64],
    size: usize,
    mut visit: impl FnMut(usize, usize, i64) -> bool,
) -> Result<()> {
    if weights.is_empty() || weights.len() >= 255 {
        return Err(Error::invalid(format!(
            "blending takes 1 to 254 datasets, got {}",
            weights.len()
        )));
    }
    super::check_blend_weights(weights)?;
    let mut current = vec![0i64; weights.len()];
    for s in 0..size {
        let x = (s as f64).max(1.0);
        let mut best = 0;
        let mut best_err = weights[0] * x - current[0] as f64;
        for (d, &w) in weights.iter().enumerate().skip(1) {
            let err = w * x - current[d] as f64;
            if err > best_err {
                best_err = err;
                best = d;
            }
        }
        if !visit(s, best, current[best]) {
            break;
        }
        current[best] += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_len_is_where_the_order_first_passes_a_component() {
        for (weights, lengths) in [
            (vec![0.25, 0.75], vec![30u64, 80]),
            (vec![0.5, 0.3, 0.2], vec![50, 31, 19]),
            (vec![1.0], vec![17]),
            (vec![0.1, 0.9], vec![0, 40]),
        ] {
            let size = lengths.iter().sum::<u64>() as usize;
            let (d, i) = build_blending_indices(&weights, size).unwrap();
            let first_past = (0..size)
                .find(|&s| i[s] as u64 >= lengths[d[s] as usize])
                .unwrap_or(size) as u64;
            assert_eq!(blend_readable_len(&weights, &lengths).unwrap(), first_past);
        }
        assert!(blend_readable_len(&[0.5, 0.5], &[3]).is_err());
    }

    fn toy_sizes() -> Vec<i32> {
        vec![3, 5, 1, 7, 4, 6, 4]
    }

    #[test]
    fn epochs_match_the_definition() {
        let sizes = toy_sizes(); // 30 tokens
        let s = Sizes::from_slice(&sizes);
        for ns in [1u64, 6, 7, 8, 9, 50] {
            let p = plan(s, (0, 7), ns, 4, 1234, false).unwrap();
            let mut e = 1;
            while (e * 30 - 1) / 4 < ns {
                e += 1;
            }
            assert_eq!(p.num_epochs, e, "num_samples {ns}");
            assert_eq!(p.n, (e * 30 - 1) / 4);
        }
    }

    #[test]
    fn no_tokens_and_bad_seed_are_errors() {
        let z = vec![0i32; 4];
        assert!(plan(Sizes::from_slice(&z), (0, 4), 1, 4, 1, false)
            .unwrap_err()
            .to_string()
            .contains("no tokens"));
        let s = toy_sizes();
        assert!(plan(Sizes::from_slice(&s), (0, 7), 1, 4, 1 << 32, false).is_err());
        for too_long in [i32::MAX as u64, 1 << 31, u64::MAX] {
            let err = plan(Sizes::from_slice(&s), (0, 7), 1, too_long, 1, false).unwrap_err();
            assert!(err.to_string().contains("at most 2147483646"), "{err}");
        }
    }

    #[test]
    fn index_dtypes_widen_only_where_int32_would_overflow() {
        // Pythia's standard Pile: N = 162,164,736 keeps int32 / uint32.
        let pile = vec![1577i32; 210_607_728 / 1000];
        let p = plan(
            Sizes::from_slice(&pile),
            (0, pile.len()),
            147_164,
            2048,
            1234,
            false,
        )
        .unwrap();
        assert!(!p.sample_idx_i64 && !p.shuffle_idx_i64);
        // 2·(N+1) ≥ 2^31 − 1: later GPT-NeoX's switch to int64 sample_idx.
        let big = vec![i32::MAX; 2];
        let p = plan(Sizes::from_slice(&big), (0, 2), 1 << 30, 2, 1, false).unwrap();
        assert!(p.n >= 1 << 30 && p.sample_idx_i64 && !p.shuffle_idx_i64);
        // GPT-NeoX divides in floats: (2^31 − 3) / 2 = 1073741822.5 samples make
        // 2·(1073741822.5 + 1) = 2^31 − 1, not below int32's max, so int64, though N = 2^30 − 2
        // (floored) alone would keep int32. One token fewer gives 1073741822.0: int32.
        for (tokens, wide) in [(i32::MAX - 1, true), (i32::MAX - 2, false)] {
            let one = vec![tokens];
            let p = plan(Sizes::from_slice(&one), (0, 1), 1, 2, 1, false).unwrap();
            assert_eq!((p.num_epochs, p.n), (1, (1 << 30) - 2));
            assert_eq!(p.sample_idx_i64, wide, "{tokens} tokens");
        }
        let p = plan(
            Sizes::from_slice(&big),
            (0, 2),
            u32::MAX as u64,
            1,
            1,
            false,
        )
        .unwrap();
        assert!(p.sample_idx_i64 && p.shuffle_idx_i64);
    }

    #[test]
    fn sample_rows_cover_l_plus_one_tokens() {
        let sizes = toy_sizes();
        let s = Sizes::from_slice(&sizes);
        let p = plan(s, (0, 7), 9, 4, 1234, false).unwrap();
        let mut rng = RandomState::from_u32(1234);
        let doc_idx = build_doc_idx(&p, &mut rng).unwrap();
        let mut rows = Vec::new();
        build_sample_idx(&p, s, &doc_idx, |c| {
            rows.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows.len() as u64, p.n + 1);
        // Global token position of each boundary must be k·L.
        let mut starts = vec![0i64];
        for &d in doc_idx.iter() {
            starts.push(starts.last().unwrap() + sizes[d as usize] as i64);
        }
        for (k, r) in rows.iter().enumerate() {
            assert_eq!(starts[r[0] as usize] + r[1], 4 * k as i64);
        }
    }

    #[test]
    fn blending_follows_the_largest_error() {
        let (d, s) = build_blending_indices(&[0.5, 0.5], 4).unwrap();
        assert_eq!(d, [0, 1, 0, 1]);
        assert_eq!(s, [0, 0, 1, 1]);
        let (d, _) = build_blending_indices(&[1.0], 3).unwrap();
        assert_eq!(d, [0, 0, 0]);
    }
}
