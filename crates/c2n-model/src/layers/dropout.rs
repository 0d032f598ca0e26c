//! Inverted dropout, active only in training mode, as a closed-form op.
//!
//! `candle_nn::ops::dropout` multiplies by a mask tensor, and Candle's backward pass then also
//! computes (and keeps) a gradient for that constant mask. Here the mask lives inside the op
//! and the backward pass is `g ⊙ mask`.

use candle_core::{CustomOp1, DType, Tensor};

use super::closed_form::{forward_from_value, records, Precomputed};
use super::dropout_rng::{dropout_mask_from_seed, next_dropout_seed};
use super::dropout_seed::{seed_stream_active, seeded_uniform};

struct DropoutOp {
    value: Precomputed,
    keep: Tensor,
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "c2n-dropout"
    }

    forward_from_value!(1);

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some((grad * &self.keep)?))
    }
}

/// A mask of `0` (probability `p`) and `1/(1−p)` with the shape and dtype of `like`.
pub(crate) fn keep_mask(like: &Tensor, p: f32) -> candle_core::Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return Err(candle_core::Error::Msg(format!(
            "dropout probability {p} is not in [0, 1)"
        )));
    }
    let uniform = match seeded_uniform(like.shape(), like.device()) {
        Some(seeded) => seeded?,
        // The mask the CUDA kernels compute for this site's seed. On the CPU only: on a GPU
        // the kernels compute it where they apply, and a host-made mask for a tensor they
        // leave alone (kernels switched off) would cost far more than the step; those masks
        // come from Candle's device generator, unseeded, as before.
        None if seed_stream_active() && like.device().is_cpu() => {
            let seed = next_dropout_seed();
            return dropout_mask_from_seed(like.shape(), seed, p, like.device())?
                .to_dtype(like.dtype());
        }
        None => Tensor::rand(0f32, 1f32, like.shape(), like.device())?,
    };
    let scale = 1.0 / (1.0 - f64::from(p));
    (uniform.ge(f64::from(p))?.to_dtype(DType::F32)? * scale)?.to_dtype(like.dtype())
}

/// `x ⊙ keep` whose backward pass is `g ⊙ keep` (no gradient for the mask).
pub fn apply_keep_mask(x: &Tensor, keep: &Tensor) -> candle_core::Result<Tensor> {
    if !records(&[x]) {
        return x * keep;
    }
    let value = (x.detach() * keep)?;
    x.apply_op1(DropoutOp {
        value: Precomputed::new(value),
        keep: keep.clone(),
    })
}

/// Inverted dropout with probability `p` when `train`, identity otherwise.
pub fn dropout(x: &Tensor, p: f32, train: bool) -> candle_core::Result<Tensor> {
    if train && p > 0.0 {
        apply_keep_mask(x, &keep_mask(x, p)?)
    } else {
        Ok(x.clone())
    }
}
