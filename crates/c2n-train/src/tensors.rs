//! From `c2n_data::Batch` (flat u32 arrays) to Candle tensors on the training device.

use crate::Result;
use c2n_data::Batch;
use candle_core::{Device, Tensor};

/// The four `[n, len]` u32 tensors of a batch.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    pub source_ids: Tensor,
    pub source_mask: Tensor,
    pub target_ids: Tensor,
    pub target_mask: Tensor,
}

impl BatchTensors {
    pub fn new(batch: &Batch, device: &Device) -> Result<Self> {
        let src = (batch.batch_size, batch.source_len);
        let tgt = (batch.batch_size, batch.target_len);
        Ok(Self {
            source_ids: Tensor::from_slice(&batch.source_ids, src, device)?,
            source_mask: Tensor::from_slice(&batch.source_mask, src, device)?,
            target_ids: Tensor::from_slice(&batch.target_ids, tgt, device)?,
            target_mask: Tensor::from_slice(&batch.target_mask, tgt, device)?,
        })
    }
}

/// Real (non-pad) source and target tokens of a batch, for throughput figures.
pub fn real_tokens(batch: &Batch) -> u64 {
    let ones = |m: &[u32]| m.iter().filter(|&&x| x != 0).count() as u64;
    ones(&batch.source_mask) + ones(&batch.target_mask)
}

/// Real (non-pad) source and target tokens of the features at `positions`: what
/// [`real_tokens`] counts for their batch, without building it.
pub fn feature_tokens(features: &[c2n_data::Feature], positions: &[usize]) -> u64 {
    positions
        .iter()
        .filter_map(|&p| features.get(p))
        .map(|f| (f.source_ids.len() + f.target_ids.len()) as u64)
        .sum()
}
