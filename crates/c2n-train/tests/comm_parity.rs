//! The parity fixture of `comm::parity` (what `scripts/mpi-test.sh` trains under `mpirun`),
//! checked here with thread ranks: two ranks through `Trainer::from_config_on` end within
//! `PARITY_TOLERANCE` of one rank on the combined batch, the replicas stay bit-identical, and
//! one extra step is far outside the tolerance (so the comparison can fail).
//!
//! The initial model is the committed PyTorch fixture of `tests/train_parity.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use c2n_train::comm::parity::{
    params_snapshot, replica_mismatches, tensor_diffs, worst, write_parity_fixture,
    zero_gradient_bound, PARITY_TOLERANCE,
};
use c2n_train::comm::{Communicator, GradWeighting, SingleComm, ThreadGroup};
use c2n_train::trainer::Trainer;
use c2n_train::TrainError;
use candle_core::Tensor;

type Params = HashMap<String, Tensor>;

fn init_dir() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/train_steps/init")
        .display()
        .to_string()
}

/// (initial, final) parameters and the replica mismatch count of one rank of `comm`.
fn train(
    dir: &Path,
    steps: u64,
    comm: &dyn Communicator,
) -> Result<(Params, Params, usize), TrainError> {
    let rank_dir = dir.join(format!("rank{}", comm.rank()));
    let config = write_parity_fixture(&rank_dir, &init_dir(), steps)?;
    let mut trainer = Trainer::from_config_on(config, false, comm)?;
    let initial = params_snapshot(trainer.params())?;
    trainer.run_with(comm)?;
    let mismatches = replica_mismatches(comm, trainer.params())?;
    Ok((initial, params_snapshot(trainer.params())?, mismatches))
}

#[test]
fn two_thread_ranks_on_the_fixture_equal_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let (initial, single, none) = train(&dir.path().join("one"), 3, &SingleComm).unwrap();
    assert_eq!(none, 0);
    let ranks = ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| train(&dir.path().join("two"), 3, comm))
        .unwrap();
    for (rank, (_, params, mismatches)) in ranks.iter().enumerate() {
        assert_eq!(*mismatches, 0, "rank {rank} drifted from rank 0");
        let diffs = tensor_diffs(params, &single).unwrap();
        let w = worst(&diffs).unwrap();
        assert!(
            w.relative_l2 <= PARITY_TOLERANCE,
            "rank {rank}: {} relative L2 {}",
            w.name,
            w.relative_l2
        );
        let config = write_parity_fixture(&dir.path().join("cfg"), &init_dir(), 3).unwrap();
        let bound = zero_gradient_bound(config.lr, 3);
        for d in &diffs {
            assert!(
                d.zero_gradient_max_abs <= bound,
                "rank {rank}: {} zero-gradient entries moved apart by {} (bound {bound})",
                d.name,
                d.zero_gradient_max_abs
            );
        }
    }
    // Training moved the weights, and one more step is detected.
    let moved = worst(&tensor_diffs(&single, &initial).unwrap())
        .unwrap()
        .relative_l2;
    assert!(moved > 100.0 * PARITY_TOLERANCE, "moved only {moved}");
    let (_, four, _) = train(&dir.path().join("four"), 4, &SingleComm).unwrap();
    let extra = worst(&tensor_diffs(&four, &single).unwrap())
        .unwrap()
        .relative_l2;
    assert!(
        extra > 100.0 * PARITY_TOLERANCE,
        "an extra step changed only {extra}"
    );
}

/// `train` with a chosen gradient weighting.
fn train_weighted(
    dir: &Path,
    weighting: GradWeighting,
    comm: &dyn Communicator,
) -> Result<(Params, usize), TrainError> {
    let rank_dir = dir.join(format!("rank{}", comm.rank()));
    let mut config = write_parity_fixture(&rank_dir, &init_dir(), 2)?;
    config.grad_weighting = weighting;
    let mut trainer = Trainer::from_config_on(config, false, comm)?;
    trainer.run_with(comm)?;
    let mismatches = replica_mismatches(comm, trainer.params())?;
    Ok((params_snapshot(trainer.params())?, mismatches))
}

/// Five ranks for a batch of four: one rank has no example. Each rank predicts every rank's
/// token count (and so its gradient scale) from the features before reading its loss; the
/// trainer checks the prediction against the all-reduced counts. Token-mean ranks still equal
/// one rank; the mean of rank means trains too, in step.
#[test]
fn a_rank_without_examples_keeps_both_weightings_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let (single, _) = train_weighted(
        &dir.path().join("one"),
        GradWeighting::TokenMean,
        &SingleComm,
    )
    .unwrap();
    for weighting in [GradWeighting::TokenMean, GradWeighting::MeanOfRankMeans] {
        let ranks = ThreadGroup::new(5)
            .unwrap()
            .run_fallible(|comm| {
                train_weighted(&dir.path().join(format!("{weighting:?}")), weighting, comm)
            })
            .unwrap();
        for (rank, (params, mismatches)) in ranks.iter().enumerate() {
            assert_eq!(
                *mismatches, 0,
                "{weighting:?}: rank {rank} drifted from rank 0"
            );
            let diffs = tensor_diffs(params, &single).unwrap();
            let w = worst(&diffs).unwrap();
            match weighting {
                GradWeighting::TokenMean => assert!(
                    w.relative_l2 <= PARITY_TOLERANCE,
                    "rank {rank}: {} relative L2 {}",
                    w.name,
                    w.relative_l2
                ),
                // Per-rank means averaged: another gradient than the token mean.
                GradWeighting::MeanOfRankMeans => assert!(
                    w.relative_l2 > PARITY_TOLERANCE,
                    "rank {rank}: mean of rank means equals the token mean ({})",
                    w.relative_l2
                ),
            }
        }
    }
}

#[test]
fn a_resume_on_another_number_of_ranks_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let config = |fixture: &str, stop_after: Option<u64>| {
        let mut config = write_parity_fixture(&dir.path().join(fixture), &init_dir(), 4)?;
        config.output_dir = run.clone();
        config.stop_after = stop_after;
        Ok::<_, TrainError>(config)
    };
    // Two thread ranks train 2 of the 4 updates (rank 0 writes the checkpoint).
    ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| {
            let cfg = config(&format!("fixture{}", comm.rank()), Some(2))?;
            let mut trainer = Trainer::from_config_on(cfg, false, comm)?;
            assert_eq!(trainer.resumed_on_other_world_size(), None);
            trainer.run_with(comm).map(|_| ())
        })
        .unwrap();
    let resumed = |comm: &dyn Communicator| {
        let fixture = format!("again{}", comm.rank());
        Trainer::from_config_on(config(&fixture, None).unwrap(), true, comm).unwrap()
    };
    assert_eq!(
        resumed(&SingleComm).resumed_on_other_world_size(),
        Some((2, 1))
    );
    let same = ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| Ok::<_, TrainError>(resumed(comm).resumed_on_other_world_size()))
        .unwrap();
    assert_eq!(same, [None, None]);
}

#[test]
fn ranks_that_read_different_data_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = ThreadGroup::new(2).unwrap().run_fallible(|comm| {
        let rank_dir = dir.path().join(format!("rank{}", comm.rank()));
        let mut config = write_parity_fixture(&rank_dir, &init_dir(), 1)?;
        if comm.rank() == 1 {
            // Rank 1's copy of the data lost its last example.
            config.train_limit = Some(7);
        }
        Trainer::from_config_on(config, false, comm).map(|_| ())
    });
    let err = outcomes
        .expect_err("different data must be refused")
        .to_string();
    assert!(err.contains("rank 1 read other training data"), "{err}");
}
