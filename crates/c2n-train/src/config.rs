//! The training configuration: serde struct with the reference's defaults, loadable from
//! TOML or JSON, overridable field by field from the command line, and saved (resolved)
//! next to every checkpoint as `train_config.json`.
//!
//! Defaults follow the CodeBERT README recipe for ruby (variant A): lengths 256/128,
//! batch 64, lr 5e-5, no weight decay, no warmup, 20 000 steps with an evaluation every 400,
//! beam 10, seed 42, reference padding, f32, no gradient clipping.
//!
//! ```
//! use c2n_train::config::{TrainConfig, Schedule};
//! let cfg = TrainConfig::from_toml_str("epochs = 10\nbatch_size = 32").unwrap();
//! assert_eq!(cfg.schedule().unwrap(), Schedule::Epochs { epochs: 10 });
//! assert_eq!(cfg.lr, 5e-5);
//! ```

use crate::comm::GradWeighting;
use crate::early_stopping::StopMetric;
use crate::loop_plan::AccumulationMode;
use crate::{Result, TrainError};
use c2n_data::Padding;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the resolved config saved in the output folder and in every checkpoint.
pub const TRAIN_CONFIG_FILE: &str = "train_config.json";

/// Activation/matmul precision of the forward and backward pass (parameters and optimizer
/// state always stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// f32 tensors, TF32 tensor-core matmuls (CUDA only; same as f32 on CPU).
    Tf32,
    /// bf16 activations with f32 master weights.
    Bf16,
}

/// How a training step computes its gradients (the same values either way, up to rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackwardPath {
    /// `Seq2Seq::training_pass`: the backward pass written out, no op graph (fewer kernels
    /// and allocations per step).
    #[default]
    Explicit,
    /// `forward_loss` + Candle's `backward()` over the recorded op graph.
    Graph,
}

/// Step-based (variant A) or epoch-based (variant B) training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Variant A: `train_steps` batches, cycled first pass, warmup `warmup_steps`.
    Steps { train_steps: u64 },
    /// Variant B: `epochs` reshuffled passes, 10 % warmup, first update at lr 0.
    Epochs { epochs: u64 },
}

/// Everything a training run needs, with the reference defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Initial weights: a hub id (`microsoft/codebert-base`), a checkpoint or model
    /// directory, or `small` for a randomly initialised small model (CPU experiments:
    /// `ModelConfig::small()`, hidden 16, 0.8 M parameters; the pipeline's `small` preset is
    /// another, larger random model, `SmallModel`, saved as a checkpoint folder it passes here).
    pub init: String,
    /// Training jsonl file.
    pub train_data: Option<PathBuf>,
    /// Train on the first N examples of `train_data` only (quick experiments; not in the
    /// reference), in file order.
    pub train_limit: Option<usize>,
    /// Dev jsonl file (perplexity on all of it, BLEU on a seeded subset).
    pub dev_data: Option<PathBuf>,
    /// Tokenizer directory or hub id; defaults to `init` when that is not `small` (for a
    /// checkpoint of ours, the tokenizer it was trained with: [`TrainConfig::tokenizer_spec`]).
    pub tokenizer: Option<String>,
    /// Where checkpoints, metrics and dev outputs go.
    pub output_dir: PathBuf,
    /// Memory-mapped shard cache of the tokenized training and dev features (`c2n_data::
    /// prepare`, shared with `prepare --cache-dir` and the pipeline); `None`: tokenize in
    /// memory on every run.
    pub cache_dir: Option<PathBuf>,
    pub max_source_len: usize,
    /// Training truncation and the beam's maximum length.
    pub max_target_len: usize,
    /// Examples per optimizer update (`--train_batch_size`); micro-batches hold
    /// `batch_size / grad_accum` examples, as in the reference.
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub grad_accum: u64,
    /// When accumulated gradients are applied: every `grad_accum` batches (`fixed`, the
    /// default) or by run.py's off-by-one rule (`reference`; spec §11.7).
    pub accumulation: AccumulationMode,
    pub lr: f64,
    pub weight_decay: f64,
    pub adam_eps: f64,
    /// Variant A warmup (variant B always uses 10 % of its updates).
    pub warmup_steps: u64,
    /// Variant A length in batches; ignored when `epochs` is set.
    pub train_steps: Option<u64>,
    /// Variant B epochs; selects variant B when set.
    pub epochs: Option<u64>,
    /// Variant A: evaluate every this many updates. `None`: never evaluate during the run
    /// (the run still ends by writing `checkpoint-last`). The reference's `--eval_steps -1`
    /// with `--do_eval` evaluates after every update, which is `Some(1)` here.
    pub eval_steps: Option<u64>,
    /// End after this many updates; the schedule still spans the whole run.
    pub stop_after: Option<u64>,
    pub seed: u64,
    /// Dropout probability for every dropout of the model (`None`: the model config's 0.1).
    pub dropout: Option<f32>,
    /// Shuffle the training data (off: file order, useful for parity tests).
    pub shuffle: bool,
    pub padding: Padding,
    /// Length bucketing (not in the reference; needs `padding = "dynamic"`): each shuffled
    /// window of this many batches is sorted by length before it is cut into batches, and the
    /// batches are then shuffled, so each pads to about its own examples' length (ruby, batch
    /// 32: mean padded source 250 → 114 tokens with a window of 10). `None`: the reference's
    /// batches.
    pub bucket_window: Option<usize>,
    pub precision: Precision,
    /// Explicit backward pass (default) or Candle's autograd over the op graph.
    pub backward: BackwardPath,
    /// Global-norm gradient clipping; `None` like the reference (which never clips).
    pub max_grad_norm: Option<f64>,
    pub beam_size: usize,
    /// Size of the seeded dev-BLEU subset (reference: 1000).
    pub dev_bleu_samples: usize,
    /// Compute dev BLEU at each evaluation (beam search is the slow part).
    pub eval_bleu: bool,
    /// Stop after this many evaluations without improvement (`None`: never).
    pub early_stopping_patience: Option<u32>,
    pub early_stopping_metric: StopMetric,
    /// `auto` (CUDA when compiled in and present, else CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Write a `train` metrics line every this many updates, and one after the run's last
    /// update (0: none; evaluations are always logged).
    pub log_every: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// How data-parallel ranks combine their gradients: `token_mean` (N ranks equal one rank
    /// on the combined batch) or `mean_of_rank_means` (the reference `DataParallel`).
    /// Irrelevant with one rank.
    pub grad_weighting: GradWeighting,
}

/// The tokenizer a code2nl checkpoint folder `dir` was trained with, when the folder has no
/// tokenizer files of its own: its `train_config.json`'s tokenizer, else (none was named)
/// that of its own init, followed through a few runs that started from each other's
/// checkpoints.
fn trained_with_tokenizer(dir: &Path) -> Option<String> {
    let has_files = |dir: &Path| {
        ["vocab.json", "tokenizer.json"]
            .iter()
            .any(|f| dir.join(f).is_file())
    };
    if has_files(dir) {
        return None;
    }
    let mut dir = dir.to_path_buf();
    for _ in 0..8 {
        let saved = TrainConfig::load(dir.join(TRAIN_CONFIG_FILE)).ok()?;
        if let Some(tokenizer) = saved.tokenizer {
            return Some(tokenizer);
        }
        if saved.init == "small" {
            return None;
        }
        dir = PathBuf::from(&saved.init);
        if !dir.is_dir() || has_files(&dir) {
            // A hub id, or a folder with the files: the tokenizer that run loaded.
            return Some(saved.init);
        }
    }
    None
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            init: "microsoft/codebert-base".into(),
            train_data: None,
            train_limit: None,
            dev_data: None,
            tokenizer: None,
            output_dir: PathBuf::from("output"),
            cache_dir: None,
            max_source_len: 256,
            max_target_len: 128,
            batch_size: 64,
            eval_batch_size: 64,
            grad_accum: 1,
            accumulation: AccumulationMode::Fixed,
            lr: 5e-5,
            weight_decay: 0.0,
            adam_eps: 1e-8,
            warmup_steps: 0,
            train_steps: Some(20_000),
            epochs: None,
            eval_steps: Some(400),
            stop_after: None,
            seed: 42,
            dropout: None,
            shuffle: true,
            padding: Padding::Reference,
            bucket_window: None,
            precision: Precision::F32,
            backward: BackwardPath::Explicit,
            max_grad_norm: None,
            beam_size: 10,
            dev_bleu_samples: 1000,
            eval_bleu: true,
            early_stopping_patience: None,
            early_stopping_metric: StopMetric::Bleu,
            device: "auto".into(),
            log_every: 10,
            progress: true,
            grad_weighting: GradWeighting::TokenMean,
        }
    }
}

/// Command-line overrides: every `Some` replaces the config value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainOverrides {
    pub init: Option<String>,
    pub train_data: Option<PathBuf>,
    pub train_limit: Option<usize>,
    pub dev_data: Option<PathBuf>,
    pub tokenizer: Option<String>,
    pub output_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub max_source_len: Option<usize>,
    pub max_target_len: Option<usize>,
    pub batch_size: Option<usize>,
    pub eval_batch_size: Option<usize>,
    pub grad_accum: Option<u64>,
    pub accumulation: Option<AccumulationMode>,
    pub lr: Option<f64>,
    pub weight_decay: Option<f64>,
    pub adam_eps: Option<f64>,
    pub warmup_steps: Option<u64>,
    /// Selects variant A (clears `epochs`).
    pub train_steps: Option<u64>,
    /// Selects variant B (clears `train_steps`).
    pub epochs: Option<u64>,
    pub eval_steps: Option<u64>,
    pub stop_after: Option<u64>,
    pub seed: Option<u64>,
    pub dropout: Option<f32>,
    pub no_shuffle: bool,
    pub padding: Option<Padding>,
    pub bucket_window: Option<usize>,
    pub precision: Option<Precision>,
    pub backward: Option<BackwardPath>,
    pub beam_size: Option<usize>,
    pub max_grad_norm: Option<f64>,
    pub device: Option<String>,
    pub grad_weighting: Option<GradWeighting>,
    pub log_every: Option<u64>,
}

impl TrainConfig {
    /// Reads a `.toml` or `.json` file (by extension; anything else is tried as TOML).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let cfg: Self = if is_json {
            serde_json::from_str(&text).map_err(|e| TrainError::parse(path, e))?
        } else {
            toml::from_str(&text).map_err(|e| TrainError::parse(path, e))?
        };
        Ok(cfg)
    }

    /// Parses TOML text, as [`TrainConfig::load`] reads a `.toml` file (unknown keys are
    /// refused; missing ones take their defaults).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::Config(format!("TOML text: {e}")))
    }

    /// Writes the resolved config as pretty JSON (aside, then renamed into place: a resume
    /// never finds half a file).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| TrainError::parse(path, e))?;
        crate::output_file::write_text_aside(path, &text)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &TrainOverrides) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &o.$field { self.$field = v.clone(); } )* };
        }
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if let Some(v) = &o.$field { self.$field = Some(v.clone()); } )* };
        }
        set!(
            init,
            output_dir,
            max_source_len,
            max_target_len,
            batch_size,
            eval_batch_size
        );
        set!(
            grad_accum,
            lr,
            weight_decay,
            adam_eps,
            warmup_steps,
            seed,
            beam_size,
            device,
            log_every
        );
        set_opt!(
            train_data,
            train_limit,
            dev_data,
            tokenizer,
            cache_dir,
            eval_steps,
            stop_after,
            dropout,
            max_grad_norm,
            bucket_window
        );
        if let Some(p) = o.padding {
            self.padding = p;
        }
        if let Some(b) = o.backward {
            self.backward = b;
        }
        if let Some(p) = o.precision {
            self.precision = p;
        }
        if let Some(w) = o.grad_weighting {
            self.grad_weighting = w;
        }
        if let Some(a) = o.accumulation {
            self.accumulation = a;
        }
        if let Some(steps) = o.train_steps {
            self.train_steps = Some(steps);
            self.epochs = None;
        }
        if let Some(epochs) = o.epochs {
            self.epochs = Some(epochs);
            self.train_steps = None;
        }
        if o.no_shuffle {
            self.shuffle = false;
        }
    }

    /// Variant A or B.
    pub fn schedule(&self) -> Result<Schedule> {
        match (self.epochs, self.train_steps) {
            (Some(epochs), _) => Ok(Schedule::Epochs { epochs }),
            (None, Some(train_steps)) => Ok(Schedule::Steps { train_steps }),
            (None, None) => Err(TrainError::Config(
                "set either train_steps (variant A) or epochs (variant B)".into(),
            )),
        }
    }

    /// Examples per micro-batch: `batch_size / grad_accum` (integer division, as the reference).
    pub fn micro_batch_size(&self) -> usize {
        self.batch_size / self.grad_accum.max(1) as usize
    }

    /// The same settings with every relative path that names a local file or folder made
    /// absolute against `base` (the working folder): `train_data`, `dev_data`, `cache_dir`,
    /// and `init` and `tokenizer` when they name a local folder rather than a hub id (or
    /// `small`). A run saved so can be resumed, evaluated and used by `predict` from any
    /// folder. `output_dir` stays as given (a resume names it anyway).
    pub fn with_absolute_paths(mut self, base: &Path) -> Self {
        let absolute = |path: &Path| {
            if path.is_relative() {
                base.join(path)
            } else {
                path.to_path_buf()
            }
        };
        for path in [
            &mut self.train_data,
            &mut self.dev_data,
            &mut self.cache_dir,
        ]
        .into_iter()
        .flatten()
        {
            *path = absolute(path);
        }
        let local = |spec: &str| {
            let path = absolute(Path::new(spec));
            path.exists().then(|| path.to_string_lossy().into_owned())
        };
        if self.init != "small" {
            if let Some(init) = local(&self.init) {
                self.init = init;
            }
        }
        if let Some(tokenizer) = self.tokenizer.as_deref().and_then(local) {
            self.tokenizer = Some(tokenizer);
        }
        self
    }

    /// The tokenizer spec to load: `tokenizer`, else `init`'s. A checkpoint folder that
    /// holds no tokenizer files but a `train_config.json` naming one (what `train` writes)
    /// gives the tokenizer it was trained with, as `evaluate` and `predict` take it.
    pub fn tokenizer_spec(&self) -> Result<String> {
        match (&self.tokenizer, self.init.as_str()) {
            (Some(t), _) => Ok(t.clone()),
            (None, "small") => Err(TrainError::Config(
                "init = small has no tokenizer: set tokenizer (a directory with vocab.json and merges.txt)".into(),
            )),
            (None, init) => Ok(trained_with_tokenizer(Path::new(init))
                .unwrap_or_else(|| init.to_string())),
        }
    }

    /// Checks values that would otherwise fail deep inside the run, and that `train_data` is
    /// set ([`TrainConfig::validate_settings`] without the data paths).
    pub fn validate(&self) -> Result<()> {
        self.validate_settings()?;
        if self.train_data.is_none() {
            return Err(TrainError::Config("train_data is required".into()));
        }
        Ok(())
    }

    /// The checks of [`TrainConfig::validate`] that do not concern files: what
    /// [`Trainer::new`](crate::trainer::Trainer::new), given the data itself, checks.
    pub fn validate_settings(&self) -> Result<()> {
        let fail = |m: &str| Err(TrainError::Config(m.to_string()));
        self.schedule()?;
        if self.grad_accum == 0 {
            return fail("grad_accum must be at least 1");
        }
        if self.batch_size == 0 {
            return fail("batch_size must be at least 1");
        }
        if self.micro_batch_size() == 0 {
            return fail("batch_size must be at least grad_accum (each micro-batch holds batch_size / grad_accum examples)");
        }
        if self.eval_batch_size == 0 || self.beam_size == 0 {
            return fail("eval_batch_size and beam_size must be at least 1");
        }
        if !(2..=512).contains(&self.max_source_len) || !(2..=512).contains(&self.max_target_len) {
            return fail(
                "max_source_len and max_target_len must lie in 2..=512 (514 position rows)",
            );
        }
        if self.eval_steps == Some(0) || self.epochs == Some(0) || self.train_steps == Some(0) {
            return fail("train_steps, eval_steps and epochs must be at least 1");
        }
        if self.train_limit == Some(0) {
            return fail("train_limit is 0: nothing to train on (leave it out for all examples)");
        }
        // The loop is planned step by step (progress bar, schedule): keep it finite in time.
        if self.train_steps.is_some_and(|n| n > 100_000_000)
            || self.epochs.is_some_and(|n| n > 10_000)
        {
            return fail("train_steps above 10^8 or epochs above 10^4 are not plausible runs");
        }
        let non_negative = |x: f64| x.is_finite() && x >= 0.0;
        if !non_negative(self.lr) || !non_negative(self.weight_decay) {
            return fail("lr and weight_decay must be finite and non-negative");
        }
        if self.dropout.is_some_and(|p| !(0.0..1.0).contains(&p)) {
            return fail("dropout must lie in [0, 1)");
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.adam_eps) || self.max_grad_norm.is_some_and(|n| !positive(n)) {
            return fail("adam_eps and max_grad_norm must be finite and positive");
        }
        if self.early_stopping_patience.is_some()
            && self.early_stopping_metric == StopMetric::Bleu
            && (!self.eval_bleu || self.dev_bleu_samples == 0)
        {
            return fail(
                "early stopping on BLEU needs eval_bleu = true and dev_bleu_samples > 0 \
                 (or early_stopping_metric = \"loss\")",
            );
        }
        self.check_bucketing()
    }

    /// Settings that are valid but quietly do less than they seem to: a warmup as long as the
    /// run, an evaluation interval past its end. One sentence each, for the programs to print.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let (None, Some(steps)) = (self.epochs, self.train_steps) {
            if self.warmup_steps >= steps {
                warnings.push(format!(
                    "warmup_steps {} is not below train_steps {steps}: the learning rate never \
                     reaches lr {}",
                    self.warmup_steps, self.lr
                ));
            }
            // The loop evaluates where (updates done + 1) % every == 0, the last update's
            // check included: `every` = steps + 1 still evaluates once.
            if let (Some(every), Some(_)) = (self.eval_steps, &self.dev_data) {
                if every > steps + 1 {
                    warnings.push(format!(
                        "eval_steps {every} is above train_steps {steps} + 1: no dev evaluation \
                         will run, so no best checkpoint is written"
                    ));
                }
            }
        }
        if self.epochs.is_some() && self.warmup_steps > 0 {
            warnings.push(format!(
                "warmup_steps {} is ignored with epochs (variant B warms up over 10 % of its \
                 updates, as the reference does)",
                self.warmup_steps
            ));
        }
        warnings
    }

    /// The settings a resumed run must share with the run that wrote its checkpoint, because
    /// the saved state encodes them: the data and its order, the loop, the schedule, the
    /// optimizer and dropout. One line per difference; empty when the runs agree. Everything
    /// else (`stop_after`, evaluation, precision, device, ...) may change on resume.
    pub fn resume_conflicts(&self, saved: &TrainConfig) -> Vec<String> {
        let mut conflicts = Vec::new();
        // Values as the config file spells them; an unset option reads "unset".
        fn shown(value: &impl Serialize) -> String {
            match serde_json::to_value(value) {
                Ok(serde_json::Value::Null) => "unset".into(),
                Ok(v) => v.to_string(),
                Err(_) => "?".into(),
            }
        }
        macro_rules! compare {
            ($($field:ident),*) => { $(
                if self.$field != saved.$field {
                    conflicts.push(format!(
                        "{}: saved {}, now {}",
                        stringify!($field),
                        shown(&saved.$field),
                        shown(&self.$field)
                    ));
                }
            )* };
        }
        compare!(
            train_limit,
            max_source_len,
            max_target_len,
            batch_size,
            grad_accum,
            padding,
            bucket_window,
            shuffle,
            seed,
            lr,
            weight_decay,
            adam_eps,
            epochs,
            dropout,
            max_grad_norm
        );
        // With GA 1 both accumulation rules update after every batch: a run saved under the
        // other rule (the default until 2026-11-27) resumes.
        if self.grad_accum > 1 && self.accumulation != saved.accumulation {
            compare!(accumulation);
        }
        // Variant B ignores these three (10 % warmup, evaluation per epoch).
        if self.epochs.is_none() || saved.epochs.is_none() {
            compare!(warmup_steps, train_steps, eval_steps);
        }
        conflicts
    }

    /// The length-bucketing settings alone; [`Trainer::new`](crate::trainer::Trainer::new),
    /// which takes its data directly, checks them too.
    pub fn check_bucketing(&self) -> Result<()> {
        let fail = |m: &str| Err(TrainError::Config(m.to_string()));
        match self.bucket_window {
            Some(0) => fail("bucket_window must be at least 1 batch"),
            Some(_) if self.padding != Padding::Dynamic => fail(
                "bucket_window needs padding = \"dynamic\" (reference padding pads every batch \
                 to the maximum anyway)",
            ),
            Some(_) if !self.shuffle => fail(
                "bucket_window needs shuffle: unshuffled buckets would run from the shortest \
                 batch to the longest",
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_json_and_overrides_agree() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("c.toml");
        std::fs::write(
            &toml_path,
            "train_steps = 100\neval_steps = 10\npadding = \"dynamic\"\nprecision = \"bf16\"\ngrad_weighting = \"mean_of_rank_means\"\n",
        )
        .unwrap();
        let cfg = TrainConfig::load(&toml_path).unwrap();
        assert_eq!(
            cfg.schedule().unwrap(),
            Schedule::Steps { train_steps: 100 }
        );
        assert_eq!(
            (cfg.padding, cfg.precision, cfg.grad_weighting),
            (
                Padding::Dynamic,
                Precision::Bf16,
                GradWeighting::MeanOfRankMeans
            )
        );
        let json_path = dir.path().join("c.json");
        cfg.save_json(&json_path).unwrap();
        assert_eq!(TrainConfig::load(&json_path).unwrap(), cfg);

        let mut cfg = cfg;
        cfg.apply(&TrainOverrides {
            epochs: Some(3),
            lr: Some(1e-4),
            no_shuffle: true,
            ..Default::default()
        });
        assert_eq!(cfg.schedule().unwrap(), Schedule::Epochs { epochs: 3 });
        assert_eq!((cfg.lr, cfg.shuffle, cfg.train_steps), (1e-4, false, None));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "learning_rate = 1.0\n").unwrap();
        let err = TrainConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.toml") && err.contains("learning_rate"),
            "{err}"
        );
        let cfg = TrainConfig {
            train_data: Some("t.jsonl".into()),
            grad_accum: 128,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = TrainConfig {
            train_data: Some("t.jsonl".into()),
            ..Default::default()
        };
        assert!(cfg.validate().is_ok());
        let bucketed = |padding, bucket_window, shuffle| TrainConfig {
            train_data: Some("t.jsonl".into()),
            padding,
            bucket_window,
            shuffle,
            ..Default::default()
        };
        assert!(bucketed(Padding::Dynamic, Some(10), true)
            .validate()
            .is_ok());
        for bad in [
            bucketed(Padding::Dynamic, Some(0), true),
            bucketed(Padding::Reference, Some(10), true),
            bucketed(Padding::Dynamic, Some(10), false),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains("bucket_window"), "{err}");
        }
        assert!(TrainConfig {
            init: "small".into(),
            ..Default::default()
        }
        .tokenizer_spec()
        .is_err());
        let valid = TrainConfig {
            train_data: Some("t.jsonl".into()),
            ..Default::default()
        };
        for bad in [
            TrainConfig {
                max_grad_norm: Some(-1.0),
                ..valid.clone()
            },
            TrainConfig {
                adam_eps: f64::NAN,
                ..valid.clone()
            },
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains("max_grad_norm"), "{err}");
        }
        // Early stopping on BLEU without BLEU would stop a run that still improves.
        let patient = TrainConfig {
            early_stopping_patience: Some(2),
            ..valid.clone()
        };
        assert!(patient.validate().is_ok());
        let err = TrainConfig {
            eval_bleu: false,
            ..patient.clone()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("early stopping"), "{err}");
        assert!(TrainConfig {
            eval_bleu: false,
            early_stopping_metric: StopMetric::Loss,
            ..patient
        }
        .validate()
        .is_ok());
        // A run of no update would save its init as the result.
        let err = TrainConfig {
            train_steps: Some(0),
            ..valid.clone()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("train_steps"), "{err}");
        let err = TrainConfig {
            train_limit: Some(0),
            ..valid.clone()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("train_limit"), "{err}");
        // Another limit is other training data: no resume across it.
        let limited = TrainConfig {
            train_limit: Some(100),
            ..valid.clone()
        };
        assert_eq!(limited.resume_conflicts(&valid).len(), 1);
        // The settings alone: what a trainer built from parts checks.
        let parts = TrainConfig {
            train_data: None,
            ..valid
        };
        assert!(parts.validate_settings().is_ok());
        assert!(parts
            .validate()
            .unwrap_err()
            .to_string()
            .contains("train_data"));
    }

    #[test]
    fn settings_that_do_less_than_they_seem_are_warned_about() {
        let run = TrainConfig {
            train_steps: Some(20),
            warmup_steps: 5,
            eval_steps: Some(10),
            dev_data: Some("dev.jsonl".into()),
            ..TrainConfig::default()
        };
        assert!(run.warnings().is_empty(), "{:?}", run.warnings());
        let odd = TrainConfig {
            warmup_steps: 25,
            eval_steps: Some(100),
            ..run.clone()
        };
        let warnings = odd.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("warmup_steps 25"), "{warnings:?}");
        assert!(warnings[1].contains("no dev evaluation"), "{warnings:?}");
        // The loop's last check still evaluates at eval_steps = train_steps + 1.
        let boundary = TrainConfig {
            eval_steps: Some(21),
            ..run.clone()
        };
        assert!(boundary.warnings().is_empty(), "{:?}", boundary.warnings());
        // Without dev data there is no evaluation to miss.
        let no_dev = TrainConfig {
            dev_data: None,
            ..odd
        };
        assert_eq!(no_dev.warnings().len(), 1);
        // Variant B has its own warmup.
        let epochs = TrainConfig {
            epochs: Some(2),
            ..run.clone()
        };
        let warnings = epochs.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("warmup_steps 5 is ignored"),
            "{warnings:?}"
        );
        let no_warmup = TrainConfig {
            warmup_steps: 0,
            ..epochs
        };
        assert!(no_warmup.warnings().is_empty());
    }

    #[test]
    fn an_init_checkpoint_gives_the_tokenizer_it_was_trained_with() {
        let run = tempfile::tempdir().unwrap();
        let checkpoint = run.path().join("checkpoint-best-bleu");
        std::fs::create_dir_all(&checkpoint).unwrap();
        let from = |init: &Path| TrainConfig {
            init: init.display().to_string(),
            ..TrainConfig::default()
        };
        // No train_config.json: the folder itself, as before.
        let plain = from(&checkpoint).tokenizer_spec().unwrap();
        assert_eq!(plain, checkpoint.display().to_string());
        TrainConfig {
            init: "small".into(),
            tokenizer: Some("/data/roberta-base".into()),
            ..TrainConfig::default()
        }
        .save_json(&checkpoint.join(TRAIN_CONFIG_FILE))
        .unwrap();
        assert_eq!(
            from(&checkpoint).tokenizer_spec().unwrap(),
            "/data/roberta-base"
        );
        // A run that named no tokenizer loaded its init's: followed to that.
        let second = run.path().join("second");
        std::fs::create_dir_all(&second).unwrap();
        TrainConfig {
            init: checkpoint.display().to_string(),
            tokenizer: None,
            ..TrainConfig::default()
        }
        .save_json(&second.join(TRAIN_CONFIG_FILE))
        .unwrap();
        assert_eq!(
            from(&second).tokenizer_spec().unwrap(),
            "/data/roberta-base"
        );
        // Runs that name each other end the search instead of looping.
        TrainConfig {
            init: second.display().to_string(),
            tokenizer: None,
            ..TrainConfig::default()
        }
        .save_json(&checkpoint.join(TRAIN_CONFIG_FILE))
        .unwrap();
        assert_eq!(
            from(&second).tokenizer_spec().unwrap(),
            second.display().to_string()
        );
        // A folder with tokenizer files of its own keeps them.
        std::fs::write(checkpoint.join("tokenizer.json"), "{}").unwrap();
        assert_eq!(from(&checkpoint).tokenizer_spec().unwrap(), plain);
        // A hub id is no folder.
        assert_eq!(
            from(Path::new("microsoft/codebert-base"))
                .tokenizer_spec()
                .unwrap(),
            "microsoft/codebert-base"
        );
    }

    #[test]
    fn local_paths_are_made_absolute_and_hub_ids_are_left_alone() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("tok")).unwrap();
        std::fs::create_dir_all(base.path().join("runs/x/checkpoint-last")).unwrap();
        std::fs::create_dir_all(base.path().join("small")).unwrap();
        let relative = TrainConfig {
            init: "runs/x/checkpoint-last".into(),
            tokenizer: Some("tok".into()),
            train_data: Some("data/train.jsonl".into()),
            dev_data: Some("/elsewhere/dev.jsonl".into()),
            cache_dir: Some("cache".into()),
            output_dir: "out".into(),
            ..TrainConfig::default()
        };
        let saved = relative.clone().with_absolute_paths(base.path());
        assert_eq!(
            saved.init,
            base.path().join("runs/x/checkpoint-last").to_string_lossy()
        );
        assert_eq!(
            saved.tokenizer.as_deref(),
            Some(&*base.path().join("tok").to_string_lossy())
        );
        // Data files need not exist yet to be pinned to the folder they were named in.
        assert_eq!(
            saved.train_data.unwrap(),
            base.path().join("data/train.jsonl")
        );
        assert_eq!(saved.dev_data.unwrap(), Path::new("/elsewhere/dev.jsonl"));
        assert_eq!(saved.cache_dir.unwrap(), base.path().join("cache"));
        assert_eq!(saved.output_dir, Path::new("out"));
        // Hub ids (no such local folder) and the `small` keyword stay as they are.
        let hub = TrainConfig {
            init: "small".into(),
            tokenizer: Some("microsoft/codebert-base".into()),
            ..relative
        }
        .with_absolute_paths(base.path());
        assert_eq!(hub.init, "small");
        assert_eq!(hub.tokenizer.as_deref(), Some("microsoft/codebert-base"));
    }

    #[test]
    fn resume_conflicts_name_the_settings_the_saved_state_depends_on() {
        let saved = TrainConfig::default();
        let same_run_other_extras = TrainConfig {
            stop_after: Some(5),
            precision: Precision::Bf16,
            beam_size: 4,
            ..saved.clone()
        };
        assert!(same_run_other_extras.resume_conflicts(&saved).is_empty());
        let changed = TrainConfig {
            weight_decay: 0.01,
            train_steps: Some(10),
            ..saved.clone()
        };
        assert_eq!(
            changed.resume_conflicts(&saved),
            [
                "weight_decay: saved 0.0, now 0.01",
                "train_steps: saved 20000, now 10"
            ]
        );
        // Variant B ignores train_steps, warmup_steps and eval_steps.
        let b = TrainConfig {
            epochs: Some(3),
            ..saved.clone()
        };
        let b_without_steps = TrainConfig {
            train_steps: None,
            eval_steps: None,
            ..b.clone()
        };
        assert!(b_without_steps.resume_conflicts(&b).is_empty());
        let dropout = TrainConfig {
            dropout: Some(0.25),
            padding: Padding::Dynamic,
            ..saved.clone()
        };
        assert_eq!(
            dropout.resume_conflicts(&saved),
            [
                "padding: saved \"reference\", now \"dynamic\"",
                "dropout: saved unset, now 0.25"
            ]
        );
    }
}
