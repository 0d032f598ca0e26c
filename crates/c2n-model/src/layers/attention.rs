//! Scaled dot-product attention from primitive ops (differentiable softmax, f32 scores).

use candle_core::{DType, Tensor, D};

use super::{cast, dropout};

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

/// `softmax(q·kᵀ + mask) · v` per head, with dropout on the probabilities in training.
///
/// `q [b, h, Lq, d]`, `k`/`v [b, h, Lk, d]`. `score_divisor` divides `q·kᵀ` (the encoder's
/// convention); the decoder scales `q` before the call and passes `None`. `mask` is an additive f32 term broadcastable to `[b, h, Lq, Lk]`. Scores and
/// softmax are computed in f32; the result has the dtype of `v`.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    score_divisor: Option<f64>,
    mask: Option<&Tensor>,
    dropout_p: f32,
    train: bool,
) -> candle_core::Result<Tensor> {
    let mut scores = cast(&q.matmul(&k.t()?)?, DType::F32)?;
    if let Some(divisor) = score_divisor {
        scores = (scores / divisor)?;
    }
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    let probs = dropout(&probs, dropout_p, train)?;
    cast(&probs, v.dtype())?.matmul(v)
}
