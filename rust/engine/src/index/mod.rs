//! GPT-NeoX v1.0's sample index, bit for bit: numpy's legacy RandomState, doc_idx, sample_idx,
//! shuffle_idx, blending, and the `.npy` cache files GPT-NeoX itself reads.
//! Facts: shared/spec/data-pipeline.md §2–3.

use crate::{Error, Result};

mod build;
mod gpt2_index;
mod huge;
mod idx_sizes;
pub mod npy;
mod random_state;

pub use build::{
    build_index_files, build_index_for, index_paths, IndexPaths, IndexRequest, IndexSummary,
    Progress,
};
pub use gpt2_index::{
    blend_readable_len, build_blending_indices, build_doc_idx, build_sample_idx, build_shuffle_idx,
    plan, sizes_fnv1a, unshuffled_doc_idx, IndexPlan, Sizes,
};
pub use huge::HugeVec;
pub use idx_sizes::IdxSizes;
pub use npy::{NpyArray, NpyDType};
pub use random_state::{apply_swaps, shuffle_draws, RandomState};

// `.npy` data and `.idx` arrays are little-endian and written straight from memory.
#[cfg(not(target_endian = "little"))]
compile_error!("pythia-engine's index writer assumes a little-endian machine");

/// Samples GPT-NeoX requests for `iters` steps of `global_batch`, for one dataset of weight 1:
/// `ceil(iters · batch · 1.005)` computed in float64 like Python (`147164159.99999997` → 147164160).
pub fn num_samples_for(iters: u64, global_batch: u64) -> Result<u64> {
    let rows = iters.checked_mul(global_batch).ok_or_else(|| {
        Error::invalid(format!(
            "{iters} steps of {global_batch} rows is more rows than an index can hold"
        ))
    })?;
    Ok((rows as f64 * 1.0 * 1.005).ceil() as u64)
}

/// Blend weights must be finite, non-negative and have a finite, positive sum (which is
/// returned): otherwise normalising them gives NaN or zero weights and a meaningless order.
pub fn check_blend_weights(weights: &[f64]) -> Result<f64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty()
        || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
        || !sum.is_finite()
        || sum <= 0.0
    {
        return Err(Error::invalid(format!(
            "blend weights must be finite, non-negative, not all zero and have a finite sum: \
             {weights:?}"
        )));
    }
    Ok(sum)
}

/// Component sample counts for blending: weights normalised in float64, each
/// `ceil(total · w · 1.005)` (GPT-NeoX's `get_normalized_weights_and_num_samples`).
pub fn blend_num_samples(weights: &[f64], total: u64) -> Result<(Vec<f64>, Vec<u64>)> {
    let sum = check_blend_weights(weights)?;
    let w: Vec<f64> = weights.iter().map(|x| x / sum).collect();
    let n = w
        .iter()
        .map(|x| (total as f64 * x * 1.005).ceil() as u64)
        .collect();
    Ok((w, n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pythia_sample_counts() {
        assert_eq!(super::num_samples_for(143_000, 1024).unwrap(), 147_164_160);
        assert_eq!(super::num_samples_for(40, 1024).unwrap(), 41_165);
        assert_eq!(super::num_samples_for(10, 1024).unwrap(), 10_292);
        assert!(super::num_samples_for(1 << 40, 1 << 30).is_err());
    }
}
