//! Speed of the reference smoothed BLEU-4 on 15 000 sentence pairs (normalization included).
//!
//! `cargo bench --bench bleu`. The corpus is synthetic but shaped like CodeXGLUE docstrings:
//! 3–30 tokens per reference, predictions sharing about two thirds of their words.

use code2nl::eval::{sacrebleu_corpus, smoothed_bleu, Gold, Predictions};
use criterion::{criterion_group, criterion_main, Criterion};

const WORDS: &[&str] = &[
    "returns", "the", "value", "of", "a", "an", "list", "for", "get", "set", "user", "id", ".",
    ",", "(", ")", "file", "path", "name", "new", "is", "to", "in", "given", "object", "string",
    "hash", "array", "method", "class", "default", "options", "config", "request", "response",
    "error", "create", "update", "delete", "find", "by", "with", "from", "and", "or", "if", "nil",
    "true",
];

fn corpus(n: usize) -> (Gold, Predictions) {
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    let mut gold = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let len = 3 + next(28);
        let reference: Vec<&str> = (0..len).map(|_| WORDS[next(WORDS.len())]).collect();
        let keep = len - next(len.min(4));
        let mut hypothesis: Vec<&str> = Vec::with_capacity(keep);
        for &w in &reference[..keep] {
            hypothesis.push(if next(3) == 0 {
                WORDS[next(WORDS.len())]
            } else {
                w
            });
        }
        gold.push((i, reference.join(" ")));
        rows.push(format!("{i}\t{}", hypothesis.join(" ")));
    }
    (
        Gold::from_pairs(gold).expect("gold"),
        Predictions::from_rows(rows),
    )
}

fn bench(c: &mut Criterion) {
    let (gold, predictions) = corpus(15_000);
    c.bench_function("smoothed_bleu_15k_pairs", |b| {
        b.iter(|| smoothed_bleu(&gold, &predictions).expect("score"))
    });
    c.bench_function("sacrebleu_corpus_15k_pairs", |b| {
        b.iter(|| sacrebleu_corpus(&gold, &predictions).expect("score"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
