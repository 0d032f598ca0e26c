//! LayerNorm from primitive ops: `(x − mean) / sqrt(biased_var + eps) · w + b` over the last dim.

use candle_core::{DType, Tensor, D};

use super::cast;

/// A LayerNorm whose weight and bias receive gradients (unlike `candle_nn::LayerNorm`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Wrap existing weight and bias tensors (usually Vars of a `VarMap`).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Normalise over the last dimension; statistics in f32, result in the input dtype.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = cast(x, DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&cast(&self.weight, DType::F32)?)?
            .broadcast_add(&cast(&self.bias, DType::F32)?)?;
        cast(&y, dtype)
    }
}
