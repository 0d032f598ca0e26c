//! `nn.TransformerDecoderLayer` with PyTorch defaults (§4.3): post-norm, relu, dropout 0.1.

use candle_core::Tensor;

use super::attention::MultiheadAttention;
use super::kv_cache::KvCache;
use super::{SelfAttentionCache, SlotAttention};
use crate::config::Activation;
use crate::init::Params;
use crate::layers::{apply_activation_with, dropout, LayerNorm, Linear};
use crate::Result;

/// `decoder.layers.N`.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub(crate) self_attn: MultiheadAttention,
    pub(crate) cross_attn: MultiheadAttention,
    pub(crate) linear1: Linear,
    pub(crate) linear2: Linear,
    pub(crate) norm1: LayerNorm,
    pub(crate) norm2: LayerNorm,
    pub(crate) norm3: LayerNorm,
    pub(crate) act: Activation,
    pub(crate) dropout_p: f32,
    pub(crate) fused_kernels: bool,
}

impl DecoderLayer {
    pub(crate) fn new(p: &Params) -> Result<Self> {
        let cfg = p.cfg;
        let (h, f, eps) = (
            cfg.hidden_size,
            cfg.decoder_ffn_dim,
            cfg.decoder_layer_norm_eps,
        );
        let norm = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm::new(
                p.get(&format!("{name}.weight"), &[h])?,
                p.get(&format!("{name}.bias"), &[h])?,
                eps,
            )
            .with_fused(cfg.fused_kernels))
        };
        let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            Ok(Linear::new(
                p.get(&format!("{name}.weight"), &[out, inp])?,
                Some(p.get(&format!("{name}.bias"), &[out])?),
            )
            .with_fused(cfg.fused_kernels))
        };
        Ok(Self {
            self_attn: MultiheadAttention::new(&p.pp("self_attn"))?,
            cross_attn: MultiheadAttention::new(&p.pp("multihead_attn"))?,
            linear1: linear("linear1", f, h)?,
            linear2: linear("linear2", h, f)?,
            norm1: norm("norm1")?,
            norm2: norm("norm2")?,
            norm3: norm("norm3")?,
            act: cfg.decoder_activation,
            dropout_p: cfg.decoder_dropout,
            fused_kernels: cfg.fused_kernels,
        })
    }

    /// The cross-attention block (its keys/values are cached per example by sessions).
    pub fn cross_attention(&self) -> &MultiheadAttention {
        &self.cross_attn
    }

    /// Teacher-forced layer: `x [n, T, H]`, `memory [n, S, H]`, `causal [1, 1, T, T]`,
    /// `memory_mask [n, 1, 1, S]` (0 or −inf).
    pub fn forward(
        &self,
        x: &Tensor,
        memory: &Tensor,
        causal: &Tensor,
        memory_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let sa = self.self_attn.forward(x, x, Some(causal), train)?;
        let x = self
            .norm1
            .forward(&(x + dropout(&sa, self.dropout_p, train)?)?)?;
        let ca = self
            .cross_attn
            .forward(&x, memory, Some(memory_mask), train)?;
        let x = self
            .norm2
            .forward(&(x + dropout(&ca, self.dropout_p, train)?)?)?;
        self.feed_forward(&x, train)
    }

    /// One incremental step in eval mode: `x [r, 1, H]` is the newest position; its keys and
    /// values are appended to `cache`. With `rows_per_example = G > 1`, rows come in groups of
    /// G consecutive rows of one example and `cross_kv`/`memory_mask` hold one entry per group
    /// (`[r / G, ..]`); with G = 1 they hold one entry per row.
    pub fn step(
        &self,
        x: &Tensor,
        cache: &mut SelfAttentionCache,
        cross_kv: &(Tensor, Tensor),
        memory_mask: &Tensor,
        rows_per_example: usize,
    ) -> Result<Tensor> {
        let sa = self.self_attention_step(x, cache)?;
        let x = self.norm1.forward(&(x + sa)?)?;
        let ca = self.cross_attention_step(&x, cross_kv, memory_mask, rows_per_example)?;
        let x = self.norm2.forward(&(x + ca)?)?;
        self.feed_forward(&x, false)
    }

    /// The self-attention block of a step over the cached positions and the new one.
    fn self_attention_step(&self, x: &Tensor, cache: &mut SelfAttentionCache) -> Result<Tensor> {
        let q = self.self_attn.queries(x)?;
        let (k, v) = self.self_attn.keys_values(x)?;
        // Every cached position precedes the new one: the causal mask is all zeros here.
        match cache {
            SelfAttentionCache::Dense(dense) => {
                let updated = match dense.take() {
                    Some(c) => c.append(&k, &v)?,
                    None => KvCache::new(k, v),
                };
                let sa = self
                    .self_attn
                    .attend(&q, &updated.keys, &updated.values, None, false)?;
                *dense = Some(updated);
                Ok(sa)
            }
            SelfAttentionCache::Slotted(slotted) => match slotted.append(&q, &k, &v)? {
                SlotAttention::Gathered { keys, values } => {
                    self.self_attn.attend(&q, &keys, &values, None, false)
                }
                SlotAttention::Context(ctx) => self.self_attn.project(&ctx),
            },
        }
    }

    /// The cross-attention block of a step (see [`step`](Self::step) for the grouping).
    fn cross_attention_step(
        &self,
        x: &Tensor,
        cross_kv: &(Tensor, Tensor),
        memory_mask: &Tensor,
        rows_per_example: usize,
    ) -> Result<Tensor> {
        let q = self.cross_attn.queries(x)?;
        // One kernel for the whole block; slower than the tensor ops below on an H200, so only
        // with C2N_CUDA_CROSS_ATTENTION_KERNEL=1.
        #[cfg(feature = "cuda")]
        if crate::cuda_decode_kernels_enabled() && crate::cuda_cross_attention_kernel_enabled() {
            let (keys, values) = cross_kv;
            if let Some(ctx) =
                super::cross_attention_cuda::grouped_cross_attention(&q, keys, values, memory_mask)?
            {
                return self.cross_attn.project(&ctx);
            }
        }
        if rows_per_example > 1 {
            // The G rows of one example share its memory: attend as G queries of one batch
            // entry, so each example's keys/values are read once, not once per row.
            let (rows, heads, _, head_dim) = q.dims4()?;
            let examples = rows / rows_per_example;
            let grouped = q
                .reshape((examples, rows_per_example, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let ca = self.cross_attn.attend(
                &grouped,
                &cross_kv.0,
                &cross_kv.1,
                Some(memory_mask),
                false,
            )?;
            Ok(ca.reshape((rows, 1, ca.dim(2)?))?)
        } else {
            self.cross_attn
                .attend(&q, &cross_kv.0, &cross_kv.1, Some(memory_mask), false)
        }
    }

    fn feed_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = apply_activation_with(&self.linear1.forward(x)?, self.act, self.fused_kernels)?;
        let f = self.linear2.forward(&dropout(&f, self.dropout_p, train)?)?;
        Ok(self
            .norm3
            .forward(&(x + dropout(&f, self.dropout_p, train)?)?)?)
    }
}
