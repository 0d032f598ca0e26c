//! The device-check binary: every GPU check of `scripts/gpu-check.sh` as one subcommand of
//! one executable, so a device run carries a single (stripped, ≈ 41 MB) CUDA binary.
//!
//! Every subcommand prints one or more JSON lines `{"check": NAME, ...}` on stdout (progress
//! and warnings go to stderr); `tools/gpu/report.py` collects them into a table.
//!
//! ```text
//! device info
//! device prepare-data --shared ../shared --out build/device/data
//! device parity-model --fixture crates/c2n-model/tests/data/model_fixture.json \
//!        --checkpoint crates/c2n-model/tests/data/small --device cuda
//! device parity-train --fixture-dir crates/c2n-train/tests/data/train_steps --device cuda
//! device bench-train --features build/device/data/ruby_valid_train_features.jsonl \
//!        --model codebert --batch-size 32 --padding reference --precision f32 --device cuda
//! device make-checkpoint --model codebert --out /tmp/c2n-codebert-random
//! device bench-decode --checkpoint /tmp/c2n-codebert-random \
//!        --sources build/device/data/ruby_test_features.jsonl --examples 64 --device cuda
//! device bench-comm --model codebert --backend nccl --device cuda
//! ```
//!
//! Build for the GPU with `scripts/cuda-build.sh` (`--features cuda,nccl`); the CPU build
//! (`cargo build --example device`) runs the same code paths on tiny sizes for
//! `scripts/gpu-check.sh --cpu-dry-run`. See `docs/gpu.md`.

#[path = "device/comm_bench.rs"]
mod comm_bench;
#[path = "device/common.rs"]
mod common;
#[path = "device/data.rs"]
mod data;
#[path = "device/decode_bench.rs"]
mod decode_bench;
#[path = "device/decode_profile.rs"]
mod decode_profile;
#[path = "device/host_memory.rs"]
mod host_memory;
#[path = "device/kernel_check.rs"]
mod kernel_check;
#[path = "device/memory.rs"]
mod memory;
#[path = "device/ops_profile.rs"]
mod ops_profile;
#[path = "device/parity.rs"]
mod parity;
#[path = "device/train_bench.rs"]
mod train_bench;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Counts live heap bytes (the CPU's peak memory; see `host_memory`).
#[global_allocator]
static ALLOCATOR: host_memory::CountingAllocator = host_memory::CountingAllocator;

#[derive(Parser, Debug)]
#[command(about = "GPU checks of code2nl: parity with the PyTorch reference and benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build features and whether a CUDA device answers.
    Info(common::DeviceArgs),
    /// Tokenize the ruby files once (here, on the CPU) into the small folder a device run carries.
    PrepareData(data::PrepareArgs),
    /// Small-model parity: encoder output, logits, loss and beam n-best vs a reference fixture.
    ParityModel(parity::ModelParityArgs),
    /// Three training updates (GA 1 and GA 2) vs the reference's parameters after each update.
    ParityTrain(parity::TrainParityArgs),
    /// Training throughput, peak memory and a per-phase breakdown of one step.
    BenchTrain(train_bench::TrainBenchArgs),
    /// Write a randomly initialised checkpoint (the weights both decoders load).
    MakeCheckpoint(decode_bench::MakeCheckpointArgs),
    /// Batched reference-mode beam search: throughput, per-phase breakdown, n-best ids.
    BenchDecode(decode_bench::DecodeBenchArgs),
    /// Time the phases of one decoding step (decoder layers, LM head, ranking, host copy).
    ProfileDecode(decode_profile::DecodeProfileArgs),
    /// Time a training step's building blocks alone (GEMM, attention, softmax, layer norm, …)
    /// and the model's forward/backward phases.
    ProfileOps(ops_profile::OpsProfileArgs),
    /// Gradient exchange cost at world size 1: bucketed sync of model-shaped gradients.
    BenchComm(comm_bench::CommBenchArgs),
    /// Our CUDA kernels against the tensor ops they replace: differences and time.
    CheckKernels(kernel_check::KernelCheckArgs),
}

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Info(args) => common::info(&args),
        Command::PrepareData(args) => data::prepare(&args),
        Command::ParityModel(args) => parity::model(&args),
        Command::ParityTrain(args) => parity::train(&args),
        Command::BenchTrain(args) => train_bench::run(&args),
        Command::MakeCheckpoint(args) => decode_bench::make_checkpoint(&args),
        Command::BenchDecode(args) => decode_bench::run(&args),
        Command::ProfileDecode(args) => decode_profile::run(&args),
        Command::ProfileOps(args) => ops_profile::run(&args),
        Command::BenchComm(args) => comm_bench::run(&args),
        Command::CheckKernels(args) => kernel_check::run(&args),
    }
}
