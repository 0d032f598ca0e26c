//! Decoded texts as CodeXGLUE `idx<TAB>text` files and `nbest.jsonl`, and their BLEU.

use super::Decoded;
use crate::output_file::{write_aside, OutputFile};
use crate::{Result, TrainError};
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
        // Both written aside, whole, before either replaces its earlier file, so that an
        // interrupted run leaves the earlier pair. The earlier gold goes first: a kill
        // between the renames leaves a new output without a gold (which BLEU refuses), not
        // beside another run's gold.
        let written = |path: &Path, rows: &[String]| -> Result<OutputFile> {
            let io_error = |e| TrainError::io(path, e);
            let mut file = OutputFile::create(path).map_err(io_error)?;
            c2n_eval::write_idx_lines(&mut file, self.idx.iter().zip(rows)).map_err(io_error)?;
            Ok(file)
        };
        let output_file = written(&output, &self.texts)?;
        let gold_file = written(&gold, &self.golds)?;
        if std::fs::symlink_metadata(&gold).is_ok_and(|m| m.is_file()) {
            std::fs::remove_file(&gold).map_err(|e| TrainError::io(&gold, e))?;
        }
        output_file
            .commit()
            .map_err(|e| TrainError::io(&output, e))?;
        gold_file.commit().map_err(|e| TrainError::io(&gold, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(texts: &[&str], golds: &[&str]) -> Predictions {
        Predictions {
            idx: (0..texts.len() as u64).collect(),
            texts: texts.iter().map(|s| s.to_string()).collect(),
            golds: golds.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_pair_is_replaced_only_once_both_files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (output, gold) = rows(&["old"], &["old gold"])
            .write(dir.path(), "test")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&gold).unwrap(), "0\told gold\n");
        rows(&["new"], &["new gold"])
            .write(dir.path(), "test")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "0\tnew\n");
        assert_eq!(std::fs::read_to_string(&gold).unwrap(), "0\tnew gold\n");

        // The gold cannot be written (its name is taken by a folder): the earlier output
        // stays, rather than a new output beside a gold it does not belong to.
        let blocked = dir.path().join("dev.gold");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(dir.path().join("dev.output"), "0\tearlier\n").unwrap();
        let err = rows(&["later"], &["later gold"])
            .write(dir.path(), "dev")
            .unwrap_err();
        assert!(err.to_string().contains("dev.gold"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("dev.output")).unwrap(),
            "0\tearlier\n"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            4,
            "no partial left"
        );
    }
}
