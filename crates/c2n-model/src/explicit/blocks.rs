//! The building blocks' forward values and backward passes, from detached tensors.
//!
//! Each forward function returns the value and what its backward needs; each backward
//! function takes the upstream gradient, adds the parameters' gradients to a [`ParamGrads`]
//! and returns the input's gradient. The math is the closed-form ops' (`layers`), so the two
//! training paths compute the same gradients.

use candle_core::{DType, Tensor};

use super::casts::WeightCasts;
use super::param_grads::ParamGrads;
use crate::config::Activation;
use crate::layers::closed_form_math::{
    activation_grad, fused_layer_norm, keep_mask, layer_norm_grads, linear_grads_typed,
    linear_value, plain_activation, GradWants,
};
use crate::layers::{cast, LayerNorm, Linear};

/// `x·Wᵀ + b`, the weight and bias from `casts`.
pub(super) fn linear(
    layer: &Linear,
    x: &Tensor,
    casts: &mut WeightCasts,
) -> candle_core::Result<Tensor> {
    let bias = layer.bias().map(|b| casts.get(b)).transpose()?;
    linear_value(x, &casts.get(layer.weight())?, bias.as_ref())
}

/// Backward of [`linear`] with input `x`: the parameters' gradients into `grads`, `dx`
/// returned when `want_input`.
pub(super) fn linear_back(
    layer: &Linear,
    x: &Tensor,
    grad: &Tensor,
    want_input: bool,
    casts: &mut WeightCasts,
    grads: &mut ParamGrads,
) -> candle_core::Result<Option<Tensor>> {
    let wants = GradWants {
        input: want_input,
        weight: true,
        bias: layer.bias().is_some(),
    };
    let weight = layer.weight();
    let cast = casts.get(weight)?;
    let dtypes = [cast.dtype(), weight.dtype()];
    let (dx, dw, db) = linear_grads_typed(x, &cast, grad, wants, dtypes)?;
    let dw = dw.ok_or_else(|| missing_grad("linear weight"))?;
    grads.add_only(weight, dw)?;
    if let Some(bias) = layer.bias() {
        add_some(grads, bias, db)?;
    }
    Ok(dx)
}

fn missing_grad(what: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("explicit backward: missing {what} gradient"))
}

/// The rows `[start, start + len)` of a packed weight and its bias, in the compute dtype
/// (views of the cast copies).
pub(super) fn packed_rows(
    weight: &Tensor,
    bias: &Tensor,
    rows: (usize, usize),
    casts: &mut WeightCasts,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (start, len) = rows;
    Ok((
        casts.get(weight)?.narrow(0, start, len)?,
        casts.get(bias)?.narrow(0, start, len)?,
    ))
}

/// Backward of a projection by [`packed_rows`]: `(dx, dW rows, db rows)`, `dW` in the compute dtype (for
/// [`ParamGrads::add_only`]), `db` in the parameter's.
pub(super) fn packed_linear_back(
    weight: &Tensor,
    rows: (usize, usize),
    x: &Tensor,
    grad: &Tensor,
    casts: &mut WeightCasts,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let wants = GradWants {
        input: true,
        weight: true,
        bias: true,
    };
    let part = casts.get(weight)?.narrow(0, rows.0, rows.1)?;
    let dtypes = [part.dtype(), weight.dtype()];
    let (dx, dw, db) = linear_grads_typed(x, &part, grad, wants, dtypes)?;
    let missing = || candle_core::Error::Msg("explicit backward: missing packed gradient".into());
    Ok((
        dx.ok_or_else(missing)?,
        dw.ok_or_else(missing)?,
        db.ok_or_else(missing)?,
    ))
}

/// Backward of a projection by the stacked weights of `layers` ([`WeightCasts::grouped`]) with
/// input `x` and the gradient of its packed output: each
/// layer's weight and bias gradients (row blocks of one GEMM and one column sum) into
/// `grads`, `dx` returned.
pub(super) fn grouped_linear_back(
    layers: &[&Linear],
    x: &Tensor,
    grad: &Tensor,
    casts: &mut WeightCasts,
    grads: &mut ParamGrads,
) -> candle_core::Result<Tensor> {
    let has_bias = layers.iter().all(|l| l.bias().is_some());
    let wants = GradWants {
        input: true,
        weight: true,
        bias: has_bias,
    };
    let (weight, _) = casts.grouped(layers)?;
    let dtypes = [weight.dtype(), layers[0].weight().dtype()];
    let (dx, dw, db) = linear_grads_typed(x, &weight, grad, wants, dtypes)?;
    let dw = dw.ok_or_else(|| missing_grad("grouped weight"))?;
    let mut start = 0;
    for layer in layers {
        let rows = layer.weight().dim(0)?;
        grads.add_only(layer.weight(), dw.narrow(0, start, rows)?)?;
        if let (Some(bias), Some(db)) = (layer.bias(), db.as_ref()) {
            grads.add(bias, db.narrow(0, start, rows)?)?;
        }
        start += rows;
    }
    dx.ok_or_else(|| missing_grad("grouped input"))
}

/// The layer norm's value (f32 statistics, result in the dtype of `x`).
pub(super) fn norm(layer: &LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
    let (w, b, eps) = layer.parts();
    fused_layer_norm(x, &w.detach(), &b.detach(), eps)
}

/// Backward of [`norm`] with input `x`: weight and bias gradients into `grads`, `dx` returned.
pub(super) fn norm_back(
    layer: &LayerNorm,
    x: &Tensor,
    grad: &Tensor,
    grads: &mut ParamGrads,
) -> candle_core::Result<Tensor> {
    let (w, b, eps) = layer.parts();
    let wants = GradWants {
        input: true,
        weight: true,
        bias: true,
    };
    let (dx, dw, db) = layer_norm_grads(x, w, grad, eps as f32, wants)?;
    add_some(grads, w, dw)?;
    add_some(grads, b, db)?;
    dx.ok_or_else(|| candle_core::Error::Msg("explicit backward: missing norm input grad".into()))
}

/// What a dropout site keeps for its backward pass.
pub(super) enum Keep {
    /// Dropout was off: the gradient passes unchanged.
    All,
    /// The mask (0 or `1/(1−p)`) the forward pass multiplied by.
    Mask(Tensor),
    /// The seed of the counter-based CUDA kernel: the backward pass regenerates the mask.
    #[cfg(feature = "cuda")]
    Seeded { seed: u64, p: f32 },
}

/// Inverted dropout: `(x ⊙ keep, what the backward needs)`; `(x, Keep::All)` when off.
pub(super) fn dropout(x: &Tensor, p: f32, train: bool) -> candle_core::Result<(Tensor, Keep)> {
    if !(train && p > 0.0) {
        return Ok((x.clone(), Keep::All));
    }
    #[cfg(feature = "cuda")]
    if crate::layers::dropout_cuda::usable(x) {
        let seed = crate::layers::next_dropout_seed();
        let dropped = crate::layers::dropout_cuda::dropout(x, seed, p, x.dtype())?;
        return Ok((dropped, Keep::Seeded { seed, p }));
    }
    let keep = keep_mask(x, p)?;
    Ok(((x * &keep)?, Keep::Mask(keep)))
}

/// `x` through a site's mask decided beforehand: a fused kernel that failed after drawing
/// its seed hands it on, so the sites after it keep theirs (and a resumed run its masks).
/// The same product as [`dropout_back`].
#[cfg(feature = "cuda")]
pub(super) fn apply_keep(x: Tensor, keep: &Keep) -> candle_core::Result<Tensor> {
    dropout_back(x, keep)
}

/// Backward of [`dropout`]: `grad` (same shape as the input) times the same mask.
pub(super) fn dropout_back(grad: Tensor, keep: &Keep) -> candle_core::Result<Tensor> {
    match keep {
        Keep::All => Ok(grad),
        Keep::Mask(keep) => grad * keep,
        #[cfg(feature = "cuda")]
        Keep::Seeded { seed, p } => {
            crate::layers::dropout_cuda::dropout(&grad, *seed, *p, grad.dtype())
        }
    }
}

/// `act(x)`.
pub(super) fn activation(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    plain_activation(x, act)
}

/// Backward of [`activation`] with input `x`.
pub(super) fn activation_back(
    x: &Tensor,
    act: Activation,
    grad: &Tensor,
) -> candle_core::Result<Tensor> {
    activation_grad(x, act, grad)
}

/// `t` in `dtype` (no copy when it already is).
pub(super) fn in_dtype(t: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    cast(t, dtype)
}

fn add_some(
    grads: &mut ParamGrads,
    param: &Tensor,
    grad: Option<Tensor>,
) -> candle_core::Result<()> {
    match grad {
        Some(g) => grads.add(param, g),
        None => Err(candle_core::Error::Msg(
            "explicit backward: a parameter gradient was not computed".into(),
        )),
    }
}
