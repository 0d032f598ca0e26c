//! The attention core of the explicit pass (forward with what its backward needs, and the
//! backward), and attention heads in and out of the packed projection layout.

use candle_core::Tensor;

use super::blocks::Keep;
#[cfg(feature = "cuda")]
use crate::layers::cast;
use crate::layers::closed_form_math::{
    attention_grads, attention_value, keep_mask, linear_value, probabilities, AttentionSaved,
    Scaling,
};
use crate::layers::merge_heads;

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
    /// being scaled (the fewer-launch kernels, on by default); the backward pass then scales `dS` likewise.
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
        let folded_scale = crate::cuda_fewer_launches_for("attention_scale")
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
/// views (instead of one copy per projection). On CUDA one kernel also adds the bias (unless
/// `C2N_CUDA_FEWER_LAUNCHES=0`).
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
        match crate::layers::heads_cuda::split_heads(x, bias, N, heads) {
            Ok(parts) => {
                return parts.try_into().map_err(|_| {
                    candle_core::Error::Msg("packed projection: wrong part count".into())
                })
            }
            Err(e) => crate::cuda_fewer_launches_failed("heads", &e),
        }
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
/// layout of a packed projection's output; one part is plain head merging. One kernel on CUDA
/// (unless `C2N_CUDA_FEWER_LAUNCHES=0`).
pub(super) fn merge_parts(parts: &[&Tensor]) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if parts.len() <= 3 && crate::layers::heads_cuda::usable(parts[0]) {
        match crate::layers::heads_cuda::merge_heads(parts) {
            Ok(merged) => return Ok(merged),
            Err(e) => crate::cuda_fewer_launches_failed("heads", &e),
        }
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
