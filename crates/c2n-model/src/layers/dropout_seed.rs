//! Reproducible dropout masks: a thread-scoped seed for the masks' uniform draws.
//!
//! Candle's CPU `rand` draws from an unseeded thread RNG, so two training runs on the CPU
//! never drop the same units. While a [`seeded_dropout`] guard lives, every dropout mask made
//! on this thread draws its uniforms from one `StdRng` seeded once, on the host, in the order
//! the masks are made: the same seed and the same sequence of masks give the same masks, on
//! any device. Tests use it to compare two formulations of a training step with dropout on.

use std::cell::RefCell;

use candle_core::{Device, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static MASK_RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// While the returned guard lives, dropout masks on this thread are drawn from a host RNG
/// seeded with `seed` (nesting: the innermost guard wins; dropping it restores the outer one).
#[must_use = "masks are seeded only while the guard lives"]
pub fn seeded_dropout(seed: u64) -> SeededDropoutGuard {
    let previous = MASK_RNG.with(|r| r.replace(Some(StdRng::seed_from_u64(seed))));
    SeededDropoutGuard {
        previous,
        _not_send: std::marker::PhantomData,
    }
}

/// Restores the previous mask source when dropped.
pub struct SeededDropoutGuard {
    previous: Option<StdRng>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for SeededDropoutGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        MASK_RNG.with(|r| *r.borrow_mut() = previous);
    }
}

/// Whether a [`seeded_dropout`] guard lives on this thread (then masks come from its RNG, and
/// the counter-based CUDA dropout kernels stand aside).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn seeded_dropout_active() -> bool {
    MASK_RNG.with(|r| r.borrow().is_some())
}

/// Uniform `[0, 1)` f32 draws of `shape` from the seeded RNG, or `None` when no guard lives.
pub(crate) fn seeded_uniform(
    shape: &Shape,
    device: &Device,
) -> Option<candle_core::Result<Tensor>> {
    MASK_RNG.with(|r| {
        let mut rng = r.borrow_mut();
        let rng = rng.as_mut()?;
        let values: Vec<f32> = (0..shape.elem_count())
            .map(|_| rng.random::<f32>())
            .collect();
        Some(Tensor::from_vec(values, shape.clone(), device))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::dropout;

    fn mask_of(x: &Tensor) -> Vec<f32> {
        dropout(x, 0.5, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn same_seed_same_masks_and_the_guard_restores_random_masks() {
        let x = Tensor::ones(256, candle_core::DType::F32, &Device::Cpu).unwrap();
        let first = {
            let _seed = seeded_dropout(7);
            (mask_of(&x), mask_of(&x))
        };
        let second = {
            let _seed = seeded_dropout(7);
            (mask_of(&x), mask_of(&x))
        };
        assert_eq!(first, second, "same seed, same sequence of masks");
        assert_ne!(first.0, first.1, "consecutive masks differ");
        let dropped = first.0.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (64..192).contains(&dropped),
            "{dropped} of 256 dropped at p = 0.5"
        );
        assert!(first.0.iter().all(|&v| v == 0.0 || v == 2.0));
        let other = {
            let _seed = seeded_dropout(8);
            mask_of(&x)
        };
        assert_ne!(first.0, other, "another seed, another mask");
        assert!(MASK_RNG.with(|r| r.borrow().is_none()), "guard restored");
    }
}
