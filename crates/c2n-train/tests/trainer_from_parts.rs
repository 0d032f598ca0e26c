//! A trainer built from parts (`Trainer::new`) owns its output folder as one built from a
//! config does: it moves an earlier run aside, holds the folder's lock for every write, and a
//! loop driven by `advance` keeps the same records as `run`.

use crate::support::*;

use c2n_train::config::TrainConfig;
use c2n_train::data::DevSet;
use c2n_train::run_lock::RunLock;
use c2n_train::trainer::Trainer;
use c2n_train::TrainError;
use std::path::Path;

fn dev_set(with_bleu: bool) -> DevSet {
    let feats = features(&expected());
    DevSet {
        loss_features: feats[..3].to_vec(),
        bleu_features: if with_bleu {
            feats[..2].to_vec()
        } else {
            Vec::new()
        },
        bleu_idx: if with_bleu { vec![0, 1] } else { Vec::new() },
        bleu_golds: if with_bleu {
            vec!["a".into(), "b".into()]
        } else {
            Vec::new()
        },
    }
}

fn config(out: &Path, train_steps: u64) -> TrainConfig {
    TrainConfig {
        train_steps: Some(train_steps),
        eval_steps: Some(1),
        batch_size: 2,
        log_every: 1,
        ..tiny_config(&expected(), out.to_path_buf())
    }
}

fn trainer(config: TrainConfig, dev: Option<DevSet>) -> c2n_train::Result<Trainer> {
    Trainer::new(config, tiny_model(), features(&expected()), dev, None)
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_fresh_run_from_parts_moves_an_earlier_run_aside_and_a_resumed_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let mut first = trainer(config(out, 3), Some(dev_set(false))).unwrap();
    let shown = format!("{first:?}");
    assert!(
        shown.starts_with("Trainer {") && shown.contains("train_examples: 6"),
        "{shown}"
    );
    let summary = first.run().unwrap();
    // Dev loss was evaluated and kept a best checkpoint; BLEU was not evaluated.
    assert!(summary.best_loss.is_some_and(|l| l < 1e6), "{summary:?}");
    assert_eq!(summary.best_bleu, None);
    drop(first);
    let first_lines = metrics_lines(out);
    assert!(out.join("checkpoint-best-ppl").is_dir());

    // A second fresh run of another length, from the first one's best checkpoint: the first
    // one's files step aside, whole, and the init is recorded where it went.
    let init = TrainConfig {
        init: out.join("checkpoint-best-ppl").display().to_string(),
        ..config(out, 1)
    };
    let mut second = trainer(init, None).unwrap();
    let summary = second.run().unwrap();
    assert_eq!((summary.best_loss, summary.evaluations), (None, 0));
    let aside = out.join("earlier-run-1");
    assert_eq!(second.earlier_run_set_aside().map(|e| &e.dir), Some(&aside));
    assert_eq!(metrics_lines(&aside), first_lines);
    assert!(aside.join("checkpoint-best-ppl").is_dir());
    assert!(!out.join("checkpoint-best-ppl").exists());
    let saved = TrainConfig::load(out.join("train_config.json")).unwrap();
    assert_eq!(saved.train_steps, Some(1));
    assert_eq!(
        saved.init,
        aside.join("checkpoint-best-ppl").display().to_string()
    );
    drop(second);

    // Resuming that run leaves the folder as it is.
    let mut third = trainer(config(out, 1), None).unwrap();
    third.resume(&out.join("checkpoint-last")).unwrap();
    third.run().unwrap();
    assert!(third.earlier_run_set_aside().is_none());
    assert!(!out.join("earlier-run-2").exists());
}

#[test]
fn every_write_of_a_trainer_from_parts_holds_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let held = RunLock::acquire(tmp.path(), "training run").unwrap();
    let mut t = trainer(config(tmp.path(), 2), None).unwrap();
    let err = t.save_checkpoint("checkpoint-last", true).unwrap_err();
    assert!(matches!(err, TrainError::InUse { .. }), "{err}");
    // The holder is in this very process, and the message says so.
    assert!(err.to_string().contains("in use by this process"), "{err}");
    assert!(!tmp.path().join("checkpoint-last").exists());
    drop(held);
    t.save_checkpoint("checkpoint-last", true).unwrap();
    assert!(tmp
        .path()
        .join("checkpoint-last/model.safetensors")
        .is_file());
}

#[test]
fn dev_bleu_without_a_tokenizer_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let bleu_config = TrainConfig {
        eval_bleu: true,
        ..config(tmp.path(), 2)
    };
    let err = trainer(bleu_config.clone(), Some(dev_set(true)))
        .expect_err("dev BLEU without a tokenizer must be refused");
    assert!(
        matches!(err, TrainError::Config(_)) && err.to_string().contains("tokenizer"),
        "{err}"
    );
    // Dev loss alone needs no tokenizer.
    let loss_only = TrainConfig {
        eval_bleu: false,
        ..bleu_config
    };
    assert!(trainer(loss_only, Some(dev_set(true))).is_ok());
    // Settings are checked as `from_config` checks them.
    let err = trainer(
        TrainConfig {
            dropout: Some(1.5),
            ..config(tmp.path(), 2)
        },
        None,
    )
    .expect_err("dropout 1.5 must be refused");
    assert!(err.to_string().contains("dropout"), "{err}");
}

#[test]
fn a_loop_driven_by_advance_keeps_the_records_run_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let mut t = trainer(config(out, 3), None).unwrap();
    let mut updates = 0;
    while let Some(report) = t.advance().unwrap() {
        updates += u64::from(report.step.update);
    }
    assert_eq!(updates, 3);
    t.save_checkpoint("checkpoint-last", true).unwrap();
    // One `train` line per update (log_every 1), the settings, and the time it took.
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().all(|l| l.contains("\"train\"")), "{text}");
    assert!(out.join("train_config.json").is_file());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint-last/train_state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["train_seconds"].as_f64().unwrap() > 0.0, "{state}");
}

#[test]
fn a_resume_says_what_it_misses() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let mut first = trainer(
        TrainConfig {
            stop_after: Some(1),
            ..config(out, 3)
        },
        Some(dev_set(false)),
    )
    .unwrap();
    first.run().unwrap();
    drop(first);
    // Without the dev data the saved loop (with its evaluations) cannot go on.
    let mut no_dev = trainer(config(out, 3), None).unwrap();
    let err = no_dev
        .resume(&out.join("checkpoint-last"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("this run has no dev data"), "{err}");
    // A best checkpoint holds weights only.
    let mut from_best = trainer(config(out, 3), Some(dev_set(false))).unwrap();
    let err = from_best
        .resume(&out.join("checkpoint-best-ppl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only checkpoint-last"), "{err}");
}

#[test]
fn a_resumed_advance_loop_drops_the_lines_after_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let settings = || TrainConfig {
        eval_steps: Some(3),
        ..config(out, 6)
    };
    let steps_logged = || -> Vec<u64> {
        c2n_train::metrics::MetricsLog::read(&out.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|r| r.global_step())
            .collect()
    };
    // Killed one update after the evaluation that wrote checkpoint-last.
    let mut first = trainer(settings(), Some(dev_set(false))).unwrap();
    let mut evaluated = false;
    while let Some(report) = first.advance().unwrap() {
        if evaluated && report.step.update {
            break;
        }
        evaluated |= report.evaluation.is_some();
    }
    drop(first);
    let before = steps_logged();
    assert!(before.len() >= 2, "{before:?}");
    let mut second = trainer(settings(), Some(dev_set(false))).unwrap();
    second.resume(&out.join("checkpoint-last")).unwrap();
    while second.advance().unwrap().is_some() {}
    second.save_checkpoint("checkpoint-last", true).unwrap();
    // One history: every step once (train lines and eval lines of distinct steps here).
    let after = steps_logged();
    let mut sorted = after.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(after, sorted, "{after:?}");
    assert_eq!(after.last(), Some(&6));
}

#[test]
fn a_run_from_config_records_an_init_from_the_earlier_run_where_it_was_moved() {
    use c2n_train::comm::parity::write_parity_fixture;
    let tmp = tempfile::tempdir().unwrap();
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/train_steps/init");
    let first = write_parity_fixture(tmp.path(), &init.display().to_string(), 1).unwrap();
    let out = first.output_dir.clone();
    Trainer::from_config(first.clone(), false)
        .unwrap()
        .run()
        .unwrap();
    // The next run starts from the first one's last checkpoint, in the same folder.
    let second = TrainConfig {
        init: out.join("checkpoint-last").display().to_string(),
        ..first
    };
    let mut trainer = Trainer::from_config(second, false).unwrap();
    let aside = out.join("earlier-run-1");
    assert_eq!(
        trainer.earlier_run_set_aside().map(|e| &e.dir),
        Some(&aside)
    );
    trainer.run().unwrap();
    let saved = TrainConfig::load(out.join("checkpoint-last/train_config.json")).unwrap();
    let recorded = std::path::PathBuf::from(&saved.init);
    assert_eq!(
        recorded.canonicalize().unwrap(),
        aside.join("checkpoint-last").canonicalize().unwrap()
    );
}
