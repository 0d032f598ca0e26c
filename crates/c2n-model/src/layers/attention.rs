//! Scaled dot-product attention (differentiable softmax, f32 scores).

use candle_core::{DType, Tensor, D};

use super::attention_op::{attend_closed_form, Scaling};
use super::closed_form::records;
use super::{cast, dropout, softmax_last_dim};

/// `[b, L, heads·d]` → `[b, heads, L, d]` (contiguous).
pub fn split_heads(x: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, l, hidden) = x.dims3()?;
    x.reshape((b, l, heads, hidden / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `[b, heads, L, d]` → `[b, L, heads·d]`.
pub fn merge_heads(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, l, h * d))
}

/// How [`attend`] and [`attend_heads`] scale, drop out and normalise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttendOptions {
    /// Multiplies `q` before the product (the decoder's `head_dim^−½`, applied as PyTorch's
    /// `nn.MultiheadAttention` does).
    pub query_scale: Option<f64>,
    /// Divides `q·kᵀ` (the encoder's `√head_dim`). A power of two is applied to `q` instead,
    /// which is exact and touches `L·d` values instead of `L²`.
    pub score_divisor: Option<f64>,
    /// Dropout on the probabilities, active only when `train`.
    pub dropout_p: f32,
    pub train: bool,
    /// Fused kernels (default): the fused softmax op, and when a gradient is needed the whole
    /// attention core as one closed-form op; `false` selects the primitive-op formulation.
    pub fused_softmax: bool,
}

impl Default for AttendOptions {
    fn default() -> Self {
        Self {
            query_scale: None,
            score_divisor: None,
            dropout_p: 0.0,
            train: false,
            fused_softmax: true,
        }
    }
}

/// `softmax(q·kᵀ + mask) · v` per head, with dropout on the probabilities in training.
///
/// `q [b, h, Lq, d]`, `k`/`v [b, h, Lk, d]`. `mask` is an additive f32 term broadcastable to
/// `[b, h, Lq, Lk]`. Scores and softmax are computed in f32; the result has the dtype of `v`.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    options: AttendOptions,
) -> candle_core::Result<Tensor> {
    attend_layout(q, k, v, None, mask, options)
}

/// [`attend`] on unsplit `q [b, Lq, h·d]`, `k`/`v [b, Lk, h·d]`, giving `[b, Lq, h·d]`: heads
/// are split and merged inside, so in training the whole block is one graph node.
pub fn attend_heads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
    options: AttendOptions,
) -> candle_core::Result<Tensor> {
    attend_layout(q, k, v, Some(heads), mask, options)
}

fn attend_layout(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Option<usize>,
    mask: Option<&Tensor>,
    options: AttendOptions,
) -> candle_core::Result<Tensor> {
    if options.fused_softmax && records(&[q, k, v]) {
        return attend_closed_form(
            q,
            k,
            v,
            heads,
            mask,
            Scaling::new(options.query_scale, options.score_divisor),
            options.dropout_p,
            options.train,
        );
    }
    let (q, k, v) = match heads {
        Some(h) => (split_heads(q, h)?, split_heads(k, h)?, split_heads(v, h)?),
        None => (q.clone(), k.clone(), v.clone()),
    };
    let scaling = Scaling::new(options.query_scale, options.score_divisor);
    let q = scaling.on_q(&q)?;
    let scores = scaling.on_scores(cast(&q.matmul(&k.t()?)?, DType::F32)?)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    let probs = if options.fused_softmax {
        softmax_last_dim(&scores)?
    } else {
        candle_nn::ops::softmax(&scores, D::Minus1)?
    };
    let probs = dropout(&probs, options.dropout_p, options.train)?;
    let ctx = cast(&probs, v.dtype())?.matmul(&v)?;
    match heads {
        Some(_) => merge_heads(&ctx),
        None => Ok(ctx),
    }
}
