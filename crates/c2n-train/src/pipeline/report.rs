//! The pipeline report: one serde struct written as `report.json` and `report.md`.

use super::splits::SplitFiles;
use crate::checkpoint_policy::python_round2;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::PathBuf;

/// Time and throughput of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub name: String,
    /// Seconds of the run that did the work (a skipped stage keeps the earlier figure).
    pub seconds: f64,
    /// Examples processed.
    pub examples: u64,
    pub examples_per_second: f64,
    /// Done by an earlier run and skipped this time.
    pub skipped: bool,
    /// Anything worth saying (cache hit, resumed from a checkpoint, …).
    pub note: String,
}

impl StageTiming {
    pub fn new(name: &str, seconds: f64, examples: u64, note: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            seconds,
            examples,
            examples_per_second: examples as f64 / seconds.max(1e-9),
            skipped: false,
            note: note.into(),
        }
    }
}

/// Scores of the chosen checkpoint on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitScore {
    pub split: String,
    /// The `dev_limit`/`test_limit` it was scored with (a rerun with another limit scores
    /// again).
    #[serde(default)]
    pub limit: Option<usize>,
    pub examples: usize,
    /// Smoothed BLEU-4 × 100, unrounded (the evaluator's value).
    pub bleu: f64,
    /// Python `round(bleu, 2)`: the reference metric as published.
    pub bleu_2dp: f64,
    /// Teacher-forced loss per target token and its `exp`.
    pub loss: f64,
    pub perplexity: f64,
    /// Predictions that decoded to the empty string (an undertrained model's beam often ends
    /// at once: its BLEU is then about 0.4 whatever the gold).
    #[serde(default)]
    pub empty_predictions: usize,
    pub output: PathBuf,
    pub gold: PathBuf,
    pub timing: StageTiming,
}

impl SplitScore {
    /// Fills `bleu_2dp` from `bleu`.
    pub fn with_rounding(mut self) -> Self {
        self.bleu_2dp = python_round2(self.bleu);
        self
    }
}

/// What training did (from the train stage and `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub updates: u64,
    pub evaluations: u64,
    pub examples_seen: u64,
    /// Best Python-rounded dev BLEU on the dev subset during training (0 when never run).
    pub best_dev_bleu: f64,
    pub best_dev_loss: f64,
    /// The checkpoint the final scores come from.
    pub checkpoint: PathBuf,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    pub lang: String,
    pub preset: String,
    pub device: String,
    pub parameters: usize,
    pub splits: SplitFiles,
    pub stages: Vec<StageTiming>,
    pub train: TrainOutcome,
    pub dev: SplitScore,
    pub test: SplitScore,
    /// The published test BLEU of the reference model this preset reproduces.
    pub published_bleu: Option<f64>,
    /// Which published row (`CodeBERT` or `RoBERTa`, spec §10.1).
    pub published_row: String,
    /// The resolved training configuration.
    pub train_config: serde_json::Value,
    /// Per-split data statistics (Markdown table from `c2n-data`).
    pub data_stats: String,
    pub curves_png: Option<PathBuf>,
    /// Seconds behind these results: this invocation's, plus the recorded seconds of the
    /// stages an earlier run did (skipped now).
    pub total_seconds: f64,
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v:.2}"))
}

impl PipelineReport {
    /// The report as Markdown (also what the pipeline prints).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# code2nl pipeline: {} ({} preset)\n",
            self.lang, self.preset
        );
        let _ = writeln!(
            md,
            "Device: {} · parameters: {} · data: {} · total {:.1} s\n",
            self.device, self.parameters, self.splits.source, self.total_seconds
        );
        if self.splits.dev_held_out {
            let _ = writeln!(
                md,
                "The dev set is held out of the training split ({}); it was not trained on.\n",
                self.splits.dev.display()
            );
        }
        let _ = writeln!(
            md,
            "## Scores (smoothed BLEU-4, checkpoint `{}`)\n",
            self.train.checkpoint.display()
        );
        let _ = writeln!(
            md,
            "| split | examples | BLEU | BLEU (full) | loss | perplexity | empty predictions | published {} |",
            self.published_row
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (score, published) in [(&self.dev, None), (&self.test, self.published_bleu)] {
            let _ = writeln!(
                md,
                "| {} | {} | **{:.2}** | {} | {:.4} | {:.3} | {} | {} |",
                score.split,
                score.examples,
                score.bleu_2dp,
                c2n_eval::python_repr(score.bleu),
                score.loss,
                score.perplexity,
                score.empty_predictions,
                fmt_opt(published)
            );
        }
        let bests = if self.train.evaluations == 0 {
            "no dev evaluation".to_string()
        } else {
            format!(
                "best dev BLEU (subset) {:.2}, best dev loss {:.4}",
                self.train.best_dev_bleu, self.train.best_dev_loss
            )
        };
        let _ = writeln!(
            md,
            "\nTraining: {} updates, {} evaluations, {} examples seen; {bests}.\n",
            self.train.updates, self.train.evaluations, self.train.examples_seen,
        );
        let _ = writeln!(md, "## Stages\n");
        let _ = writeln!(md, "| stage | seconds | examples | examples/s | note |");
        let _ = writeln!(md, "|---|---:|---:|---:|---|");
        for s in &self.stages {
            let note = if s.skipped {
                format!("skipped (done earlier); {}", s.note)
            } else {
                s.note.clone()
            };
            let _ = writeln!(
                md,
                "| {} | {:.1} | {} | {:.1} | {} |",
                s.name, s.seconds, s.examples, s.examples_per_second, note
            );
        }
        let _ = writeln!(md, "\n## Data\n\n{}", self.data_stats);
        if let Some(png) = &self.curves_png {
            let _ = writeln!(
                md,
                "## Training curves\n\n![training curves]({})\n\n{}\n",
                png.file_name().map_or_else(
                    || png.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                super::plot::LEGEND
            );
        }
        let config = serde_json::to_string_pretty(&self.train_config).unwrap_or_default();
        let _ = writeln!(md, "## Training config\n\n```json\n{config}\n```");
        md
    }
}
