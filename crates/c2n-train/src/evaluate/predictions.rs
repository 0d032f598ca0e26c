//! Decoded texts as CodeXGLUE `idx<TAB>text` files and `nbest.jsonl`, and their BLEU.

use super::Decoded;
use crate::output_file::write_aside;
use crate::Result;
use c2n_data::RobertaTokenizer;
use c2n_eval::{smoothed_bleu, Gold, SmoothedBleu};
use c2n_model::beam::{cut_at_first_zero, BeamOutput, Hypothesis};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Decoded predictions with their ids and gold targets, in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub idx: Vec<u64>,
    /// Decoded row 0, cut at its first id 0 (§6.7).
    pub texts: Vec<String>,
    /// Normalized gold targets.
    pub golds: Vec<String>,
}

#[derive(Serialize)]
struct NbestHypothesis<'a> {
    ids: &'a [u32],
    score: f32,
    text: String,
}

#[derive(Serialize)]
struct NbestLine<'a> {
    idx: u64,
    hypotheses: Vec<NbestHypothesis<'a>>,
}

impl Predictions {
    /// Decodes the best row of every output.
    pub fn new(
        tokenizer: &RobertaTokenizer,
        outputs: &[BeamOutput],
        idx: Vec<u64>,
        golds: Vec<String>,
    ) -> Self {
        let texts = outputs
            .iter()
            .map(|o| tokenizer.decode(o.prediction()))
            .collect();
        Self { idx, texts, golds }
    }

    /// [`Predictions::new`] from [`Decoded`] examples (sharded evaluation).
    pub fn from_decoded(
        tokenizer: &RobertaTokenizer,
        decoded: &[Decoded],
        idx: Vec<u64>,
        golds: Vec<String>,
    ) -> Self {
        let texts = decoded
            .iter()
            .map(|d| tokenizer.decode(&d.prediction))
            .collect();
        Self { idx, texts, golds }
    }

    /// Writes `<prefix>.output` and `<prefix>.gold` (`idx<TAB>text` lines) into `dir`.
    pub fn write(&self, dir: &Path, prefix: &str) -> Result<(PathBuf, PathBuf)> {
        let output = dir.join(format!("{prefix}.output"));
        let gold = dir.join(format!("{prefix}.gold"));
        // Each written aside and renamed: an interrupted run leaves the earlier files whole.
        write_aside(&output, |out| {
            c2n_eval::write_idx_lines(out, self.idx.iter().zip(&self.texts))
        })?;
        write_aside(&gold, |out| {
            c2n_eval::write_idx_lines(out, self.idx.iter().zip(&self.golds))
        })?;
        Ok((output, gold))
    }

    /// Smoothed BLEU-4 of the in-memory rows against the gold rows, as run.py scores.
    pub fn bleu(&self) -> Result<SmoothedBleu> {
        let gold = Gold::from_pairs(self.idx.iter().zip(&self.golds))?;
        let predictions = c2n_eval::Predictions::from_pairs(self.idx.iter().zip(&self.texts));
        Ok(smoothed_bleu(&gold, &predictions)?)
    }

    /// Writes `nbest.jsonl`: `{"idx", "hypotheses": [{"ids", "score", "text"}]}` per example,
    /// at most `k` hypotheses in rank order, ids without `<s>`/EOS and cut at their first id 0
    /// as the evaluated prediction is (§6.7: a generated `<s>` ends it), so the first
    /// hypothesis is the `*.output` row.
    pub fn write_nbest(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        outputs: &[BeamOutput],
        k: usize,
    ) -> Result<()> {
        self.write_nbest_of(path, tokenizer, outputs.iter().map(|o| &o.hypotheses), k)
    }

    /// [`Predictions::write_nbest`] from [`Decoded`] examples.
    pub fn write_nbest_decoded(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        decoded: &[Decoded],
        k: usize,
    ) -> Result<()> {
        self.write_nbest_of(path, tokenizer, decoded.iter().map(|d| &d.hypotheses), k)
    }

    fn write_nbest_of<'a>(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        per_example: impl Iterator<Item = &'a Vec<Hypothesis>>,
        k: usize,
    ) -> Result<()> {
        // Streamed into the file written aside, one JSON line per example.
        write_aside(path, |out| {
            for (idx, hyps) in self.idx.iter().zip(per_example) {
                let hypotheses = hyps
                    .iter()
                    .take(k)
                    .map(|h| {
                        // Cut like the evaluated prediction (§6.7), so rank 0 is `*.output`'s row.
                        let ids = cut_at_first_zero(&h.ids);
                        NbestHypothesis {
                            ids,
                            score: h.score,
                            text: tokenizer.decode(ids),
                        }
                    })
                    .collect();
                let line = NbestLine {
                    idx: *idx,
                    hypotheses,
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })
    }
}
