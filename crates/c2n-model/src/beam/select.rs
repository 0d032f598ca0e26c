//! Top-K candidate selection with the documented, deterministic tie rule.
//!
//! The reference takes `torch.topk` over the flattened `K × V` candidates, whose order on
//! exact ties is unspecified (reference-semantics §11 item 17). Both selectors here use one
//! total order, the **tie rule**:
//!
//! 1. higher value first;
//! 2. equal values: **lower flat index** (`k · V + w`) first.
//!
//! Values compare as PyTorch compares them, with two fixes that make the order total:
//! `-0.0 == 0.0`, and NaN ranks like `+∞` (then by index).
//!
//! [`select_top_k_full_sort`] is the literal algorithm (sort everything, keep K); the
//! streaming [`TopK`] keeps only the best K seen so far and is what the batched search uses.
//! Both return the same entries in the same order.

use std::cmp::Ordering;

/// Value a candidate is ranked by: `-0.0` becomes `0.0` and NaN becomes `+∞`.
#[inline]
pub(crate) fn rank_value(value: f32) -> f32 {
    if value.is_nan() {
        f32::INFINITY
    } else if value == 0.0 {
        0.0
    } else {
        value
    }
}

/// Order of two candidates `(value, flat_index)` under the tie rule: `Less` means `a` ranks first.
#[inline]
pub fn rank_order(a: (f32, u32), b: (f32, u32)) -> Ordering {
    rank_value(b.0)
        .total_cmp(&rank_value(a.0))
        .then(a.1.cmp(&b.1))
}

/// Top `k` of `candidates` by the tie rule, as `(value, flat_index)` in rank order.
///
/// Sorts all candidates: the plain algorithm, used by the reference-literal path. Each
/// candidate becomes one `u64` sort key (inverted order-preserving value bits, then index),
/// so the sort is a plain integer sort with the tie rule built in.
pub fn select_top_k_full_sort(candidates: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut keys: Vec<u64> = candidates
        .iter()
        .enumerate()
        .map(|(index, &value)| (u64::from(!ascending_bits(value)) << 32) | index as u64)
        .collect();
    keys.sort_unstable();
    keys.iter()
        .take(k)
        .map(|&key| {
            let index = (key & 0xFFFF_FFFF) as usize;
            (candidates[index], index as u32)
        })
        .collect()
}

/// Bits of the rank value whose unsigned order is the numeric order.
#[inline]
fn ascending_bits(value: f32) -> u32 {
    let bits = rank_value(value).to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Streaming top-K: offer candidates in **increasing flat index** order; keeps the best `k`.
///
/// Exact under the tie rule because a later candidate (higher index) with a value equal to
/// the current K-th one never displaces it. Each offer costs one comparison unless the
/// candidate enters the top K.
#[derive(Debug, Clone)]
pub struct TopK {
    capacity: usize,
    /// Best entries so far, in rank order.
    best: Vec<(f32, u32)>,
    /// Rank value of the current K-th entry once `best` is full, else `-∞`.
    threshold: f32,
}

impl TopK {
    /// An empty selector for the best `capacity` candidates.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            best: Vec::with_capacity(capacity + 1),
            threshold: f32::NEG_INFINITY,
        }
    }

    /// Forget all candidates, keeping the capacity.
    pub fn clear(&mut self) {
        self.best.clear();
        self.threshold = f32::NEG_INFINITY;
    }

    /// Offer one candidate. `flat_index` must exceed every index offered before.
    #[inline]
    pub fn offer(&mut self, value: f32, flat_index: u32) {
        // Fast reject: not strictly better than the K-th entry (NaN goes to the slow path).
        if self.best.len() == self.capacity && value <= self.threshold {
            return;
        }
        self.insert(value, flat_index);
    }

    /// Offer a row of candidates `base + score + logp[w]`, computed in f32 like the reference.
    #[inline]
    pub fn offer_row(&mut self, logp_row: &[f32], score: f32, base: u32) {
        for (w, &logp) in logp_row.iter().enumerate() {
            self.offer(logp + score, base + w as u32);
        }
    }

    #[cold]
    fn insert(&mut self, value: f32, flat_index: u32) {
        if self.capacity == 0 {
            return;
        }
        let full = self.best.len() == self.capacity;
        if full {
            let worst = self.best[self.capacity - 1];
            if rank_order((value, flat_index), worst) != Ordering::Less {
                return;
            }
        }
        // Entries ranking before the new one stay in front; it goes after them.
        let position = self
            .best
            .partition_point(|&entry| rank_order(entry, (value, flat_index)) == Ordering::Less);
        self.best.insert(position, (value, flat_index));
        self.best.truncate(self.capacity);
        if self.best.len() == self.capacity {
            self.threshold = rank_value(self.best[self.capacity - 1].0);
        }
    }

    /// The selected `(value, flat_index)` entries in rank order (fewer than K if fewer offered).
    pub fn entries(&self) -> &[(f32, u32)] {
        &self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming(candidates: &[f32], k: usize) -> Vec<(f32, u32)> {
        let mut top = TopK::new(k);
        for (i, &v) in candidates.iter().enumerate() {
            top.offer(v, i as u32);
        }
        top.entries().to_vec()
    }

    #[test]
    fn equal_values_rank_by_lower_index() {
        let candidates = [-1.0, -0.5, -1.0, -0.5, -2.0, -0.5];
        let expected = vec![(-0.5, 1), (-0.5, 3), (-0.5, 5), (-1.0, 0)];
        assert_eq!(select_top_k_full_sort(&candidates, 4), expected);
        assert_eq!(streaming(&candidates, 4), expected);
    }

    #[test]
    fn negative_zero_ties_with_zero_and_nan_ranks_like_infinity() {
        let candidates = [-0.0, 0.0, f32::NAN, -3.0, f32::INFINITY];
        let full: Vec<u32> = select_top_k_full_sort(&candidates, 5)
            .iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(full, vec![2, 4, 0, 1, 3]);
        let stream: Vec<u32> = streaming(&candidates, 5).iter().map(|e| e.1).collect();
        assert_eq!(stream, full);
    }

    #[test]
    fn streaming_equals_full_sort_on_many_tied_inputs() {
        // A small LCG gives reproducible inputs with many exact ties (values on a 0.25 grid).
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..200 {
            let n = 1 + round % 37;
            let k = 1 + round % 11;
            let candidates: Vec<f32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    -(((state >> 33) % 12) as f32) * 0.25
                })
                .collect();
            let full = select_top_k_full_sort(&candidates, k);
            assert_eq!(full.len(), k.min(n));
            assert_eq!(streaming(&candidates, k), full, "round {round}");
            for pair in full.windows(2) {
                assert!(pair[0].0 > pair[1].0 || (pair[0].0 == pair[1].0 && pair[0].1 < pair[1].1));
            }
        }
    }
}
