//! Scaled dot-product attention (differentiable softmax, f32 scores).

use candle_core::{DType, Tensor, D};

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

/// How [`attend`] scales, drops out and normalises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttendOptions {
    /// Divides `q·kᵀ` (the encoder's convention); the decoder scales `q` before the call and
    /// passes `None`. A power of two is applied to `q` instead, which is exact and touches
    /// `L·d` values instead of `L²`.
    pub score_divisor: Option<f64>,
    /// Dropout on the probabilities, active only when `train`.
    pub dropout_p: f32,
    pub train: bool,
    /// One fused softmax op with a closed-form backward (default) instead of the five-op
    /// primitive formulation.
    pub fused_softmax: bool,
}

impl Default for AttendOptions {
    fn default() -> Self {
        Self {
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
    let exact_on_q = options
        .score_divisor
        .is_some_and(|d| d > 0.0 && d.log2().fract() == 0.0);
    let mut scores = match options.score_divisor {
        Some(divisor) if exact_on_q => cast(&(q / divisor)?.matmul(&k.t()?)?, DType::F32)?,
        _ => cast(&q.matmul(&k.t()?)?, DType::F32)?,
    };
    if let (Some(divisor), false) = (options.score_divisor, exact_on_q) {
        scores = (scores / divisor)?;
    }
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
    cast(&probs, v.dtype())?.matmul(v)
}
