//! KV-cached vs full-prefix decoding: one example, K rows, a fixed number of steps.
//!
//! The model has a reference-sized decoder (768 hidden, 12 heads, 6 layers, ffn 2048, real
//! vocabulary) and a 1-layer encoder (the encoder runs once per session in both paths, so its
//! size does not change the comparison). Random weights; the token path is fixed (greedy on
//! row 0 would not change the cost). `cargo bench -p c2n-model --bench decode_sessions`;
//! `C2N_BENCH_STEPS` (default 16) and `C2N_BENCH_ROWS` (default 10) change the shape.

use c2n_model::{FullPrefixSession, KvCacheSession, ModelConfig, NextTokenLogProbs, Seq2Seq};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use criterion::{criterion_group, criterion_main, Criterion};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn decode<S: NextTokenLogProbs>(mut session: S, rows: usize, steps: usize) -> f32 {
    let origin: Vec<u32> = (0..rows as u32).collect();
    let mut tokens = vec![0u32; rows];
    let mut acc = 0.0;
    for step in 0..steps {
        let lp = session.step(&origin, &tokens).expect("step");
        acc += lp[0];
        tokens = (0..rows)
            .map(|r| 3 + ((step * 31 + r * 7) % 5000) as u32)
            .collect();
    }
    acc
}

fn bench(c: &mut Criterion) {
    let steps = env("C2N_BENCH_STEPS", 16);
    let rows = env("C2N_BENCH_ROWS", 10);
    let device = Device::Cpu;
    let cfg = ModelConfig {
        num_hidden_layers: 1,
        ..ModelConfig::codebert()
    };
    let model = Seq2Seq::new(&cfg, &VarMap::new(), &device).expect("model");
    let source_len = 256;
    let ids: Vec<u32> = (0..source_len as u32)
        .map(|i| if i == 0 { 0 } else { 3 + i })
        .collect();
    let source = Tensor::from_vec(ids, (1, source_len), &device).expect("ids");
    let mask = Tensor::ones((1, source_len), candle_core::DType::U32, &device).expect("mask");

    let mut group = c.benchmark_group(format!("decode_{rows}rows_{steps}steps"));
    group.sample_size(10);
    group.bench_function("kv_cache", |b| {
        b.iter(|| {
            let s = KvCacheSession::new(&model, &source, &mask, rows).expect("session");
            decode(s, rows, steps)
        })
    });
    group.bench_function("full_prefix", |b| {
        b.iter(|| {
            let s = FullPrefixSession::new(&model, &source, &mask, rows).expect("session");
            decode(s, rows, steps)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
