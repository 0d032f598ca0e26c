//! `y = x·Wᵀ + b` with PyTorch's weight layout `[out, in]`.

use candle_core::Tensor;

use super::cast;
use super::closed_form::records;
use super::linear_op::linear_closed_form;
use super::param;

/// A linear layer over the last dimension of an input of any rank.
///
/// By default one closed-form op (one graph node, backward `dx = g·W`, `dW = gᵀ·x`,
/// `db = Σ g`); [`Linear::with_fused`] `(false)` selects the primitive-op formulation.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    fused: bool,
}

impl Linear {
    /// Wrap a `[out, in]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            fused: true,
        }
    }

    /// Choose the closed-form op (`true`, the default) or the primitive-op formulation.
    pub fn with_fused(mut self, fused: bool) -> Self {
        self.fused = fused;
        self
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The optional `[out]` bias.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Apply to `x [.., in]`, giving `[.., out]` in the dtype of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.rank() == 0 {
            return Err(candle_core::Error::Msg("linear: scalar input".into()));
        }
        if self.fused && records(&[x, &self.weight]) {
            return linear_closed_form(x, &self.weight, self.bias.as_ref());
        }
        let dims = x.dims().to_vec();
        let (&in_dim, lead) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("linear: scalar input".into()))?;
        let rows: usize = lead.iter().product();
        let w = cast(&param(&self.weight), x.dtype())?;
        let x2 = x.reshape((rows, in_dim))?;
        let mut y = x2.matmul(&w.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&cast(&param(b), x.dtype())?)?;
        }
        let mut out_dims = lead.to_vec();
        out_dims.push(w.dim(0)?);
        y.reshape(out_dims)
    }
}
