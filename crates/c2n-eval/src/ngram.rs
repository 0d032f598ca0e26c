//! Clipped n-gram matches of one hypothesis against its references, for n = 1..=4.
//!
//! Both metrics need `Σ_g min(count_hyp(g), max_j count_ref_j(g))`. Tokens are interned to
//! small integers per sentence, n-grams packed into `u128` keys and counted by sorting, which
//! is much faster than hashing string tuples.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Highest n-gram order used by both metrics.
pub const MAX_ORDER: usize = 4;

/// Per-order n-gram statistics of one hypothesis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NgramStats {
    /// Clipped matches per order (index 0 is unigrams).
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order: `max(len − n + 1, 0)`.
    pub total: [u64; MAX_ORDER],
}

/// Reusable buffers, so scoring a corpus does not allocate per sentence.
#[derive(Debug, Default)]
pub struct NgramCounter {
    hyp_ids: Vec<u32>,
    ref_ids: Vec<Vec<u32>>,
    hyp_keys: Vec<u128>,
    ref_keys: Vec<Vec<u128>>,
}

impl NgramCounter {
    /// Counts clipped matches of `hypothesis` against `references` (max clipping over references).
    pub fn count<'a, H, R, I>(&mut self, hypothesis: H, references: R) -> NgramStats
    where
        H: IntoIterator<Item = &'a str>,
        R: IntoIterator<Item = I>,
        I: IntoIterator<Item = &'a str>,
    {
        let mut vocab: HashMap<&'a str, u32, BuildHasherDefault<FxHasher>> = HashMap::default();
        let mut intern = |token: &'a str| {
            let next = vocab.len() as u32;
            *vocab.entry(token).or_insert(next)
        };
        self.hyp_ids.clear();
        self.hyp_ids.extend(hypothesis.into_iter().map(&mut intern));
        let mut n_refs = 0;
        for reference in references {
            if self.ref_ids.len() <= n_refs {
                self.ref_ids.push(Vec::new());
                self.ref_keys.push(Vec::new());
            }
            let ids = &mut self.ref_ids[n_refs];
            ids.clear();
            ids.extend(reference.into_iter().map(&mut intern));
            n_refs += 1;
        }

        let mut stats = NgramStats::default();
        for order in 1..=MAX_ORDER {
            let len = self.hyp_ids.len();
            stats.total[order - 1] = (len + 1).saturating_sub(order) as u64;
            if len < order {
                continue;
            }
            fill_keys(&self.hyp_ids, order, &mut self.hyp_keys);
            for r in 0..n_refs {
                fill_keys(&self.ref_ids[r], order, &mut self.ref_keys[r]);
            }
            stats.correct[order - 1] = clipped_matches(&self.hyp_keys, &self.ref_keys[..n_refs]);
        }
        stats
    }
}

/// Sorted keys of all n-grams of one order; ids take 32 bits each, so 4 fit in a `u128`.
fn fill_keys(ids: &[u32], order: usize, keys: &mut Vec<u128>) {
    keys.clear();
    keys.extend(ids.windows(order).map(|w| {
        w.iter()
            .fold(0u128, |key, &id| (key << 32) | u128::from(id))
    }));
    keys.sort_unstable();
}

fn clipped_matches(hyp: &[u128], refs: &[Vec<u128>]) -> u64 {
    let mut cursors = vec![0usize; refs.len()];
    let mut correct = 0u64;
    let mut i = 0;
    while i < hyp.len() {
        let key = hyp[i];
        let run = hyp[i..].iter().take_while(|&&k| k == key).count();
        let mut best = 0usize;
        for (reference, cursor) in refs.iter().zip(cursors.iter_mut()) {
            while *cursor < reference.len() && reference[*cursor] < key {
                *cursor += 1;
            }
            let count = reference[*cursor..]
                .iter()
                .take_while(|&&k| k == key)
                .count();
            best = best.max(count);
        }
        correct += run.min(best) as u64;
        i += run;
    }
    correct
}

/// The rustc-hash "Fx" function: a fast non-cryptographic hash for short string keys.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_takes_the_max_over_references() {
        let mut counter = NgramCounter::default();
        let stats = counter.count(
            "a a a b c".split(' '),
            ["a b c d".split(' '), "a a b".split(' ')],
        );
        // Expected counts computed with tools/bleu/reference_bleu.py's `_ngrams`.
        assert_eq!(stats.correct, [4, 3, 2, 0]);
        assert_eq!(stats.total, [5, 4, 3, 2]);
    }

    #[test]
    fn short_hypotheses_have_zero_totals_for_high_orders() {
        let mut counter = NgramCounter::default();
        let stats = counter.count(["x"], [["x", "y"]]);
        assert_eq!(stats.total, [1, 0, 0, 0]);
        assert_eq!(stats.correct, [1, 0, 0, 0]);
    }
}
