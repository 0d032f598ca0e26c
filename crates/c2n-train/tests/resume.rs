//! Full resume: a run stopped part-way and resumed from `checkpoint-last` ends with exactly
//! the parameters, optimizer state and counters of the uninterrupted run, with dropout off and
//! on (each micro-batch's masks follow from the run's seed).

use crate::support;

use c2n_data::{Feature, Padding};
use c2n_train::data::DevSet;
use c2n_train::loop_plan::AccumulationMode;
use c2n_train::metrics::MetricsLog;
use c2n_train::model_setup::with_dropout;
use c2n_train::trainer::Trainer;
use candle_core::Device;
use std::path::Path;
use support::*;

fn assert_same_run(a: &Trainer, b: &Trainer) {
    assert_eq!(a.state().counters, b.state().counters);
    assert_eq!(a.state().policy, b.state().policy);
    for ((name, va), (_, vb)) in a.params().iter().zip(b.params().iter()) {
        assert_eq!(
            values(va.as_tensor()),
            values(vb.as_tensor()),
            "parameter {name}"
        );
        assert_eq!(
            a.optimizer().step_count(name),
            b.optimizer().step_count(name),
            "{name}"
        );
        if let (Some((ma, va)), Some((mb, vb))) =
            (a.optimizer().moments(name), b.optimizer().moments(name))
        {
            assert_eq!(values(&ma), values(&mb), "exp_avg {name}");
            assert_eq!(values(&va), values(&vb), "exp_avg_sq {name}");
        }
    }
}

fn dev_set(features: &[Feature]) -> DevSet {
    DevSet {
        loss_features: features.to_vec(),
        bleu_features: Vec::new(),
        bleu_idx: Vec::new(),
        bleu_golds: Vec::new(),
    }
}

fn trainer(
    out: &Path,
    configure: impl Fn(&mut c2n_train::config::TrainConfig),
    with_dev: bool,
) -> Trainer {
    trainer_with_dropout(out, configure, with_dev, 0.0)
}

fn trainer_with_dropout(
    out: &Path,
    configure: impl Fn(&mut c2n_train::config::TrainConfig),
    with_dev: bool,
    dropout: f32,
) -> Trainer {
    let fx = expected();
    let mut config = tiny_config(&fx, out.to_path_buf());
    configure(&mut config);
    let feats = features(&fx);
    let dev = with_dev.then(|| dev_set(&feats[..3]));
    let model = with_dropout(tiny_model(), Some(dropout), &Device::Cpu).unwrap();
    Trainer::new(config, model, feats, dev, None).unwrap()
}

fn parameter_values(t: &Trainer) -> Vec<Vec<f32>> {
    t.params()
        .iter()
        .map(|(_, v)| values(v.as_tensor()))
        .collect()
}

#[test]
fn with_dropout_on_a_resumed_run_equals_the_uninterrupted_one_and_the_seed_decides_the_masks() {
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(6);
        c.eval_steps = Some(3);
        c.batch_size = 2;
        c.shuffle = false; // the seed then reaches the dropout masks only
    };
    let run = |dir: &Path, seed: u64, dropout: f32| {
        let seeded = |c: &mut c2n_train::config::TrainConfig| {
            configure(c);
            c.seed = seed;
        };
        let mut t = trainer_with_dropout(dir, seeded, true, dropout);
        assert_eq!(t.run().unwrap().updates, 6);
        t
    };
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let full = run(dirs[0].path(), 42, 0.3);
    let again = run(dirs[1].path(), 42, 0.3);
    assert_same_run(&full, &again);
    let other_seed = run(dirs[2].path(), 43, 0.3);
    assert_ne!(
        parameter_values(&full),
        parameter_values(&other_seed),
        "another seed, other masks"
    );
    let no_dropout = run(dirs[3].path(), 42, 0.0);
    assert_ne!(
        parameter_values(&full),
        parameter_values(&no_dropout),
        "dropout was on"
    );

    let split = dirs[4].path();
    let mut first = trainer_with_dropout(
        split,
        |c| {
            configure(c);
            c.stop_after = Some(4);
        },
        true,
        0.3,
    );
    assert_eq!(first.run().unwrap().updates, 4);
    drop(first); // the first process ends: it lets go of the output folder
    let mut second = trainer_with_dropout(split, configure, true, 0.3);
    second.resume(&split.join("checkpoint-last")).unwrap();
    assert_eq!(second.run().unwrap().updates, 6);
    assert_same_run(&full, &second);
}

#[test]
fn an_interrupted_run_saves_its_last_update_and_resumes_exactly() {
    use c2n_train::interrupt::Interrupt;
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(8);
        c.eval_steps = Some(3);
        c.batch_size = 4;
        c.grad_accum = 2;
        c.shuffle = true;
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = trainer(full_dir.path(), configure, true);
    let summary = full.run().unwrap();
    assert!(!summary.interrupted);

    // Ctrl-C during the first update: the run ends at that update's end, not mid-way
    // through its accumulation, and says so.
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = trainer(split_dir.path(), configure, true);
    let interrupt = Interrupt::new();
    interrupt.request();
    first.stop_on(interrupt);
    let summary = first.run().unwrap();
    assert!(summary.interrupted);
    assert_eq!((summary.updates, summary.batches), (1, 2));
    drop(first);
    let mut second = trainer(split_dir.path(), configure, true);
    second
        .resume(&split_dir.path().join("checkpoint-last"))
        .unwrap();
    // An interrupt never requested changes nothing.
    second.stop_on(Interrupt::new());
    let summary = second.run().unwrap();
    assert!(!summary.interrupted);
    assert_same_run(&full, &second);
}

#[test]
fn a_stop_asked_for_as_early_stopping_ends_the_run_changes_nothing_and_the_run_stays_ended() {
    use c2n_train::early_stopping::StopMetric;
    use c2n_train::interrupt::Interrupt;
    // With lr 0 the dev loss of the second evaluation equals the first's, which is no
    // improvement: patience 1 ends the run at update 2.
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(8);
        c.eval_steps = Some(1);
        c.batch_size = 4;
        c.lr = 0.0;
        c.early_stopping_patience = Some(1);
        c.early_stopping_metric = StopMetric::Loss;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut first = trainer(dir.path(), configure, true);
    first.advance().unwrap().expect("update 1");
    let interrupt = Interrupt::new();
    interrupt.request(); // during update 2, whose evaluation stops the run
    first.stop_on(interrupt);
    let summary = first.run().unwrap();
    assert_eq!(
        (summary.updates, summary.stopped_early, summary.interrupted),
        (2, true, false)
    );
    drop(first);
    let mut resumed = trainer(dir.path(), configure, true);
    resumed.resume(&dir.path().join("checkpoint-last")).unwrap();
    assert!(resumed.stopped_early());
    let summary = resumed.run().unwrap();
    assert_eq!(
        (summary.updates, summary.evaluations),
        (2, 2),
        "nothing trained"
    );
}

#[test]
fn variant_a_stop_after_then_resume_equals_uninterrupted() {
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(7);
        c.eval_steps = Some(3);
        c.batch_size = 2;
        c.shuffle = true;
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = trainer(full_dir.path(), configure, true);
    let summary = full.run().unwrap();
    assert_eq!((summary.updates, summary.evaluations), (7, 2));
    assert!(full_dir
        .path()
        .join("checkpoint-last/model.safetensors")
        .exists());
    assert!(full_dir
        .path()
        .join("checkpoint-best-ppl/model.safetensors")
        .exists());

    let split_dir = tempfile::tempdir().unwrap();
    let mut first = trainer(
        split_dir.path(),
        |c| {
            configure(c);
            c.stop_after = Some(4);
        },
        true,
    );
    assert_eq!(first.run().unwrap().updates, 4);
    let first_seconds = first.train_seconds();
    drop(first);
    let mut second = trainer(split_dir.path(), configure, true);
    second
        .resume(&split_dir.path().join("checkpoint-last"))
        .unwrap();
    // The run's seconds go on from the checkpoint's (the pipeline's train row uses them).
    let saved_seconds = second.train_seconds();
    assert!(
        saved_seconds > 0.0 && saved_seconds <= first_seconds,
        "{saved_seconds} vs {first_seconds}"
    );
    let summary = second.run().unwrap();
    let this_process = second.train_seconds() - saved_seconds;
    assert!(
        this_process > 0.0 && this_process <= summary.seconds,
        "{this_process} vs {}",
        summary.seconds
    );
    // Evaluations count over the whole run: after update 3 (first process) and 6.
    assert_eq!((summary.updates, summary.evaluations), (7, 2));
    assert_same_run(&full, &second);
    // One history in metrics.jsonl: the same records at the same steps as the full run.
    let steps = |dir: &Path| -> Vec<u64> {
        MetricsLog::read(&dir.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|r| r.global_step())
            .collect()
    };
    assert_eq!(steps(split_dir.path()), steps(full_dir.path()));
    assert!(!steps(full_dir.path()).is_empty());

    // Resuming the finished run trains nothing and leaves checkpoint-last as it was, even
    // with other evaluation settings (they must not be recorded in a checkpoint they never
    // touched).
    let last = split_dir.path().join("checkpoint-last");
    let files = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = files(&last);
    drop(second);
    let mut finished = trainer(
        split_dir.path(),
        |c| {
            configure(c);
            c.beam_size = 1;
        },
        true,
    );
    finished.resume(&last).unwrap();
    let summary = finished.run().unwrap();
    assert_eq!(
        (summary.updates, summary.last_checkpoint),
        (7, last.clone())
    );
    assert!(before == files(&last), "checkpoint-last was rewritten");
}

/// The dev evaluations of a metrics file, without the train records (they hold timings).
fn eval_records(dir: &Path) -> Vec<c2n_train::metrics::MetricRecord> {
    MetricsLog::read(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r, c2n_train::metrics::MetricRecord::Eval { .. }))
        .collect()
}

#[test]
fn a_run_that_dies_while_an_evaluation_saves_redoes_it_on_resume() {
    // A kill (here: a failed write) while an evaluation writes its best checkpoint must not
    // leave `checkpoint-last` claiming that evaluation done: resuming would then skip the
    // best checkpoint and the metrics line for good.
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(6);
        c.eval_steps = Some(3);
        c.batch_size = 2;
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = trainer(full_dir.path(), configure, true);
    full.run().unwrap();
    let full_evals = eval_records(full_dir.path());
    assert!(
        matches!(&full_evals[1], c2n_train::metrics::MetricRecord::Eval { global_step: 5, saved, .. }
            if saved.iter().any(|s| s == "checkpoint-best-ppl")),
        "the second evaluation must improve the dev loss for this test: {full_evals:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let mut first = trainer(
        out,
        |c| {
            configure(c);
            c.stop_after = Some(3);
        },
        true,
    );
    first.run().unwrap();
    drop(first);
    let mut dying = trainer(out, configure, true);
    dying.resume(&out.join("checkpoint-last")).unwrap();
    // A file where the best-ppl save builds its folder: that save fails.
    let trap = out.join(".checkpoint-best-ppl.partial");
    std::fs::write(&trap, "in the way").unwrap();
    let err = dying.run().unwrap_err().to_string();
    assert!(err.contains(".checkpoint-best-ppl.partial"), "{err}");
    std::fs::remove_file(&trap).unwrap();
    drop(dying);

    let mut resumed = trainer(out, configure, true);
    resumed.resume(&out.join("checkpoint-last")).unwrap();
    assert_eq!(
        resumed.state().counters.global_step,
        3,
        "checkpoint-last must not claim the failed evaluation"
    );
    let summary = resumed.run().unwrap();
    assert_eq!((summary.updates, summary.evaluations), (6, 2));
    assert_same_run(&full, &resumed);
    assert_eq!(eval_records(out), full_evals);
    for name in ["checkpoint-best-ppl", "checkpoint-last"] {
        let bytes = |d: &Path| std::fs::read(d.join(name).join("model.safetensors")).unwrap();
        assert!(bytes(out) == bytes(full_dir.path()), "{name}");
    }
}

#[test]
fn a_damaged_checkpoint_is_refused_naming_the_file() {
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(4);
        c.batch_size = 2;
        c.stop_after = Some(2);
    };
    let dir = tempfile::tempdir().unwrap();
    trainer(dir.path(), configure, false).run().unwrap();
    let last = dir.path().join("checkpoint-last");
    let resume_error = |damage: &dyn Fn()| {
        let kept = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&last).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, kept.path().join(path.file_name().unwrap())).unwrap();
        }
        damage();
        let err = trainer(dir.path(), configure, false)
            .resume(&last)
            .unwrap_err()
            .to_string();
        for entry in std::fs::read_dir(kept.path()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, last.join(path.file_name().unwrap())).unwrap();
        }
        err
    };
    let truncate = |name: &str| {
        let path = last.join(name);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    };
    for name in ["optimizer.safetensors", "model.safetensors"] {
        let err = resume_error(&|| truncate(name));
        assert!(err.contains(name), "{name}: {err}");
    }
    // A flipped bit keeps the file's size and still parses: checksums.json tells.
    let flip = |name: &str| {
        let path = last.join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x04;
        std::fs::write(&path, bytes).unwrap();
    };
    for name in [
        "optimizer.safetensors",
        "model.safetensors",
        "train_state.json",
    ] {
        let err = resume_error(&|| flip(name));
        assert!(err.contains(&format!("{name} has sha256")), "{name}: {err}");
    }
    // The saved settings may be edited (paths, to move a run): they are compared, not hashed.
    let config = last.join("train_config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n")).unwrap();
    trainer(dir.path(), configure, false).resume(&last).unwrap();
    std::fs::write(&config, text).unwrap();
    let err = resume_error(&|| std::fs::remove_file(last.join("optimizer.safetensors")).unwrap());
    assert!(err.contains("optimizer.safetensors"), "{err}");
    // Without the saved settings a changed one would go unseen: refused.
    let err = resume_error(&|| std::fs::remove_file(last.join("train_config.json")).unwrap());
    assert!(
        err.contains("train_config.json") && err.contains("missing"),
        "{err}"
    );
    // Restored whole, the checkpoint resumes.
    trainer(dir.path(), configure, false).resume(&last).unwrap();
}

#[test]
fn variant_b_resume_after_an_evaluation_keeps_pending_gradients() {
    // 2 examples, micro-batches of 1 → 2 batches per epoch. With GA 2 the reference rule
    // updates after batch 1 (nb = 1) but not after batch 2 (nb = 2), so every epoch ends with
    // batch 2's gradient pending; it is carried into the next epoch's first update.
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = None;
        c.epochs = Some(3);
        c.batch_size = 2;
        c.grad_accum = 2; // micro-batches of 1 example
        c.accumulation = AccumulationMode::Reference; // the phase reset at each epoch's end
        c.shuffle = true;
    };
    let fx = expected();
    let feats: Vec<Feature> = features(&fx)[..2].to_vec(); // 2 batches per epoch
    let make = |out: &Path| {
        let mut config = tiny_config(&fx, out.to_path_buf());
        configure(&mut config);
        Trainer::new(
            config,
            tiny_model(),
            feats.clone(),
            Some(dev_set(&feats)),
            None,
        )
        .unwrap()
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = make(full_dir.path());
    full.run().unwrap();

    // Interrupted: advance until the first evaluation (end of epoch 0), then "crash".
    let split_dir = tempfile::tempdir().unwrap();
    let mut first = make(split_dir.path());
    loop {
        let report = first.advance().unwrap().unwrap();
        if report.evaluation.is_some() {
            // Batch 2 of the epoch did not update (nb = 2): its gradient is pending.
            assert!(!report.step.update);
            break;
        }
    }
    drop(first);
    let ckpt = split_dir.path().join("checkpoint-last");
    assert!(ckpt.join("pending_grads.safetensors").exists());
    let mut second = make(split_dir.path());
    second.resume(&ckpt).unwrap();
    second.run().unwrap();
    assert_same_run(&full, &second);
}

#[test]
fn variant_a_evaluates_before_the_first_update_like_run_py_and_resumes_from_there() {
    // run.py sets eval_flag = True before its loop: with --eval_steps -1 (every update) and
    // GA 3, the first batch does not update, and the untrained model is evaluated (and
    // checkpointed, with that batch's gradient pending) right after it.
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(7);
        c.eval_steps = Some(1);
        c.batch_size = 3;
        c.grad_accum = 3; // micro-batches of 1 example
        c.accumulation = AccumulationMode::Reference; // run.py's phase reset
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = trainer(full_dir.path(), configure, true);
    let summary = full.run().unwrap();
    // Updates after batches 3, 5, 7 (the first evaluation reset the phase); evaluations after
    // batches 1, 3, 5, 7.
    assert_eq!((summary.updates, summary.evaluations), (3, 4));
    let steps: Vec<u64> = eval_records(full_dir.path())
        .iter()
        .map(|r| r.global_step())
        .collect();
    assert_eq!(steps, [0, 1, 2, 3]);

    let split_dir = tempfile::tempdir().unwrap();
    let mut first = trainer(split_dir.path(), configure, true);
    let report = first.advance().unwrap().unwrap();
    assert!(!report.step.update && report.evaluation.is_some());
    // A loop driven by `advance` holds the folder from its first write on.
    let mut intruder = trainer(split_dir.path(), configure, true);
    let err = intruder.advance().unwrap_err();
    assert!(matches!(err, c2n_train::TrainError::InUse { .. }), "{err}");
    drop(intruder);
    drop(first); // "crash" right after the first evaluation
    let ckpt = split_dir.path().join("checkpoint-last");
    assert!(ckpt.join("pending_grads.safetensors").exists());
    let mut second = trainer(split_dir.path(), configure, true);
    second.resume(&ckpt).unwrap();
    second.run().unwrap();
    assert_same_run(&full, &second);
    // The resumed run kept the metrics line of the evaluation it resumed from (step 0).
    let resumed_steps: Vec<u64> = eval_records(split_dir.path())
        .iter()
        .map(|r| r.global_step())
        .collect();
    assert_eq!(resumed_steps, steps);
}

#[test]
fn metrics_hold_no_train_record_of_an_empty_running_loss() {
    // Variant B, 3 updates per epoch, a train record every 3 updates: each one falls on an
    // epoch end, right after the evaluation reset the running loss.
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(
        dir.path(),
        |c| {
            c.train_steps = None;
            c.epochs = Some(2);
            c.batch_size = 2;
            c.log_every = 1;
        },
        true,
    );
    t.run().unwrap();
    let records = MetricsLog::read(&dir.path().join("metrics.jsonl")).unwrap();
    let train_losses: Vec<f64> = records
        .iter()
        .filter_map(|r| match r {
            c2n_train::metrics::MetricRecord::Train { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect();
    assert!(!train_losses.is_empty());
    assert!(
        train_losses.iter().all(|&l| l > 0.0),
        "a train record of nothing: {train_losses:?}"
    );
}

#[test]
fn a_run_shorter_than_log_every_still_logs_its_last_update() {
    // 5 updates, no dev data, a line every 10 updates: one line, for update 5. A run cut at
    // update 3 by stop_after leaves it to the resumed part (its running loss is saved), so the
    // split run logs what the whole run logs.
    let dir = tempfile::tempdir().unwrap();
    let configure = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(5);
        c.stop_after = Some(3);
        c.log_every = 10;
    };
    trainer(dir.path(), configure, false).run().unwrap();
    let train_steps = || -> Vec<u64> {
        MetricsLog::read(&dir.path().join("metrics.jsonl"))
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                c2n_train::metrics::MetricRecord::Train { global_step, .. } => Some(*global_step),
                _ => None,
            })
            .collect()
    };
    assert_eq!(train_steps(), Vec::<u64>::new());
    let mut second = trainer(
        dir.path(),
        |c| {
            configure(c);
            c.stop_after = None;
        },
        false,
    );
    second.resume(&dir.path().join("checkpoint-last")).unwrap();
    second.run().unwrap();
    assert_eq!(train_steps(), [5]);
}

#[test]
fn resume_refuses_a_different_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(
        dir.path(),
        |c| {
            c.train_steps = Some(2);
            c.batch_size = 2;
        },
        false,
    );
    t.run().unwrap();
    let mut other = trainer(
        dir.path(),
        |c| {
            c.train_steps = Some(2);
            c.batch_size = 3;
        },
        false,
    );
    let err = other
        .resume(&dir.path().join("checkpoint-last"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot resume"), "{err}");
}

#[test]
fn the_accumulation_rule_binds_a_resume_only_from_ga_2_on() {
    // A run saved under run.py's rule (the default until 2026-11-27) resumes under the
    // default rule when GA is 1 (the same loop), and is refused when GA is 2.
    for (grad_accum, resumes) in [(1, true), (2, false)] {
        let dir = tempfile::tempdir().unwrap();
        let configure = |c: &mut c2n_train::config::TrainConfig| {
            c.train_steps = Some(4);
            c.batch_size = 2;
            c.grad_accum = grad_accum;
        };
        let mut first = trainer(
            dir.path(),
            |c| {
                configure(c);
                c.accumulation = AccumulationMode::Reference;
                c.stop_after = Some(1);
            },
            false,
        );
        first.run().unwrap();
        let mut second = trainer(dir.path(), configure, false);
        let outcome = second.resume(&dir.path().join("checkpoint-last"));
        assert_eq!(outcome.is_ok(), resumes, "GA {grad_accum}: {outcome:?}");
        if let Err(e) = outcome {
            assert!(e.to_string().contains("accumulation"), "{e}");
        }
    }
}

#[test]
fn resume_refuses_changed_settings_and_names_each_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = |c: &mut c2n_train::config::TrainConfig| {
        c.train_steps = Some(4);
        c.batch_size = 2;
        c.stop_after = Some(2);
    };
    trainer(dir.path(), base, false).run().unwrap();
    let ckpt = dir.path().join("checkpoint-last");
    let mut changed = trainer(
        dir.path(),
        |c| {
            base(c);
            c.lr *= 2.0;
            c.shuffle = !c.shuffle;
        },
        false,
    );
    let err = changed.resume(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("lr: saved") && err.contains("shuffle: saved"),
        "{err}"
    );
    // Other data of the same size (same loop, same settings) is refused by its fingerprint.
    let fx = expected();
    let mut config = tiny_config(&fx, dir.path().to_path_buf());
    base(&mut config);
    let mut other_data = features(&fx);
    other_data.reverse();
    let mut swapped = Trainer::new(config, tiny_model(), other_data, None, None).unwrap();
    let err = swapped.resume(&ckpt).unwrap_err().to_string();
    assert!(err.contains("training data differs"), "{err}");
    // What the saved state does not encode may change: here stop_after.
    let mut longer = trainer(
        dir.path(),
        |c| {
            base(c);
            c.stop_after = None;
        },
        false,
    );
    longer.resume(&ckpt).unwrap();
    assert_eq!(longer.run().unwrap().updates, 4);
}

#[test]
fn length_bucketed_runs_resume_exactly_and_refuse_another_window() {
    let bucketed = |window: Option<usize>| {
        move |c: &mut c2n_train::config::TrainConfig| {
            c.train_steps = Some(6);
            c.eval_steps = Some(3);
            c.batch_size = 2;
            c.shuffle = true;
            c.padding = Padding::Dynamic;
            c.bucket_window = window;
        }
    };
    let full_dir = tempfile::tempdir().unwrap();
    let mut full = trainer(full_dir.path(), bucketed(Some(2)), true);
    assert_eq!(full.run().unwrap().updates, 6);
    let plain_dir = tempfile::tempdir().unwrap();
    let mut plain = trainer(plain_dir.path(), bucketed(None), true);
    plain.run().unwrap();
    assert_ne!(
        parameter_values(&full),
        parameter_values(&plain),
        "bucketing reaches the batches"
    );

    let split_dir = tempfile::tempdir().unwrap();
    let split = split_dir.path();
    let mut first = trainer(
        split,
        |c| {
            bucketed(Some(2))(c);
            c.stop_after = Some(4);
        },
        true,
    );
    assert_eq!(first.run().unwrap().updates, 4);
    drop(first);
    let mut other_window = trainer(split, bucketed(Some(3)), true);
    let err = other_window
        .resume(&split.join("checkpoint-last"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("window"), "{err}");
    let mut second = trainer(split, bucketed(Some(2)), true);
    second.resume(&split.join("checkpoint-last")).unwrap();
    assert_eq!(second.run().unwrap().updates, 6);
    assert_same_run(&full, &second);
}
