//! Toy next-token models for the beam-search tests.
//!
//! A [`TableModel`] maps the generated tokens of a row (the `<s>` excluded) to a row of a
//! fixed table: `h = 0; for tok: h = (h * 31 + tok + 7) % buckets`, the same hash as
//! `tools/reference/beam.py`. [`TableSession`] implements the step contract over several
//! examples (each with its own table) and records how many rows each step received.
#![allow(dead_code)]

use c2n_model::{ModelError, NextTokenLogProbs};

/// `buckets × vocab` f32 log-probabilities indexed by a hash of the row's prefix.
#[derive(Debug, Clone)]
pub struct TableModel {
    pub vocab: usize,
    pub buckets: usize,
    pub table: Vec<f32>,
}

impl TableModel {
    /// The row of next-token log-probabilities after the generated tokens `history`.
    pub fn logp(&self, history: &[u32]) -> &[f32] {
        let mut h: u64 = 0;
        for &tok in history {
            h = (h * 31 + tok as u64 + 7) % self.buckets as u64;
        }
        let start = h as usize * self.vocab;
        &self.table[start..start + self.vocab]
    }

    /// A reproducible random table: log-softmax of pseudo-random logits, EOS (2) shifted by
    /// `eos_bias`; `quantum > 0` rounds every value to a multiple of it (exact ties).
    pub fn random(seed: u64, buckets: usize, vocab: usize, eos_bias: f32, quantum: f32) -> Self {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 3.0
        };
        let mut table = Vec::with_capacity(buckets * vocab);
        for _ in 0..buckets {
            let mut logits: Vec<f32> = (0..vocab).map(|_| next()).collect();
            logits[2] += eos_bias;
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            let log_z = max + sum.ln();
            for l in logits {
                let value = l - log_z;
                table.push(if quantum > 0.0 {
                    (value / quantum).round() * quantum
                } else {
                    value
                });
            }
        }
        Self {
            vocab,
            buckets,
            table,
        }
    }
}

/// A decoding session over examples `models[i]`, each owning `beam` rows at the start.
pub struct TableSession<'a> {
    models: Vec<&'a TableModel>,
    beam: usize,
    /// (example, generated tokens) of every current row.
    rows: Vec<(usize, Vec<u32>)>,
    started: bool,
    /// Rows per step, as received.
    pub rows_per_step: Vec<usize>,
    /// Examples present at every step, in row order.
    pub examples_per_step: Vec<Vec<usize>>,
    /// Ask beam search for per-row candidates (`step_row_top_k`) instead of full rows.
    pub row_top_k: bool,
}

impl<'a> TableSession<'a> {
    pub fn new(models: Vec<&'a TableModel>, beam: usize) -> Self {
        Self {
            models,
            beam,
            rows: Vec::new(),
            started: false,
            rows_per_step: Vec::new(),
            examples_per_step: Vec::new(),
            row_top_k: false,
        }
    }
}

impl NextTokenLogProbs for TableSession<'_> {
    fn vocab_size(&self) -> usize {
        self.models[0].vocab
    }

    fn prefers_row_top_k(&self) -> bool {
        self.row_top_k
    }

    fn step(&mut self, origin: &[u32], tokens: &[u32]) -> c2n_model::Result<Vec<f32>> {
        if origin.len() != tokens.len() {
            return Err(ModelError::InvalidInput(
                "origin/tokens lengths differ".into(),
            ));
        }
        let rows: Vec<(usize, Vec<u32>)> = if self.started {
            let mut rows = Vec::with_capacity(origin.len());
            for (&from, &token) in origin.iter().zip(tokens) {
                let (example, history) = self.rows.get(from as usize).ok_or_else(|| {
                    ModelError::InvalidInput(format!("origin {from} out of range"))
                })?;
                let mut history = history.clone();
                history.push(token);
                rows.push((*example, history));
            }
            rows
        } else {
            // First call: every row starts from `<s>` alone.
            if origin.len() != self.models.len() * self.beam {
                return Err(ModelError::InvalidInput(
                    "first step must list every row".into(),
                ));
            }
            self.started = true;
            (0..origin.len())
                .map(|i| (i / self.beam, Vec::new()))
                .collect()
        };
        self.rows = rows;
        self.rows_per_step.push(self.rows.len());
        let mut examples: Vec<usize> = self.rows.iter().map(|r| r.0).collect();
        examples.dedup();
        self.examples_per_step.push(examples);
        let mut out = Vec::with_capacity(self.rows.len() * self.vocab_size());
        for (example, history) in &self.rows {
            out.extend_from_slice(self.models[*example].logp(history));
        }
        Ok(out)
    }
}
