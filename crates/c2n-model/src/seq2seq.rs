//! The code2nl `Seq2Seq` model (spec §4.1, §4.4, §5): encoder + decoder + `tanh(dense)` +
//! LM head tied to the word embeddings, and the token-mean loss.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::config::ModelConfig;
use crate::decoder::{causal_mask, memory_key_padding_mask, DecoderLayer};
use crate::encoder::{EmbeddingInputs, Embeddings, RobertaEncoder};
use crate::init::Params;
use crate::keys::{self, ParamSpec};
use crate::layers::{cast, token_nll, Linear};
use crate::{ModelError, Result};

/// The loss of §5: `loss = Σ_active −log p / N_act`, `loss_sum = loss × N_act`.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Scalar f32 token-mean loss over the active target positions of the whole batch.
    pub loss: Tensor,
    /// Scalar f32 `loss × N_act` (what the reference sums for the dev loss).
    pub loss_sum: Tensor,
    /// Number of active positions (`target_mask[:, 1:] == 1`).
    pub n_active: usize,
}

/// Encoder–decoder model whose parameters live in a [`VarMap`] under code2nl key names.
#[derive(Clone)]
pub struct Seq2Seq {
    cfg: ModelConfig,
    varmap: VarMap,
    device: Device,
    compute_dtype: DType,
    pub(crate) encoder: RobertaEncoder,
    pub(crate) decoder: Vec<DecoderLayer>,
    pub(crate) dense: Linear,
}

impl Seq2Seq {
    /// Build the model on `device`, taking its Vars from `varmap` and creating the missing
    /// ones with the reference initialisation (§4.5; see [`crate::init`]). When the decoder
    /// is created fresh, all its layers are copies of layer 0, as in the reference.
    pub fn new(cfg: &ModelConfig, varmap: &VarMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let first_decoder_key = "decoder.layers.0.self_attn.in_proj_weight";
        let fresh_decoder = !varmap_contains(varmap, first_decoder_key);
        let p = Params::new(cfg, varmap, device);
        let encoder = RobertaEncoder::new(&p.pp("encoder"))?;
        let decoder = (0..cfg.decoder_layers)
            .map(|l| DecoderLayer::new(&p.pp("decoder.layers").pp(l)))
            .collect::<Result<Vec<_>>>()?;
        let h = cfg.hidden_size;
        let dense_p = p.pp("dense");
        let dense = Linear::new(
            dense_p.get("weight", &[h, h])?,
            Some(dense_p.get("bias", &[h])?),
        )
        .with_fused(cfg.fused_kernels);
        if fresh_decoder {
            copy_decoder_layer_zero(cfg, varmap)?;
        }
        Ok(Self {
            cfg: cfg.clone(),
            varmap: varmap.clone(),
            device: device.clone(),
            compute_dtype: DType::F32,
            encoder,
            decoder,
            dense,
        })
    }

    /// Compute in `dtype` (f32, bf16, f16) while the Vars stay f32: weights are cast in the
    /// forward pass, LayerNorm statistics, attention softmax, loss and log-probs stay f32.
    pub fn with_compute_dtype(mut self, dtype: DType) -> Self {
        self.compute_dtype = dtype;
        self
    }

    /// The dtype of activations.
    pub fn compute_dtype(&self) -> DType {
        self.compute_dtype
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters, by code2nl key (shared with the model: setting a Var updates it).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Names of the trainable parameters in state-dict order (309 for the reference model):
    /// no `bias` buffer, the tied embedding matrix once, the pooler included (it gets no
    /// gradient; the trainer skips parameters without one).
    pub fn trainable_var_names(&self) -> Vec<String> {
        self.param_specs().into_iter().map(|p| p.name).collect()
    }

    /// Names and shapes of the trainable parameters in state-dict order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        keys::param_specs(&self.cfg)
    }

    /// The embedding module shared by encoder and decoder inputs.
    pub fn embeddings(&self) -> &Embeddings {
        self.encoder.embeddings()
    }

    /// The decoder layers.
    pub fn decoder_layers(&self) -> &[DecoderLayer] {
        &self.decoder
    }

    /// Encoder output `[n, S, H]` (compute dtype) for u32 `source_ids [n, S]` and a 1/0
    /// `source_mask [n, S]`.
    pub fn encode(&self, source_ids: &Tensor, source_mask: &Tensor, train: bool) -> Result<Tensor> {
        self.check_source(source_ids, source_mask)?;
        self.encoder
            .forward(source_ids, source_mask, self.compute_dtype, train)
    }

    /// [`encode`](Self::encode) in eval mode without an op graph (no gradients; one layer's
    /// activations alive at a time): what decoding sessions use.
    pub fn encode_inference(&self, source_ids: &Tensor, source_mask: &Tensor) -> Result<Tensor> {
        check_same_shape(source_ids, source_mask, "source_ids", "source_mask")?;
        let _no_grad = crate::layers::no_grad();
        self.encoder
            .forward_inference(source_ids, source_mask, self.compute_dtype)
    }

    /// Decoder stack + `tanh(dense)` for a whole target prefix: `[n, T, H]`.
    pub fn decode_hidden(
        &self,
        target_ids: &Tensor,
        memory: &Tensor,
        source_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let inputs = self.target_inputs(target_ids)?;
        self.decode_hidden_inputs(&inputs, memory, source_mask, train)
    }

    /// The decoder's lookup indices for `target_ids [n, T]` (length checked against the
    /// causal buffer).
    pub(crate) fn target_inputs(&self, target_ids: &Tensor) -> Result<EmbeddingInputs> {
        check_target_len(target_ids.dim(1)?)?;
        self.embeddings().inputs(target_ids)
    }

    /// [`decode_hidden`](Self::decode_hidden) from prepared lookup indices.
    pub(crate) fn decode_hidden_inputs(
        &self,
        inputs: &EmbeddingInputs,
        memory: &Tensor,
        source_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let causal = causal_mask(inputs.dims.1, &self.device)?;
        let memory_mask = memory_key_padding_mask(source_mask)?;
        let mut x = self
            .embeddings()
            .forward_inputs(inputs, self.compute_dtype, train)?;
        for layer in &self.decoder {
            x = layer.forward(&x, memory, &causal, &memory_mask, train)?;
        }
        self.head_hidden(&x)
    }

    /// `tanh(dense(x))`.
    pub fn head_hidden(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.dense.forward(x)?.tanh()?)
    }

    /// Logits `h · W_embᵀ` over the vocabulary, in f32, for hidden states `[.., H]`.
    pub fn lm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = Linear::new(self.embeddings().word_embeddings().clone(), None)
            .with_fused(self.cfg.fused_kernels);
        Ok(cast(&head.forward(hidden)?, DType::F32)?)
    }

    /// Teacher-forced logits `[n, T, V]` (f32), §4.4.
    pub fn logits(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        target_ids: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let memory = self.encode(source_ids, source_mask, train)?;
        let hidden = self.decode_hidden(target_ids, &memory, source_mask, train)?;
        self.lm_logits(&hidden)
    }

    /// The §5 loss: positions `t` predict `target_ids[:, t+1]` where `target_mask[:, t+1] = 1`;
    /// the mean is over those positions in the whole batch. Logits are computed only at
    /// active positions (same values, less memory).
    pub fn forward_loss(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        target_ids: &Tensor,
        target_mask: &Tensor,
        train: bool,
    ) -> Result<LossOutput> {
        let inputs = self.loss_inputs(source_ids, source_mask, target_ids, target_mask)?;
        self.forward_loss_with(inputs, source_mask, train)
    }

    /// [`forward_loss`](Self::forward_loss) from prepared [`LossInputs`] and the `[n, S]`
    /// source mask.
    pub fn forward_loss_with(
        &self,
        inputs: LossInputs,
        source_mask: &Tensor,
        train: bool,
    ) -> Result<LossOutput> {
        let LossInputs {
            positions,
            source,
            target,
        } = inputs;
        check_mask_dims(source_mask, source.dims)?;
        let memory =
            self.encoder
                .forward_inputs(&source, source_mask, self.compute_dtype, train)?;
        let hidden = self.decode_hidden_inputs(&target, &memory, source_mask, train)?;
        let (n, t) = target.dims;
        let h = self.cfg.hidden_size;
        let n_active = positions.count;
        let (rows, gold) = (positions.rows, positions.gold);
        let active_hidden = hidden.reshape((n * t, h))?.index_select(&rows, 0)?;
        let logits = self.lm_logits(&active_hidden)?;
        // Σ −log p(gold): negating each term or the sum is the same float.
        let nll = token_nll(&logits, &gold, self.cfg.fused_kernels)?;
        let loss_sum_exact = nll.sum_all()?;
        let loss = crate::layers::token_mean(&loss_sum_exact, n_active)?;
        // The reference returns the f32 product loss × N_act, not the raw sum.
        let loss_sum = (&loss * n_active as f64)?;
        Ok(LossOutput {
            loss,
            loss_sum,
            n_active,
        })
    }

    /// Every host read a loss needs (active positions, checked lookup indices), done before
    /// the first op is queued so that no op waits on the host mid-step.
    pub(crate) fn loss_inputs(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        target_ids: &Tensor,
        target_mask: &Tensor,
    ) -> Result<LossInputs> {
        let positions = self.active_positions(target_ids, target_mask)?;
        self.check_source(source_ids, source_mask)?;
        Ok(LossInputs {
            positions,
            source: self.embeddings().inputs(source_ids)?,
            target: self.target_inputs(target_ids)?,
        })
    }

    /// [`LossInputs`] from host copies of the batch: no device read, so a trainer that built the
    /// batch on the host can queue a whole step (and the next) without waiting for the device.
    pub fn loss_inputs_from_host(&self, batch: HostBatch<'_>) -> Result<LossInputs> {
        let (n, s, t) = (batch.rows, batch.source_len, batch.target_len);
        let positions =
            self.active_positions_from_host(batch.target_ids, batch.target_mask, (n, t))?;
        check_target_len(t)?;
        let embeddings = self.embeddings();
        Ok(LossInputs {
            positions,
            source: embeddings.inputs_from_host_ids(batch.source_ids, (n, s), &self.device)?,
            target: embeddings.inputs_from_host_ids(batch.target_ids, (n, t), &self.device)?,
        })
    }

    /// `source_ids` and `source_mask` are both `[n, S]`.
    pub(crate) fn check_source(&self, source_ids: &Tensor, source_mask: &Tensor) -> Result<()> {
        check_same_shape(source_ids, source_mask, "source_ids", "source_mask")
    }

    /// The §5 active positions: `t` predicts `target_ids[:, t+1]` where `target_mask[:, t+1]
    /// = 1`. Checks the target shapes and that at least one position is active.
    pub(crate) fn active_positions(
        &self,
        target_ids: &Tensor,
        target_mask: &Tensor,
    ) -> Result<ActivePositions> {
        check_same_shape(target_ids, target_mask, "target_ids", "target_mask")?;
        let (n, t) = target_ids.dims2()?;
        if t < 2 {
            return Err(ModelError::InvalidInput(format!(
                "target length {t}: need at least 2 positions for a loss"
            )));
        }
        let mask: Vec<u32> = target_mask
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|&m| u32::from(m != 0.0))
            .collect();
        let labels = target_ids
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        self.active_positions_from_host(&labels, &mask, (n, t))
    }

    /// [`active_positions`](Self::active_positions) from row-major host copies `[n, T]`.
    fn active_positions_from_host(
        &self,
        target_ids: &[u32],
        target_mask: &[u32],
        (n, t): (usize, usize),
    ) -> Result<ActivePositions> {
        if target_ids.len() != n * t || target_mask.len() != n * t {
            return Err(ModelError::InvalidInput(format!(
                "{} target ids and {} mask values for a [{n}, {t}] batch",
                target_ids.len(),
                target_mask.len()
            )));
        }
        if t < 2 {
            return Err(ModelError::InvalidInput(format!(
                "target length {t}: need at least 2 positions for a loss"
            )));
        }
        let mut rows = Vec::new();
        let mut gold = Vec::new();
        for b in 0..n {
            for pos in 0..t - 1 {
                if target_mask[b * t + pos + 1] != 0 {
                    rows.push((b * t + pos) as u32);
                    gold.push(target_ids[b * t + pos + 1]);
                }
            }
        }
        let count = rows.len();
        if count == 0 {
            return Err(ModelError::InvalidInput(
                "no active target position (target_mask[:, 1:] is all 0)".into(),
            ));
        }
        Ok(ActivePositions {
            rows: Tensor::from_vec(rows, count, &self.device)?,
            gold: Tensor::from_vec(gold, (count, 1), &self.device)?,
            count,
        })
    }
}

/// Host copies of a batch (row-major), from which a step is prepared without reading any
/// tensor back from the device ([`Seq2Seq::loss_inputs_from_host`]).
#[derive(Debug, Clone, Copy)]
pub struct HostBatch<'a> {
    /// `[n, S]` source ids.
    pub source_ids: &'a [u32],
    /// `[n, T]` target ids.
    pub target_ids: &'a [u32],
    /// `[n, T]` 1 for a real target token, 0 for padding.
    pub target_mask: &'a [u32],
    /// `n`.
    pub rows: usize,
    /// `S`.
    pub source_len: usize,
    /// `T`.
    pub target_len: usize,
}

/// Everything a loss needs from the host — the active target positions and the checked
/// lookup indices of both embeddings — prepared before the step's first op is queued
/// ([`Seq2Seq::loss_inputs_from_host`], or from tensors inside [`Seq2Seq::forward_loss`]).
pub struct LossInputs {
    pub(crate) positions: ActivePositions,
    pub(crate) source: EmbeddingInputs,
    pub(crate) target: EmbeddingInputs,
}

/// Rows of the flattened `[n·T]` decoder output that predict a token, and the tokens.
pub(crate) struct ActivePositions {
    /// `[N]` u32 row indices.
    pub(crate) rows: Tensor,
    /// `[N, 1]` u32 gold ids.
    pub(crate) gold: Tensor,
    pub(crate) count: usize,
}

impl std::fmt::Debug for Seq2Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seq2Seq")
            .field("config", &self.cfg)
            .field("device", &self.device)
            .field("compute_dtype", &self.compute_dtype)
            .finish_non_exhaustive()
    }
}

fn varmap_contains(varmap: &VarMap, key: &str) -> bool {
    varmap
        .data()
        .lock()
        .map(|d| d.contains_key(key))
        .unwrap_or(false)
}

/// §4.5: one decoder layer is built and deep-copied, so all layers start identical.
fn copy_decoder_layer_zero(cfg: &ModelConfig, varmap: &VarMap) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::InvalidInput("VarMap lock poisoned".into()))?;
    for spec in keys::decoder_layer_param_specs(cfg) {
        let src = data
            .get(&format!("decoder.layers.0.{}", spec.name))
            .map(|v| v.as_tensor().copy())
            .transpose()?;
        let Some(src) = src else { continue };
        for l in 1..cfg.decoder_layers {
            if let Some(var) = data.get(&format!("decoder.layers.{l}.{}", spec.name)) {
                var.set(&src)?;
            }
        }
    }
    Ok(())
}

/// A target fits the causal mask buffer of the checkpoints.
fn check_target_len(t: usize) -> Result<()> {
    if t > keys::CAUSAL_BUFFER_SIZE {
        return Err(ModelError::InvalidInput(format!(
            "target length {t} exceeds the causal buffer ({})",
            keys::CAUSAL_BUFFER_SIZE
        )));
    }
    Ok(())
}

/// The source mask matches the prepared source lookups.
pub(crate) fn check_mask_dims(source_mask: &Tensor, dims: (usize, usize)) -> Result<()> {
    if source_mask.dims() != [dims.0, dims.1] {
        return Err(ModelError::InvalidInput(format!(
            "source_mask {:?} does not match the [{}, {}] source ids",
            source_mask.dims(),
            dims.0,
            dims.1
        )));
    }
    Ok(())
}

fn check_same_shape(a: &Tensor, b: &Tensor, an: &str, bn: &str) -> Result<()> {
    if a.dims() != b.dims() || a.rank() != 2 {
        return Err(ModelError::InvalidInput(format!(
            "{an} {:?} and {bn} {:?} must both be [n, L]",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}
