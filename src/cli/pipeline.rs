//! Flags of `examples/pipeline.rs`.

use crate::train::pipeline::{PipelineConfig, Preset};
use crate::train::{Result, TrainError};
use clap::Parser;
use std::path::PathBuf;

/// prepare → train → evaluate (dev, test) → report for one language; rerun to resume.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "pipeline",
    // `--lr -1e-3` reaches the value check instead of reading as an unknown flag.
    allow_negative_numbers = true,
    about = "prepare → train → evaluate (dev, test) → report for one CodeSearchNet language; rerun to resume",
    after_help = "Example (offline, CPU):\n  cargo run --release --example pipeline -- --data-dir ../shared/data/codesearchnet --lang ruby --train-split valid --preset small"
)]
pub struct PipelineArgs {
    /// Pipeline config file (TOML or JSON, keys of `PipelineConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// CodeSearchNet language: ruby (the default), javascript, go, python, java or php.
    #[arg(long)]
    pub lang: Option<String>,
    /// Folder in the reference layout `{lang}/{train,valid,test}.jsonl`; without it the
    /// splits are downloaded from the Hugging Face dataset (cached).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Hugging Face dataset used when no --data-dir is given (default:
    /// google/code_x_glue_ct_code_to_text).
    #[arg(long)]
    pub hub_dataset: Option<String>,
    /// Split to train on (default: train). Offline e.g. `valid`: its tail is then held out as dev.
    #[arg(long)]
    pub train_split: Option<String>,
    /// Split for dev perplexity/BLEU and checkpoint selection (default: valid).
    #[arg(long)]
    pub dev_split: Option<String>,
    /// Split for the final test BLEU (default: test).
    #[arg(long)]
    pub test_split: Option<String>,
    /// Dev examples held out of the training split when it is also the dev split (default: 200).
    #[arg(long)]
    pub holdout: Option<usize>,
    /// Model preset: codebert, roberta or small (default: codebert on a GPU, small on CPU).
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Tokenizer folder or hub id (default: the preset's model; for small a roberta-base
    /// folder beside the data folder).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Output folder (default: `runs/pipeline-LANG`); rerunning into it resumes.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Feature cache root (default: OUTPUT/cache).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long)]
    pub device: Option<String>,
    /// Evaluate only the first N dev examples.
    #[arg(long)]
    pub dev_limit: Option<usize>,
    /// Evaluate only the first N test examples.
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Number of training batches (overrides the preset's train_steps).
    #[arg(long)]
    pub train_steps: Option<u64>,
    /// Evaluate on dev every N updates (run.py's -1 = every update).
    #[arg(long, allow_negative_numbers = true, value_parser = super::parse_eval_steps)]
    pub eval_steps: Option<u64>,
    /// Peak learning rate.
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// Examples per optimizer update.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Beam size for dev and test decoding.
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Any training-config key, as KEY=VALUE (VALUE is read as JSON, else as a string);
    /// repeatable, e.g. --set warmup_steps=100 --set padding=reference.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// `KEY=VALUE` with VALUE as JSON when it parses, else as a string.
pub fn parse_assignment(text: &str) -> Result<(String, serde_json::Value)> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| TrainError::Config(format!("--set {text}: expected KEY=VALUE")))?;
    let value = serde_json::from_str(value.trim())
        .unwrap_or_else(|_| serde_json::Value::String(value.trim().to_string()));
    Ok((key.trim().to_string(), value))
}

impl PipelineArgs {
    /// The pipeline config: the file (or defaults), then the flags.
    pub fn into_config(self) -> Result<PipelineConfig> {
        let mut cfg = match &self.config {
            Some(path) => PipelineConfig::load(path)?,
            None => PipelineConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { cfg.$field = v; } )* };
        }
        set!(
            lang,
            hub_dataset,
            train_split,
            dev_split,
            test_split,
            holdout,
            device
        );
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if self.$field.is_some() { cfg.$field = self.$field; } )* };
        }
        set_opt!(data_dir, preset, tokenizer, cache_dir, dev_limit, test_limit);
        cfg.output_dir = match (self.output_dir, &self.config) {
            (Some(dir), _) => dir,
            (None, Some(_)) => cfg.output_dir,
            (None, None) => PathBuf::from(format!("runs/pipeline-{}", cfg.lang)),
        };
        let train = &mut cfg.train;
        // The dedicated flags, by the training key each sets.
        let flagged: Vec<(&str, &str, serde_json::Value)> = [
            (
                "train_steps",
                "--train-steps",
                self.train_steps.map(Into::into),
            ),
            (
                "eval_steps",
                "--eval-steps",
                self.eval_steps.map(Into::into),
            ),
            ("lr", "--lr", self.lr.map(Into::into)),
            (
                "batch_size",
                "--batch-size",
                self.batch_size.map(Into::into),
            ),
            ("beam_size", "--beam-size", self.beam_size.map(Into::into)),
        ]
        .into_iter()
        .filter_map(|(key, flag, value)| value.map(|v| (key, flag, v)))
        .collect();
        for (key, _, value) in &flagged {
            train.insert(key.to_string(), value.clone());
        }
        for assignment in &self.set {
            let (key, value) = parse_assignment(assignment)?;
            if let Some((_, flag, given)) = flagged.iter().find(|(k, _, _)| *k == key) {
                // 1 and 1.0 agree (JSON keeps integers and floats apart).
                let same = match (given.as_f64(), value.as_f64()) {
                    (Some(a), Some(b)) => a == b,
                    _ => *given == value,
                };
                if !same {
                    return Err(TrainError::Config(format!(
                        "--set {assignment} contradicts {flag} {given}: give one of them"
                    )));
                }
            }
            train.insert(key, value);
        }
        if self.quiet {
            cfg.progress = false;
        }
        Ok(cfg)
    }
}
