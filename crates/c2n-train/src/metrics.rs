//! A JSON-lines metrics file: one object per training log point or evaluation.
//!
//! A resumed run keeps the records up to its checkpoint and appends after them, so the file
//! holds one history without repeated steps; a fresh run starts the file anew.

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

impl MetricRecord {
    /// Updates done when the record was written.
    pub fn global_step(&self) -> u64 {
        match self {
            Self::Train { global_step, .. } | Self::Eval { global_step, .. } => *global_step,
        }
    }
}

/// Appends [`MetricRecord`]s to a file, one JSON object per line.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for a run: a fresh one (`resumed_after` `None`) starts an empty file; a
    /// run resumed from a checkpoint taken after `Some(global_step)` updates keeps the records
    /// up to that step (0 included: the evaluation before the first update) and drops later
    /// ones, written after that checkpoint. Creates the file if needed.
    ///
    /// The kept lines are copied verbatim into a new file that then replaces the old one, so
    /// a crash meanwhile loses nothing. A last line cut short (the previous run was killed
    /// while writing it) is dropped; a bad line elsewhere is an error naming it.
    pub fn open(path: &Path, resumed_after: Option<u64>) -> Result<Self> {
        let mut kept = String::new();
        if let (Some(global_step), true) = (resumed_after, path.is_file()) {
            let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let record: MetricRecord = match serde_json::from_str(line) {
                    Ok(r) => r,
                    Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => continue,
                    Err(e) => return Err(TrainError::parse(path, format!("line {}: {e}", i + 1))),
                };
                if record.global_step() <= global_step {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        let fresh = path.with_extension("jsonl.partial");
        std::fs::write(&fresh, kept)
            .and_then(|()| std::fs::rename(&fresh, path))
            .map_err(|e| TrainError::io(path, e))?;
        let file = OpenOptions::new()
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
    fn append_read_back_trim_on_resume_and_bad_lines_name_their_number() {
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
        let mut log = MetricsLog::open(&path, None).unwrap();
        for r in &records {
            log.append(r).unwrap();
        }
        assert_eq!(MetricsLog::read(&path).unwrap(), records);

        // A run resumed at step 1 keeps both records and appends after them.
        let later = MetricRecord::Train {
            global_step: 2,
            epoch: 0,
            loss: 0.1 + 0.2,
            lr: 1e-5 / 3.0,
            samples_per_s: 1.0,
            tokens_per_s: 1.0,
        };
        MetricsLog::open(&path, Some(1))
            .unwrap()
            .append(&later)
            .unwrap();
        let mut all = records.clone();
        all.push(later);
        assert_eq!(MetricsLog::read(&path).unwrap(), all);
        let written = std::fs::read_to_string(&path).unwrap();
        // Resuming at step 1 again drops the step-2 line and copies the others verbatim.
        MetricsLog::open(&path, Some(1)).unwrap();
        let kept = std::fs::read_to_string(&path).unwrap();
        assert_eq!(kept.lines().count(), 2);
        assert!(written.starts_with(&kept));
        // A last line cut short by a kill is dropped on resume; a bad line elsewhere is not.
        let mut torn = kept.clone();
        torn.push_str("{\"kind\":\"train\",\"global_st");
        std::fs::write(&path, &torn).unwrap();
        MetricsLog::open(&path, Some(1)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), kept);
        std::fs::write(&path, format!("{{oops\n{kept}")).unwrap();
        let err = MetricsLog::open(&path, Some(1)).err().unwrap().to_string();
        assert!(err.contains("line 1"), "{err}");
        // A run resumed from the evaluation before the first update keeps that one's line.
        let eval_at_0 = format!(
            "{}\n",
            serde_json::to_string(&records[1])
                .unwrap()
                .replace("\"global_step\":1", "\"global_step\":0")
        );
        std::fs::write(&path, format!("{eval_at_0}{kept}")).unwrap();
        MetricsLog::open(&path, Some(0)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), eval_at_0);
        // A fresh run starts a new file.
        MetricsLog::open(&path, None).unwrap();
        assert!(MetricsLog::read(&path).unwrap().is_empty());
        std::fs::write(&path, "{\"kind\":\"train\"}\n").unwrap();
        let err = MetricsLog::read(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
