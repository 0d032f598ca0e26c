//! Reproducible dropout masks: thread-scoped seeds, in two forms.
//!
//! Candle's CPU `rand` draws from an unseeded thread RNG, and the counter-based CUDA kernels
//! take their seeds from a stream that starts at a random point per process, so by default
//! two training runs never drop the same units. On this thread, while a guard lives:
//!
//! * [`dropout_seed_stream`]: every dropout site takes its seed from a SplitMix64 stream started
//!   at the guard's seed, and its mask is the counter-based mask of that seed
//!   ([`dropout_mask_from_seed`](super::dropout_mask_from_seed)): the CUDA kernels compute it on
//!   the device, the CPU computes the same mask on the host. The same seed and the same sequence
//!   of sites give the same masks on either device. The trainer opens one per micro-batch, so a
//!   run is a function of its configuration, and a resumed run equals the uninterrupted one.
//!   (On CUDA with the training kernels switched off, masks stay with Candle's device
//!   generator, unseeded: a host-made mask would cost more than the step.)
//! * [`seeded_dropout`]: every mask is drawn, on the host, from one `StdRng` seeded once, in
//!   the order the masks are made; the CUDA kernels stand aside. Tests use it to compare two
//!   formulations of a training step with the very same masks.
//!
//! Where both live, `seeded_dropout` decides the masks.

use std::cell::{Cell, RefCell};

use candle_core::{Device, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static MASK_RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
    /// The state of the [`dropout_seed_stream`] of this thread.
    static SEED_STREAM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// While the returned guard lives, every dropout site on this thread takes its seed from a
/// stream started at `seed`, and its mask is the counter-based mask of that seed, on the CPU
/// as on CUDA (nesting: the innermost guard wins; dropping it restores the outer one).
#[must_use = "dropout is seeded only while the guard lives"]
pub fn dropout_seed_stream(seed: u64) -> DropoutSeedStreamGuard {
    let previous = SEED_STREAM.with(|s| s.replace(Some(seed)));
    DropoutSeedStreamGuard {
        previous,
        _not_send: std::marker::PhantomData,
    }
}

/// Restores the previous seed source when dropped.
pub struct DropoutSeedStreamGuard {
    previous: Option<u64>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for DropoutSeedStreamGuard {
    fn drop(&mut self) {
        SEED_STREAM.with(|s| s.set(self.previous));
    }
}

/// The stream's state before its next draw, advancing it by `step`; `None` without a guard.
pub(crate) fn take_stream_state(step: u64) -> Option<u64> {
    SEED_STREAM.with(|s| {
        let state = s.get()?;
        s.set(Some(state.wrapping_add(step)));
        Some(state)
    })
}

/// Whether a [`dropout_seed_stream`] guard lives on this thread.
pub(crate) fn seed_stream_active() -> bool {
    SEED_STREAM.with(|s| s.get().is_some())
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

    #[test]
    fn a_seed_stream_gives_the_counter_based_masks_of_its_seeds() {
        use crate::layers::dropout_mask_from_seed;
        use crate::layers::dropout_rng::next_dropout_seed;
        let x = Tensor::ones((4, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let (masks, seeds) = {
            let _stream = dropout_seed_stream(11);
            let masks = (mask_of(&x), mask_of(&x));
            let _restart = dropout_seed_stream(11);
            (masks, (next_dropout_seed(), next_dropout_seed()))
        };
        assert!(!seed_stream_active(), "guard restored");
        assert_ne!(seeds.0, seeds.1);
        let expected = |seed| {
            dropout_mask_from_seed((4, 64), seed, 0.5, &Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(
            masks.0,
            expected(seeds.0),
            "first site: the first seed's mask"
        );
        assert_eq!(
            masks.1,
            expected(seeds.1),
            "second site: the second seed's mask"
        );
        let other = {
            let _stream = dropout_seed_stream(12);
            mask_of(&x)
        };
        assert_ne!(masks.0, other, "another stream, another mask");
        let host = {
            let _stream = dropout_seed_stream(11);
            let _host = seeded_dropout(7);
            mask_of(&x)
        };
        let host_alone = {
            let _host = seeded_dropout(7);
            mask_of(&x)
        };
        assert_eq!(host, host_alone, "seeded_dropout decides where both live");
    }
}
