//! The pipeline end to end on a few real ruby records with a tiny model: stages, report,
//! resumability (a rerun skips every stage), resuming training, refusing a changed config.

use crate::support::{head_lines, shared_data};
use c2n_eval::{evaluate, Metric};
use c2n_train::pipeline::{run_pipeline, PipelineConfig, PipelineReport, Preset, SmallModel};
use serde_json::json;
use std::path::{Path, PathBuf};

fn tiny_config(shared: &Path, data_dir: &Path, out: &Path) -> PipelineConfig {
    let mut train = serde_json::Map::new();
    for (k, v) in [
        ("train_steps", json!(6)),
        ("eval_steps", json!(3)),
        ("warmup_steps", json!(1)),
        ("batch_size", json!(8)),
        ("eval_batch_size", json!(8)),
        ("beam_size", json!(2)),
        ("max_source_len", json!(48)),
        ("max_target_len", json!(12)),
    ] {
        train.insert(k.into(), v);
    }
    PipelineConfig {
        lang: "ruby".into(),
        data_dir: Some(data_dir.to_path_buf()),
        train_split: "valid".into(),
        dev_split: "valid".into(),
        holdout: 8,
        preset: Some(Preset::Small),
        tokenizer: Some(shared.join("data/roberta-base").display().to_string()),
        output_dir: out.to_path_buf(),
        device: "cpu".into(),
        small_model: SmallModel {
            hidden_size: 16,
            heads: 2,
            encoder_layers: 1,
            decoder_layers: 1,
            ffn_dim: 32,
        },
        train,
        progress: false,
        ..PipelineConfig::default()
    }
}

/// `tmp/data/ruby/{valid,test}.jsonl`: the first lines of the shared ruby splits.
fn ruby_data(shared: &Path, tmp: &Path, valid_lines: usize, test_lines: usize) -> PathBuf {
    let data = tmp.join("data");
    let ruby = shared.join("data/codesearchnet/ruby");
    head_lines(
        &ruby.join("valid.jsonl"),
        valid_lines,
        &data.join("ruby/valid.jsonl"),
    );
    head_lines(
        &ruby.join("test.jsonl"),
        test_lines,
        &data.join("ruby/test.jsonl"),
    );
    data
}

fn run(cfg: &PipelineConfig) -> (PipelineReport, Vec<String>) {
    let mut lines = Vec::new();
    let report = run_pipeline(cfg, &mut |l| lines.push(l.to_string())).unwrap();
    (report, lines)
}

#[test]
fn pipeline_runs_reports_and_resumes() {
    let Some(shared) = shared_data(&["valid.jsonl", "test.jsonl"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = ruby_data(&shared, tmp.path(), 40, 10);
    let out = tmp.path().join("run");
    let cfg = tiny_config(&shared, &data, &out);

    let (report, lines) = run(&cfg);
    assert!(lines[0].contains("preset small"), "{lines:?}");
    assert!(report.splits.dev_held_out);
    assert_eq!((report.dev.examples, report.test.examples), (8, 10));
    assert_eq!(report.train.updates, 6);
    // 32 training examples, batch 8, 6 updates.
    assert_eq!(report.train.examples_seen, 48);
    assert_eq!(report.published_bleu, Some(12.16));
    assert!((report.test.perplexity - report.test.loss.exp()).abs() < 1e-9);
    assert_eq!(report.stages.len(), 4);
    assert!(report.stages.iter().all(|s| !s.skipped && s.seconds > 0.0));
    // The report's BLEU is what the evaluator gives for the files it wrote.
    let scored = evaluate(
        &report.test.gold,
        Some(&report.test.output),
        std::io::empty(),
        Metric::CodeXglue,
    )
    .unwrap();
    assert_eq!(scored.score, report.test.bleu);
    assert_eq!(scored.matched, 10);
    let written = std::fs::read_to_string(&report.test.output).unwrap();
    let empty = written.lines().filter(|l| l.ends_with('\t')).count();
    assert_eq!(report.test.empty_predictions, empty);
    for file in [
        "report.json",
        "report.md",
        "curves.png",
        "stages/train.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains(&format!("**{:.2}**", report.test.bleu_2dp)) && md.contains("12.16"));
    assert!(md.contains(&format!("best dev loss {:.4}", report.train.best_dev_loss)));
    let mut unevaluated = report.clone();
    unevaluated.train.evaluations = 0;
    let md = unevaluated.markdown();
    assert!(md.contains("no dev evaluation") && !md.contains("best dev loss"));

    // A rerun does nothing again and says so.
    let (again, lines) = run(&cfg);
    assert!(again.stages.iter().all(|s| s.skipped), "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("skipping")).count(),
        4,
        "{lines:?}"
    );
    // Its total still counts what the results took (the stages of the first run).
    let staged: f64 = again.stages.iter().map(|s| s.seconds).sum();
    assert!(
        again.total_seconds >= staged,
        "rerun total {} s, stages {staged} s",
        again.total_seconds
    );
    // Read back from the stage record (serde_json parses floats to within one ulp).
    assert!((again.test.bleu - report.test.bleu).abs() <= 1e-12 * report.test.bleu.abs());

    // A finished evaluation whose file is gone is scored again, not reported done.
    std::fs::remove_file(&report.test.output).unwrap();
    let (rescored, lines) = run(&cfg);
    let skipped: Vec<bool> = rescored.stages.iter().map(|s| s.skipped).collect();
    assert_eq!(skipped, [true, true, true, false], "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("is gone")), "{lines:?}");
    assert!(report.test.output.is_file());

    // Losing the train and evaluation records resumes from checkpoint-last (nothing left to
    // train) and scores the same checkpoint again.
    for stage in ["train", "evaluate-dev", "evaluate-test"] {
        std::fs::remove_file(out.join(format!("stages/{stage}.json"))).unwrap();
    }
    let (resumed, lines) = run(&cfg);
    assert!(lines.iter().any(|l| l.contains("resuming")), "{lines:?}");
    assert_eq!(resumed.train.updates, 6);
    // Same checkpoint, same predictions up to thread-order rounding in the matmuls.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-300);
    assert!(
        close(resumed.test.bleu, report.test.bleu),
        "{} vs {}",
        resumed.test.bleu,
        report.test.bleu
    );
    assert_eq!(resumed.train.checkpoint, report.train.checkpoint);
    // Its train row still covers the whole training, not only this (empty) last process.
    let train_row = |r: &PipelineReport| r.stages[1].clone();
    assert_eq!(train_row(&resumed).name, "train");
    assert_eq!(train_row(&resumed).examples, train_row(&report).examples);
    assert!(
        train_row(&resumed).seconds >= 0.9 * train_row(&report).seconds,
        "{:?} vs {:?}",
        train_row(&resumed),
        train_row(&report)
    );
    assert!(train_row(&resumed).note.contains("resumed"));

    // Another test limit scores the test split again and nothing else (the evaluation
    // settings are taken over; the same limit then skips every stage again).
    let mut fewer = cfg.clone();
    fewer.test_limit = Some(4);
    let (limited, lines) = run(&fewer);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("test_limit: earlier unset, now 4")),
        "{lines:?}"
    );
    let skipped: Vec<bool> = limited.stages.iter().map(|s| s.skipped).collect();
    assert_eq!(skipped, [true, true, true, false], "{lines:?}");
    assert_eq!((limited.dev.examples, limited.test.examples), (8, 4));
    assert_eq!(limited.test.limit, Some(4));
    let written = std::fs::read_to_string(&limited.test.output).unwrap();
    assert_eq!(written.lines().count(), 4);
    let (again, _) = run(&fewer);
    assert!(again.stages.iter().all(|s| s.skipped));
    assert_eq!(again.test.examples, 4);

    // What a sweep asks before it skips a finished point: the same run (preset left to the
    // device, the folder spelled another way), other evaluation limits, another run.
    use c2n_train::pipeline::identity::{earlier_run_match, RunMatch};
    std::fs::create_dir_all(tmp.path().join("sub")).unwrap();
    let spelled_otherwise = PipelineConfig {
        preset: None,
        output_dir: tmp.path().join("sub/../run"),
        ..fewer.clone()
    };
    assert_eq!(earlier_run_match(&spelled_otherwise), RunMatch::Same);
    assert!(matches!(
        earlier_run_match(&cfg),
        RunMatch::EvaluationChanged(keys) if keys.len() == 1 && keys[0].starts_with("test_limit")
    ));
    let mut lr = fewer.clone();
    lr.train.insert("lr".into(), json!(0.5));
    assert!(matches!(earlier_run_match(&lr), RunMatch::Different(why) if why.contains("train.lr")));

    // Changed data under the same folder is refused (the records describe the old data).
    let test_file = data.join("ruby/test.jsonl");
    let original = std::fs::read_to_string(&test_file).unwrap();
    let mut reordered: Vec<&str> = original.lines().collect();
    reordered.reverse();
    std::fs::write(&test_file, reordered.join("\n") + "\n").unwrap();
    assert!(
        matches!(earlier_run_match(&fewer), RunMatch::Different(why) if why.contains("test.jsonl changed")),
        "a sweep sees the change too"
    );
    let other_limit = PipelineConfig {
        test_limit: Some(3),
        ..fewer.clone()
    };
    let err = run_pipeline(&other_limit, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.jsonl changed since the run"), "{err}");
    std::fs::write(&test_file, original).unwrap();
    // The refused rerun recorded nothing: the folder's config is still the one that ran.
    assert_eq!(earlier_run_match(&fewer), RunMatch::Same);
    let (restored, lines) = run(&fewer);
    assert!(restored.stages.iter().all(|s| s.skipped), "{lines:?}");

    // A folder trained under an older recipe of the same preset (the config names the preset,
    // not its recipe) is another run to a sweep too, not a finished point.
    let saved_train = fewer.output_dir.join("train/train_config.json");
    let saved_text = std::fs::read_to_string(&saved_train).unwrap();
    let mut older: serde_json::Value = serde_json::from_str(&saved_text).unwrap();
    let steps = older["train_steps"].as_u64().unwrap();
    older["train_steps"] = json!(steps + 7);
    std::fs::write(&saved_train, older.to_string()).unwrap();
    assert!(
        matches!(earlier_run_match(&fewer), RunMatch::Different(why)
            if why.contains("train_steps") && why.contains("recipe")),
        "{:?}",
        earlier_run_match(&fewer)
    );
    std::fs::write(&saved_train, saved_text).unwrap();
    assert_eq!(earlier_run_match(&fewer), RunMatch::Same);

    // Not while another process holds the folder (here: its lock taken by hand).
    {
        let held = c2n_train::run_lock::RunLock::acquire(&fewer.output_dir, "pipeline").unwrap();
        let err = run_pipeline(&fewer, &mut |_| {}).unwrap_err();
        assert!(matches!(err, c2n_train::TrainError::InUse { .. }), "{err}");
        drop(held);
    }

    // The same folder with another config is refused.
    let mut other = cfg.clone();
    other.train.insert("lr".into(), json!(0.5));
    let err = run_pipeline(&other, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("holds another run"), "{err}");
    assert!(
        err.contains("train.lr: earlier unset (the preset's value), now 0.5")
            && !err.contains("invalid training config"),
        "the key is named: {err}"
    );

    // A folder whose training ran with another recipe under the same pipeline config (a
    // preset's recipe that changed between versions) is refused, naming the setting.
    let recipe = fewer.output_dir.join("train/train_config.json");
    let saved = std::fs::read_to_string(&recipe).unwrap();
    let older = saved.replace("\"train_steps\": 6", "\"train_steps\": 5");
    assert_ne!(older, saved, "the saved recipe names train_steps");
    std::fs::write(&recipe, older).unwrap();
    let err = run_pipeline(&fewer, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("train_steps: saved 5, now 6") && err.contains("recipe may have changed"),
        "{err}"
    );
    std::fs::write(&recipe, saved).unwrap();

    // A run that failed before any work (here: no such tokenizer) binds nothing: the
    // corrected rerun with another configuration goes ahead in the same folder.
    let failed_first = PipelineConfig {
        output_dir: tmp.path().join("failed-first"),
        tokenizer: Some(tmp.path().join("no-such-tokenizer").display().to_string()),
        ..fewer.clone()
    };
    assert!(run_pipeline(&failed_first, &mut |_| {}).is_err());
    // The corrected rerun also holds out another number of dev examples: the failed
    // attempt's held-out copies must not be reused.
    let corrected = PipelineConfig {
        tokenizer: fewer.tokenizer.clone(),
        test_limit: Some(2),
        holdout: 5,
        ..failed_first.clone()
    };
    let (report, lines) = run(&corrected);
    assert_eq!(report.test.examples, 2, "{lines:?}");
    assert_eq!(report.dev.examples, 5, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("failed before any work")),
        "{lines:?}"
    );

    // A moved output folder scores its own model (the records name it relative to the
    // folder), here after a copy of another run took the old name.
    let moved = PipelineConfig {
        output_dir: tmp.path().join("moved"),
        test_limit: Some(3),
        ..fewer.clone()
    };
    std::fs::rename(&fewer.output_dir, &moved.output_dir).unwrap();
    std::fs::create_dir_all(fewer.output_dir.join("train/checkpoint-best-bleu")).unwrap();
    let (rescored, lines) = run(&moved);
    let skipped: Vec<bool> = rescored.stages.iter().map(|s| s.skipped).collect();
    assert_eq!(skipped, [true, true, true, false], "{lines:?}");
    assert_eq!(rescored.test.examples, 3);
    assert!(
        rescored.train.checkpoint.starts_with("train"),
        "{:?}",
        rescored.train.checkpoint
    );
}

#[test]
fn a_bad_line_stops_the_pipeline_with_the_way_out() {
    let Some(shared) = shared_data(&["valid.jsonl", "test.jsonl"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = ruby_data(&shared, tmp.path(), 20, 4);
    // A record without code_tokens at line 3 of the test split.
    let test_file = data.join("ruby/test.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&test_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines[2] = r#"{"docstring_tokens": ["x"]}"#.into();
    std::fs::write(&test_file, lines.join("\n") + "\n").unwrap();
    let cfg = tiny_config(&shared, &data, &tmp.path().join("run"));
    let err = run_pipeline(&cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("test.jsonl:3") && err.contains("reads its data strictly"),
        "{err}"
    );
}

#[test]
fn a_file_where_a_stage_folder_goes_is_refused_before_any_stage() {
    let Some(shared) = shared_data(&["valid.jsonl", "test.jsonl"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = ruby_data(&shared, tmp.path(), 20, 4);
    let cfg = tiny_config(&shared, &data, &tmp.path().join("run"));
    std::fs::create_dir_all(&cfg.output_dir).unwrap();
    std::fs::write(cfg.output_dir.join("train"), "not a folder").unwrap();
    let mut lines = Vec::new();
    let err = run_pipeline(&cfg, &mut |line| lines.push(line.to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train") && err.contains("is a file, not a folder"),
        "{err}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("prepare")),
        "failed after preparing: {lines:?}"
    );
}

#[test]
fn a_stop_asked_for_during_the_last_update_ends_before_the_evaluation_stages() {
    let Some(shared) = shared_data(&["valid.jsonl", "test.jsonl"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = ruby_data(&shared, tmp.path(), 20, 4);
    let mut cfg = tiny_config(&shared, &data, &tmp.path().join("run"));
    cfg.train.insert("train_steps".into(), json!(1));
    // Requested before the run: the vote after update 1, the last, is skipped (the run
    // ends there anyway), so only the pipeline is left to act on it.
    let interrupt = c2n_train::interrupt::Interrupt::new();
    interrupt.request();
    let mut lines = Vec::new();
    let err = c2n_train::pipeline::run_pipeline_interruptible(&cfg, Some(&interrupt), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("training is done; the evaluation stages did not run"),
        "{err}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("evaluate")),
        "{lines:?}"
    );
    // The same command goes on from there: training is recorded as done.
    let (report, lines) = run(&cfg);
    assert_eq!(report.train.updates, 1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("train: done by an earlier run")),
        "{lines:?}"
    );
}
