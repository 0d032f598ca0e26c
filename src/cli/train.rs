//! Flags of `examples/train.rs`.

use crate::data::Padding;
use crate::train::comm::{
    timeout_from_lookup, Backend, CommError, GradWeighting, LaunchEnv, LaunchSpec, Launcher,
};
use crate::train::config::{
    BackwardPath, Precision, TrainConfig, TrainOverrides, TRAIN_CONFIG_FILE,
};
use crate::train::loop_plan::AccumulationMode;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// Source/target padding of the training batches.
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum PaddingArg {
    /// Pad to the maximum lengths, as the reference.
    Reference,
    /// Pad to the longest example of the batch.
    Dynamic,
}

impl From<PaddingArg> for Padding {
    fn from(p: PaddingArg) -> Self {
        match p {
            PaddingArg::Reference => Padding::Reference,
            PaddingArg::Dynamic => Padding::Dynamic,
        }
    }
}

/// How gradients are computed.
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum BackwardArg {
    /// The backward pass written out (no op graph).
    Explicit,
    /// Candle's autograd over the recorded op graph.
    Graph,
}

impl From<BackwardArg> for BackwardPath {
    fn from(b: BackwardArg) -> Self {
        match b {
            BackwardArg::Explicit => BackwardPath::Explicit,
            BackwardArg::Graph => BackwardPath::Graph,
        }
    }
}

/// Activation precision.
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum PrecisionArg {
    /// f32 everywhere.
    F32,
    /// f32 tensors with TF32 tensor-core matmuls (CUDA).
    Tf32,
    /// bf16 activations, f32 master weights.
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Tf32 => Precision::Tf32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

/// Data-parallel communication backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// One process, one device.
    Single,
    /// Ranks as threads of this process.
    Threads,
    /// Ranks as MPI processes.
    Mpi,
    /// Ranks on NVIDIA GPUs with NCCL: one process per GPU under torchrun or srun, else one
    /// thread per GPU in this process (`--world-size` GPUs, default every visible one).
    Nccl,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Single => Backend::Single,
            BackendArg::Threads => Backend::Threads,
            BackendArg::Mpi => Backend::Mpi,
            BackendArg::Nccl => Backend::Nccl,
        }
    }
}

/// When accumulated gradients are applied.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccumulationArg {
    /// Every grad-accum batches, counted over the whole run.
    Fixed,
    /// run.py's rule: the first update after grad-accum − 1 batches, the phase restarted at
    /// each evaluation (for parity with the reference when grad-accum > 1).
    Reference,
}

impl From<AccumulationArg> for AccumulationMode {
    fn from(a: AccumulationArg) -> Self {
        match a {
            AccumulationArg::Fixed => AccumulationMode::Fixed,
            AccumulationArg::Reference => AccumulationMode::Reference,
        }
    }
}

/// How data-parallel ranks combine their gradients.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradWeightingArg {
    /// Weight each rank by its share of target tokens: N ranks = one rank on the whole batch.
    TokenMean,
    /// The reference DataParallel: plain mean of the ranks' mean losses.
    MeanOfRankMeans,
}

impl From<GradWeightingArg> for GradWeighting {
    fn from(w: GradWeightingArg) -> Self {
        match w {
            GradWeightingArg::TokenMean => GradWeighting::TokenMean,
            GradWeightingArg::MeanOfRankMeans => GradWeighting::MeanOfRankMeans,
        }
    }
}

/// The [`LaunchSpec`] of `--backend` / `--world-size`, falling back on the launcher's
/// environment ([`LaunchEnv`]) when `--backend` is not given:
/// * `--backend` given: that backend; `--world-size` is the thread count (threads, default 1;
///   nccl without a launcher, default every visible GPU) or a check on what the launcher
///   started (mpi, nccl); `single` and `threads` are refused
///   under a launcher that started several processes (each would train alone);
/// * else, under a launcher with several ranks: `mpi` for `mpirun`, `nccl` for torchrun or
///   srun (whichever of the two this build has), expecting the launcher's world size;
/// * else `threads` when `--world-size` > 1, `single` otherwise.
///
/// `C2N_COMM_TIMEOUT_S`, when set, replaces the 600 s bound on one collective's wait.
pub fn launch_spec(
    backend: Option<BackendArg>,
    world_size: Option<usize>,
) -> Result<LaunchSpec, CommError> {
    let env = match (backend, LaunchEnv::from_env()) {
        // An in-process backend needs no launcher, and MPI asks MPI itself: unreadable or
        // contradictory launcher variables (a stray RANK, a bad MASTER_PORT) do not concern
        // them.
        (Some(BackendArg::Single | BackendArg::Threads | BackendArg::Mpi), Err(_)) => {
            LaunchEnv::from_lookup(|_| None)?
        }
        (_, env) => env?,
    };
    let mut spec = launch_spec_in(backend, world_size, &env)?;
    if let Some(timeout) = timeout_from_lookup(|name| std::env::var(name).ok())? {
        spec.timeout = timeout;
    }
    Ok(spec)
}

/// [`launch_spec`] for a given launcher environment.
pub fn launch_spec_in(
    backend: Option<BackendArg>,
    world_size: Option<usize>,
    env: &LaunchEnv,
) -> Result<LaunchSpec, CommError> {
    let launched = env.launcher != Launcher::None && env.world_size > 1;
    if let Some(backend) = backend {
        let backend = Backend::from(backend);
        let world = match backend {
            Backend::Threads | Backend::Single if launched => {
                // Each of the launcher's processes would train alone, all into one folder.
                return Err(CommError::InvalidInput(format!(
                    "started by {} as one of {} processes, but --backend {backend} runs \
                     within one process: use --backend mpi or nccl, or start one process",
                    env.launcher, env.world_size
                )));
            }
            Backend::Threads | Backend::Single => Some(world_size.unwrap_or(1)),
            Backend::Mpi | Backend::Nccl => world_size,
        };
        return Ok(LaunchSpec::new(backend, world));
    }
    if launched {
        if let Some(n) = world_size.filter(|&n| n != env.world_size) {
            return Err(CommError::InvalidInput(format!(
                "--world-size {n}, but {} started {} processes",
                env.launcher, env.world_size
            )));
        }
        let preferred: &[Backend] = match env.launcher {
            Launcher::OpenMpi => &[Backend::Mpi],
            _ => &[Backend::Nccl, Backend::Mpi],
        };
        let backend = preferred
            .iter()
            .copied()
            .find(|b| b.is_compiled())
            .ok_or_else(|| {
                CommError::Unsupported(format!(
                    "started by {} as one of {} ranks, but this build has neither mpi nor nccl: \
                     rebuild with `--features mpi` or `--features nccl`",
                    env.launcher, env.world_size
                ))
            })?;
        // The backend must find the launcher's world; one that starts alone (an MPI world of
        // one under torchrun) fails this check instead of training W times side by side.
        return Ok(LaunchSpec::new(backend, Some(env.world_size)));
    }
    Ok(match world_size {
        Some(n) if n > 1 => LaunchSpec::new(Backend::Threads, Some(n)),
        _ => LaunchSpec::new(Backend::Single, Some(1)),
    })
}

/// Fine-tune code2nl (reference AdamW, schedule, loop, dev BLEU, checkpoints).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "train",
    // `--lr -1e-3` reaches the value check instead of reading as an unknown flag.
    allow_negative_numbers = true,
    about = "Fine-tune code2nl (reference AdamW, schedule, loop, dev BLEU, checkpoints)"
)]
pub struct TrainArgs {
    /// TOML or JSON training config; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Initial weights: hub id or directory (pretrained RoBERTa or code2nl checkpoint), or `small`
    /// (default: microsoft/codebert-base).
    #[arg(long)]
    pub init: Option<String>,
    /// Training jsonl(.gz) file.
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    /// Train on its first N examples only (quick experiments; not in the reference).
    #[arg(long, value_name = "N", value_parser = super::at_least_one)]
    pub train_limit: Option<usize>,
    /// Dev jsonl(.gz) file: perplexity on all of it, BLEU on a seeded subset of 1000.
    #[arg(long)]
    pub dev_data: Option<PathBuf>,
    /// Tokenizer directory (vocab.json + merges.txt / tokenizer.json) or hub id.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Folder for checkpoints, metrics.jsonl and dev outputs (default: output).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Shard cache of the tokenized features: tokenize once, map afterwards. Training reads
    /// strictly, so it shares the caches `prepare --strict --cache-dir` writes with the same
    /// lengths and tokenizer (default: tokenize in memory on every run).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Source truncation length in BPE tokens, specials included (default: 256).
    #[arg(long)]
    pub max_source_len: Option<usize>,
    /// Target truncation length, also the beam's maximum length (default: 128).
    #[arg(long)]
    pub max_target_len: Option<usize>,
    /// Examples per optimizer update (micro-batches hold batch-size / grad-accum, rounded down
    /// as in the reference) (default: 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Examples per dev-loss / beam-search batch (default: 64).
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Gradient accumulation steps per update (default: 1).
    #[arg(long)]
    pub grad_accum: Option<u64>,
    /// When accumulated gradients are applied: fixed (every grad-accum batches) or reference
    /// (run.py's off-by-one rule) (default: fixed).
    #[arg(long, value_enum)]
    pub accumulation: Option<AccumulationArg>,
    /// Peak learning rate (default: 0.00005).
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// AdamW decoupled weight decay, not applied to biases and LayerNorm weights (default: 0).
    #[arg(long, allow_hyphen_values = true)]
    pub weight_decay: Option<f64>,
    /// AdamW epsilon, run.py's --adam_epsilon (default: 0.00000001).
    #[arg(long, allow_hyphen_values = true)]
    pub adam_eps: Option<f64>,
    /// Variant A warmup updates; variant B always warms up over 10 % (default: 0).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Variant A: number of batches (default: 20000).
    #[arg(long, conflicts_with = "epochs")]
    pub train_steps: Option<u64>,
    /// Variant B: number of epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Variant A: evaluate every N updates (default: 400); run.py's -1 means every update.
    /// Variant B evaluates after each epoch.
    #[arg(long, conflicts_with = "epochs", allow_negative_numbers = true,
          value_parser = super::parse_eval_steps)]
    pub eval_steps: Option<u64>,
    /// Stop after N updates (the schedule still spans the whole run); resume with --resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Seed of the data order, the dropout masks and the dev-BLEU subset (default: 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dropout probability for every dropout, 0 for deterministic runs (default: the model
    /// config's, 0.1).
    #[arg(long, allow_hyphen_values = true)]
    pub dropout: Option<f32>,
    /// Keep the training data in file order.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Batch padding: reference (maximum lengths) or dynamic (longest in the batch) (default:
    /// reference).
    #[arg(long, value_enum)]
    pub padding: Option<PaddingArg>,
    /// Length bucketing (with --padding dynamic): sort windows of N batches by length, then
    /// shuffle the batches. Not in the reference; far less padding.
    #[arg(long, value_name = "N")]
    pub bucket_window: Option<usize>,
    /// Activation precision: f32, tf32 or bf16 (default: f32).
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Backward pass: explicit (written out, no op graph; default) or graph (Candle autograd).
    #[arg(long, value_enum)]
    pub backward: Option<BackwardArg>,
    /// Beam size of the dev BLEU decoding (default: 10).
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Global-norm gradient clipping. run.py parses --max_grad_norm (default 1.0) but never
    /// clips: leave this off to train as it does.
    #[arg(long, allow_hyphen_values = true)]
    pub max_grad_norm: Option<f64>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long)]
    pub device: Option<String>,
    /// Write a `train` line to OUTPUT/metrics.jsonl every N updates (an evaluated update's
    /// `eval` line carries its training loss instead), and one after the run's last update
    /// unless it was evaluated or --stop-after ended the run; 0 writes none (evaluations are
    /// always logged) (default: 10).
    #[arg(long, value_name = "N")]
    pub log_every: Option<u64>,
    /// Continue from OUTPUT/checkpoint-last. Without it, an earlier run found in OUTPUT is
    /// moved to OUTPUT/earlier-run-N first.
    #[arg(long)]
    pub resume: bool,
    /// Data-parallel ranks: threads to start (threads; nccl without a launcher: GPUs, default
    /// all), or a check on the launcher's count (mpi, nccl under torchrun/srun). --batch-size
    /// stays the global batch: each rank takes batch-size / N.
    #[arg(long, value_parser = super::at_least_one)]
    pub world_size: Option<usize>,
    /// Data-parallel backend; without it, the launcher's environment decides (mpirun: mpi,
    /// torchrun/srun: nccl), else threads when --world-size > 1, else single.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// How ranks combine gradients (token-mean: N ranks equal one rank on the whole batch).
    #[arg(long, value_enum)]
    pub grad_weighting: Option<GradWeightingArg>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A run's settings as [`TrainArgs::resolve_config`] decided them.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    pub config: TrainConfig,
    /// What the user should know about where the settings came from.
    pub notes: Vec<String>,
}

impl TrainArgs {
    /// The run's settings: `--config FILE`, else, with `--resume`, the settings saved in
    /// `OUTPUT/checkpoint-last/train_config.json` (else `OUTPUT/train_config.json`; so `train --resume --output-dir OUT` goes
    /// on with what the run was started with; its `--stop-after` is dropped, so the run goes
    /// to its end unless `--stop-after` is given again), else the defaults; then the flags.
    pub fn resolve_config(&self) -> crate::train::Result<ResolvedConfig> {
        let mut notes = Vec::new();
        // What the resumed run started from: a resume takes its weights from checkpoint-last.
        let mut saved_init = None;
        let mut config = match &self.config {
            Some(path) => TrainConfig::load(path)?,
            None if self.resume => {
                let output_dir = self
                    .output_dir
                    .clone()
                    .unwrap_or_else(|| TrainConfig::default().output_dir);
                // The checkpoint's copy, else the run's own (the same settings; it is there
                // too when a crash between a save's two renames left `checkpoint-last` aside,
                // which the resume puts back once it holds the folder's lock).
                let in_checkpoint = output_dir
                    .join(crate::train::checkpoint_policy::LAST)
                    .join(TRAIN_CONFIG_FILE);
                let in_run = output_dir.join(TRAIN_CONFIG_FILE);
                let saved = if in_checkpoint.is_file() {
                    in_checkpoint
                } else {
                    in_run
                };
                if saved.is_file() {
                    let mut config = TrainConfig::load(&saved)?;
                    saved_init = Some(config.init.clone());
                    notes.push(format!(
                        "resuming with the settings saved in {} (flags given here override them)",
                        saved.display()
                    ));
                    if let Some(stop) = config.stop_after.take() {
                        if self.stop_after.is_none() {
                            notes.push(format!(
                                "the saved run stopped after {stop} updates (--stop-after): \
                                 this one goes on to the end of the schedule"
                            ));
                        }
                    }
                    config
                } else {
                    notes.push(format!(
                        "no saved settings in {}: resuming with the defaults and the flags \
                         given here",
                        output_dir.display()
                    ));
                    TrainConfig::default()
                }
            }
            None => TrainConfig::default(),
        };
        config.apply(&self.overrides());
        if self.quiet {
            config.progress = false;
        }
        // Saved absolute, so `evaluate`, `predict` and `--resume` find them from anywhere.
        let here = std::env::current_dir().map_err(|e| crate::train::TrainError::io(".", e))?;
        let mut config = config.with_absolute_paths(&here);
        if let Some(saved_init) = saved_init.filter(|saved| *saved != config.init) {
            if self.init.is_some() {
                notes.push(format!(
                    "--init {} does nothing on a resume (the weights come from \
                     checkpoint-last); the run keeps recording the init it started from, {saved_init}",
                    config.init
                ));
            }
            config.init = saved_init;
        }
        Ok(ResolvedConfig { config, notes })
    }

    /// The backend and world size to launch ([`launch_spec`]).
    pub fn launch_spec(&self) -> Result<LaunchSpec, CommError> {
        launch_spec(self.backend, self.world_size)
    }

    /// The flags that override config values.
    pub fn overrides(&self) -> TrainOverrides {
        TrainOverrides {
            init: self.init.clone(),
            train_data: self.train_data.clone(),
            train_limit: self.train_limit,
            dev_data: self.dev_data.clone(),
            tokenizer: self.tokenizer.clone(),
            output_dir: self.output_dir.clone(),
            cache_dir: self.cache_dir.clone(),
            max_source_len: self.max_source_len,
            max_target_len: self.max_target_len,
            batch_size: self.batch_size,
            eval_batch_size: self.eval_batch_size,
            grad_accum: self.grad_accum,
            accumulation: self.accumulation.map(AccumulationMode::from),
            lr: self.lr,
            weight_decay: self.weight_decay,
            adam_eps: self.adam_eps,
            warmup_steps: self.warmup_steps,
            train_steps: self.train_steps,
            epochs: self.epochs,
            eval_steps: self.eval_steps,
            stop_after: self.stop_after,
            seed: self.seed,
            dropout: self.dropout,
            no_shuffle: self.no_shuffle,
            padding: self.padding.map(Padding::from),
            bucket_window: self.bucket_window,
            precision: self.precision.map(Precision::from),
            backward: self.backward.map(BackwardPath::from),
            beam_size: self.beam_size,
            max_grad_norm: self.max_grad_norm,
            device: self.device.clone(),
            grad_weighting: self.grad_weighting.map(GradWeighting::from),
            log_every: self.log_every,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> LaunchEnv {
        LaunchEnv::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn backend_flags_become_launch_specs() {
        let alone = env_of(&[]);
        let spec = launch_spec_in(Some(BackendArg::Threads), Some(3), &alone).unwrap();
        assert_eq!((spec.backend, spec.world_size), (Backend::Threads, Some(3)));
        let spec = launch_spec_in(Some(BackendArg::Mpi), None, &alone).unwrap();
        assert_eq!((spec.backend, spec.world_size), (Backend::Mpi, None));
        let spec = launch_spec_in(Some(BackendArg::Single), None, &alone).unwrap();
        assert_eq!((spec.backend, spec.world_size), (Backend::Single, Some(1)));
        // nccl outside a launcher: one thread per GPU, --world-size of them or every visible one.
        let spec = launch_spec_in(Some(BackendArg::Nccl), Some(2), &alone).unwrap();
        assert_eq!((spec.backend, spec.world_size), (Backend::Nccl, Some(2)));
        let spec = launch_spec_in(Some(BackendArg::Nccl), None, &alone).unwrap();
        assert_eq!((spec.backend, spec.world_size), (Backend::Nccl, None));
        // Without --backend and outside any launcher, --world-size alone picks threads.
        let spec = launch_spec_in(None, Some(2), &alone).unwrap();
        assert_eq!((spec.backend, spec.world_size), (Backend::Threads, Some(2)));
        let spec = launch_spec_in(None, None, &alone).unwrap();
        assert_eq!(spec.backend, Backend::Single);
    }

    #[test]
    fn the_help_states_the_config_defaults() {
        use clap::CommandFactory;
        let help = TrainArgs::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let d = crate::train::config::TrainConfig::default();
        for stated in [
            format!("(default: {})", d.init),
            format!("(default: {})", d.output_dir.display()),
            format!("(default: {})", d.max_source_len),
            format!("(default: {})", d.max_target_len),
            format!("(default: {})", d.batch_size),
            format!("(default: {})", d.grad_accum),
            format!("(default: {})", d.lr),
            format!("(default: {})", d.weight_decay),
            format!("(default: {})", d.adam_eps),
            format!("(default: {})", d.warmup_steps),
            format!("(default: {})", d.train_steps.unwrap_or_default()),
            format!("(default: {})", d.eval_steps.unwrap_or_default()),
            format!("(default: {})", d.seed),
            format!("(default: {})", d.beam_size),
            format!("(default: {})", d.log_every),
        ] {
            assert!(help.contains(&stated), "help lacks {stated}");
        }
        assert_eq!(
            (d.padding, d.precision),
            (Padding::Reference, Precision::F32)
        );
    }

    #[test]
    fn under_a_launcher_every_process_must_join_the_launchers_world() {
        let mpirun = env_of(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]);
        // In-process backends would train 4 times side by side into one folder.
        for backend in [BackendArg::Single, BackendArg::Threads] {
            let err = launch_spec_in(Some(backend), None, &mpirun).unwrap_err();
            assert!(err.to_string().contains("one of 4 processes"), "{err}");
        }
        // Auto-detection expects the launcher's world size, so a backend that comes up as a
        // world of one fails launch's size check instead of running alone.
        if Backend::Mpi.is_compiled() {
            let spec = launch_spec_in(None, None, &mpirun).unwrap();
            assert_eq!((spec.backend, spec.world_size), (Backend::Mpi, Some(4)));
        }
        let err = launch_spec_in(None, Some(2), &mpirun).unwrap_err();
        assert!(err.to_string().contains("--world-size 2"), "{err}");
    }
}
