//! Training-step benchmark: one micro-batch of forward + backward + reference AdamW update
//! through [`Trainer::advance`], with reference padding (256/128) and dynamic padding
//! (longest in batch), on real ruby valid batches of 8.
//!
//! Setup: the first 8 batches of a seeded shuffle of ruby valid (`../shared` or
//! `$C2N_SHARED`), tokenized by `c2n-data`, are written to
//! `target/bench-data/train_step/batches.json`; `tools/reference/train_reference.py bench`
//! times the PyTorch reference loop on the same file. Model: `ModelConfig::small()` (real
//! vocabulary 50 265, hidden 16, 2 + 2 layers), random init, dropout 0.1 (training mode).
//!
//! Run: `cargo bench --bench train_step -- --sample-size 10`.

use std::path::PathBuf;

use candle_core::{DType, Device};
use code2nl::data::{
    features_in_memory, plan_epoch, BatchConfig, Feature, FeatureConfig, Padding, PipelineConfig,
    RobertaTokenizer, Stage,
};
use code2nl::train::config::TrainConfig;
use code2nl::train::model_setup::build_model;
use code2nl::train::trainer::Trainer;
use criterion::{criterion_group, criterion_main, Criterion};

const BATCH: usize = 8;
const BATCHES: usize = 8;

fn shared() -> PathBuf {
    std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// The benchmark batches' features, in batch order (batch i = features[8i..8i+8]).
fn bench_features() -> Option<Vec<Feature>> {
    let shared = shared();
    let valid = shared.join("data/codesearchnet/ruby/valid.jsonl");
    if !valid.exists() {
        eprintln!(
            "SKIP train_step bench: no ruby data under {} (set C2N_SHARED)",
            shared.display()
        );
        return None;
    }
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str()?).ok()?;
    let cfg = PipelineConfig::strict_unfiltered(FeatureConfig {
        max_source_len: 256,
        max_target_len: 128,
        stage: Stage::Train,
    });
    let (all, _) = features_in_memory(&valid, &tok, &cfg).ok()?;
    let plan = plan_epoch(
        &all,
        &BatchConfig {
            batch_size: BATCH,
            seed: 42,
            ..BatchConfig::default()
        },
        0,
    )
    .ok()?;
    let picked: Vec<Feature> = plan
        .iter()
        .take(BATCHES)
        .flatten()
        .map(|&i| all[i].clone())
        .collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/train_step");
    std::fs::create_dir_all(&dir).ok()?;
    let batches: Vec<serde_json::Value> = picked
        .chunks(BATCH)
        .map(|b| {
            serde_json::json!({
                "source_ids": b.iter().map(|f| f.source_ids.clone()).collect::<Vec<_>>(),
                "target_ids": b.iter().map(|f| f.target_ids.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    std::fs::write(
        dir.join("batches.json"),
        serde_json::to_string(&batches).ok()?,
    )
    .ok()?;
    Some(picked)
}

fn trainer(features: &[Feature], padding: Padding) -> Trainer {
    let config = TrainConfig {
        init: "small".into(),
        batch_size: BATCH,
        train_steps: Some(1_000_000),
        eval_steps: None,
        shuffle: false,
        padding,
        progress: false,
        device: "cpu".into(),
        output_dir: std::env::temp_dir().join("c2n-train-step-bench"),
        // No metrics lines: a timed loop writes nothing into its folder.
        log_every: 0,
        ..TrainConfig::default()
    };
    let model = build_model("small", None, DType::F32, &Device::Cpu).expect("small model");
    Trainer::new(config, model, features.to_vec(), None, None).expect("trainer")
}

fn bench(c: &mut Criterion) {
    let Some(features) = bench_features() else {
        return;
    };
    let mean_len = |f: &dyn Fn(&[Feature]) -> usize| {
        features.chunks(BATCH).map(f).sum::<usize>() as f64 / BATCHES as f64
    };
    eprintln!(
        "dynamic padding: mean padded source {:.1} / target {:.1} (reference: 256 / 128)",
        mean_len(&|b| b.iter().map(|f| f.source_ids.len()).max().unwrap_or(0)),
        mean_len(&|b| b.iter().map(|f| f.target_ids.len()).max().unwrap_or(0)),
    );
    let mut group = c.benchmark_group("train_step_small_b8");
    for (name, padding) in [
        ("reference_padding", Padding::Reference),
        ("dynamic_padding", Padding::Dynamic),
    ] {
        let mut t = trainer(&features, padding);
        group.bench_function(name, |b| {
            b.iter(|| t.advance().expect("step").expect("not finished"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
