//! A feed-forward layer's first half after its GEMM (bias, activation, dropout) and the
//! backward of its activation and dropout: one kernel each on CUDA with the fewer-launch
//! kernels, the building blocks elsewhere.

use candle_core::Tensor;

use super::blocks::{activation, activation_back, dropout, dropout_back, linear, Keep};
use super::casts::WeightCasts;
use crate::config::Activation;
#[cfg(feature = "cuda")]
use crate::layers::closed_form_math::linear_value;
use crate::layers::Linear;

/// A feed-forward layer's first half: `(pre, dropout(act(pre)), keep)` with
/// `pre = x·Wᵀ + b`. The bias, activation and dropout as one CUDA kernel after the GEMM where
/// it applies (unless `C2N_CUDA_FEWER_LAUNCHES=0`), else [`linear`], [`activation`] and [`dropout`].
pub(super) fn linear_activation_dropout(
    layer: &Linear,
    x: &Tensor,
    act: Activation,
    p: f32,
    train: bool,
    casts: &mut WeightCasts,
) -> candle_core::Result<(Tensor, Tensor, Keep)> {
    #[cfg(feature = "cuda")]
    if let Some(bias) = layer
        .bias()
        .filter(|_| x.device().is_cuda() && crate::cuda_fewer_launches_for("bias_activation"))
    {
        use crate::layers::bias_activation_cuda;
        let bias = casts.get(bias)?;
        let y = linear_value(x, &casts.get(layer.weight())?, None)?;
        // The checks see the GEMM's output (its width is the bias's, not the input's).
        let mut kernel_keep = None;
        if bias_activation_cuda::usable(&y, &bias) {
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
            match bias_activation_cuda::bias_activation_dropout(&y, &bias, act, seed, p) {
                Ok((pre, out)) => return Ok((pre, out, keep)),
                Err(e) => crate::cuda_fewer_launches_failed("bias_activation", &e),
            }
            kernel_keep = Some(keep);
        }
        // The GEMM is done: finish the layer with the separate steps (the bias in the
        // output's dtype, as `linear` casts it).
        let pre = y.broadcast_add(&super::blocks::in_dtype(&bias, y.dtype())?)?;
        let activated = activation(&pre, act)?;
        let (out, keep) = match kernel_keep {
            Some(keep) => (super::blocks::apply_keep(activated, &keep)?, keep),
            None => dropout(&activated, p, train)?,
        };
        return Ok((pre, out, keep));
    }
    let pre = linear(layer, x, casts)?;
    let (out, keep) = dropout(&activation(&pre, act)?, p, train)?;
    Ok((pre, out, keep))
}

/// Backward of [`linear_activation_dropout`]'s activation and dropout: the gradient of `pre`
/// from that of the output. ReLU with a seeded (or no) mask runs as one CUDA kernel where it
/// applies, else [`dropout_back`] and [`activation_back`].
pub(super) fn activation_dropout_back(
    pre: &Tensor,
    act: Activation,
    grad: Tensor,
    keep: &Keep,
) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        use crate::layers::bias_activation_cuda;
        let dropout = match keep {
            Keep::All => Some((0, 0.0)),
            Keep::Seeded { seed, p } => Some((*seed, *p)),
            Keep::Mask(_) => None,
        };
        if let Some((seed, p)) = dropout.filter(|_| {
            act == Activation::Relu && bias_activation_cuda::backward_usable(&grad, pre)
        }) {
            match bias_activation_cuda::dropout_relu_backward(&grad, pre, seed, p) {
                Ok(d_pre) => return Ok(d_pre),
                Err(e) => crate::cuda_fewer_launches_failed("dropout_relu_backward", &e),
            }
        }
    }
    activation_back(pre, act, &dropout_back(grad, keep)?)
}
