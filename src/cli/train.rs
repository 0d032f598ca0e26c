//! Flags of `examples/train.rs`.

use crate::data::Padding;
use crate::train::config::{Precision, TrainOverrides};
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
    /// Ranks as processes on NVIDIA GPUs with NCCL.
    Nccl,
}

/// Fine-tune code2nl (reference AdamW, schedule, loop, dev BLEU, checkpoints).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "train",
    about = "Fine-tune code2nl (reference AdamW, schedule, loop, dev BLEU, checkpoints)"
)]
pub struct TrainArgs {
    /// TOML or JSON training config; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Initial weights: hub id or directory (pretrained RoBERTa or code2nl checkpoint), or `small`.
    #[arg(long)]
    pub init: Option<String>,
    /// Training jsonl(.gz) file.
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    /// Dev jsonl(.gz) file: perplexity on all of it, BLEU on a seeded subset of 1000.
    #[arg(long)]
    pub dev_data: Option<PathBuf>,
    /// Tokenizer directory (vocab.json + merges.txt / tokenizer.json) or hub id.
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Folder for checkpoints, metrics.jsonl and dev outputs.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Source truncation length in BPE tokens, specials included.
    #[arg(long)]
    pub max_source_len: Option<usize>,
    /// Target truncation length, also the beam's maximum length.
    #[arg(long)]
    pub max_target_len: Option<usize>,
    /// Examples per optimizer update (micro-batches hold batch-size / grad-accum).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Examples per dev-loss / beam-search batch.
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Gradient accumulation steps per update.
    #[arg(long)]
    pub grad_accum: Option<u64>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW decoupled weight decay (not applied to biases and LayerNorm weights).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Variant A warmup updates (variant B always warms up over 10 %).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Variant A: number of batches.
    #[arg(long, conflicts_with = "epochs")]
    pub train_steps: Option<u64>,
    /// Variant B: number of epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Variant A: evaluate every N updates.
    #[arg(long)]
    pub eval_steps: Option<u64>,
    /// Stop after N updates (the schedule still spans the whole run); resume with --resume.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Seed of the data order and the dev-BLEU subset.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Dropout probability for every dropout (0 for deterministic runs).
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Keep the training data in file order.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Batch padding: reference (maximum lengths) or dynamic (longest in the batch).
    #[arg(long, value_enum)]
    pub padding: Option<PaddingArg>,
    /// Activation precision: f32, tf32 or bf16.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Beam size of the dev BLEU decoding.
    #[arg(long)]
    pub beam_size: Option<usize>,
    /// Global-norm gradient clipping (the reference never clips).
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long)]
    pub device: Option<String>,
    /// Continue from OUTPUT/checkpoint-last.
    #[arg(long)]
    pub resume: bool,
    /// Data-parallel ranks (only 1 is wired into this trainer so far).
    #[arg(long, default_value_t = 1)]
    pub world_size: usize,
    /// Data-parallel backend (only single is wired into this trainer so far).
    #[arg(long, value_enum, default_value = "single")]
    pub backend: BackendArg,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// The flags that override config values.
    pub fn overrides(&self) -> TrainOverrides {
        TrainOverrides {
            init: self.init.clone(),
            train_data: self.train_data.clone(),
            dev_data: self.dev_data.clone(),
            tokenizer: self.tokenizer.clone(),
            output_dir: self.output_dir.clone(),
            max_source_len: self.max_source_len,
            max_target_len: self.max_target_len,
            batch_size: self.batch_size,
            eval_batch_size: self.eval_batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            train_steps: self.train_steps,
            epochs: self.epochs,
            eval_steps: self.eval_steps,
            stop_after: self.stop_after,
            seed: self.seed,
            dropout: self.dropout,
            no_shuffle: self.no_shuffle,
            padding: self.padding.map(Padding::from),
            precision: self.precision.map(Precision::from),
            beam_size: self.beam_size,
            max_grad_norm: self.max_grad_norm,
            device: self.device.clone(),
        }
    }
}
