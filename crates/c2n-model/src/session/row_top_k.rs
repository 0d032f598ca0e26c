//! Ranking each row's beam candidates on the model's device.
//!
//! A beam step needs only the best K candidates `score[r] + logp[r, w]` of every row (see
//! [`NextTokenLogProbs::step_row_top_k`](crate::NextTokenLogProbs::step_row_top_k)). On a GPU,
//! copying all `rows × V` log-probabilities to the host every step costs more than the
//! decoder step itself (1 280 rows × 50 265 × 4 B = 257 MB), so [`device_row_top_k`] ranks
//! them where they are and copies `rows × K` entries.
//!
//! Candle has no top-k, so the ranking is built from reductions, exactly under the
//! [tie rule](crate::beam::select) (higher value first, equal values by lower token id):
//!
//! 1. The vocabulary is cut into `V / C` chunks of width `C` (a divisor of V: 45 for
//!    RoBERTa's 50 265) and each chunk's maximum is taken.
//! 2. The K best chunks under (maximum, lower chunk first) hold the K best candidates: a
//!    candidate outside them is outranked by the maximum of each of those K chunks.
//! 3. The K best of the gathered `K × C` candidates are picked one at a time: the maximum,
//!    then the lowest token id reaching it, then that entry is excluded (set to −∞).
//!
//! Exclusion by −∞ is only sound while the picked values are finite, and reductions need not
//! rank NaN as the tie rule does, so a row set with a NaN or a non-finite pick is ranked again
//! on the host from the full rows.

use candle_core::{DType, Tensor};

use crate::step::{row_top_k_host, RowTopK};
use crate::Result;

/// Where a session ranks the candidates of a beam step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CandidateRanking {
    /// On the device when the model is on a GPU, on the host otherwise.
    #[default]
    Auto,
    /// On the model's device, also when that is the CPU (tests use this).
    Device,
    /// On the host, from full log-probability rows.
    Host,
}

impl CandidateRanking {
    /// Whether candidates are ranked on the device for a model on `device`.
    pub fn on_device(self, device: &candle_core::Device) -> bool {
        match self {
            Self::Auto => !device.is_cpu(),
            Self::Device => true,
            Self::Host => false,
        }
    }
}

/// The best `k` candidates of every row of `log_softmax(logits) + row_scores` (`logits
/// [rows, V]`), ranked on `logits`' device; `k` is capped at V.
///
/// On a CUDA device with f32 logits this is one kernel (`kernels/row_top_k.cu`: log-softmax,
/// addition and ranking in one launch; `C2N_CUDA_DECODE_KERNELS=0` turns it off); otherwise,
/// or when a row holds a NaN or a non-finite pick, Candle's log-softmax then
/// [`device_row_top_k`].
pub fn logits_row_top_k(logits: &Tensor, row_scores: Option<&[f32]>, k: usize) -> Result<RowTopK> {
    let (rows, vocab) = logits.dims2()?;
    let k = k.min(vocab);
    if rows == 0 || k == 0 {
        return Ok(RowTopK::empty(k));
    }
    #[cfg(feature = "cuda")]
    if logits.device().is_cuda()
        && logits.dtype() == DType::F32
        && k <= super::row_top_k_cuda::MAX_K
        && crate::cuda_decode_kernels_enabled()
    {
        if let Some(top) = super::row_top_k_cuda::row_top_k(logits, true, row_scores, k)? {
            return Ok(top);
        }
    }
    let logp = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    device_row_top_k(&logp, row_scores, k)
}

/// The best `k` candidates of every row of `logp [rows, V]` (f32), plus `row_scores` when
/// given, ranked on `logp`'s device; `k` is capped at V.
pub fn device_row_top_k(logp: &Tensor, row_scores: Option<&[f32]>, k: usize) -> Result<RowTopK> {
    let (rows, vocab) = logp.dims2()?;
    let k = k.min(vocab);
    if rows == 0 || k == 0 {
        return Ok(RowTopK::empty(k));
    }
    let device = logp.device();
    let logp = logp.to_dtype(DType::F32)?;
    let candidates = match row_scores {
        // The same f32 addition as the reference's `wordLk + prevScores`.
        Some(scores) => logp.broadcast_add(&Tensor::from_slice(scores, (rows, 1), device)?)?,
        None => logp,
    };
    let host_fallback = |candidates: &Tensor| -> Result<RowTopK> {
        let all = candidates.flatten_all()?.to_vec1::<f32>()?;
        row_top_k_host(&all, vocab, None, k)
    };
    // A NaN anywhere makes its row's sum NaN. Read only after the ranking is queued: a read
    // waits for the device, and the host should queue the ranking while the step still runs.
    let sums = candidates.sum_keepdim(1)?;

    let width = chunk_width(vocab, k);
    let n_chunks = vocab / width;
    let chunks = candidates.reshape((rows, n_chunks, width))?;
    let chunk_max = chunks.max_keepdim(2)?.squeeze(2)?;
    let chunk_ids = Tensor::arange(0u32, n_chunks as u32, device)?
        .unsqueeze(0)?
        .broadcast_as((rows, n_chunks))?;
    let best_chunks = n_chunks.min(k);
    let (_, chosen) = pick_top(&chunk_max, &chunk_ids, best_chunks, n_chunks as u32 - 1)?;
    let gather_index = chosen
        .unsqueeze(2)?
        .broadcast_as((rows, best_chunks, width))?
        .contiguous()?;
    let gathered = chunks
        .gather(&gather_index, 1)?
        .reshape((rows, best_chunks * width))?;
    let offsets = Tensor::arange(0u32, width as u32, device)?.reshape((1, 1, width))?;
    let token_ids = chosen
        .broadcast_mul(&Tensor::new(&[width as u32], device)?.reshape((1, 1))?)?
        .unsqueeze(2)?
        .broadcast_add(&offsets)?
        .reshape((rows, best_chunks * width))?;
    let (values, tokens) = pick_top(&gathered, &token_ids, k, vocab as u32 - 1)?;
    let has_nan = sums
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .any(|s| s.is_nan());
    let values = values.flatten_all()?.to_vec1::<f32>()?;
    if has_nan || values.iter().any(|v| !v.is_finite()) {
        return host_fallback(&candidates);
    }
    let tokens = tokens.flatten_all()?.to_vec1::<u32>()?;
    Ok(RowTopK { k, values, tokens })
}

/// The `k` best entries of every row of `values [rows, n]`, one at a time under the tie rule
/// (`ids [rows, n]` ranks equal values, lower first): `([rows, k] values, [rows, k] ids)`.
///
/// `max_id` is the largest id: it stands for "no entry reaches the maximum", which happens
/// only in a row whose maximum is NaN. Such a row is ranked again on the host, but its ids
/// must still be valid indices for the gather that follows (an out-of-range gather index
/// would read out of bounds on a GPU).
fn pick_top(values: &Tensor, ids: &Tensor, k: usize, max_id: u32) -> Result<(Tensor, Tensor)> {
    let shape = values.shape().clone();
    let no_id = Tensor::new(&[max_id], values.device())?
        .reshape((1, 1))?
        .broadcast_as(&shape)?;
    let excluded = Tensor::new(&[f32::NEG_INFINITY], values.device())?
        .reshape((1, 1))?
        .broadcast_as(&shape)?;
    let mut work = values.clone();
    let mut best_values = Vec::with_capacity(k);
    let mut best_ids = Vec::with_capacity(k);
    for _ in 0..k {
        let best = work.max_keepdim(1)?;
        let reaching = work.broadcast_eq(&best)?.where_cond(ids, &no_id)?;
        let id = reaching.min_keepdim(1)?;
        work = ids.broadcast_eq(&id)?.where_cond(&excluded, &work)?;
        best_values.push(best);
        best_ids.push(id);
    }
    Ok((Tensor::cat(&best_values, 1)?, Tensor::cat(&best_ids, 1)?))
}

/// The chunk width: the divisor `C` of `vocab` with the least work `V / C + k·C` (stage 1
/// ranks `V / C` chunk maxima, stage 3 ranks `k·C` gathered candidates).
fn chunk_width(vocab: usize, k: usize) -> usize {
    (1..=vocab)
        .filter(|c| vocab.is_multiple_of(*c))
        .min_by_key(|&c| vocab / c + k * c)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn lcg_values(n: usize, seed: u64, grid: f32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                -(((state >> 33) % 64) as f32) * grid
            })
            .collect()
    }

    #[test]
    fn chunk_width_divides_the_vocabulary() {
        assert_eq!(chunk_width(50_265, 10), 45);
        assert_eq!(chunk_width(7, 3), 1); // a prime: one entry per chunk
        for vocab in [1, 12, 100, 1_000] {
            assert_eq!(vocab % chunk_width(vocab, 4), 0);
        }
    }

    #[test]
    fn equals_the_host_ranking_with_many_ties() {
        let device = Device::Cpu;
        for (round, &(rows, vocab, k)) in [(3, 60, 4), (5, 97, 10), (2, 1_000, 10), (4, 12, 12)]
            .iter()
            .enumerate()
        {
            // Values on a coarse grid: many exact ties, also across chunk boundaries.
            let logp = lcg_values(rows * vocab, 7 + round as u64, 0.5);
            let scores: Vec<f32> = (0..rows).map(|r| -(r as f32) * 0.25).collect();
            let tensor = Tensor::from_slice(&logp, (rows, vocab), &device).unwrap();
            for row_scores in [None, Some(scores.as_slice())] {
                let got = device_row_top_k(&tensor, row_scores, k).unwrap();
                let want = row_top_k_host(&logp, vocab, row_scores, k).unwrap();
                assert_eq!(got, want, "rows {rows}, vocab {vocab}, k {k}");
            }
        }
    }

    #[test]
    fn non_finite_rows_fall_back_to_the_host_rule() {
        let device = Device::Cpu;
        // Row 0 has a NaN (ranks like +inf); row 1 has fewer finite values than k.
        let mut logp = vec![-1.0f32; 2 * 8];
        logp[3] = f32::NAN;
        for value in &mut logp[8 + 2..16] {
            *value = f32::NEG_INFINITY;
        }
        let tensor = Tensor::from_slice(&logp, (2, 8), &device).unwrap();
        let got = device_row_top_k(&tensor, None, 4).unwrap();
        let want = row_top_k_host(&logp, 8, None, 4).unwrap();
        assert_eq!(got.tokens, want.tokens);
        assert_eq!(got.tokens[..4], [3, 0, 1, 2]);
        assert_eq!(got.tokens[4..], [0, 1, 2, 3]);
    }

    #[test]
    fn an_all_nan_row_falls_back_without_an_out_of_range_gather() {
        let device = Device::Cpu;
        // 2 rows of 60 (chunks of 15, 4 chunks): row 0 all NaN, row 1 ordinary.
        let mut logp = lcg_values(2 * 60, 3, 0.5);
        for value in &mut logp[..60] {
            *value = f32::NAN;
        }
        let tensor = Tensor::from_slice(&logp, (2, 60), &device).unwrap();
        let got = device_row_top_k(&tensor, Some(&[0.0, -1.0]), 4).unwrap();
        let want = row_top_k_host(&logp, 60, Some(&[0.0, -1.0]), 4).unwrap();
        assert_eq!(got.tokens, want.tokens);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.values), bits(&want.values));
    }

    #[test]
    fn from_logits_ranks_the_log_softmax_and_caps_k() {
        let device = Device::Cpu;
        let (rows, vocab) = (3, 50);
        let logits = lcg_values(rows * vocab, 11, 0.5);
        let tensor = Tensor::from_slice(&logits, (rows, vocab), &device).unwrap();
        let logp = candle_nn::ops::log_softmax(&tensor, candle_core::D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scores = [0.0f32, -0.5, -2.0];
        for k in [1, 4, 10, 50, 80] {
            let got = logits_row_top_k(&tensor, Some(&scores), k).unwrap();
            let want = row_top_k_host(&logp, vocab, Some(&scores), k).unwrap();
            assert_eq!(got, want, "k {k}");
            assert_eq!(got.k, k.min(vocab));
        }
        let none = Tensor::zeros((0, vocab), DType::F32, &device).unwrap();
        assert_eq!(logits_row_top_k(&none, None, 4).unwrap().rows(), 0);
    }
}
