//! c2n-data speed: tokenize + featurize throughput on ruby valid (1 400 examples), a cold
//! `prepare` (hash, tokenize, write shards) and a warm cache load (hash + verify + mmap).
//!
//! `cargo bench --bench data`. Needs `../shared` (or `$C2N_SHARED`); without it every bench is
//! skipped with a message. The Python reference for the same work is
//! `tools/bench_reference_featurize.py`; `tools/bench_featurize_ratio.py` runs both in one run
//! (with `examples/bench_featurize.rs`) and prints the ratios.

use std::path::PathBuf;

use code2nl::data::{
    features_in_memory, prepare, FeatureConfig, PipelineConfig, PrepareRequest, RobertaTokenizer,
    Stage, TokenizerFiles,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("data/codesearchnet/ruby/valid.jsonl").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP data benches: {} not found (set C2N_SHARED)",
            dir.display()
        );
        None
    }
}

fn pipeline() -> PipelineConfig {
    PipelineConfig::strict_unfiltered(FeatureConfig {
        max_source_len: 256,
        max_target_len: 128,
        stage: Stage::Dev,
    })
}

fn bench(c: &mut Criterion) {
    let Some(shared) = shared() else { return };
    let data = shared.join("data/codesearchnet/ruby/valid.jsonl");
    let files = TokenizerFiles::from_dir(&shared.join("data/roberta-base")).expect("tokenizer");
    let examples = 1400u64;

    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.throughput(Throughput::Elements(examples));

    // Read + normalize + tokenize + features, tokenizer already loaded. A fresh tokenizer per
    // iteration keeps the BPE word cache cold, as in a one-shot run.
    group.bench_function("featurize_ruby_valid", |b| {
        b.iter_batched(
            || RobertaTokenizer::from_files(&files).expect("tokenizer"),
            |tok| features_in_memory(&data, &tok, &pipeline()).expect("features"),
            criterion::BatchSize::PerIteration,
        )
    });

    // Cold prepare: fingerprint, tokenizer load, tokenize, shard write, manifest, mmap.
    group.bench_function("prepare_cold_ruby_valid", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("tempdir"),
            |dir| {
                let mut req = PrepareRequest::new(&data, files.clone(), dir.path());
                req.pipeline = pipeline();
                prepare(&req, &mut |_| {}).expect("prepare")
            },
            criterion::BatchSize::PerIteration,
        )
    });

    // Warm load: fingerprint (sha256 of input + tokenizer files), manifest, shard sha256, mmap.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = PrepareRequest::new(&data, files.clone(), dir.path());
    req.pipeline = pipeline();
    prepare(&req, &mut |_| {}).expect("prepare");
    group.bench_function("prepare_warm_ruby_valid", |b| {
        b.iter(|| prepare(&req, &mut |_| {}).expect("prepare"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
