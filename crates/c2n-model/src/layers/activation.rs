//! Feed-forward activations, as closed-form ops in training (see `closed_form`).
//!
//! Candle's own backward of `gelu_erf` is a dozen elementwise kernels plus the zero-initialised
//! accumulation, and that of `relu` compares against an allocated zero tensor; these ops run the
//! same forward kernel and a shorter closed-form backward:
//! GELU′(x) = Φ(x) + x·φ(x), ReLU′(x) = [x > 0] (PyTorch's convention at 0).

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use candle_core::{CustomOp1, Tensor};

use super::closed_form::{forward_from_value, records, Precomputed};
use crate::config::Activation;

struct ActivationOp {
    value: Precomputed,
    act: Activation,
}

impl CustomOp1 for ActivationOp {
    fn name(&self) -> &'static str {
        match self.act {
            Activation::Gelu => "c2n-gelu-erf",
            Activation::Relu => "c2n-relu",
        }
    }

    forward_from_value!(1);

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(activation_grad(&arg.detach(), self.act, grad)?))
    }
}

/// `grad · act′(x)`: the activation's backward pass (one CUDA kernel for GELU where it
/// applies, see `gelu_cuda`).
pub(crate) fn activation_grad(
    x: &Tensor,
    act: Activation,
    grad: &Tensor,
) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if act == Activation::Gelu && super::gelu_cuda::usable(x, grad) {
        return super::gelu_cuda::gelu_backward(x, grad);
    }
    grad * activation_slope(x, act)?
}

/// The derivative of `act` at `x`, elementwise.
pub(crate) fn activation_slope(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Gelu => {
            let cdf = (x.affine(FRAC_1_SQRT_2, 0.0)?.erf()?.affine(0.5, 0.5))?;
            let pdf = x
                .sqr()?
                .affine(-0.5, 0.0)?
                .exp()?
                .affine(1.0 / (2.0 * PI).sqrt(), 0.0)?;
            cdf + (x * pdf)?
        }
        Activation::Relu => x.gt(0.0)?.to_dtype(x.dtype()),
    }
}

/// `act(x)` with Candle's kernels.
pub(crate) fn plain(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Gelu => x.gelu_erf(),
        Activation::Relu => x.relu(),
    }
}

/// Apply `act` elementwise. GELU is the exact erf form (not the tanh approximation).
pub fn apply_activation(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    apply_activation_with(x, act, true)
}

/// [`apply_activation`] with the closed-form op (`fused`, used when `x` needs a gradient) or
/// Candle's own differentiable op.
pub fn apply_activation_with(
    x: &Tensor,
    act: Activation,
    fused: bool,
) -> candle_core::Result<Tensor> {
    if !fused || !records(&[x]) {
        return plain(x, act);
    }
    let value = plain(&x.detach(), act)?;
    x.apply_op1(ActivationOp {
        value: Precomputed::new(value),
        act,
    })
}
