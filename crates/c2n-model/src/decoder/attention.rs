//! `nn.MultiheadAttention` (§4.3): packed `in_proj`, q scaled by `head_dim^−½` before the
//! product, additive masks, `out_proj`.

use candle_core::Tensor;

use crate::init::Params;
use crate::layers::{attend, attend_heads, merge_heads, split_heads, AttendOptions, Linear};
use crate::Result;

/// One attention block of a decoder layer (`self_attn` or `multihead_attn`).
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    /// The packed `[3H, H]` projection and its `[3H]` bias (the Vars; q, k, v are views).
    pub(crate) in_proj_weight: Tensor,
    pub(crate) in_proj_bias: Tensor,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) out: Linear,
    pub(crate) heads: usize,
    pub(crate) scale: f64,
    pub(crate) dropout_p: f32,
    pub(crate) fused_kernels: bool,
}

impl MultiheadAttention {
    pub(crate) fn new(p: &Params) -> Result<Self> {
        let cfg = p.cfg;
        let h = cfg.hidden_size;
        let heads = cfg.decoder_heads();
        let w = p.get("in_proj_weight", &[3 * h, h])?;
        let b = p.get("in_proj_bias", &[3 * h])?;
        // Rows 0..H are Wq, H..2H Wk, 2H..3H Wv; narrow keeps the gradient path to the Var.
        let part = |i: usize| -> Result<Linear> {
            Ok(
                Linear::new(w.narrow(0, i * h, h)?, Some(b.narrow(0, i * h, h)?))
                    .with_fused(cfg.fused_kernels),
            )
        };
        Ok(Self {
            in_proj_weight: w.clone(),
            in_proj_bias: b.clone(),
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: Linear::new(
                p.get("out_proj.weight", &[h, h])?,
                Some(p.get("out_proj.bias", &[h])?),
            )
            .with_fused(cfg.fused_kernels),
            heads,
            scale: 1.0 / ((h / heads) as f64).sqrt(),
            dropout_p: cfg.decoder_dropout,
            fused_kernels: cfg.fused_kernels,
        })
    }

    /// Scaled queries `[b, heads, L, d]` from `x [b, L, H]`.
    pub fn queries(&self, x: &Tensor) -> Result<Tensor> {
        Ok(split_heads(
            &(self.q.forward(x)? * self.scale)?,
            self.heads,
        )?)
    }

    /// Keys and values `[b, heads, L, d]` from `x [b, L, H]`.
    pub fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            split_heads(&self.k.forward(x)?, self.heads)?,
            split_heads(&self.v.forward(x)?, self.heads)?,
        ))
    }

    /// Attention of scaled queries over keys/values, heads merged and projected: `[b, Lq, H]`.
    pub fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let options = AttendOptions {
            dropout_p: self.dropout_p,
            train,
            fused_softmax: self.fused_kernels,
            ..AttendOptions::default()
        };
        let ctx = attend(q, k, v, mask, options)?;
        Ok(self.out.forward(&merge_heads(&ctx)?)?)
    }

    /// The output projection of an attention context `[b, L, heads·d]` (heads merged).
    pub fn project(&self, ctx: &Tensor) -> Result<Tensor> {
        Ok(self.out.forward(ctx)?)
    }

    /// Full attention of `x` over `kv_source` (heads split and merged inside the attention
    /// op, so that in training the block is one graph node).
    pub fn forward(
        &self,
        x: &Tensor,
        kv_source: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let options = AttendOptions {
            query_scale: Some(self.scale),
            dropout_p: self.dropout_p,
            train,
            fused_softmax: self.fused_kernels,
            ..AttendOptions::default()
        };
        let ctx = attend_heads(
            &self.q.forward(x)?,
            &self.k.forward(kv_source)?,
            &self.v.forward(kv_source)?,
            self.heads,
            mask,
            options,
        )?;
        Ok(self.out.forward(&ctx)?)
    }
}
