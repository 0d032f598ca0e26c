//! RoBERTa embeddings: `LayerNorm((word[id] + pos[position]) + type[0])`, then dropout.
//!
//! The same module embeds the decoder inputs (§4.4).

use candle_core::{DType, Tensor};

use super::positions::padding_aware_positions;
use crate::init::Params;
use crate::layers::{dropout, param, LayerNorm};
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
        self.forward_inputs(&self.inputs(ids)?, dtype, train)
    }

    /// The lookup indices of `ids [n, L]`: the ids are read to the host once, where their range
    /// is checked and the padding-aware positions are computed. Preparing every lookup of a
    /// step before its first op is queued keeps the device from waiting on the host mid-step.
    pub fn inputs(&self, ids: &Tensor) -> Result<EmbeddingInputs> {
        let dims = ids.dims2()?;
        let host = ids.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        self.inputs_from_host_ids(&host, dims, ids.device())
    }

    /// The lookup indices of `n × L` ids given row-major on the host, with their
    /// padding-aware positions (everything computed and checked there).
    pub fn inputs_from_host_ids(
        &self,
        ids: &[u32],
        dims: (usize, usize),
        device: &candle_core::Device,
    ) -> Result<EmbeddingInputs> {
        if ids.len() != dims.0 * dims.1 {
            return Err(ModelError::InvalidInput(format!(
                "{} ids for a [{}, {}] lookup",
                ids.len(),
                dims.0,
                dims.1
            )));
        }
        let positions: Vec<u32> = ids
            .chunks(dims.1.max(1))
            .flat_map(|row| padding_aware_positions(row, self.pad_id))
            .collect();
        self.inputs_from_host(ids, &positions, dims, device)
    }

    /// The lookup indices of `n × L` ids and positions given row-major on the host (checked
    /// there), uploaded to `device`.
    pub fn inputs_from_host(
        &self,
        ids: &[u32],
        positions: &[u32],
        dims: (usize, usize),
        device: &candle_core::Device,
    ) -> Result<EmbeddingInputs> {
        let count = dims.0 * dims.1;
        if ids.len() != count || positions.len() != count {
            return Err(ModelError::InvalidInput(format!(
                "{} ids and {} positions for a [{}, {}] lookup",
                ids.len(),
                positions.len(),
                dims.0,
                dims.1
            )));
        }
        self.check_range(ids.iter().copied(), self.vocab_size, "token id")?;
        self.check_range(positions.iter().copied(), self.max_positions, "position id")?;
        Ok(EmbeddingInputs {
            ids: Tensor::from_slice(ids, count, device)?,
            positions: Tensor::from_slice(positions, count, device)?,
            dims,
        })
    }

    /// Embed `ids [n, L]` at explicit `positions [n, L]` (both u32).
    pub fn forward_with_positions(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        dtype: DType,
        train: bool,
    ) -> Result<Tensor> {
        let dims = ids.dims2()?;
        let host_ids = ids.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        let host_positions = positions
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let inputs = self.inputs_from_host(&host_ids, &host_positions, dims, ids.device())?;
        self.forward_inputs(&inputs, dtype, train)
    }

    /// Embed prepared lookup indices: `[n, L, H]` in `dtype`.
    pub fn forward_inputs(
        &self,
        inputs: &EmbeddingInputs,
        dtype: DType,
        train: bool,
    ) -> Result<Tensor> {
        let (n, l) = inputs.dims;
        let h = self.word.dim(1)?;
        // padding_idx = pad (§4.5): lookups of the pad row contribute no gradient to it.
        let word = stop_gradient_at(
            param(&self.word).index_select(&inputs.ids, 0)?,
            &inputs.ids,
            self.pad_id,
        )?;
        let pos = stop_gradient_at(
            param(&self.position).index_select(&inputs.positions, 0)?,
            &inputs.positions,
            self.pad_id,
        )?;
        let token_type = param(&self.token_type).narrow(0, 0, 1)?;
        // (word + pos) + type, in this order (§4.2).
        let e = (word + pos)?.broadcast_add(&token_type)?;
        let e = self.norm.forward(&e)?.reshape((n, l, h))?;
        let e = dropout(&e, self.dropout_p, train)?;
        Ok(crate::layers::cast(&e, dtype)?)
    }

    fn check_range(
        &self,
        values: impl Iterator<Item = u32>,
        limit: usize,
        what: &str,
    ) -> Result<()> {
        match values.max() {
            Some(max) if max as usize >= limit => Err(ModelError::InvalidInput(format!(
                "{what} {max} out of range (table has {limit} rows)"
            ))),
            _ => Ok(()),
        }
    }
}

/// Token and position ids of one embedding lookup, range-checked, on the model's device
/// ([`Embeddings::inputs`], [`Embeddings::inputs_from_host`]).
#[derive(Debug, Clone)]
pub struct EmbeddingInputs {
    /// `[n·L]` u32 token ids.
    pub(crate) ids: Tensor,
    /// `[n·L]` u32 position ids.
    pub(crate) positions: Tensor,
    /// `(n, L)`.
    pub(crate) dims: (usize, usize),
}

/// `rows[i]` unchanged in value, but detached from the graph where `ids[i] == pad_id`: what
/// PyTorch's `nn.Embedding(padding_idx)` does to the backward pass. The tied word matrix's pad
/// row still receives the LM head's gradient. No-op when nothing tracks gradients or under
/// [`crate::layers::no_grad`] (decoding: two kernels per lookup saved).
fn stop_gradient_at(rows: Tensor, ids: &Tensor, pad_id: u32) -> Result<Tensor> {
    if !rows.track_op() || !crate::layers::gradients_enabled() {
        return Ok(rows);
    }
    let is_pad = ids.eq(pad_id)?.unsqueeze(1)?.broadcast_as(rows.shape())?;
    Ok(is_pad.where_cond(&rows.detach(), &rows)?)
}
