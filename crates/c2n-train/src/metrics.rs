//! A JSON-lines metrics file: one object per training log point or evaluation.
//!
//! Appending (not truncating) keeps the history of a resumed run in one file.

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricRecord {
    /// Training progress after an optimizer update.
    Train {
        global_step: u64,
        epoch: u64,
        /// Mean batch loss since the last evaluation (the reference's progress value).
        loss: f64,
        lr: f64,
        samples_per_s: f64,
        tokens_per_s: f64,
    },
    /// One dev evaluation.
    Eval {
        /// Updates done so far (the reference logs `global_step + 1`).
        global_step: u64,
        epoch: u64,
        train_loss: f64,
        dev_loss: f64,
        dev_ppl: f64,
        /// Unrounded dev BLEU, when it was computed.
        dev_bleu: Option<f64>,
        /// Checkpoint directories written by this evaluation.
        saved: Vec<String>,
    },
}

/// Appends [`MetricRecord`]s to a file, one JSON object per line.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one record and flushes it.
    pub fn append(&mut self, record: &MetricRecord) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|e| TrainError::parse(&self.path, e))?;
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }

    /// Reads every record of a metrics file, naming the line of a bad one.
    pub fn read(path: &Path) -> Result<Vec<MetricRecord>> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| TrainError::parse(path, format!("line {}: {e}", i + 1)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_then_read_back_and_bad_lines_name_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let records = vec![
            MetricRecord::Train {
                global_step: 1,
                epoch: 0,
                loss: 2.5,
                lr: 5e-5,
                samples_per_s: 3.0,
                tokens_per_s: 9.0,
            },
            MetricRecord::Eval {
                global_step: 1,
                epoch: 0,
                train_loss: 2.5,
                dev_loss: 2.0,
                dev_ppl: 2f64.exp(),
                dev_bleu: None,
                saved: vec!["checkpoint-last".into()],
            },
        ];
        for r in &records {
            MetricsLog::open(&path).unwrap().append(r).unwrap();
        }
        assert_eq!(MetricsLog::read(&path).unwrap(), records);
        std::fs::write(&path, "{\"kind\":\"train\"}\n").unwrap();
        let err = MetricsLog::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
