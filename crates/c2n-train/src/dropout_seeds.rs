//! Dropout seeds of a training run: one per micro-batch and rank, a pure function of the run's
//! `seed`, so the masks of a run follow from its configuration.
//!
//! The trainer opens a [`dropout_seed_stream`](c2n_model::layers::dropout_seed_stream) with
//! this seed around each micro-batch's forward and backward pass: every dropout site takes the
//! next seed of that stream and its counter-based mask, computed by the CUDA kernels on a GPU and
//! by their host twin on the CPU. Two runs with the same configuration therefore drop the same
//! units, and a run resumed from `checkpoint-last` continues with the masks the uninterrupted
//! run would have drawn. (The reference seeds torch's generator once at start-up, so its runs
//! repeat too but cannot resume; its masks themselves cannot be reproduced here.)

use c2n_data::partition::SplitMix64;

/// Keeps these seeds apart from the data order's streams, which start from the same `seed`.
const DROPOUT_DOMAIN: u64 = 0x6472_6f70_6f75_7431; // "dropout1"

/// The dropout seed of micro-batch `micro_batch` (micro-batches done before it in the run) on
/// `rank`, for a run with `seed`.
pub fn micro_batch_dropout_seed(seed: u64, micro_batch: u64, rank: usize) -> u64 {
    let run = SplitMix64::new(seed ^ DROPOUT_DOMAIN).next_u64();
    let mut rng = SplitMix64::new(
        run ^ micro_batch.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ (rank as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7),
    );
    rng.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn seeds_differ_across_micro_batches_ranks_and_runs() {
        let mut seen = HashSet::new();
        for seed in [0, 1, 42] {
            for micro_batch in 0..200 {
                for rank in 0..4 {
                    assert!(
                        seen.insert(micro_batch_dropout_seed(seed, micro_batch, rank)),
                        "seed {seed}, micro-batch {micro_batch}, rank {rank} repeats a seed"
                    );
                }
            }
        }
        assert_eq!(
            micro_batch_dropout_seed(42, 7, 1),
            micro_batch_dropout_seed(42, 7, 1)
        );
    }
}
