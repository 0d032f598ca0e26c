//! Runs on the real ruby files and the RoBERTa BPE in `../shared` (or `$C2N_SHARED`); each
//! test skips with a message when they are absent.

use crate::support::{head_lines, shared_data};
use c2n_data::Stage;
use c2n_data::{Padding, RobertaTokenizer};
use c2n_train::config::TrainConfig;
use c2n_train::data::{DevSet, FeatureSource};
use c2n_train::evaluate::Predictions;
use c2n_train::metrics::{MetricRecord, MetricsLog};
use c2n_train::trainer::Trainer;
use std::path::Path;

#[test]
fn dev_subset_and_dev_gold_match_the_reference_on_ruby_valid() {
    let Some(shared) = shared_data(&["valid.jsonl", "test.jsonl"]) else {
        return;
    };
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let dev = DevSet::load(
        shared.join("data/codesearchnet/ruby/valid.jsonl"),
        &tok,
        256,
        128,
        1000,
        42,
    )
    .unwrap();
    assert_eq!(dev.loss_features.len(), 1400);
    assert_eq!(dev.bleu_features.len(), 1000);
    // Test-stage targets are `<s> None </s>` (§3).
    assert!(dev
        .bleu_features
        .iter()
        .all(|f| f.target_ids == [0, 29802, 2]));
    let dir = tempfile::tempdir().unwrap();
    let predictions = Predictions {
        idx: dev.bleu_idx.clone(),
        texts: dev.bleu_golds.clone(),
        golds: dev.bleu_golds.clone(),
    };
    let (_, gold_path) = predictions.write(dir.path(), "dev").unwrap();
    let gold = std::fs::read_to_string(gold_path).unwrap();
    let lines: Vec<&str> = gold.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 1000);
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ruby_valid_dev_gold_excerpt.txt"),
    )
    .unwrap();
    let want: Vec<&str> = fixture.split_inclusive('\n').collect();
    assert_eq!(&lines[..20], &want[..20]);
    assert_eq!(&lines[997..], &want[20..]);
    // Predictions equal to the gold texts score exactly 100.
    assert_eq!(predictions.bleu().unwrap().bleu, 100.0);
}

#[test]
fn features_from_the_shard_cache_equal_the_in_memory_ones() {
    let Some(shared) = shared_data(&["valid.jsonl"]) else {
        return;
    };
    let tok_dir = shared.join("data/roberta-base");
    let tok = RobertaTokenizer::load(tok_dir.to_str().unwrap()).unwrap();
    let files = c2n_data::TokenizerFiles::resolve(tok_dir.to_str().unwrap()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let data = shared.join("data/codesearchnet/ruby/valid.jsonl");
    let in_memory = FeatureSource {
        tokenizer: &tok,
        cache: None,
    };
    let cached = FeatureSource {
        tokenizer: &tok,
        cache: Some((&files, cache.path())),
    };
    let want = in_memory.load(&data, 128, 64, Stage::Train).unwrap();
    // First call builds the cache, the second maps it.
    assert_eq!(cached.load(&data, 128, 64, Stage::Train).unwrap(), want);
    assert_eq!(cached.load(&data, 128, 64, Stage::Train).unwrap(), want);
    // One cache folder (and its build lock file), built once.
    let folders = std::fs::read_dir(cache.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(folders, 1);
    let dev = DevSet::load_from(&cached, &data, 128, 64, 50, 42).unwrap();
    assert_eq!(
        dev.loss_features,
        in_memory.load(&data, 128, 64, Stage::Dev).unwrap()
    );
}

#[test]
fn short_run_on_ruby_writes_checkpoints_dev_outputs_and_metrics() {
    let Some(shared) = shared_data(&["valid.jsonl", "test.jsonl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let dev = dir.path().join("dev.jsonl");
    head_lines(
        &shared.join("data/codesearchnet/ruby/valid.jsonl"),
        24,
        &train,
    );
    head_lines(&shared.join("data/codesearchnet/ruby/test.jsonl"), 6, &dev);
    let out = dir.path().join("run");
    let config = TrainConfig {
        init: "small".into(),
        tokenizer: Some(shared.join("data/roberta-base").display().to_string()),
        train_data: Some(train),
        dev_data: Some(dev),
        output_dir: out.clone(),
        max_source_len: 64,
        max_target_len: 16,
        batch_size: 8,
        eval_batch_size: 4,
        train_steps: Some(4),
        eval_steps: Some(2),
        beam_size: 2,
        lr: 1e-3,
        padding: Padding::Dynamic,
        progress: false,
        device: "cpu".into(),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::from_config(config.clone(), false).unwrap();
    assert!(trainer.earlier_run_set_aside().is_none());
    let summary = trainer.run().unwrap();
    // Evaluations after updates 1 and 3 ((global_step + 1) % 2 == 0); update 4 is not evaluated.
    assert_eq!((summary.updates, summary.evaluations), (4, 2));
    for name in [
        "config.json",
        "model.safetensors",
        "train_state.json",
        "optimizer.safetensors",
        "optimizer.json",
        "train_config.json",
    ] {
        assert!(
            out.join("checkpoint-last").join(name).exists(),
            "checkpoint-last/{name}"
        );
    }
    assert!(out.join("checkpoint-best-ppl/model.safetensors").exists());
    let dev_output = std::fs::read_to_string(out.join("dev.output")).unwrap();
    let dev_gold = std::fs::read_to_string(out.join("dev.gold")).unwrap();
    assert_eq!(
        (dev_output.lines().count(), dev_gold.lines().count()),
        (6, 6)
    );
    let evals: Vec<_> = MetricsLog::read(&out.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            MetricRecord::Eval {
                global_step,
                dev_loss,
                dev_bleu,
                ..
            } => Some((global_step, dev_loss, dev_bleu)),
            MetricRecord::Train { .. } => None,
        })
        .collect();
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 3]);
    assert!(evals.iter().all(|e| e.1.is_finite() && e.2.is_some()));
    // The final checkpoint holds the final weights.
    let reloaded =
        c2n_model::load_checkpoint(out.join("checkpoint-last"), &candle_core::Device::Cpu).unwrap();
    let name = "decoder.layers.0.linear1.weight";
    let saved = reloaded.varmap().data().lock().unwrap()[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let live = trainer
        .params()
        .get(name)
        .unwrap()
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(saved, live);

    // The `evaluate` path on the saved checkpoint: files, n-best lines, and the in-memory
    // score equal to scoring the written files.
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let eval_dir = dir.path().join("eval");
    let request = c2n_train::evaluate::EvaluateRequest {
        data: dir.path().join("dev.jsonl"),
        limit: Some(3),
        generation: c2n_model::generation::GenerationConfig {
            beam_size: 3,
            max_length: 8,
            ..Default::default()
        },
        max_source_len: 64,
        batch_size: 2,
        padding: Padding::Dynamic,
        output_dir: eval_dir.clone(),
        prefix: "test".into(),
        nbest: Some(2),
    };
    let report = c2n_train::evaluate::evaluate_file(&reloaded, &tok, &request, |_| {}).unwrap();
    assert_eq!((report.examples, report.bleu.matched), (3, 3));
    let nbest = std::fs::read_to_string(eval_dir.join("nbest.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = nbest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["idx"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(lines
        .iter()
        .all(|l| l["hypotheses"].as_array().unwrap().len() == 2));
    // The first hypothesis is the evaluated prediction, row for row.
    let output = std::fs::read_to_string(&report.output).unwrap();
    let rows: Vec<&str> = output.lines().collect();
    assert_eq!(rows.len(), 3, "one line per example: {output:?}");
    for (line, row) in lines.iter().zip(rows) {
        let best = line["hypotheses"][0]["text"].as_str().unwrap();
        assert_eq!(format!("{}\t{best}", line["idx"]), row);
    }
    let gold = c2n_eval::Gold::read(&report.gold).unwrap();
    let predictions = c2n_eval::Predictions::read(&report.output).unwrap();
    assert_eq!(
        c2n_eval::smoothed_bleu(&gold, &predictions).unwrap().bleu,
        report.bleu.bleu
    );

    // `predict --jsonl`'s path (code only, other batches) gives the evaluated predictions.
    let code_only = c2n_data::read_code_examples(dir.path().join("dev.jsonl")).unwrap();
    let features = c2n_data::code_features(&tok, &code_only[..3], 64).unwrap();
    let batching = c2n_train::evaluate::EvalBatching {
        batch_size: 1,
        padding: Padding::Dynamic,
        max_source_len: 64,
        max_target_len: 8,
    };
    let decoded =
        c2n_train::evaluate::decode(&reloaded, &features, &batching, &request.generation, |_| {})
            .unwrap();
    let predicted: Vec<String> = code_only
        .iter()
        .zip(&decoded)
        .map(|(e, d)| format!("{}\t{}", e.idx, tok.decode(d.prediction())))
        .collect();
    assert_eq!(predicted, output.lines().collect::<Vec<_>>());

    // A fresh run in the same folder (one update, no dev set) moves the earlier run aside
    // whole: no best checkpoint of the other run is left beside its own.
    let again = TrainConfig {
        dev_data: None,
        train_steps: Some(1),
        eval_steps: None,
        ..config
    };
    // Not while the first run still holds the folder: refused before it moves anything.
    let busy = Trainer::from_config(again.clone(), false).err().unwrap();
    assert!(
        matches!(busy, c2n_train::TrainError::InUse { .. }),
        "{busy}"
    );
    assert!(out.join("checkpoint-best-ppl").is_dir());
    drop(trainer);
    let mut fresh = Trainer::from_config(again.clone(), false).unwrap();
    let aside = out.join("earlier-run-1");
    let earlier = fresh.earlier_run_set_aside().unwrap();
    assert_eq!(earlier.dir, aside);
    assert!(earlier.bytes > 0);
    fresh.run().unwrap();
    assert!(aside
        .join("checkpoint-best-ppl/model.safetensors")
        .is_file());
    assert!(aside.join("dev.output").is_file() && aside.join("metrics.jsonl").is_file());
    assert!(!out.join("checkpoint-best-ppl").exists() && !out.join("dev.output").exists());
    assert!(out.join("checkpoint-last/model.safetensors").is_file());
    drop(fresh);

    // The first 10 of the 24 training examples only: two micro-batches of 8 per pass.
    let limited = TrainConfig {
        train_limit: Some(10),
        ..again
    };
    let trainer = Trainer::from_config(limited, false).unwrap();
    assert_eq!(trainer.state().plan.batches_per_pass, 2);
}
