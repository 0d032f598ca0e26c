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

/// The token mean `Σ nll / N` of the loss (§5), divided as torch's mean reduction divides:
/// Candle's `tensor / f64` multiplies by a rounded `1/N`, which can differ by an ulp. `N` is
/// made on the device (no host copy) and is exact in f32 below 2²⁴.
pub fn token_mean(nll_sum: &Tensor, count: usize) -> candle_core::Result<Tensor> {
    let n = Tensor::full(count as f32, nll_sum.shape(), nll_sum.device())?;
    nll_sum.div(&n)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn token_mean_divides_like_torch_rather_than_multiplying_by_a_rounded_reciprocal() {
        // 7 / 3 in f32 is 2.3333333; 7 × f32(1/3) rounds to 2.3333335.
        let sum = Tensor::new(7f32, &Device::Cpu).unwrap();
        let mean = token_mean(&sum, 3).unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(mean, 7f32 / 3f32);
        let by_reciprocal = (&sum / 3.0).unwrap().to_scalar::<f32>().unwrap();
        assert_ne!(by_reciprocal, mean, "the case must tell the two apart");
    }
}
