//! The attention core `dropout(softmax(q·kᵀ / s + mask)) · v` as one closed-form op (see
//! [`super::closed_form`]).
//!
//! The op keeps the f32 probabilities and the dropout mask; the scores, the masked scores and
//! the dropped probabilities are freed in the forward pass, and the additive mask gets no
//! gradient. Backward, with `P` the probabilities, `M` the scaled dropout mask and `D = P ⊙ M`:
//! `dv = Dᵀ·g`, `dP = (g·vᵀ) ⊙ M`, `dS = P ⊙ (dP − Σ dP ⊙ P) / s`, `dq = dS·k`, `dk = dSᵀ·q`.

use candle_core::{CustomOp3, DType, Tensor, D};

use super::cast;
use super::closed_form::{forward_from_value, wants_grad, Precomputed};
use super::dropout::keep_mask;
use super::{merge_heads, softmax_last_dim, split_heads};

struct AttentionOp {
    value: Precomputed,
    /// Softmax output, f32 `[b, h, Lq, Lk]`.
    probs: Tensor,
    /// Inverted-dropout mask (0 or 1/(1−p)), f32, when dropout was active.
    keep: Option<Tensor>,
    scaling: Scaling,
    /// `Some(h)`: inputs and output are `[b, L, h·d]` and the heads are split inside.
    heads: Option<usize>,
}

/// How the scores are scaled: `q` is multiplied and/or divided before the product (exact for
/// a power-of-two divisor), or the product is divided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scaling {
    query_scale: Option<f64>,
    divisor_on_q: Option<f64>,
    divisor_on_scores: Option<f64>,
}

impl Scaling {
    pub(crate) fn new(query_scale: Option<f64>, score_divisor: Option<f64>) -> Self {
        let on_q = exact_on_q(score_divisor);
        Self {
            query_scale,
            divisor_on_q: score_divisor.filter(|_| on_q),
            divisor_on_scores: score_divisor.filter(|_| !on_q),
        }
    }

    /// `q · scale / divisor` (the parts that apply to `q`); also maps `dS·k` to `dq`.
    pub(crate) fn on_q(&self, q: &Tensor) -> candle_core::Result<Tensor> {
        let mut q = q.clone();
        if let Some(s) = self.query_scale {
            q = (q * s)?;
        }
        if let Some(d) = self.divisor_on_q {
            q = (q / d)?;
        }
        Ok(q)
    }

    /// The whole scaling as one power-of-two factor on the scores, where it is one (then
    /// scaling `q·kᵀ` by it equals scaling `q`, exactly): `None` otherwise.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn power_of_two_factor(&self) -> Option<f32> {
        if self.divisor_on_scores.is_some() {
            return None;
        }
        let factor = self.query_scale.unwrap_or(1.0) / self.divisor_on_q.unwrap_or(1.0);
        (factor > 0.0 && factor.log2().fract() == 0.0 && f64::from(factor as f32) == factor)
            .then_some(factor as f32)
    }

    /// Whether a divisor applies to `q·kᵀ` itself (not a power of two).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn scales_scores(&self) -> bool {
        self.divisor_on_scores.is_some()
    }

    pub(super) fn on_scores(&self, scores: Tensor) -> candle_core::Result<Tensor> {
        match self.divisor_on_scores {
            Some(d) => scores / d,
            None => Ok(scores),
        }
    }
}

/// Dividing by a power of two is exact, so it may be applied to `q` instead of `q·kᵀ`.
fn exact_on_q(score_divisor: Option<f64>) -> bool {
    score_divisor.is_some_and(|d| d > 0.0 && d.log2().fract() == 0.0)
}

/// `[b, L, h·d]` → `[b, h, L, d]` when `heads` is given.
fn to_heads(x: &Tensor, heads: Option<usize>) -> candle_core::Result<Tensor> {
    match heads {
        Some(h) => split_heads(x, h),
        None => Ok(x.clone()),
    }
}

fn from_heads(x: Tensor, heads: Option<usize>) -> candle_core::Result<Tensor> {
    match heads {
        Some(_) => merge_heads(&x),
        None => Ok(x),
    }
}

/// The attention core as one op. `q`, `k`, `v` are `[b, h, L, d]`, or `[b, L, h·d]` with
/// `heads = Some(h)` (then the result is `[b, Lq, h·d]` too); `mask` is an additive f32 term
/// broadcastable to the `[b, h, Lq, Lk]` scores.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend_closed_form(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Option<usize>,
    mask: Option<&Tensor>,
    scaling: Scaling,
    dropout_p: f32,
    train: bool,
) -> candle_core::Result<Tensor> {
    let probs = probabilities(q, k, heads, mask, scaling)?;
    let keep = if train && dropout_p > 0.0 {
        Some(keep_mask(&probs, dropout_p)?)
    } else {
        None
    };
    attend_with_keep(q, k, v, heads, probs, keep, scaling)
}

/// `softmax(scaled q·kᵀ + mask)` in f32, without a graph.
pub(crate) fn probabilities(
    q: &Tensor,
    k: &Tensor,
    heads: Option<usize>,
    mask: Option<&Tensor>,
    scaling: Scaling,
) -> candle_core::Result<Tensor> {
    let q = scaling.on_q(&to_heads(&q.detach(), heads)?)?;
    let k = to_heads(&k.detach(), heads)?;
    let mut scores = scaling.on_scores(cast(&q.matmul(&k.t()?)?, DType::F32)?)?;
    if let Some(m) = mask {
        scores = scores.broadcast_add(&m.detach())?;
    }
    softmax_last_dim(&scores)
}

/// The op from the probabilities and the dropout mask (tests pass their own mask).
pub(super) fn attend_with_keep(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: Option<usize>,
    probs: Tensor,
    keep: Option<Tensor>,
    scaling: Scaling,
) -> candle_core::Result<Tensor> {
    let value = attention_value(v, heads, &probs, keep.as_ref())?;
    let op = AttentionOp {
        value: Precomputed::new(value),
        probs,
        keep,
        scaling,
        heads,
    };
    q.apply_op3(k, v, op)
}

/// `dropout(P) · v` with heads merged when `heads` is given: the op's value, from detached
/// tensors.
pub(crate) fn attention_value(
    v: &Tensor,
    heads: Option<usize>,
    probs: &Tensor,
    keep: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let dropped = match keep {
        Some(keep) => (probs * keep)?,
        None => probs.clone(),
    };
    let vh = to_heads(&v.detach(), heads)?;
    from_heads(cast(&dropped, v.dtype())?.matmul(&vh)?, heads)
}

/// What the attention backward pass needs besides `q`, `k`, `v`.
#[derive(Clone, Copy)]
pub(crate) struct AttentionSaved<'a> {
    /// Softmax output, f32 `[b, h, Lq, Lk]`.
    pub(crate) probs: &'a Tensor,
    /// Inverted-dropout mask, when dropout was active.
    pub(crate) keep: Option<&'a Tensor>,
    pub(crate) scaling: Scaling,
    pub(crate) heads: Option<usize>,
}

/// Gradients of the attention core for upstream `grad` (layout of the output): `(dq, dk, dv)`,
/// each only when `wants` says so (in that order).
pub(crate) fn attention_grads(
    q_arg: &Tensor,
    k_arg: &Tensor,
    v_arg: &Tensor,
    saved: AttentionSaved<'_>,
    grad: &Tensor,
    wants: [bool; 3],
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let heads = saved.heads;
    let q = to_heads(&q_arg.detach(), heads)?;
    let k = to_heads(&k_arg.detach(), heads)?;
    let v = to_heads(&v_arg.detach(), heads)?;
    let grad = to_heads(grad, heads)?;
    let dv = if wants[2] {
        let dropped = match saved.keep {
            Some(keep) => (saved.probs * keep)?,
            None => saved.probs.clone(),
        };
        let dv = cast(&dropped, v.dtype())?.t()?.matmul(&grad)?;
        Some(from_heads(dv, heads)?)
    } else {
        None
    };
    let mut d_probs = cast(&grad.matmul(&v.t()?)?, DType::F32)?;
    if let Some(keep) = saved.keep {
        d_probs = (d_probs * keep)?;
    }
    let dot = (&d_probs * saved.probs)?.sum_keepdim(D::Minus1)?;
    let d_scores = saved
        .scaling
        .on_scores((d_probs.broadcast_sub(&dot)? * saved.probs)?)?;
    let d_scores = cast(&d_scores, q.dtype())?;
    let dq = if wants[0] {
        Some(from_heads(
            saved.scaling.on_q(&d_scores.matmul(&k)?)?,
            heads,
        )?)
    } else {
        None
    };
    let dk = if wants[1] {
        let scaled_q = saved.scaling.on_q(&q)?;
        Some(from_heads(d_scores.t()?.matmul(&scaled_q)?, heads)?)
    } else {
        None
    };
    Ok((dq, dk, dv))
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "c2n-attention"
    }

    forward_from_value!(3);

    fn bwd(
        &self,
        q_arg: &Tensor,
        k_arg: &Tensor,
        v_arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let wants = [wants_grad(q_arg), wants_grad(k_arg), wants_grad(v_arg)];
        let saved = AttentionSaved {
            probs: &self.probs,
            keep: self.keep.as_ref(),
            scaling: self.scaling,
            heads: self.heads,
        };
        attention_grads(q_arg, k_arg, v_arg, saved, grad, wants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn only_power_of_two_scalings_fold_into_the_scores() {
        let factor = |q: Option<f64>, d: Option<f64>| Scaling::new(q, d).power_of_two_factor();
        assert_eq!(factor(None, Some(8.0)), Some(0.125), "the encoder's √64");
        assert_eq!(
            factor(Some(0.125), None),
            Some(0.125),
            "the decoder's 64^-½"
        );
        assert_eq!(factor(None, None), Some(1.0));
        assert_eq!(factor(Some(0.1), None), None);
        assert_eq!(
            factor(None, Some(3.0)),
            None,
            "a divisor applied to the scores"
        );
        assert_eq!(factor(Some(1.0 / 3.0_f64.sqrt()), None), None);
    }

    /// The closed-form op against the same function from primitive ops (same dropout mask).
    #[test]
    fn closed_form_attention_matches_the_primitive_graph_with_dropout() {
        let dev = Device::Cpu;
        let var = |shape: (usize, usize, usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap()
        };
        let (q, k, v) = (var((2, 3, 5, 8)), var((2, 3, 7, 8)), var((2, 3, 7, 8)));
        let mut mask = vec![0f32; 2 * 7];
        mask[6] = -10000.0;
        mask[12] = -10000.0;
        let mask = Tensor::from_vec(mask, (2, 1, 1, 7), &dev).unwrap();
        let upstream = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap();
        for divisor in [Some(8.0), Some(3.0), None] {
            let scaling = Scaling::new(None, divisor);
            let probs =
                probabilities(q.as_tensor(), k.as_tensor(), None, Some(&mask), scaling).unwrap();
            let keep = keep_mask(&probs, 0.3).unwrap();
            let got = attend_with_keep(
                q.as_tensor(),
                k.as_tensor(),
                v.as_tensor(),
                None,
                probs,
                Some(keep.clone()),
                scaling,
            )
            .unwrap();
            let mut scores = q.as_tensor().matmul(&k.as_tensor().t().unwrap()).unwrap();
            if let Some(d) = divisor {
                scores = (scores / d).unwrap();
            }
            let scores = scores.broadcast_add(&mask).unwrap();
            let want = (candle_nn::ops::softmax(&scores, D::Minus1).unwrap() * &keep)
                .unwrap()
                .matmul(v.as_tensor())
                .unwrap();
            assert!(max_abs(&got, &want) < 1e-5, "value, divisor {divisor:?}");
            let grads = |y: &Tensor| {
                let g = (y * &upstream)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                [&q, &k, &v].map(|x| g.get(x.as_tensor()).unwrap().clone())
            };
            for (name, (a, b)) in ["q", "k", "v"]
                .iter()
                .zip(grads(&got).iter().zip(grads(&want).iter()))
            {
                let diff = max_abs(a, b);
                assert!(
                    diff < 1e-5,
                    "d{name} differs by {diff}, divisor {divisor:?}"
                );
            }
        }
    }

    #[test]
    fn closed_form_dropout_passes_the_gradient_through_its_mask() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 64), &dev).unwrap()).unwrap();
        let keep = keep_mask(x.as_tensor(), 0.25).unwrap();
        let dropped = (keep.eq(0.0).unwrap().to_dtype(DType::F32).unwrap())
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(dropped > 0.0 && dropped < 256.0, "{dropped} of 256 dropped");
        let y = super::super::apply_keep_mask(x.as_tensor(), &keep).unwrap();
        assert!(max_abs(&y, &(x.as_tensor() * &keep).unwrap()) == 0.0);
        let upstream = Tensor::randn(0f32, 1.0, (4, 64), &dev).unwrap();
        let grads = (&y * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dx = grads.get(x.as_tensor()).unwrap();
        assert!(max_abs(dx, &(&upstream * &keep).unwrap()) == 0.0);
    }
}
