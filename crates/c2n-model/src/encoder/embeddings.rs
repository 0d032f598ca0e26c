//! RoBERTa embeddings: `LayerNorm((word[id] + pos[position]) + type[0])`, then dropout.
//!
//! The same module embeds the decoder inputs (§4.4).

use candle_core::{DType, Tensor};

use super::positions::padding_aware_positions;
use crate::init::Params;
use crate::layers::{dropout, LayerNorm};
use crate::{ModelError, Result};

/// Word, position and token-type tables with their LayerNorm.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub(crate) word: Tensor,
    pub(crate) position: Tensor,
    pub(crate) token_type: Tensor,
    pub(crate) norm: LayerNorm,
    pub(crate) dropout_p: f32,
    pub(crate) pad_id: u32,
    pub(crate) vocab_size: usize,
    pub(crate) max_positions: usize,
}

impl Embeddings {
    pub(crate) fn new(p: &Params) -> Result<Self> {
        let cfg = p.cfg;
        let h = cfg.hidden_size;
        Ok(Self {
            word: p.get("word_embeddings.weight", &[cfg.vocab_size, h])?,
            position: p.get(
                "position_embeddings.weight",
                &[cfg.max_position_embeddings, h],
            )?,
            token_type: p.get("token_type_embeddings.weight", &[cfg.type_vocab_size, h])?,
            norm: LayerNorm::new(
                p.get("LayerNorm.weight", &[h])?,
                p.get("LayerNorm.bias", &[h])?,
                cfg.layer_norm_eps,
            )
            .with_fused(cfg.fused_kernels),
            dropout_p: cfg.hidden_dropout_prob,
            pad_id: cfg.pad_token_id,
            vocab_size: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// The word-embedding matrix `[V, H]` (also the LM head).
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word
    }

    /// Embed `ids [n, L]` (u32) with padding-aware positions computed from the ids.
    pub fn forward(&self, ids: &Tensor, dtype: DType, train: bool) -> Result<Tensor> {
        let (n, l) = ids.dims2()?;
        let host = ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let positions: Vec<u32> = host
            .iter()
            .flat_map(|row| padding_aware_positions(row, self.pad_id))
            .collect();
        let positions = Tensor::from_vec(positions, (n, l), ids.device())?;
        self.forward_with_positions(ids, &positions, dtype, train)
    }

    /// Embed `ids [n, L]` at explicit `positions [n, L]` (both u32). Used by the KV-cached
    /// decoder, which keeps per-row position counters instead of whole prefixes.
    pub fn forward_with_positions(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        dtype: DType,
        train: bool,
    ) -> Result<Tensor> {
        let (n, l) = ids.dims2()?;
        let h = self.word.dim(1)?;
        let ids = ids.to_dtype(DType::U32)?;
        let positions = positions.to_dtype(DType::U32)?;
        self.check_range(&ids, self.vocab_size, "token id")?;
        self.check_range(&positions, self.max_positions, "position id")?;
        let ids_flat = ids.flatten_all()?;
        let positions_flat = positions.flatten_all()?;
        // padding_idx = pad (§4.5): lookups of the pad row contribute no gradient to it.
        let word = stop_gradient_at(
            self.word.index_select(&ids_flat, 0)?,
            &ids_flat,
            self.pad_id,
        )?;
        let pos = stop_gradient_at(
            self.position.index_select(&positions_flat, 0)?,
            &positions_flat,
            self.pad_id,
        )?;
        let token_type = self.token_type.narrow(0, 0, 1)?;
        // (word + pos) + type, in this order (§4.2).
        let e = (word + pos)?.broadcast_add(&token_type)?;
        let e = self.norm.forward(&e)?.reshape((n, l, h))?;
        let e = dropout(&e, self.dropout_p, train)?;
        Ok(crate::layers::cast(&e, dtype)?)
    }

    pub(crate) fn check_range(&self, t: &Tensor, limit: usize, what: &str) -> Result<()> {
        if t.elem_count() == 0 {
            return Ok(());
        }
        let max = t.flatten_all()?.max(0)?.to_scalar::<u32>()? as usize;
        if max >= limit {
            return Err(ModelError::InvalidInput(format!(
                "{what} {max} out of range (table has {limit} rows)"
            )));
        }
        Ok(())
    }
}

/// `rows[i]` unchanged in value, but detached from the graph where `ids[i] == pad_id`: what
/// PyTorch's `nn.Embedding(padding_idx)` does to the backward pass. The tied word matrix's pad
/// row still receives the LM head's gradient. No-op when nothing tracks gradients.
fn stop_gradient_at(rows: Tensor, ids: &Tensor, pad_id: u32) -> Result<Tensor> {
    if !rows.track_op() {
        return Ok(rows);
    }
    let is_pad = ids.eq(pad_id)?.unsqueeze(1)?.broadcast_as(rows.shape())?;
    Ok(is_pad.where_cond(&rows.detach(), &rows)?)
}
