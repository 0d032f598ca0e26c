//! LayerNorm over the last dim: `(x − mean) / sqrt(biased_var + eps) · w + b`.

use candle_core::{DType, Tensor, D};

use super::layer_norm_op::LayerNormOp;
use super::{cast, param};

/// A LayerNorm whose weight and bias receive gradients (unlike `candle_nn::LayerNorm`).
///
/// By default it runs as one fused op with a closed-form backward
/// ([`LayerNorm::with_fused`] `(false)` selects the primitive-op formulation, kept as the
/// reference the fused op is tested against and for A/B measurements).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    fused: bool,
}

impl LayerNorm {
    /// Wrap existing weight and bias tensors (usually Vars of a `VarMap`).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self {
            weight,
            bias,
            eps,
            fused: true,
        }
    }

    /// Choose the fused op (`true`, the default) or the primitive-op formulation.
    pub fn with_fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }

    /// Normalise over the last dimension; statistics in f32, result in the input dtype.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.fused {
            self.forward_fused(x)
        } else {
            self.forward_primitive(x)
        }
    }

    fn forward_fused(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        fused_layer_norm(x, &param(&self.weight), &param(&self.bias), self.eps)
    }

    /// Weight, bias and epsilon (for the explicit backward pass).
    pub(crate) fn parts(&self) -> (&Tensor, &Tensor, f64) {
        (&self.weight, &self.bias, self.eps)
    }

    fn forward_primitive(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = cast(x, DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&cast(&param(&self.weight), DType::F32)?)?
            .broadcast_add(&cast(&param(&self.bias), DType::F32)?)?;
        cast(&y, dtype)
    }
}

/// The fused layer-norm op in f32 (one graph node when an argument is tracked), result in the
/// dtype of `x`.
pub(crate) fn fused_layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let x32 = cast(x, DType::F32)?.contiguous()?;
    let y = x32.apply_op3(
        &cast(weight, DType::F32)?.contiguous()?,
        &cast(bias, DType::F32)?.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )?;
    cast(&y, dtype)
}
