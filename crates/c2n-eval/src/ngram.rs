//! Clipped n-gram matches of one hypothesis against its references, for n = 1..=4.
//!
//! Both metrics need `Σ_g min(count_hyp(g), max_j count_ref_j(g))`. Tokens are interned to
//! small integers per sentence, n-grams packed into `u128` keys and counted by sorting, which
//! is much faster than hashing string tuples.

use std::hash::Hasher;

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
    interner: Interner,
    hyp_ids: Vec<u32>,
    ref_ids: Vec<Vec<u32>>,
    hyp_keys: Vec<u64>,
    ref_keys: Vec<Vec<u64>>,
    wide_hyp_keys: Vec<u128>,
    wide_ref_keys: Vec<Vec<u128>>,
    cursors: Vec<usize>,
}

impl NgramCounter {
    /// Counts clipped matches of `hypothesis` against `references` (max clipping over references).
    pub fn count<'a, H, R, I>(&mut self, hypothesis: H, references: R) -> NgramStats
    where
        H: IntoIterator<Item = &'a str>,
        R: IntoIterator<Item = I>,
        I: IntoIterator<Item = &'a str>,
    {
        self.interner.clear();
        self.hyp_ids.clear();
        for token in hypothesis {
            self.hyp_ids.push(self.interner.intern(token));
        }
        let mut n_refs = 0;
        for reference in references {
            if self.ref_ids.len() <= n_refs {
                self.ref_ids.push(Vec::new());
                self.ref_keys.push(Vec::new());
                self.wide_ref_keys.push(Vec::new());
            }
            let ids = &mut self.ref_ids[n_refs];
            ids.clear();
            for token in reference {
                ids.push(self.interner.intern(token));
            }
            n_refs += 1;
        }

        let mut stats = NgramStats::default();
        for order in 1..=MAX_ORDER {
            let len = self.hyp_ids.len();
            stats.total[order - 1] = (len + 1).saturating_sub(order) as u64;
            if len < order {
                continue;
            }
            // Four 16-bit ids fit in a u64, which sorts faster; huge vocabularies take u128.
            stats.correct[order - 1] = if self.interner.len() < 1 << 16 {
                fill_keys(&self.hyp_ids, order, 16, &mut self.hyp_keys);
                for r in 0..n_refs {
                    fill_keys(&self.ref_ids[r], order, 16, &mut self.ref_keys[r]);
                }
                clipped_matches(&self.hyp_keys, &self.ref_keys[..n_refs], &mut self.cursors)
            } else {
                fill_keys(&self.hyp_ids, order, 32, &mut self.wide_hyp_keys);
                for r in 0..n_refs {
                    fill_keys(&self.ref_ids[r], order, 32, &mut self.wide_ref_keys[r]);
                }
                clipped_matches(
                    &self.wide_hyp_keys,
                    &self.wide_ref_keys[..n_refs],
                    &mut self.cursors,
                )
            };
        }
        stats
    }
}

/// Sorted keys of all n-grams of one order, `bits` bits per token id.
fn fill_keys<K>(ids: &[u32], order: usize, bits: u32, keys: &mut Vec<K>)
where
    K: Copy + Ord + From<u32> + std::ops::Shl<u32, Output = K> + std::ops::BitOr<Output = K>,
{
    keys.clear();
    keys.extend(ids.windows(order).map(|w| {
        w.iter()
            .fold(K::from(0), |key, &id| (key << bits) | K::from(id))
    }));
    keys.sort_unstable();
}

fn clipped_matches<K: Copy + Ord>(hyp: &[K], refs: &[Vec<K>], cursors: &mut Vec<usize>) -> u64 {
    cursors.clear();
    cursors.resize(refs.len(), 0);
    let mut correct = 0u64;
    let mut i = 0;
    while i < hyp.len() {
        let key = hyp[i];
        let mut run = 1;
        while i + run < hyp.len() && hyp[i + run] == key {
            run += 1;
        }
        let mut best = 0usize;
        for (reference, cursor) in refs.iter().zip(cursors.iter_mut()) {
            while *cursor < reference.len() && reference[*cursor] < key {
                *cursor += 1;
            }
            let mut count = 0;
            while *cursor < reference.len() && reference[*cursor] == key {
                *cursor += 1;
                count += 1;
            }
            best = best.max(count);
        }
        correct += run.min(best) as u64;
        i += run;
    }
    correct
}

/// Maps each distinct token of one sentence pair to a small integer.
///
/// Distinct tokens are copied into a reusable arena and found again through an open-addressing
/// table, so interning allocates nothing once the buffers have grown.
#[derive(Debug, Default)]
struct Interner {
    arena: String,
    /// `(hash, start, end)` of each distinct token in `arena`; the index is the id.
    entries: Vec<(u64, usize, usize)>,
    /// Open-addressing slots holding `id + 1` (0 = empty); the length is a power of two.
    slots: Vec<u32>,
}

impl Interner {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        if self.slots.is_empty() {
            self.slots = vec![0; 64];
        } else {
            self.slots.fill(0);
        }
    }

    fn intern(&mut self, token: &str) -> u32 {
        let mut hasher = FxHasher::default();
        hasher.write(token.as_bytes());
        let hash = hasher.finish();
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i] {
                0 => break,
                slot => {
                    let (h, start, end) = self.entries[slot as usize - 1];
                    if h == hash && &self.arena[start..end] == token {
                        return slot - 1;
                    }
                }
            }
            i = (i + 1) & mask;
        }
        let id = self.entries.len() as u32;
        let start = self.arena.len();
        self.arena.push_str(token);
        self.entries.push((hash, start, self.arena.len()));
        self.slots[i] = id + 1;
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        id
    }

    fn grow(&mut self) {
        self.slots = vec![0; self.slots.len() * 2];
        let mask = self.slots.len() - 1;
        for (id, &(hash, ..)) in self.entries.iter().enumerate() {
            let mut i = hash as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = id as u32 + 1;
        }
    }
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
    fn interner_survives_growth_and_keeps_ids_stable() {
        let mut interner = Interner::default();
        interner.clear();
        let words: Vec<String> = (0..500).map(|i| format!("w{}", i % 300)).collect();
        let ids: Vec<u32> = words.iter().map(|w| interner.intern(w)).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(*id, (i % 300) as u32, "{}", words[i]);
        }
        interner.clear();
        assert_eq!(interner.intern("w299"), 0);
    }

    #[test]
    fn more_than_65535_distinct_tokens_take_the_wide_keys() {
        let words: Vec<String> = (0..70_000).map(|i| format!("t{i}")).collect();
        let mut counter = NgramCounter::default();
        let same = counter.count(
            words.iter().map(String::as_str),
            [words.iter().map(String::as_str)],
        );
        assert_eq!(same.correct, same.total);
        // Reversed: every unigram matches, no longer n-gram does (all tokens are distinct).
        let reversed = counter.count(
            words.iter().rev().map(String::as_str),
            [words.iter().map(String::as_str)],
        );
        assert_eq!(reversed.correct, [70_000, 0, 0, 0]);
    }

    #[test]
    fn short_hypotheses_have_zero_totals_for_high_orders() {
        let mut counter = NgramCounter::default();
        let stats = counter.count(["x"], [["x", "y"]]);
        assert_eq!(stats.total, [1, 0, 0, 0]);
        assert_eq!(stats.correct, [1, 0, 0, 0]);
    }
}
