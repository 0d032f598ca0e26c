//! One post-LayerNorm BERT layer (§4.2): self-attention, residual + LN, GELU FFN, residual + LN.

use candle_core::Tensor;

use crate::config::Activation;
use crate::init::Params;
use crate::layers::{
    apply_activation_with, attend_heads, dropout, AttendOptions, LayerNorm, Linear,
};
use crate::Result;

fn linear(p: &Params, name: &str, out: usize, inp: usize) -> Result<Linear> {
    Ok(Linear::new(
        p.get(&format!("{name}.weight"), &[out, inp])?,
        Some(p.get(&format!("{name}.bias"), &[out])?),
    )
    .with_fused(p.cfg.fused_kernels))
}

/// `encoder.layer.N`.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub(crate) query: Linear,
    pub(crate) key: Linear,
    pub(crate) value: Linear,
    pub(crate) attn_out: Linear,
    pub(crate) attn_norm: LayerNorm,
    pub(crate) intermediate: Linear,
    pub(crate) output: Linear,
    pub(crate) out_norm: LayerNorm,
    pub(crate) heads: usize,
    pub(crate) act: Activation,
    pub(crate) hidden_dropout: f32,
    pub(crate) attn_dropout: f32,
    pub(crate) fused_kernels: bool,
}

impl EncoderLayer {
    pub(crate) fn new(p: &Params) -> Result<Self> {
        let cfg = p.cfg;
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let norm = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm::new(
                p.get(&format!("{name}.weight"), &[h])?,
                p.get(&format!("{name}.bias"), &[h])?,
                eps,
            )
            .with_fused(cfg.fused_kernels))
        };
        Ok(Self {
            query: linear(p, "attention.self.query", h, h)?,
            key: linear(p, "attention.self.key", h, h)?,
            value: linear(p, "attention.self.value", h, h)?,
            attn_out: linear(p, "attention.output.dense", h, h)?,
            attn_norm: norm("attention.output.LayerNorm")?,
            intermediate: linear(p, "intermediate.dense", i, h)?,
            output: linear(p, "output.dense", h, i)?,
            out_norm: norm("output.LayerNorm")?,
            heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
            hidden_dropout: cfg.hidden_dropout_prob,
            attn_dropout: cfg.attention_probs_dropout_prob,
            fused_kernels: cfg.fused_kernels,
        })
    }

    /// `x [n, S, H]`, `mask_term [n, 1, 1, S]` (0 or −10000).
    pub fn forward(&self, x: &Tensor, mask_term: &Tensor, train: bool) -> Result<Tensor> {
        let head_dim = (x.dim(2)? / self.heads) as f64;
        let options = AttendOptions {
            score_divisor: Some(head_dim.sqrt()),
            dropout_p: self.attn_dropout,
            train,
            fused_softmax: self.fused_kernels,
            ..AttendOptions::default()
        };
        let ctx = attend_heads(
            &self.query.forward(x)?,
            &self.key.forward(x)?,
            &self.value.forward(x)?,
            self.heads,
            Some(mask_term),
            options,
        )?;
        let attn = dropout(&self.attn_out.forward(&ctx)?, self.hidden_dropout, train)?;
        let a = self.attn_norm.forward(&(attn + x)?)?;
        let f = apply_activation_with(
            &self.intermediate.forward(&a)?,
            self.act,
            self.fused_kernels,
        )?;
        let f = dropout(&self.output.forward(&f)?, self.hidden_dropout, train)?;
        Ok(self.out_norm.forward(&(f + a)?)?)
    }
}
