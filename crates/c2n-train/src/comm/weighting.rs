//! How much each rank's gradient counts in the global gradient.
//!
//! The reference loss is a mean over the active target tokens of the **whole batch** (spec §5). If rank
//! `r` computes the mean over its own `N_r` tokens, then
//! `∇(global mean) = Σ_r (N_r / N) · ∇(mean_r)` with `N = Σ_r N_r`: scaling each rank's gradient by
//! `N_r / N` before a SUM all-reduce makes W ranks equal one rank on the combined batch
//! ([`GradWeighting::TokenMean`]). The reference `DataParallel` path instead averages the per-replica
//! means over the replicas that got a non-empty chunk ([`GradWeighting::MeanOfRankMeans`]), and apex DDP
//! averages over all processes (`MeanOfRankMeans` with no empty shard).

use serde::{Deserialize, Serialize};

use super::{CommResult, Communicator, ReduceOp};

/// How per-rank gradients (of per-rank mean losses) are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradWeighting {
    /// Weight `N_r / N`: identical to one rank on the combined batch (the token mean of spec §5).
    #[default]
    TokenMean,
    /// Weight `1 / (ranks with tokens)`: the reference DataParallel mean of per-replica means.
    MeanOfRankMeans,
}

/// What one rank measured on its shard of the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalBatch {
    /// Mean loss over this rank's active target tokens (ignored when `tokens == 0`).
    pub mean_loss: f32,
    /// Number of active target tokens (`N_act`) on this rank.
    pub tokens: usize,
}

/// The batch as a whole, identical on every rank, plus this rank's gradient weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalBatch {
    /// The loss of the whole batch under the chosen weighting (what one rank would log).
    pub mean_loss: f32,
    /// Active target tokens over all ranks.
    pub tokens: usize,
    /// Ranks whose shard had at least one token.
    pub ranks_with_tokens: usize,
    /// Multiply this rank's gradient by this before a SUM all-reduce (0 for an empty shard).
    pub grad_scale: f32,
}

/// The weight of a rank's gradient from token counts alone: `local / tokens` (token mean) or
/// `1 / ranks_with_tokens` for a rank with tokens (mean of rank means); 0 for an empty shard
/// or an empty batch. Counts known on every rank give every rank its scale without waiting
/// for any loss.
pub fn rank_grad_scale(
    weighting: GradWeighting,
    local_tokens: usize,
    tokens: usize,
    ranks_with_tokens: usize,
) -> f32 {
    match weighting {
        GradWeighting::TokenMean if tokens > 0 => local_tokens as f32 / tokens as f32,
        GradWeighting::MeanOfRankMeans if ranks_with_tokens > 0 && local_tokens > 0 => {
            1.0 / ranks_with_tokens as f32
        }
        _ => 0.0,
    }
}

/// One small all-reduce of `[loss·N_r, N_r, has_tokens, loss]` that gives every rank the global batch
/// statistics and its own gradient scale.
///
/// Token counts travel as f32, which is exact below 2^24 (16.7 M tokens per step).
pub fn exchange_batch_stats(
    comm: &(impl Communicator + ?Sized),
    weighting: GradWeighting,
    local: LocalBatch,
) -> CommResult<GlobalBatch> {
    let has_tokens = local.tokens > 0;
    let loss = if has_tokens { local.mean_loss } else { 0.0 };
    let mut buf = [
        loss * local.tokens as f32,
        local.tokens as f32,
        if has_tokens { 1.0 } else { 0.0 },
        loss,
    ];
    comm.all_reduce(&mut buf, ReduceOp::Sum)?;
    let [loss_sum, tokens, ranks_with_tokens, sum_of_means] = buf;
    let (tokens, ranks_with_tokens) = (tokens as usize, ranks_with_tokens as usize);
    let mean_loss = match weighting {
        GradWeighting::TokenMean if tokens > 0 => loss_sum / tokens as f32,
        GradWeighting::MeanOfRankMeans if ranks_with_tokens > 0 => {
            sum_of_means / ranks_with_tokens as f32
        }
        _ => 0.0, // an empty global batch contributes nothing
    };
    let grad_scale = rank_grad_scale(weighting, local.tokens, tokens, ranks_with_tokens);
    Ok(GlobalBatch {
        mean_loss,
        tokens,
        ranks_with_tokens,
        grad_scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::SingleComm;

    #[test]
    fn one_rank_has_weight_one() {
        for weighting in [GradWeighting::TokenMean, GradWeighting::MeanOfRankMeans] {
            let g = exchange_batch_stats(
                &SingleComm,
                weighting,
                LocalBatch {
                    mean_loss: 2.5,
                    tokens: 7,
                },
            )
            .unwrap();
            assert_eq!(
                (g.mean_loss, g.tokens, g.ranks_with_tokens, g.grad_scale),
                (2.5, 7, 1, 1.0)
            );
        }
        let g = exchange_batch_stats(
            &SingleComm,
            GradWeighting::TokenMean,
            LocalBatch {
                mean_loss: f32::NAN,
                tokens: 0,
            },
        )
        .unwrap();
        assert_eq!((g.mean_loss, g.tokens, g.grad_scale), (0.0, 0, 0.0));
    }
}
