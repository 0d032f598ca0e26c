//! CPython's `random` module, as far as the dev-BLEU subset needs it (spec §8.5).
//!
//! The reference seeds Python's `random` with 42 and then calls
//! `random.sample(dev_examples, min(1000, len))` once. This module reproduces CPython's
//! MT19937 (`init_by_array` seeding), `getrandbits`, `_randbelow` and both `sample` methods
//! (pool for small populations, set for large ones), so the subset is identical.
//!
//! ```
//! use c2n_train::pyrandom::dev_bleu_subset;
//! let subset = dev_bleu_subset(1400, 1000, 42);
//! assert_eq!(&subset[..4], &[1309, 228, 51, 563]);
//! ```

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's Mersenne Twister generator, seeded as `random.seed(int)` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyRandom {
    state: Vec<u32>,
    index: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer seed: `init_by_array` over the
    /// 32-bit little-endian words of the seed (`[0]` for 0).
    pub fn seed(seed: u64) -> Self {
        let mut key = vec![seed as u32];
        if seed >> 32 != 0 {
            key.push((seed >> 32) as u32);
        }
        Self::from_key(&key)
    }

    fn init_genrand(s: u32) -> Vec<u32> {
        let mut mt = vec![0u32; N];
        mt[0] = s;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        mt
    }

    /// MT19937 `init_by_array(key)`.
    pub fn from_key(key: &[u32]) -> Self {
        let mut mt = Self::init_genrand(19_650_218);
        let key_len = key.len().max(1);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key_len) {
            let k = key.get(j).copied().unwrap_or(0);
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(k)
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key_len {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        Self {
            state: mt,
            index: N,
        }
    }

    fn twist(&mut self) {
        let mt = &mut self.state;
        for kk in 0..N {
            let y = (mt[kk] & UPPER_MASK) | (mt[(kk + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[kk] = mt[(kk + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next tempered 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `getrandbits(k)` for `k <= 64`: 32-bit words, least significant word first; the last
    /// word keeps its top bits.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports at most 64 bits here");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        low | (high << 32)
    }

    /// `_randbelow(n)` (getrandbits method): rejection sampling on `n.bit_length()` bits.
    /// Returns 0 for `n == 0`, where CPython would fail; callers never pass 0.
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let bits = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(bits);
            if r < n {
                return r;
            }
        }
    }

    /// `random.sample(range(population), k)`: `k` distinct indices in draw order.
    /// Returns `None` when `k > population` (CPython raises `ValueError`).
    pub fn sample_indices(&mut self, population: usize, k: usize) -> Option<Vec<usize>> {
        if k > population {
            return None;
        }
        let mut setsize = 21usize;
        if k > 5 {
            let exponent = ((k * 3) as f64).ln() / 4f64.ln();
            setsize += 4usize.pow(exponent.ceil() as u32);
        }
        let mut out = Vec::with_capacity(k);
        if population <= setsize {
            let mut pool: Vec<usize> = (0..population).collect();
            for i in 0..k {
                let j = self.randbelow((population - i) as u64) as usize;
                out.push(pool[j]);
                pool[j] = pool[population - i - 1];
            }
        } else {
            let mut selected = HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(population as u64) as usize;
                while selected.contains(&j) {
                    j = self.randbelow(population as u64) as usize;
                }
                selected.insert(j);
                out.push(j);
            }
        }
        Some(out)
    }
}

/// The reference's dev-BLEU subset: `random.seed(seed); random.sample(range(n), min(k, n))`.
pub fn dev_bleu_subset(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let k = k.min(n);
    PyRandom::seed(seed)
        .sample_indices(n, k)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_outputs_after_seed_42_match_cpython() {
        // CPython: random.seed(42); [random.getrandbits(32) for _ in range(3)]
        let mut r = PyRandom::seed(42);
        let got: Vec<u32> = (0..3).map(|_| r.next_u32()).collect();
        assert_eq!(got, vec![2_746_317_213, 478_163_327, 107_420_369]);
    }

    #[test]
    fn sample_larger_than_population_is_refused() {
        assert!(PyRandom::seed(1).sample_indices(3, 4).is_none());
        assert_eq!(dev_bleu_subset(3, 1000, 42).len(), 3);
    }
}
