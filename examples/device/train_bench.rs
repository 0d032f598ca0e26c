//! `bench-train`: training throughput of the real loop ([`Trainer::advance`]: forward,
//! backward, pad-row zeroing, reference AdamW) on real ruby batches in file order, with
//! peak memory, then a per-phase breakdown of single steps (data, forward, backward,
//! optimizer; the device is synchronised between phases).
//!
//! The result line carries the padded shapes actually computed, so `tools/gpu/report.py`
//! computes model FLOPs the same way for this and the PyTorch loop (`tools/gpu/bench_train.py`).

use crate::common::{
    device, device_name, emit, median, model_config, read_features, synced_seconds,
};
use crate::memory::{keep_pool_memory, PeakMemory};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use clap::ValueEnum;
use code2nl::data::batch::{padded_lengths, plan_epoch};
use code2nl::data::{make_batch, BatchConfig, Feature, Padding};
use code2nl::model::Seq2Seq;
use code2nl::train::config::{BackwardPath, Precision, TrainConfig};
use code2nl::train::device::apply_precision;
use code2nl::train::forward_pass::ForwardPass;
use code2nl::train::model_setup::POSITION_EMBEDDINGS;
use code2nl::train::optim::{AdamW, AdamWConfig, Gradients};
use code2nl::train::trainer::Trainer;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum PaddingArg {
    Reference,
    Dynamic,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum PrecisionArg {
    F32,
    Tf32,
    Bf16,
}

#[derive(clap::Args, Debug)]
pub struct TrainBenchArgs {
    /// Unpadded training features (JSON lines), used in file order.
    #[arg(
        long,
        default_value = "build/device/data/ruby_valid_train_features.jsonl"
    )]
    features: PathBuf,
    /// `codebert` (172.5 M parameters, random init) or `small`.
    #[arg(long, default_value = "codebert")]
    model: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    #[arg(long, default_value_t = 128)]
    max_target_len: usize,
    #[arg(long, value_enum, default_value = "reference")]
    padding: PaddingArg,
    #[arg(long, value_enum, default_value = "f32")]
    precision: PrecisionArg,
    /// Untimed steps first (kernel loading, allocator warm-up).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed steps; the result is their median.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Steps of the per-phase breakdown (0: skip it).
    #[arg(long, default_value_t = 5)]
    phase_steps: usize,
    /// Keep freed GPU memory in the pool (release threshold = max), like PyTorch's caching
    /// allocator.
    #[arg(long)]
    keep_pool: bool,
    /// Dropout of every layer (default: the model's 0.1, training mode as the reference).
    #[arg(long)]
    dropout: Option<f32>,
    /// Run softmax and LayerNorm as primitive ops (`ModelConfig::fused_kernels = false`), for
    /// A/B against the default fused ops.
    #[arg(long)]
    primitive_kernels: bool,
    /// Compute gradients with Candle's autograd over the op graph instead of the explicit
    /// backward pass (`TrainConfig::backward = graph`), for A/B.
    #[arg(long)]
    graph_backward: bool,
    /// Length bucketing (`TrainConfig::bucket_window`, with --padding dynamic): windows of N
    /// batches sorted by length, batches shuffled. Reads every feature, and reports samples/s
    /// over all timed steps rather than from the median step, since bucketed batches differ in
    /// cost.
    #[arg(long, value_name = "N")]
    bucket_window: Option<usize>,
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

/// The explicit backward pass always runs the fused ops, so primitive kernels imply the graph.
fn backward_path(args: &TrainBenchArgs) -> BackwardPath {
    if args.graph_backward || args.primitive_kernels {
        BackwardPath::Graph
    } else {
        BackwardPath::Explicit
    }
}

fn padding(p: PaddingArg) -> Padding {
    match p {
        PaddingArg::Reference => Padding::Reference,
        PaddingArg::Dynamic => Padding::Dynamic,
    }
}

fn precision(p: PrecisionArg) -> Precision {
    match p {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::Tf32 => Precision::Tf32,
        PrecisionArg::Bf16 => Precision::Bf16,
    }
}

/// Positions of micro-batch `k` of the trainer's plan (variant A cycles epoch 0's batches:
/// file order, or the shuffled length buckets).
fn batch_positions(plan: &[Vec<usize>], k: usize) -> &[usize] {
    &plan[k % plan.len()]
}

struct Phases {
    data: Vec<f64>,
    forward: Vec<f64>,
    backward: Vec<f64>,
    optimizer: Vec<f64>,
    /// Tensors created by forward, backward and optimizer in the last step.
    tensors: [usize; 3],
    /// Seconds until forward, backward and optimizer had queued their last op (before the
    /// device is synchronised): close to the synchronised time when the host is the bound.
    host: Vec<[f64; 3]>,
}

/// Candle's tensor counter: every op (and every view) makes a tensor with the next id, so the
/// difference across a phase counts the ops it dispatched, a proxy for its per-op overhead
/// that does not depend on the device or the shapes.
fn tensor_counter() -> usize {
    let probe = Tensor::zeros(1, DType::U8, &Device::Cpu).map(|t| format!("{:?}", t.id()));
    probe
        .ok()
        .and_then(|s| {
            s.trim_start_matches("TensorId(")
                .trim_end_matches(')')
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Single steps with the device synchronised after every phase (first one dropped: it
/// allocates the fresh optimizer's state).
fn phase_breakdown(
    trainer: &Trainer,
    features: &[Feature],
    plan: &[Vec<usize>],
    batch_config: &BatchConfig,
    steps: usize,
    first_batch: usize,
    path: BackwardPath,
) -> Result<Phases> {
    let model = trainer.model();
    let dev = model.device().clone();
    let params = trainer.params();
    let mut optimizer = AdamW::new(params, AdamWConfig::default());
    let mut p = Phases {
        data: Vec::new(),
        forward: Vec::new(),
        backward: Vec::new(),
        optimizer: Vec::new(),
        tensors: [0; 3],
        host: Vec::new(),
    };
    for k in 0..=steps {
        let positions = batch_positions(plan, first_batch + k);
        let t = Instant::now();
        let (s, tl) = padded_lengths(features, positions, batch_config)?;
        let batch = make_batch(features, positions, s, tl);
        let data = synced_seconds(&dev, t)?;
        let t = Instant::now();
        let c0 = tensor_counter();
        let pass = ForwardPass::run(model, &batch, path)?;
        let c1 = tensor_counter();
        let forward_host = t.elapsed().as_secs_f64();
        let forward = synced_seconds(&dev, t)?;
        let t = Instant::now();
        let c2 = tensor_counter();
        let store = pass.backward(1.0)?;
        let c3 = tensor_counter();
        let backward_host = t.elapsed().as_secs_f64();
        let backward = synced_seconds(&dev, t)?;
        let t = Instant::now();
        let c4 = tensor_counter();
        let mut grads = Gradients::from_grad_store(params, &store);
        grads.zero_rows(POSITION_EMBEDDINGS, &[model.config().pad_token_id as usize])?;
        optimizer.step(&grads, 5e-5)?;
        drop(grads);
        drop(store);
        let c5 = tensor_counter();
        let opt_host = t.elapsed().as_secs_f64();
        let opt = synced_seconds(&dev, t)?;
        // Each counter call makes one tensor of its own.
        p.tensors = [c1 - c0 - 1, c3 - c2 - 1, c5 - c4 - 1];
        if k > 0 {
            p.data.push(data);
            p.forward.push(forward);
            p.backward.push(backward);
            p.optimizer.push(opt);
            p.host.push([forward_host, backward_host, opt_host]);
        }
    }
    Ok(p)
}

pub fn run(args: &TrainBenchArgs) -> Result<()> {
    let dev: Device = device(&args.device.device)?;
    let kept = args.keep_pool && keep_pool_memory(&dev);
    let dtype = apply_precision(precision(args.precision), &dev);
    let mut cfg = model_config(&args.model)?;
    cfg.fused_kernels = !args.primitive_kernels;
    let needed = args.batch_size * (args.warmup + args.steps + args.phase_steps + 1);
    let bucketed = args.bucket_window.is_some();
    let features = read_features(&args.features, (!bucketed).then_some(needed))?;
    let build = Instant::now();
    let mut model = Seq2Seq::new(&cfg, &VarMap::new(), &dev)?.with_compute_dtype(dtype);
    if let Some(p) = args.dropout {
        model = code2nl::train::model_setup::with_dropout(model, Some(p), &dev)?;
    }
    let build_seconds = synced_seconds(&dev, build)?;
    let config = TrainConfig {
        init: "random".into(),
        output_dir: std::env::temp_dir().join("c2n-bench-train"),
        max_source_len: args.max_source_len,
        max_target_len: args.max_target_len,
        batch_size: args.batch_size,
        train_steps: Some(1_000_000),
        eval_steps: None,
        eval_bleu: false,
        // No metrics lines: a timed loop writes nothing into its folder.
        log_every: 0,
        shuffle: bucketed,
        padding: padding(args.padding),
        bucket_window: args.bucket_window,
        precision: precision(args.precision),
        progress: false,
        backward: backward_path(args),
        device: device_name(&dev),
        ..TrainConfig::default()
    };
    let batch_config = BatchConfig {
        batch_size: args.batch_size,
        padding: config.padding,
        max_source_len: args.max_source_len,
        max_target_len: args.max_target_len,
        shuffle: config.shuffle,
        seed: config.seed,
        bucket_window: config.bucket_window,
        ..BatchConfig::default()
    };
    // The batches the trainer runs (it plans them the same way from the same settings).
    let plan = plan_epoch(&features, &batch_config, 0)?;
    let mut trainer = Trainer::new(config, model, features.clone(), None, None)?;
    let parameters = trainer.params().numel();

    let mut step = 0usize;
    let warm = Instant::now();
    for _ in 0..args.warmup {
        trainer
            .advance()?
            .context("the loop ended during warm-up")?;
        step += 1;
    }
    let warmup_seconds = synced_seconds(&dev, warm)?;

    let probe = PeakMemory::start(&dev);
    let (mut times, mut padded_source, mut padded_target, mut real_tokens, mut losses) =
        (Vec::new(), Vec::new(), Vec::new(), 0u64, Vec::new());
    let mut examples = 0usize;
    for _ in 0..args.steps {
        let positions = batch_positions(&plan, step);
        let (s, t) = padded_lengths(&features, positions, &batch_config)?;
        examples += positions.len();
        let start = Instant::now();
        let report = trainer.advance()?.context("the loop ended early")?;
        times.push(synced_seconds(&dev, start)?);
        padded_source.push(s as f64);
        padded_target.push(t as f64);
        real_tokens += report.tokens;
        losses.push(report.loss);
        step += 1;
    }
    let memory = probe.finish();
    let median_step = median(&times);
    let total: f64 = times.iter().sum();

    let phases = if args.phase_steps > 0 {
        let p = phase_breakdown(
            &trainer,
            &features,
            &plan,
            &batch_config,
            args.phase_steps,
            step,
            backward_path(args),
        )?;
        json!({
            "data_s": median(&p.data),
            "forward_s": median(&p.forward),
            "backward_s": median(&p.backward),
            "optimizer_s": median(&p.optimizer),
            "host_enqueue_s": {
                "forward": median(&p.host.iter().map(|h| h[0]).collect::<Vec<_>>()),
                "backward": median(&p.host.iter().map(|h| h[1]).collect::<Vec<_>>()),
                "optimizer": median(&p.host.iter().map(|h| h[2]).collect::<Vec<_>>()),
            },
            "tensors_created": {
                "forward": p.tensors[0],
                "backward": p.tensors[1],
                "optimizer": p.tensors[2],
            },
            "steps": p.data.len(),
        })
    } else {
        serde_json::Value::Null
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let precision = format!("{:?}", args.precision).to_lowercase();
    emit(
        "bench_train",
        json!({
            "variant": format!(
                "candle {precision} {}{}{}{}{}{}{}{}",
                match args.padding {
                    PaddingArg::Reference => "padded",
                    PaddingArg::Dynamic => "dynamic padding",
                },
                match args.bucket_window {
                    Some(w) => format!(", length buckets of {w} batches"),
                    None => String::new(),
                },
                if kept { ", pool kept" } else { "" },
                if cfg.fused_kernels { "" } else { ", primitive kernels" },
                if backward_path(args) == BackwardPath::Graph {
                    ", graph backward"
                } else {
                    ""
                },
                if dev.is_cuda() && !c2n_model::cuda_layer_norm_kernels_enabled() {
                    ", layer-norm backward as tensor ops"
                } else {
                    ""
                },
                if dev.is_cuda() && !c2n_model::cuda_training_kernels_enabled() {
                    ", training kernels off"
                } else {
                    ""
                },
                fewer_launch_label(dev.is_cuda())
            ),
            "fused_kernels": cfg.fused_kernels,
            "backward": format!("{:?}", backward_path(args)).to_lowercase(),
            "device": device_name(&dev),
            "model": args.model,
            "parameters": parameters,
            "precision": precision,
            "padding": format!("{:?}", args.padding).to_lowercase(),
            "keep_pool": kept,
            "batch_size": args.batch_size,
            "max_source_len": args.max_source_len,
            "max_target_len": args.max_target_len,
            "steps": args.steps,
            "step_seconds": times,
            "median_step_s": median_step,
            "samples_per_s": if bucketed {
                examples as f64 / total
            } else {
                args.batch_size as f64 / median_step
            },
            "samples_per_s_basis": if bucketed { "all timed steps" } else { "median step" },
            "bucket_window": args.bucket_window,
            "real_tokens_per_s": real_tokens as f64 / total,
            "mean_padded_source_len": mean(&padded_source),
            "mean_padded_target_len": mean(&padded_target),
            "losses": losses,
            "fewer_launch_failures": c2n_model::cuda_fewer_launch_failures(),
            "memory": memory,
            "phases": phases,
            "model_build_s": build_seconds,
            "warmup_s": warmup_seconds,
            "ok": median_step.is_finite(),
        }),
    );
    Ok(())
}

/// How the variant's label names the fewer-launch kernels in use, where they differ from the
/// default (all of them): off, or all but some.
fn fewer_launch_label(cuda: bool) -> String {
    let selected = c2n_model::cuda_fewer_launch_selection();
    let left_out: Vec<&str> = c2n_model::FEWER_LAUNCH_KERNELS
        .iter()
        .copied()
        .filter(|k| !selected.contains(k))
        .collect();
    if !cuda || left_out.is_empty() {
        String::new()
    } else if selected.is_empty() {
        ", fewer-launch kernels off".into()
    } else {
        format!(", fewer-launch kernels without {}", left_out.join(", "))
    }
}
