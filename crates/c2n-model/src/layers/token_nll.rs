//! Per-row negative log-likelihood `−log_softmax(logits)[gold]` as a closed-form op.
//!
//! The primitive formulation (log-softmax, then gather) keeps several `[N, V]` intermediates
//! for the backward pass and gives Candle a gather to differentiate; at CodeBERT size `V` is
//! 50 265, so these are the largest tensors of a training step. This op keeps only the logits;
//! its backward is `g · (softmax(logits) − onehot(gold))`.

use candle_core::{CustomOp1, DType, Tensor, D};

use super::closed_form::{forward_from_value, records, Precomputed};
use super::softmax_last_dim;

struct TokenNllOp {
    value: Precomputed,
    /// `[N, 1]` u32 gold ids.
    gold: Tensor,
}

impl CustomOp1 for TokenNllOp {
    fn name(&self) -> &'static str {
        "c2n-token-nll"
    }

    forward_from_value!(1);

    fn bwd(
        &self,
        logits: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(token_nll_grad(&logits.detach(), &self.gold, grad)?))
    }
}

/// `−log_softmax(logits)[n, gold[n]]` for f32 `logits [N, V]` and u32 `gold [N, 1]`: `[N, 1]`.
///
/// `fused` selects the closed-form op (used when the logits need a gradient); otherwise Candle's
/// log-softmax and gather.
pub fn token_nll(logits: &Tensor, gold: &Tensor, fused: bool) -> candle_core::Result<Tensor> {
    if logits.dtype() != DType::F32 {
        return Err(candle_core::Error::Msg(format!(
            "token_nll: logits must be f32, got {:?}",
            logits.dtype()
        )));
    }
    if !fused || !records(&[logits]) {
        return candle_nn::ops::log_softmax(logits, D::Minus1)?
            .gather(gold, 1)?
            .neg();
    }
    let value = token_nll_value(&logits.detach(), gold)?;
    logits.apply_op1(TokenNllOp {
        value: Precomputed::new(value),
        gold: gold.clone(),
    })
}

/// `−log_softmax(logits)[gold]` from detached logits (no graph).
pub(crate) fn token_nll_value(logits: &Tensor, gold: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::log_softmax(logits, D::Minus1)?
        .gather(gold, 1)?
        .neg()
}

/// The logits' gradient `g · (softmax(logits) − onehot(gold))` for upstream `grad [N, 1]`.
pub(crate) fn token_nll_grad(
    logits: &Tensor,
    gold: &Tensor,
    grad: &Tensor,
) -> candle_core::Result<Tensor> {
    let probs = softmax_last_dim(logits)?;
    let scaled = probs.broadcast_mul(grad)?;
    scaled.scatter_add(gold, &grad.neg()?, 1)
}
