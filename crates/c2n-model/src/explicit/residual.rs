//! A residual block's tail, `LayerNorm(dropout(branch) + residual)`, and its backward pass:
//! one kernel each way on CUDA with the fewer-launch kernels, the building blocks elsewhere.

use candle_core::Tensor;

use super::blocks::{dropout, dropout_back, linear, norm, norm_back, Keep};
use super::casts::WeightCasts;
use super::param_grads::ParamGrads;
use crate::layers::{LayerNorm, Linear};

/// A residual block's tail after the branch's output projection `linear`:
/// `(sum, LayerNorm(sum), keep)` with `sum = dropout(x·Wᵀ + b) + residual`. The GEMM, then one
/// CUDA kernel for the bias, dropout, add and layer norm where it applies
/// (unless `C2N_CUDA_FEWER_LAUNCHES=0`; the same mask as [`dropout`], from a seed), else [`linear`],
/// dropout, add and [`norm`].
pub(super) fn linear_dropout_add_norm(
    linear_layer: &Linear,
    x: &Tensor,
    residual: &Tensor,
    p: f32,
    train: bool,
    layer: &LayerNorm,
    casts: &mut WeightCasts,
) -> candle_core::Result<(Tensor, Tensor, Keep)> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && crate::cuda_fewer_launches_for("add_layer_norm") {
        use crate::layers::add_norm_cuda;
        let (w, b, eps) = layer.parts();
        let bias = linear_layer.bias().map(|b| casts.get(b)).transpose()?;
        let weight = casts.get(linear_layer.weight())?;
        let branch = crate::layers::closed_form_math::linear_value(x, &weight, None)?;
        // The checks see the GEMM's output (the residual's shape), not its input.
        let mut kernel_keep = None;
        if bias.as_ref().is_none_or(|b| b.dtype() == branch.dtype())
            && add_norm_cuda::usable(&branch, residual, w, b)
        {
            let p = if train { p } else { 0.0 };
            let seed = if p > 0.0 {
                crate::layers::next_dropout_seed()
            } else {
                0
            };
            let keep = if p > 0.0 {
                Keep::Seeded { seed, p }
            } else {
                Keep::All
            };
            let fused = add_norm_cuda::dropout_add_layer_norm(
                &branch,
                bias.as_ref(),
                residual,
                &w.detach(),
                &b.detach(),
                eps,
                seed,
                p,
            );
            match fused {
                Ok((sum, y)) => return Ok((sum, y, keep)),
                Err(e) => crate::cuda_fewer_launches_failed("add_layer_norm", &e),
            }
            kernel_keep = Some(keep);
        }
        // The GEMM is done: finish the block with the separate steps (the bias in the
        // branch's dtype, as `linear` casts it).
        let branch = match &bias {
            Some(bias) => branch.broadcast_add(&super::blocks::in_dtype(bias, branch.dtype())?)?,
            None => branch,
        };
        let (dropped, keep) = match kernel_keep {
            Some(keep) => (super::blocks::apply_keep(branch, &keep)?, keep),
            None => dropout(&branch, p, train)?,
        };
        return add_then_norm(dropped, keep, residual, layer);
    }
    dropout_add_then_norm(&linear(linear_layer, x, casts)?, residual, p, train, layer)
}

/// `(sum, LayerNorm(sum), keep)` with `sum = dropout(branch) + residual`, step by step.
fn dropout_add_then_norm(
    branch: &Tensor,
    residual: &Tensor,
    p: f32,
    train: bool,
    layer: &LayerNorm,
) -> candle_core::Result<(Tensor, Tensor, Keep)> {
    let (dropped, keep) = dropout(branch, p, train)?;
    add_then_norm(dropped, keep, residual, layer)
}

/// `(sum, LayerNorm(sum), keep)` with `sum = dropped + residual`.
fn add_then_norm(
    dropped: Tensor,
    keep: Keep,
    residual: &Tensor,
    layer: &LayerNorm,
) -> candle_core::Result<(Tensor, Tensor, Keep)> {
    let sum = (dropped + residual)?;
    let y = norm(layer, &sum)?;
    Ok((sum, y, keep))
}

/// An upstream gradient that may still be a sum of two (the residual path's and a branch's):
/// the fused layer-norm backward adds them as it loads them, saving the add.
pub(super) struct Upstream {
    a: Tensor,
    b: Option<Tensor>,
}

impl Upstream {
    /// One gradient.
    pub(super) fn one(a: Tensor) -> Self {
        Self { a, b: None }
    }

    /// The sum `a + b`, not yet added.
    pub(super) fn sum(a: Tensor, b: Tensor) -> Self {
        Self { a, b: Some(b) }
    }

    /// The gradient as one tensor.
    pub(super) fn into_tensor(self) -> candle_core::Result<Tensor> {
        match self.b {
            Some(b) => self.a + b,
            None => Ok(self.a),
        }
    }
}

/// Backward of [`linear_dropout_add_norm`]'s dropout, add and layer norm, with input `sum`: the layer norm's weight and bias
/// gradients into `grads`; returns `(d_sum, d_branch)`, the gradient of the residual sum and
/// that of the branch before its dropout. One fused kernel pair where it applies (CUDA,
/// unless `C2N_CUDA_FEWER_LAUNCHES=0`), else the add, [`norm_back`] and [`dropout_back`].
pub(super) fn add_norm_back(
    layer: &LayerNorm,
    sum: &Tensor,
    grad: Upstream,
    keep: &Keep,
    grads: &mut ParamGrads,
) -> candle_core::Result<(Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    {
        use crate::layers::layer_norm_cuda;
        let dropout = match keep {
            Keep::All => Some(None),
            Keep::Seeded { seed, p } => Some(Some((*seed, *p))),
            Keep::Mask(_) => None,
        };
        let same_dtype = grad.a.dtype() == sum.dtype()
            && grad.b.as_ref().is_none_or(|b| b.dtype() == sum.dtype());
        if let Some(dropout) = dropout.filter(|_| {
            sum.device().is_cuda()
                && layer_norm_cuda::takes(sum.dtype())
                && same_dtype
                // The kernels take f32 weights (the forward's `usable` asks the same).
                && layer.parts().0.dtype() == candle_core::DType::F32
                && crate::cuda_layer_norm_kernels_enabled()
                && crate::cuda_fewer_launches_for("layer_norm_backward_fused")
        }) {
            let (w, b, eps) = layer.parts();
            let width = sum.dim(candle_core::D::Minus1)?;
            let rows = sum.elem_count() / width.max(1);
            let shape = sum.shape().clone();
            let fused = layer_norm_cuda::layer_norm_grads_fused(
                &sum.reshape((rows, width))?,
                &w.detach(),
                &grad.a.reshape((rows, width))?,
                grad.b.as_ref(),
                dropout,
                eps as f32,
            );
            match fused {
                Ok((dx, dropped, dw, db)) => {
                    grads.add(w, dw)?;
                    grads.add(b, db)?;
                    let dx = dx.reshape(&shape)?;
                    let branch = match dropped {
                        Some(d) => d.reshape(&shape)?,
                        None => dx.clone(),
                    };
                    return Ok((dx, branch));
                }
                Err(e) => crate::cuda_fewer_launches_failed("layer_norm_backward_fused", &e),
            }
        }
    }
    let d_sum = norm_back(layer, sum, &grad.into_tensor()?, grads)?;
    let d_branch = dropout_back(d_sum.clone(), keep)?;
    Ok((d_sum, d_branch))
}
