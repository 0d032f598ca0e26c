//! Deterministic shuffles and the split of work across ranks.
//!
//! Every rank computes the same permutation from `(seed, epoch)` alone, so no communication is
//! needed to agree on an order. The generator is SplitMix64 (public-domain algorithm by
//! Sebastiano Vigna): tiny, fast and fully specified here, so the order never changes with a
//! dependency upgrade.

use std::ops::Range;

use crate::error::{DataError, Result};

/// SplitMix64 pseudo-random generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias (rejection sampling).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The generator for one epoch: the seed and the epoch are mixed so that epochs differ and
/// nearby seeds do not give related orders.
pub fn epoch_rng(seed: u64, epoch: u64) -> SplitMix64 {
    let mut mixer = SplitMix64::new(seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    SplitMix64::new(mixer.next_u64())
}

/// A permutation of `0..n` for `(seed, epoch)`, identical on every rank.
///
/// ```
/// let a = c2n_data::partition::epoch_permutation(10, 42, 0);
/// let mut sorted = a.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<_>>());
/// assert_eq!(a, c2n_data::partition::epoch_permutation(10, 42, 0));
/// ```
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    epoch_rng(seed, epoch).shuffle(&mut order);
    order
}

fn check_rank(rank: usize, world_size: usize) -> Result<()> {
    if world_size == 0 || rank >= world_size {
        return Err(DataError::Config(format!(
            "rank {rank} is not in 0..{world_size}"
        )));
    }
    Ok(())
}

/// Rank `rank`'s contiguous part of `0..n`: parts differ in size by at most one and cover
/// `0..n` in rank order (used for evaluation sharding).
pub fn rank_range(n: usize, rank: usize, world_size: usize) -> Result<Range<usize>> {
    check_rank(rank, world_size)?;
    Ok(n * rank / world_size..n * (rank + 1) / world_size)
}

/// Rank `rank`'s slice of one global batch. Slices are contiguous and differ in size by at
/// most one, so concatenating them in rank order gives back the global batch: training with a
/// global batch B on W ranks sees exactly the examples of one rank with batch B.
pub fn rank_slice(global_batch: &[usize], rank: usize, world_size: usize) -> Result<&[usize]> {
    let range = rank_range(global_batch.len(), rank, world_size)?;
    Ok(&global_batch[range])
}

/// Rank `rank`'s part of `0..n` as `torch.chunk(n, world_size)` splits a batch among
/// `DataParallel` replicas: chunks of `ceil(n / world_size)` in rank order, so the last ones
/// may be shorter or empty (n = 5 on 4 ranks: 2, 2, 1, 0).
pub fn chunk_range(n: usize, rank: usize, world_size: usize) -> Result<Range<usize>> {
    check_rank(rank, world_size)?;
    let chunk = n.div_ceil(world_size);
    let start = (rank * chunk).min(n);
    Ok(start..(start + chunk).min(n))
}

/// Rank `rank`'s slice of one global batch under `torch.chunk` boundaries ([`chunk_range`]).
pub fn chunk_slice(global_batch: &[usize], rank: usize, world_size: usize) -> Result<&[usize]> {
    let range = chunk_range(global_batch.len(), rank, world_size)?;
    Ok(&global_batch[range])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_follow_torch_chunk() {
        let sizes = |n, w| -> Vec<usize> {
            (0..w)
                .map(|r| chunk_range(n, r, w).unwrap().len())
                .collect()
        };
        // torch.arange(n).chunk(w) sizes (an absent trailing chunk is an empty one here).
        assert_eq!(sizes(31, 4), [8, 8, 8, 7]);
        assert_eq!(sizes(5, 4), [2, 2, 1, 0]);
        assert_eq!(sizes(64, 4), [16, 16, 16, 16]);
        assert_eq!(sizes(2, 4), [1, 1, 0, 0]);
        assert_eq!(chunk_range(31, 3, 4).unwrap(), 24..31);
        assert!(chunk_range(4, 4, 4).is_err());
        // rank_range balances instead: 7, 8, 8, 8.
        assert_eq!(rank_range(31, 0, 4).unwrap().len(), 7);
    }

    #[test]
    fn splitmix_matches_published_vector() {
        // First outputs for seed 1234567, computed with CPython integers from the published
        // algorithm (see docs/data.md for the one-liner).
        let mut rng = SplitMix64::new(1234567);
        let expected = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for e in expected {
            assert_eq!(rng.next_u64(), e);
        }
    }

    #[test]
    fn ranks_cover_everything_once() {
        for n in [0, 1, 7, 64, 65] {
            for w in 1..6 {
                let mut all = Vec::new();
                for r in 0..w {
                    all.extend(rank_range(n, r, w).unwrap());
                }
                assert_eq!(all, (0..n).collect::<Vec<_>>());
            }
        }
        assert!(rank_range(10, 2, 2).is_err());
        assert!(rank_range(10, 0, 0).is_err());
    }

    #[test]
    fn permutation_depends_on_seed_and_epoch() {
        let a = epoch_permutation(100, 1, 0);
        assert_ne!(a, epoch_permutation(100, 1, 1));
        assert_ne!(a, epoch_permutation(100, 2, 0));
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }
}
