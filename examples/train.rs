//! Fine-tune the code2nl model with the reference semantics (variant A with `--train-steps`,
//! variant B with `--epochs`), evaluating on a dev file and writing checkpoints.
//!
//! ```text
//! # CPU smoke run: random small model, 50 updates on ruby valid, dev = first lines of test
//! cargo run --release --example train -- --init small --tokenizer ../shared/data/roberta-base \
//!     --train-data ../shared/data/codesearchnet/ruby/valid.jsonl \
//!     --dev-data ../shared/data/codesearchnet/ruby/test.jsonl \
//!     --output-dir /tmp/c2n-run --batch-size 16 --train-steps 50 --eval-steps 25 --lr 1e-3
//! # The CodeBERT README recipe for ruby (GPU):
//! cargo run --release --features cuda --example train -- --init microsoft/codebert-base \
//!     --train-data ruby/train.jsonl --dev-data ruby/valid.jsonl --output-dir model/ruby \
//!     --batch-size 64 --lr 5e-5 --train-steps 20000 --eval-steps 400
//! ```
//! Always ends by writing `OUTPUT/checkpoint-last/model.safetensors`. `--resume` continues from
//! `OUTPUT/checkpoint-last` exactly where it stopped (`--stop-after N` stops after N updates
//! while the schedule still spans the whole run).

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use code2nl::data::Padding;
use code2nl::train::config::{Precision, TrainConfig, TrainOverrides};
use code2nl::train::trainer::Trainer;
use std::path::PathBuf;

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PaddingArg {
    Reference,
    Dynamic,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PrecisionArg {
    F32,
    Tf32,
    Bf16,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Single,
    Threads,
    Mpi,
    Nccl,
}

#[derive(Parser, Debug)]
#[command(about = "Fine-tune code2nl (reference AdamW, schedule, loop, dev BLEU, checkpoints)")]
struct Args {
    /// TOML or JSON training config; flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Initial weights: hub id or directory (pretrained RoBERTa or code2nl checkpoint), or `small`.
    #[arg(long)]
    init: Option<String>,
    #[arg(long)]
    train_data: Option<PathBuf>,
    #[arg(long)]
    dev_data: Option<PathBuf>,
    /// Tokenizer directory (vocab.json + merges.txt / tokenizer.json) or hub id.
    #[arg(long)]
    tokenizer: Option<String>,
    #[arg(long)]
    output_dir: Option<PathBuf>,
    #[arg(long)]
    max_source_len: Option<usize>,
    #[arg(long)]
    max_target_len: Option<usize>,
    /// Examples per optimizer update (micro-batches hold batch-size / grad-accum).
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    eval_batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<u64>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Variant A warmup updates (variant B always warms up over 10 %).
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Variant A: number of batches.
    #[arg(long, conflicts_with = "epochs")]
    train_steps: Option<u64>,
    /// Variant B: number of epochs.
    #[arg(long)]
    epochs: Option<u64>,
    /// Variant A: evaluate every N updates.
    #[arg(long)]
    eval_steps: Option<u64>,
    /// Stop after N updates (the schedule still spans the whole run); resume with --resume.
    #[arg(long)]
    stop_after: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Dropout probability for every dropout (0 for deterministic runs).
    #[arg(long)]
    dropout: Option<f32>,
    #[arg(long)]
    no_shuffle: bool,
    #[arg(long, value_enum)]
    padding: Option<PaddingArg>,
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
    #[arg(long)]
    beam_size: Option<usize>,
    /// Global-norm gradient clipping (the reference never clips).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// auto | cpu | cuda | cuda:N
    #[arg(long)]
    device: Option<String>,
    /// Continue from OUTPUT/checkpoint-last.
    #[arg(long)]
    resume: bool,
    /// Data-parallel ranks (only 1 is wired into this trainer so far).
    #[arg(long, default_value_t = 1)]
    world_size: usize,
    #[arg(long, value_enum, default_value = "single")]
    backend: BackendArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.world_size != 1 || args.backend != BackendArg::Single {
        bail!("data-parallel training (--world-size > 1, --backend other than single) is not wired into the trainer yet");
    }
    let mut config = match &args.config {
        Some(path) => {
            TrainConfig::load(path).with_context(|| format!("loading {}", path.display()))?
        }
        None => TrainConfig::default(),
    };
    config.apply(&TrainOverrides {
        init: args.init,
        train_data: args.train_data,
        dev_data: args.dev_data,
        tokenizer: args.tokenizer,
        output_dir: args.output_dir,
        max_source_len: args.max_source_len,
        max_target_len: args.max_target_len,
        batch_size: args.batch_size,
        eval_batch_size: args.eval_batch_size,
        grad_accum: args.grad_accum,
        lr: args.lr,
        weight_decay: args.weight_decay,
        warmup_steps: args.warmup_steps,
        train_steps: args.train_steps,
        epochs: args.epochs,
        eval_steps: args.eval_steps,
        stop_after: args.stop_after,
        seed: args.seed,
        dropout: args.dropout,
        no_shuffle: args.no_shuffle,
        padding: args.padding.map(|p| match p {
            PaddingArg::Reference => Padding::Reference,
            PaddingArg::Dynamic => Padding::Dynamic,
        }),
        precision: args.precision.map(|p| match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Tf32 => Precision::Tf32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }),
        beam_size: args.beam_size,
        max_grad_norm: args.max_grad_norm,
        device: args.device,
    });
    if args.quiet {
        config.progress = false;
    }
    let output_dir = config.output_dir.clone();
    let mut trainer = Trainer::from_config(config, args.resume)?;
    eprintln!(
        "training {} parameters on {:?}: {} updates planned",
        trainer.params().numel(),
        trainer.model().device().location(),
        trainer.total_updates()
    );
    let summary = trainer.run()?;
    println!(
        "updates {} batches {} evaluations {} best dev loss {} best dev bleu {} ({:.1} s)",
        summary.updates,
        summary.batches,
        summary.evaluations,
        summary.best_loss,
        summary.best_bleu,
        summary.seconds
    );
    println!(
        "{}",
        output_dir
            .join("checkpoint-last")
            .join("model.safetensors")
            .display()
    );
    Ok(())
}
