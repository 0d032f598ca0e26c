//! The teacher-forced dev loss (§8.1), on one rank or sharded over several.

use super::EvalBatching;
use crate::comm::{Communicator, ReduceOp};
use crate::tensors::BatchTensors;
use crate::Result;
use c2n_data::partition::rank_range;
use c2n_data::{make_batch, Feature};
use c2n_model::Seq2Seq;

/// Dev loss sums of §8.1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevLoss {
    /// Σ over batches of the f32 `loss × N_act`, in f64.
    pub loss_sum: f64,
    /// Σ `N_act`.
    pub tokens: u64,
}

impl DevLoss {
    /// `loss_sum / tokens`.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.tokens.max(1) as f64
    }

    /// `exp(loss)`.
    pub fn perplexity(&self) -> f64 {
        self.loss().exp()
    }
}

/// Teacher-forced loss over `features` in order, one batch at a time, eval mode.
pub fn dev_loss(model: &Seq2Seq, features: &[Feature], batching: &EvalBatching) -> Result<DevLoss> {
    let mut out = DevLoss {
        loss_sum: 0.0,
        tokens: 0,
    };
    for chunk in batching.chunks(features) {
        let (loss_sum, tokens) = chunk_loss(model, chunk, batching)?;
        out.loss_sum += f64::from(loss_sum);
        out.tokens += tokens as u64;
    }
    Ok(out)
}

/// The f32 `loss × N_act` and `N_act` of one evaluation batch.
fn chunk_loss(model: &Seq2Seq, chunk: &[Feature], batching: &EvalBatching) -> Result<(f32, usize)> {
    // No backward pass follows: the closed-form ops run as plain ops (same values).
    let _no_grad = c2n_model::layers::no_grad();
    let (s, t) = batching.lengths(chunk);
    let positions: Vec<usize> = (0..chunk.len()).collect();
    let batch = make_batch(chunk, &positions, s, t);
    let x = BatchTensors::new(&batch, model.device())?;
    let loss = model.forward_loss(
        &x.source_ids,
        &x.source_mask,
        &x.target_ids,
        &x.target_mask,
        false,
    )?;
    Ok((loss.loss_sum.to_scalar::<f32>()?, loss.n_active))
}

/// [`dev_loss`] with the batches shared out among the ranks of `comm`; every rank gets the
/// single-rank result, bit for bit.
pub fn dev_loss_sharded(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    features: &[Feature],
    batching: &EvalBatching,
) -> Result<DevLoss> {
    if comm.world_size() == 1 {
        return dev_loss(model, features, batching);
    }
    let chunks: Vec<&[Feature]> = batching.chunks(features).collect();
    // Slots [2b, 2b+1] hold batch b's loss sum and token count; other ranks leave them 0.
    let mut slots = vec![0f32; 2 * chunks.len()];
    for b in rank_range(chunks.len(), comm.rank(), comm.world_size())? {
        let (loss_sum, tokens) = chunk_loss(model, chunks[b], batching)?;
        slots[2 * b] = loss_sum;
        slots[2 * b + 1] = tokens as f32; // exact below 2^24 tokens per batch
    }
    comm.all_reduce(&mut slots, ReduceOp::Sum)?;
    let mut out = DevLoss {
        loss_sum: 0.0,
        tokens: 0,
    };
    for pair in slots.chunks_exact(2) {
        out.loss_sum += f64::from(pair[0]);
        out.tokens += pair[1] as u64;
    }
    Ok(out)
}
