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
    activation_grad, attention_grads, attention_value, fused_layer_norm, keep_mask,
    layer_norm_grads, linear_grads_typed, linear_value, plain_activation, probabilities,
    AttentionSaved, GradWants, Scaling,
};
use crate::layers::{cast, merge_heads, LayerNorm, Linear};

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

/// A residual block's tail: `(sum, LayerNorm(sum), keep)` with `sum = dropout(a) + residual`.
/// One CUDA kernel where it applies (`C2N_CUDA_FEWER_LAUNCHES=1`; the same mask as
/// [`dropout`], from a seed), else dropout, add and [`norm`].
pub(super) fn dropout_add_norm(
    a: &Tensor,
    residual: &Tensor,
    p: f32,
    train: bool,
    layer: &LayerNorm,
) -> candle_core::Result<(Tensor, Tensor, Keep)> {
    #[cfg(feature = "cuda")]
    {
        let (w, b, eps) = layer.parts();
        if crate::layers::add_norm_cuda::usable(a, residual, w, b) {
            let p = if train { p } else { 0.0 };
            let seed = if p > 0.0 {
                crate::layers::next_dropout_seed()
            } else {
                0
            };
            let (sum, y) = crate::layers::add_norm_cuda::dropout_add_layer_norm(
                a,
                residual,
                &w.detach(),
                &b.detach(),
                eps,
                seed,
                p,
            )?;
            let keep = if p > 0.0 {
                Keep::Seeded { seed, p }
            } else {
                Keep::All
            };
            return Ok((sum, y, keep));
        }
    }
    let (dropped, keep) = dropout(a, p, train)?;
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

/// Backward of [`dropout_add_norm`] with input `sum`: the layer norm's weight and bias
/// gradients into `grads`; returns `(d_sum, d_branch)`, the gradient of the residual sum and
/// that of the branch before its dropout. One fused kernel pair where it applies (CUDA,
/// `C2N_CUDA_FEWER_LAUNCHES=1`), else the add, [`norm_back`] and [`dropout_back`].
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
                && crate::cuda_layer_norm_kernels_enabled()
                && crate::cuda_fewer_launches_enabled()
        }) {
            let (w, b, eps) = layer.parts();
            let width = sum.dim(candle_core::D::Minus1)?;
            let rows = sum.elem_count() / width.max(1);
            let shape = sum.shape().clone();
            let (dx, dropped, dw, db) = layer_norm_cuda::layer_norm_grads_fused(
                &sum.reshape((rows, width))?,
                &w.detach(),
                &grad.a.reshape((rows, width))?,
                grad.b.as_ref(),
                dropout,
                eps as f32,
            )?;
            grads.add(w, dw)?;
            grads.add(b, db)?;
            let dx = dx.reshape(&shape)?;
            let branch = match dropped {
                Some(d) => d.reshape(&shape)?,
                None => dx.clone(),
            };
            return Ok((dx, branch));
        }
    }
    let d_sum = norm_back(layer, sum, &grad.into_tensor()?, grads)?;
    let d_branch = dropout_back(d_sum.clone(), keep)?;
    Ok((d_sum, d_branch))
}

/// A feed-forward layer's first half: `(pre, dropout(act(pre)), keep)` with
/// `pre = x·Wᵀ + b`. The bias, activation and dropout as one CUDA kernel after the GEMM where
/// it applies (`C2N_CUDA_FEWER_LAUNCHES=1`), else [`linear`], [`activation`] and [`dropout`].
pub(super) fn linear_activation_dropout(
    layer: &Linear,
    x: &Tensor,
    act: Activation,
    p: f32,
    train: bool,
    casts: &mut WeightCasts,
) -> candle_core::Result<(Tensor, Tensor, Keep)> {
    #[cfg(feature = "cuda")]
    if let Some(bias) = layer.bias() {
        use crate::layers::bias_activation_cuda;
        let bias = casts.get(bias)?;
        let weight = casts.get(layer.weight())?;
        if x.dtype() == bias.dtype() && bias_activation_cuda::usable(x, &bias) {
            let y = linear_value(x, &weight, None)?;
            let p = if train { p } else { 0.0 };
            let seed = if p > 0.0 {
                crate::layers::next_dropout_seed()
            } else {
                0
            };
            let (pre, out) =
                bias_activation_cuda::bias_activation_dropout(&y, &bias, act, seed, p)?;
            let keep = if p > 0.0 {
                Keep::Seeded { seed, p }
            } else {
                Keep::All
            };
            return Ok((pre, out, keep));
        }
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
            return bias_activation_cuda::dropout_relu_backward(&grad, pre, seed, p);
        }
    }
    activation_back(pre, act, &dropout_back(grad, keep)?)
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

/// The attention core over unsplit `q [b, Lq, h·d]`, `k`/`v [b, Lk, h·d]`, with what its
/// backward needs: `q`, `k`, `v` split into heads once, in the forward pass.
pub(super) struct Attention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Softmax output, f32 `[b, h, Lq, Lk]`.
    probs: Tensor,
    keep: Keep,
    scaling: Scaling,
    /// The power-of-two scale the probability kernels applied to the scores instead of `q`
    /// being scaled (`C2N_CUDA_FEWER_LAUNCHES=1`); the backward pass then scales `dS` likewise.
    #[cfg(feature = "cuda")]
    folded_scale: Option<f32>,
}

/// How an attention block scales and drops out.
#[derive(Clone, Copy)]
pub(super) struct AttentionSpec {
    pub(super) scaling: Scaling,
    pub(super) dropout_p: f32,
    pub(super) train: bool,
}

impl Attention {
    /// `dropout(softmax(scaled q·kᵀ + mask)) · v`, heads merged (`[b, Lq, h·d]`), from `q`,
    /// `k`, `v` split into heads (`[b, h, L, d]`, e.g. by [`projection_heads`]).
    pub(super) fn forward_heads(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Option<&Tensor>,
        spec: AttentionSpec,
    ) -> candle_core::Result<(Tensor, Self)> {
        #[cfg(feature = "cuda")]
        if let Some(done) = Self::forward_kernels(&q, &k, &v, mask, spec)? {
            return Ok(done);
        }
        let probs = probabilities(&q, &k, None, mask, spec.scaling)?;
        let keep = if spec.train && spec.dropout_p > 0.0 {
            Some(keep_mask(&probs, spec.dropout_p)?)
        } else {
            None
        };
        let value = merge_parts(&[&attention_value(&v, None, &probs, keep.as_ref())?])?;
        let saved = Self {
            q,
            k,
            v,
            probs,
            keep: keep.map_or(Keep::All, Keep::Mask),
            scaling: spec.scaling,
            #[cfg(feature = "cuda")]
            folded_scale: None,
        };
        Ok((value, saved))
    }

    /// [`forward_heads`](Self::forward_heads) with the CUDA kernels: the probabilities in one pass, the
    /// dropout (counter-based, no stored mask) and the cast to `v`'s dtype in another. `None`
    /// where they do not apply (CPU, switched off, a seeded-dropout scope, a divisor applied
    /// to the scores, a mask of another shape).
    #[cfg(feature = "cuda")]
    fn forward_kernels(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        spec: AttentionSpec,
    ) -> candle_core::Result<Option<(Tensor, Self)>> {
        use crate::layers::{attention_probs_cuda, dropout_cuda};
        if !dropout_cuda::usable(q) || v.dtype() != q.dtype() || spec.scaling.scales_scores() {
            return Ok(None);
        }
        let folded_scale = crate::cuda_fewer_launches_enabled()
            .then(|| spec.scaling.power_of_two_factor())
            .flatten();
        let scores = match folded_scale {
            Some(_) => q.matmul(&k.t()?)?,
            None => spec.scaling.on_q(q)?.matmul(&k.t()?)?,
        };
        let c = folded_scale.unwrap_or(1.0);
        let Some(probs) = attention_probs_cuda::probabilities_scaled(&scores, mask, c)? else {
            return Ok(None);
        };
        drop(scores);
        let p = if spec.train { spec.dropout_p } else { 0.0 };
        let seed = if p > 0.0 {
            crate::layers::next_dropout_seed()
        } else {
            0
        };
        let dropped = dropout_cuda::dropout(&probs, seed, p, v.dtype())?;
        let value = merge_parts(&[&dropped.matmul(v)?])?;
        let saved = Self {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            probs,
            keep: Keep::Seeded { seed, p },
            scaling: spec.scaling,
            folded_scale,
        };
        Ok(Some((value, saved)))
    }

    /// `(dq, dk, dv)`, each `[b, h, L, d]`, for the upstream gradient `[b, Lq, h·d]` of the
    /// value.
    pub(super) fn backward(&self, grad: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let heads = self.q.dim(1)?;
        let [grad] = split_parts::<1>(grad, None, heads)?;
        let keep = match &self.keep {
            Keep::All => None,
            Keep::Mask(mask) => Some(mask),
            #[cfg(feature = "cuda")]
            Keep::Seeded { seed, p } => return self.backward_kernels(&grad, *seed, *p),
        };
        let saved = AttentionSaved {
            probs: &self.probs,
            keep,
            scaling: self.scaling,
            heads: None,
        };
        let (dq, dk, dv) =
            attention_grads(&self.q, &self.k, &self.v, saved, &grad, [true, true, true])?;
        let missing =
            || candle_core::Error::Msg("explicit backward: missing attention grad".into());
        Ok((
            dq.ok_or_else(missing)?,
            dk.ok_or_else(missing)?,
            dv.ok_or_else(missing)?,
        ))
    }

    /// [`backward`](Self::backward) for a forward pass that ran the kernels: the dropped
    /// probabilities regenerated from the seed, the softmax-and-dropout gradient in one pass.
    #[cfg(feature = "cuda")]
    fn backward_kernels(
        &self,
        grad: &Tensor,
        seed: u64,
        p: f32,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        use crate::layers::{attention_probs_cuda, dropout_cuda};
        let grad = cast(grad, self.v.dtype())?;
        let dropped = dropout_cuda::dropout(&self.probs, seed, p, self.v.dtype())?;
        let dv = dropped.t()?.matmul(&grad)?;
        drop(dropped);
        let d_dropped = grad.matmul(&self.v.t()?)?;
        let c = self.folded_scale.unwrap_or(1.0);
        let d_scores = attention_probs_cuda::probabilities_backward_scaled(
            &d_dropped,
            &self.probs,
            seed,
            p,
            c,
        )?;
        let d_scores = cast(&d_scores, self.q.dtype())?;
        if self.folded_scale.is_some() {
            // dS already carries the scale: dq = (c·dS)·k, dk = (c·dS)ᵀ·q.
            let dq = d_scores.matmul(&self.k)?;
            let dk = d_scores.t()?.matmul(&self.q)?;
            return Ok((dq, dk, dv));
        }
        let dq = self.scaling.on_q(&d_scores.matmul(&self.k)?)?;
        let dk = d_scores.t()?.matmul(&self.scaling.on_q(&self.q)?)?;
        Ok((dq, dk, dv))
    }
}

/// `N` projections packed side by side in `x [b, L, N·h·d]` (plus `bias [N·h·d]`, if any),
/// each split into heads `[b, h, L, d]`: one copy into `[N, b, h, L, d]`, then contiguous
/// views (instead of one copy per projection). With `C2N_CUDA_FEWER_LAUNCHES=1` on CUDA one
/// kernel also adds the bias.
pub(super) fn split_parts<const N: usize>(
    x: &Tensor,
    bias: Option<&Tensor>,
    heads: usize,
) -> candle_core::Result<[Tensor; N]> {
    let (b, l, width) = x.dims3()?;
    let d = width / (N * heads);
    if N * heads * d != width {
        return Err(candle_core::Error::Msg(format!(
            "packed projection of width {width} is not {N} × {heads} heads"
        )));
    }
    #[cfg(feature = "cuda")]
    if crate::layers::heads_cuda::usable(x) && bias.is_none_or(|b| b.dtype() == x.dtype()) {
        let parts = crate::layers::heads_cuda::split_heads(x, bias, N, heads)?;
        return parts
            .try_into()
            .map_err(|_| candle_core::Error::Msg("packed projection: wrong part count".into()));
    }
    let x = match bias {
        Some(bias) => x.broadcast_add(bias)?,
        None => x.clone(),
    };
    let split = x
        .reshape((b, l, N, heads, d))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()?;
    let mut parts = Vec::with_capacity(N);
    for i in 0..N {
        parts.push(split.get(i)?);
    }
    parts
        .try_into()
        .map_err(|_| candle_core::Error::Msg("packed projection: wrong part count".into()))
}

/// `x·Wᵀ + b` of a packed weight `[N·h·d, in]` (in the compute dtype) split into `N` parts of
/// heads `[b, h, L, d]`: the GEMM, then the bias added while splitting.
pub(super) fn projection_heads<const N: usize>(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    heads: usize,
) -> candle_core::Result<[Tensor; N]> {
    #[cfg(feature = "cuda")]
    if crate::layers::heads_cuda::usable(x) && bias.is_none_or(|b| b.dtype() == x.dtype()) {
        return split_parts::<N>(&linear_value(x, weight, None)?, bias, heads);
    }
    split_parts::<N>(&linear_value(x, weight, bias)?, None, heads)
}

/// Per-head gradients `[b, h, L, d]` laid side by side as `[b, L, n·h·d]` (one copy), the
/// layout of a packed projection's output; one part is plain head merging. One kernel with
/// `C2N_CUDA_FEWER_LAUNCHES=1` on CUDA.
pub(super) fn merge_parts(parts: &[&Tensor]) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if parts.len() <= 3 && crate::layers::heads_cuda::usable(parts[0]) {
        return crate::layers::heads_cuda::merge_heads(parts);
    }
    if let [one] = parts {
        return merge_heads(one);
    }
    let (b, h, l, d) = parts[0].dims4()?;
    Tensor::stack(parts, 2)?
        .permute((0, 3, 2, 1, 4))?
        .contiguous()?
        .reshape((b, l, parts.len() * h * d))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::split_heads;
    use candle_core::Device;

    #[test]
    fn packed_heads_equal_the_heads_of_each_part() {
        let (b, l, heads, d) = (2, 5, 3, 4);
        let x = Tensor::arange(0f32, (b * l * 3 * heads * d) as f32, &Device::Cpu)
            .unwrap()
            .reshape((b, l, 3 * heads * d))
            .unwrap();
        let parts = split_parts::<3>(&x, None, heads).unwrap();
        for (i, part) in parts.iter().enumerate() {
            let want = split_heads(&x.narrow(2, i * heads * d, heads * d).unwrap(), heads).unwrap();
            assert!(part.is_contiguous());
            assert_eq!(part.dims(), want.dims());
            let (got, want) = (part.flatten_all().unwrap(), want.flatten_all().unwrap());
            assert_eq!(
                got.to_vec1::<f32>().unwrap(),
                want.to_vec1::<f32>().unwrap(),
                "part {i}"
            );
        }
        let merged = merge_parts(&[&parts[0], &parts[1], &parts[2]]).unwrap();
        assert_eq!(
            merged.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "merge_parts undoes the split"
        );
        assert!(
            split_parts::<2>(&x, None, 5).is_err(),
            "width 36 is not 2 × 5 heads × d"
        );
    }
}
