//! Counter-based dropout masks: element `i` of a dropout site with seed `s` is kept when
//! `uniform(s, i) ≥ p`, a pure function, so a backward pass can regenerate the mask instead of
//! storing it. The CUDA kernels (`kernels/dropout_rng.cuh`) compute the same function; this
//! is its host twin, for tests and for checking the kernels against the tensor ops with the
//! very same mask.
//!
//! `uniform` is SplitMix64 of `s + (i + 1)·γ`, top 24 bits, so every value is an exact f32 in
//! `[0, 1)`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use candle_core::{Device, Shape, Tensor};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform draw of element `index` of the site with `seed`.
pub fn dropout_uniform(seed: u64, index: u64) -> f32 {
    let z = mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)));
    (z >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// The f32 mask of `shape` (row-major element order) for `seed`: `1/(1−p)` (as f32) where
/// kept, 0 where dropped; what the kernels multiply by.
pub fn dropout_mask_from_seed(
    shape: impl Into<Shape>,
    seed: u64,
    p: f32,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    let scale = keep_scale(p);
    let values: Vec<f32> = (0..shape.elem_count() as u64)
        .map(|i| {
            if dropout_uniform(seed, i) >= p {
                scale
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(values, shape, device)
}

/// `1/(1−p)` as the kernels use it (computed in f64, rounded to f32 once).
pub(crate) fn keep_scale(p: f32) -> f32 {
    (1.0 / (1.0 - f64::from(p))) as f32
}

/// A fresh seed for one dropout site: the next of this thread's
/// [`dropout_seed_stream`](super::dropout_seed_stream) when one is open, else of a process-wide
/// SplitMix64 stream with a random start.
pub(crate) fn next_dropout_seed() -> u64 {
    if let Some(state) = super::dropout_seed::take_stream_state(GAMMA) {
        return mix(state.wrapping_add(GAMMA));
    }
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let counter = COUNTER.get_or_init(|| AtomicU64::new(rand::random::<u64>()));
    mix(counter.fetch_add(GAMMA, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_exact_and_reproducible() {
        let n = 100_000u64;
        let draws: Vec<f32> = (0..n).map(|i| dropout_uniform(42, i)).collect();
        assert!(draws.iter().all(|&u| (0.0..1.0).contains(&u)));
        assert!(draws.iter().all(|&u| (u * 16_777_216.0).fract() == 0.0));
        let mean = draws.iter().map(|&u| f64::from(u)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        let below = draws.iter().filter(|&&u| u < 0.1).count() as f64 / n as f64;
        assert!((below - 0.1).abs() < 0.005, "P(u < 0.1) = {below}");
        assert_eq!(dropout_uniform(42, 7), draws[7]);
        assert_ne!(dropout_uniform(43, 7), draws[7]);
        // Known values pin the function the CUDA kernels compute too.
        assert_eq!(
            dropout_uniform(0, 0),
            (mix(GAMMA) >> 40) as f32 / 16_777_216.0
        );
    }

    #[test]
    fn masks_keep_one_minus_p_and_seeds_differ() {
        let mask = dropout_mask_from_seed(10_000, 5, 0.25, &Device::Cpu)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scale = keep_scale(0.25);
        assert!(mask.iter().all(|&v| v == 0.0 || v == scale));
        let kept = mask.iter().filter(|&&v| v != 0.0).count();
        assert!((7_200..7_800).contains(&kept), "{kept} kept");
        assert_ne!(next_dropout_seed(), next_dropout_seed());
    }
}
