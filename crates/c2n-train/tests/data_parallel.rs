//! Data-parallel training and sharded evaluation with thread ranks (CPU, tiny model, dropout
//! off): W ranks on a global batch equal one rank on the same batch; sharded evaluation equals
//! single-rank evaluation exactly; a failing rank ends the job with its error, not a hang.
//!
//! The reference here is this crate's own single-rank path, which `tests/train_parity.rs`
//! checks against the PyTorch fixture of `tools/reference/train_reference.py`.

use crate::support;

use c2n_data::Feature;
use c2n_model::generation::GenerationConfig;
use c2n_train::comm::parity::{split_diff, zero_gradient_bound, PARITY_TOLERANCE};
use c2n_train::comm::{
    self, Backend, Communicator, GradWeighting, LaunchSpec, SingleComm, ThreadGroup,
};
use c2n_train::config::TrainConfig;
use c2n_train::evaluate::{
    decode, decode_sharded, dev_loss, dev_loss_sharded, Decoded, EvalBatching,
};
use c2n_train::loop_plan::AccumulationMode;
use c2n_train::trainer::Trainer;
use c2n_train::TrainError;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

type Params = Vec<(String, Vec<f32>, u64)>;

fn config(out: &Path, configure: &(dyn Fn(&mut TrainConfig) + Sync)) -> TrainConfig {
    let mut config = tiny_config(&expected(), out.to_path_buf());
    config.batch_size = 4;
    config.train_steps = Some(5);
    config.shuffle = true; // the seeded shuffle must be the same on every rank
    configure(&mut config);
    config
}

/// A trainer's parameters with their AdamW step counts.
fn snapshot(t: &Trainer) -> Params {
    t.params()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                values(v.as_tensor()),
                t.optimizer().step_count(n),
            )
        })
        .collect()
}

/// Each rank's snapshot after a whole uninterrupted run on two thread ranks.
fn two_ranks_whole_run(make: &(dyn Fn() -> Result<Trainer, TrainError> + Sync)) -> Vec<Params> {
    ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| -> Result<_, TrainError> {
            let mut t = make()?;
            assert!(!t.run_with(comm)?.interrupted);
            Ok(snapshot(&t))
        })
        .unwrap()
}

/// Parameters (and AdamW step counts) after the whole run, as one rank of `comm`. Ranks other
/// than 0 start from perturbed weights: the initial broadcast must repair them.
fn train_as(comm: &dyn Communicator, cfg: TrainConfig) -> Result<Params, TrainError> {
    let mut trainer = Trainer::new(cfg, tiny_model(), features(&expected()), None, None)?;
    if comm.rank() > 0 {
        for (_, var) in trainer.params().iter() {
            var.set(&(var.as_tensor() + comm.rank() as f64)?)?;
        }
    }
    while trainer.advance_with(comm)?.is_some() {}
    Ok(snapshot(&trainer))
}

/// Relative L2 error per tensor over the entries with a non-zero exact gradient; the attention
/// key biases (exactly zero gradient: Adam moves them by amplified rounding noise) are bounded
/// apart by how far Adam can move an entry in the run (`comm::parity::split_diff`).
fn assert_close(got: &Params, want: &Params, what: &str) {
    assert_eq!(got.len(), want.len());
    for ((name, g, gs), (_, w, ws)) in got.iter().zip(want) {
        assert_eq!(gs, ws, "{what}: AdamW steps of {name}");
        let (relative, zero_gradient) = split_diff(name, g, w);
        assert!(
            relative <= PARITY_TOLERANCE,
            "{what}: {name} relative L2 error {relative}"
        );
        let lr = tiny_config(&expected(), std::path::PathBuf::new()).lr;
        let bound = zero_gradient_bound(lr, *ws);
        assert!(
            zero_gradient <= bound,
            "{what}: {name} zero-gradient entries apart by {zero_gradient} (bound {bound})"
        );
    }
}

/// Bitwise equality, naming the first parameter that differs (not printing all of them).
fn assert_identical(got: &Params, want: &Params, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for ((name, g, gs), (_, w, ws)) in got.iter().zip(want) {
        assert!(g == w && gs == ws, "{what}: {name} differs");
    }
}

fn check_ranks_equal_one_rank(world: usize, configure: &(dyn Fn(&mut TrainConfig) + Sync)) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), configure);
    let single = train_as(&SingleComm, cfg.clone()).unwrap();
    let ranks = ThreadGroup::new(world)
        .unwrap()
        .run_fallible(|comm| train_as(comm, cfg.clone()))
        .unwrap();
    // The run must actually have moved the weights, or the comparison proves nothing.
    let initial: Params = {
        let t = Trainer::new(cfg.clone(), tiny_model(), features(&expected()), None, None).unwrap();
        t.params()
            .iter()
            .map(|(n, v)| (n.to_string(), values(v.as_tensor()), 0))
            .collect()
    };
    assert!(single.iter().zip(&initial).any(|(a, b)| a.1 != b.1));
    for (rank, params) in ranks.iter().enumerate() {
        assert_close(params, &single, &format!("{world} ranks, rank {rank}"));
        // Replicas stay bit-identical: every rank applies the same reduced gradient.
        assert_identical(
            params,
            &ranks[0],
            &format!("rank {rank} drifted from rank 0"),
        );
    }
}

#[test]
fn two_ranks_equal_one_rank_on_the_combined_batch() {
    check_ranks_equal_one_rank(2, &|_| {});
}

#[test]
fn four_ranks_equal_one_rank_including_empty_shards() {
    // 6 examples in batches of 4: the second batch has 2 rows, so ranks 2 and 3 get nothing.
    check_ranks_equal_one_rank(4, &|_| {});
}

#[test]
fn two_ranks_with_accumulation_and_clipping_equal_one_rank() {
    check_ranks_equal_one_rank(2, &|c| {
        c.grad_accum = 2;
        c.max_grad_norm = Some(0.05);
        c.train_steps = Some(6);
    });
}

#[test]
fn four_ranks_variant_b_equal_one_rank() {
    check_ranks_equal_one_rank(4, &|c| {
        c.epochs = Some(2);
        c.batch_size = 3;
    });
}

#[test]
fn mean_of_rank_means_splits_the_batch_where_torch_chunk_does() {
    // 3 examples on 2 ranks: torch.chunk gives replicas [0, 1] and [2]; the mean of the two
    // replica means depends on that split, unlike the token mean.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &|c| {
        c.batch_size = 3;
        c.shuffle = false;
        c.grad_weighting = GradWeighting::MeanOfRankMeans;
    });
    let losses = ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| -> Result<f64, TrainError> {
            let mut trainer =
                Trainer::new(cfg.clone(), tiny_model(), features(&expected()), None, None)?;
            let report = trainer.advance_with(comm)?;
            Ok(report.map_or(f64::NAN, |r| r.loss))
        })
        .unwrap();
    let model = tiny_model();
    let feats = features(&expected());
    let (s, t) = (cfg.max_source_len, cfg.max_target_len);
    let mean_loss = |positions: &[usize]| -> f64 {
        let batch = c2n_data::make_batch(&feats, positions, s, t);
        let x = c2n_train::tensors::BatchTensors::new(&batch, &candle_core::Device::Cpu).unwrap();
        let out = model
            .forward_loss(
                &x.source_ids,
                &x.source_mask,
                &x.target_ids,
                &x.target_mask,
                false,
            )
            .unwrap();
        f64::from(out.loss.to_scalar::<f32>().unwrap())
    };
    let torch_chunks = (mean_loss(&[0, 1]) + mean_loss(&[2])) / 2.0;
    let other_split = (mean_loss(&[0]) + mean_loss(&[1, 2])) / 2.0;
    assert!(
        (torch_chunks - other_split).abs() > 1e-4,
        "the fixture must tell the splits apart"
    );
    for loss in losses {
        assert!(
            (loss - torch_chunks).abs() <= 1e-5 * torch_chunks.abs(),
            "{loss} vs torch.chunk split {torch_chunks} (other split {other_split})"
        );
    }
}

#[test]
fn mean_of_rank_means_is_wired_and_differs_from_the_token_mean() {
    // Shards of unequal token counts: the two weightings give different gradients.
    let dir = tempfile::tempdir().unwrap();
    let token = config(dir.path(), &|c| c.batch_size = 3);
    let means = config(dir.path(), &|c| {
        c.batch_size = 3;
        c.grad_weighting = GradWeighting::MeanOfRankMeans;
    });
    let run = |cfg: TrainConfig| {
        ThreadGroup::new(2)
            .unwrap()
            .run_fallible(|comm| train_as(comm, cfg.clone()))
            .unwrap()
            .remove(0)
    };
    let (a, b) = (run(token), run(means));
    assert!(
        a.iter().zip(&b).any(|(x, y)| x.1 != y.1),
        "weightings gave the same run"
    );
    // With one rank both weightings are the plain token mean.
    let one = |w| {
        train_as(
            &SingleComm,
            config(dir.path(), &|c| {
                c.batch_size = 3;
                c.grad_weighting = w;
            }),
        )
        .unwrap()
    };
    assert_eq!(
        one(GradWeighting::TokenMean),
        one(GradWeighting::MeanOfRankMeans)
    );
}

#[test]
fn sharded_dev_loss_and_decode_equal_single_rank() {
    let model = tiny_model();
    let feats: Vec<Feature> = features(&expected());
    let fx = expected();
    let (src, tgt) = (
        fx["max_source_len"].as_u64().unwrap() as usize,
        fx["max_target_len"].as_u64().unwrap() as usize,
    );
    let generation = GenerationConfig {
        beam_size: 3,
        max_length: tgt,
        ..Default::default()
    };
    // Dynamic padding sorts the batches by length: each rank must still decode the
    // single-rank batches (same examples, same padded width), not re-sort its own share.
    for padding in [c2n_data::Padding::Reference, c2n_data::Padding::Dynamic] {
        let batching = EvalBatching {
            batch_size: 2,
            padding,
            max_source_len: src,
            max_target_len: tgt,
        };
        let want_loss = dev_loss(&model, &feats, &batching).unwrap();
        let want: Vec<Decoded> = decode(&model, &feats, &batching, &generation, |_| {})
            .unwrap()
            .iter()
            .map(Decoded::from)
            .collect();
        assert!(want_loss.tokens > 0 && want.iter().any(|d| !d.prediction.is_empty()));
        for world in [2, 4] {
            let got = ThreadGroup::new(world)
                .unwrap()
                .run_fallible(|comm| -> Result<_, TrainError> {
                    let model = tiny_model();
                    let loss = dev_loss_sharded(comm, &model, &feats, &batching)?;
                    let mut batches = 0;
                    let decoded =
                        decode_sharded(comm, &model, &feats, &batching, &generation, |_| {
                            batches += 1
                        })?;
                    Ok((loss, decoded, batches))
                })
                .unwrap();
            // 3 batches of 2 shared out: every batch decoded exactly once.
            assert_eq!(got.iter().map(|g| g.2).sum::<usize>(), 3, "{world} ranks");
            for (rank, (loss, decoded, _)) in got.into_iter().enumerate() {
                assert_eq!(loss, want_loss, "{world} ranks, rank {rank}: dev loss sums");
                match decoded {
                    Some(all) => {
                        assert_eq!(rank, 0);
                        assert_eq!(all, want, "{world} ranks, {padding:?}: gathered beams");
                    }
                    None => assert_ne!(rank, 0),
                }
            }
        }
    }
}

#[test]
fn a_failing_rank_ends_the_job_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &|c| c.train_steps = Some(50));
    let spec = LaunchSpec {
        backend: Backend::Threads,
        world_size: Some(2),
        timeout: Duration::from_secs(60),
    };
    let start = Instant::now();
    let result = comm::launch(&spec, |comm| -> Result<(), TrainError> {
        let mut trainer =
            Trainer::new(cfg.clone(), tiny_model(), features(&expected()), None, None)?;
        for step in 0.. {
            if comm.rank() == 1 && step == 2 {
                return Err(TrainError::InvalidInput(
                    "injected failure on rank 1".into(),
                ));
            }
            if trainer.advance_with(comm)?.is_none() {
                break;
            }
        }
        Ok(())
    });
    let err = result.expect_err("the job must fail").to_string();
    assert!(err.contains("injected failure on rank 1"), "{err}");
    // Rank 0 was woken at once, not after the 60 s collective timeout.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

/// Variant B with GA 2 on 4 examples: every epoch ends with a micro-batch's gradient pending
/// at the evaluation (see `tests/resume.rs`). Two ranks stopped there and resumed from
/// `checkpoint-last` end exactly where the uninterrupted two-rank run ends, and close to one rank.
#[test]
fn two_ranks_resume_with_pending_gradients_equals_uninterrupted() {
    let feats: Vec<Feature> = features(&expected())[..4].to_vec();
    let configure = |c: &mut TrainConfig| {
        c.train_steps = None;
        c.epochs = Some(3);
        c.batch_size = 4;
        c.grad_accum = 2; // micro-batches of 2: one example per rank
                          // run.py's rule: the update after the first batch leaves the second pending.
        c.accumulation = AccumulationMode::Reference;
    };
    let dev = || c2n_train::data::DevSet {
        loss_features: feats.clone(),
        bleu_features: Vec::new(),
        bleu_idx: Vec::new(),
        bleu_golds: Vec::new(),
    };
    let make = |out: &Path| {
        Trainer::new(
            config(out, &configure),
            tiny_model(),
            feats.clone(),
            Some(dev()),
            None,
        )
    };
    let one_dir = tempfile::tempdir().unwrap();
    let mut one = make(one_dir.path()).unwrap();
    one.run().unwrap();
    let single = snapshot(&one);

    let full_dir = tempfile::tempdir().unwrap();
    let full = two_ranks_whole_run(&|| make(full_dir.path()));

    let split_dir = tempfile::tempdir().unwrap();
    let ckpt = split_dir.path().join("checkpoint-last");
    let split = ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| -> Result<_, TrainError> {
            let mut first = make(split_dir.path())?;
            loop {
                let report = first
                    .advance_with(comm)?
                    .expect("an evaluation comes first");
                if report.evaluation.is_some() {
                    assert!(
                        !report.step.update,
                        "the evaluation must find pending gradients"
                    );
                    break;
                }
            }
            drop(first);
            comm.barrier()?; // rank 0 has written the checkpoint
            let mut second = make(split_dir.path())?;
            second.resume(&ckpt)?;
            second.run_with(comm)?;
            Ok(snapshot(&second))
        })
        .unwrap();
    for rank in 0..2 {
        assert_identical(
            &split[rank],
            &full[rank],
            &format!("rank {rank}: resumed run"),
        );
        assert_close(&full[rank], &single, &format!("rank {rank} vs one rank"));
    }
}

/// A stop requested on one rank only (a signal that reached one process) stops every rank
/// after the same update, rank 0 saves `checkpoint-last`, and the resumed two-rank run ends
/// exactly where the uninterrupted one does. If a rank holds no interrupt, none is watched.
#[test]
fn a_stop_requested_on_one_rank_stops_every_rank_after_the_same_update() {
    use c2n_train::interrupt::Interrupt;
    let configure = |c: &mut TrainConfig| {
        c.train_steps = Some(4);
        c.grad_accum = 2;
    };
    let make = |out: &Path| {
        Trainer::new(
            config(out, &configure),
            tiny_model(),
            features(&expected()),
            None,
            None,
        )
    };
    let full_dir = tempfile::tempdir().unwrap();
    let full = two_ranks_whole_run(&|| make(full_dir.path()));

    let split_dir = tempfile::tempdir().unwrap();
    let ckpt = split_dir.path().join("checkpoint-last");
    let split = ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| -> Result<_, TrainError> {
            let mut first = make(split_dir.path())?;
            let interrupt = Interrupt::new(); // one per rank: as in separate processes
            if comm.rank() == 1 {
                interrupt.request();
            }
            first.stop_on(interrupt);
            let summary = first.run_with(comm)?;
            assert!(summary.interrupted, "rank {}", comm.rank());
            assert_eq!((summary.updates, summary.batches), (1, 2));
            drop(first);
            comm.barrier()?; // rank 0 has written the checkpoint
            let mut second = make(split_dir.path())?;
            second.resume(&ckpt)?;
            assert_eq!(second.state().counters.global_step, 1);
            second.stop_on(Interrupt::new());
            assert!(!second.run_with(comm)?.interrupted);
            Ok(snapshot(&second))
        })
        .unwrap();
    for rank in 0..2 {
        assert_identical(
            &split[rank],
            &full[rank],
            &format!("rank {rank}: resumed run"),
        );
    }

    // Rank 1 holds none: rank 0's request is not acted on (ranks must vote together).
    let unarmed_dir = tempfile::tempdir().unwrap();
    let unarmed = ThreadGroup::new(2)
        .unwrap()
        .run_fallible(|comm| -> Result<_, TrainError> {
            let mut t = make(unarmed_dir.path())?;
            if comm.rank() == 0 {
                let interrupt = Interrupt::new();
                interrupt.request();
                t.stop_on(std::sync::Arc::clone(&interrupt));
                let summary = t.run_with(comm)?;
                return Ok((summary.interrupted, summary.updates == t.total_updates()));
            }
            let summary = t.run_with(comm)?;
            Ok((summary.interrupted, summary.updates == t.total_updates()))
        })
        .unwrap();
    assert_eq!(
        unarmed,
        [(false, true), (false, true)],
        "(interrupted, ran to the end)"
    );
}
