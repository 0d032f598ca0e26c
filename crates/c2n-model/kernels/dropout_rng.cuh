// Counter-based dropout masks: whether element `index` of a dropout site with seed `seed` is
// kept is a pure function of (seed, index), so the backward pass regenerates the mask instead
// of storing it. SplitMix64 of `seed + (index + 1)·γ`; the top 24 bits are a uniform in [0, 1)
// exactly representable in f32, kept when ≥ p (as `keep_mask` keeps `uniform ≥ p`).
// `src/layers/dropout_rng.rs` computes the same on the host (tests compare the two).
#pragma once

__device__ __forceinline__ float c2n_dropout_uniform(unsigned long long seed,
                                                     unsigned long long index) {
    unsigned long long z = seed + (index + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

// The mask value: `scale` (= 1/(1−p)) when kept, 0 when dropped.
__device__ __forceinline__ float c2n_keep_value(unsigned long long seed, unsigned long long index,
                                                float p, float scale) {
    return c2n_dropout_uniform(seed, index) >= p ? scale : 0.0f;
}
