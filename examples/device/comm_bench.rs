//! `bench-comm`: the cost of one data-parallel gradient exchange at world size 1 (issue 6,
//! "NCCL world size 1 overhead").
//!
//! A gradient set with the full model's parameter shapes lives on the device; every rep runs
//! [`sync_tensor_grads`] with the trainer's 25 MiB buckets and a scale of 0.5 (a scale of 1
//! at world size 1 skips the exchange, which is what the trainer does, see `note`). Backends:
//! `single` (host round trip through the default `all_reduce_tensor`: the baseline), `nccl`
//! (one process's rank, world size 1 on `cuda:0`, needs the `nccl` feature) and
//! `nccl-threads` (the same through the one-thread-per-GPU launch, `ncclCommInitAll`, after one
//! NCCL barrier). One raw 25 MiB bucket all-reduce is timed as well.

use crate::common::{device, device_name, emit, median, model_config, synced_seconds};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use clap::ValueEnum;
use code2nl::model::Seq2Seq;
use code2nl::train::comm::{
    sync_tensor_grads, BucketPlan, Communicator, ReduceOp, SingleComm, DEFAULT_BUCKET_BYTES,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum BackendArg {
    /// Host round trip (the default tensor all-reduce of the one-rank communicator).
    Single,
    /// NCCL, world size 1, on `cuda:0` (build with `--features nccl`).
    Nccl,
    /// NCCL, world size 1, as a thread rank of `NcclComm::run_threads` on `cuda:0`.
    NcclThreads,
}

#[derive(clap::Args, Debug)]
pub struct CommBenchArgs {
    /// Gradient shapes of `codebert` (172.5 M parameters) or `small`.
    #[arg(long, default_value = "codebert")]
    model: String,
    #[arg(long, value_enum, default_value = "single")]
    backend: BackendArg,
    /// Untimed syncs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed syncs; the result is their median.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// The gradient scale of every sync (not 1: at world size 1 that skips the exchange).
    #[arg(long, default_value_t = 0.5)]
    scale: f32,
    /// Device of the `single` backend (`nccl` always uses its own `cuda:0`).
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

/// What the trainer does at world size 1 (`sync_tensor_grads` with scale 1 returns at once).
const TRAINER_NOTE: &str = "the trainer calls sync_tensor_grads with scale 1.0; at world size 1 \
    that returns before any exchange, so a one-rank run pays none of this";

#[cfg(feature = "nccl")]
fn nccl_comm() -> Result<Box<dyn Communicator>> {
    use code2nl::train::comm::{LaunchEnv, NcclComm};
    // No launcher variables: rank 0 of 1 on cuda:0, no TCP rendezvous.
    let env = LaunchEnv::from_lookup(|_| None)?;
    let comm = NcclComm::from_launch_env(&env, std::time::Duration::from_secs(30))
        .context("NCCL world size 1")?;
    Ok(Box::new(comm))
}

/// The bench on rank 0 of a one-thread `NcclComm::run_threads` group, after one barrier (a real
/// NCCL all-reduce: at world size 1 the others return before NCCL).
#[cfg(feature = "nccl")]
fn bench_nccl_threads(args: &CommBenchArgs) -> Result<()> {
    use code2nl::train::comm::NcclComm;
    let results = NcclComm::run_threads(
        Some(1),
        std::time::Duration::from_secs(60),
        |comm| -> Result<(), anyhow::Error> {
            comm.barrier()
                .context("an NCCL barrier on the thread rank")?;
            bench_on(comm, "nccl-threads", args)
        },
    )
    .context("NCCL ranks as threads, world size 1")?;
    anyhow::ensure!(
        results.len() == 1,
        "expected one rank, got {}",
        results.len()
    );
    Ok(())
}

#[cfg(not(feature = "nccl"))]
fn nccl_comm() -> Result<Box<dyn Communicator>> {
    anyhow::bail!(
        "bench-comm --backend nccl needs the `nccl` feature (this binary was built without it; \
         build with scripts/cuda-build.sh, i.e. --features cuda,nccl)"
    )
}

#[cfg(not(feature = "nccl"))]
fn bench_nccl_threads(_args: &CommBenchArgs) -> Result<()> {
    nccl_comm().map(|_| ())
}

/// Median seconds of `reps` calls of `f` after `warmup` untimed ones, device synchronised.
fn time_median(
    dev: &Device,
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    dev.synchronize()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        times.push(synced_seconds(dev, start)?);
    }
    Ok(median(&times))
}

/// Random gradients with the shapes of every variable of a freshly built model.
fn model_shaped_grads(preset: &str, dev: &Device) -> Result<BTreeMap<String, Tensor>> {
    let cfg = model_config(preset)?;
    let varmap = VarMap::new();
    let _model = Seq2Seq::new(&cfg, &varmap, dev)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the VarMap lock is poisoned"))?;
    let mut grads = BTreeMap::new();
    for (name, var) in vars.iter() {
        let grad = Tensor::randn(0f32, 1e-3, var.shape(), dev)?;
        grads.insert(name.clone(), grad);
    }
    Ok(grads)
}

pub fn run(args: &CommBenchArgs) -> Result<()> {
    match args.backend {
        BackendArg::Single => bench_on(&SingleComm, "single", args),
        BackendArg::Nccl => bench_on(nccl_comm()?.as_ref(), "nccl", args),
        BackendArg::NcclThreads => bench_nccl_threads(args),
    }
}

fn bench_on(comm: &dyn Communicator, backend: &str, args: &CommBenchArgs) -> Result<()> {
    let reps = args.reps.max(1);
    let dev = match comm.device() {
        Some(d) => d,
        None => device(&args.device.device)?,
    };
    let grads = model_shaped_grads(&args.model, &dev)
        .with_context(|| format!("gradients of model `{}`", args.model))?;
    let plan = BucketPlan::new(
        grads.iter().map(|(n, g)| (n.clone(), g.elem_count())),
        DEFAULT_BUCKET_BYTES,
    )?;
    let bytes = 4 * plan.total_len();
    let sync_s = time_median(&dev, args.warmup, reps, || {
        let mut work = grads.clone(); // tensors are shared: a cheap map copy
        sync_tensor_grads(comm, &plan, &mut work, args.scale)?;
        Ok(())
    })?;
    let bucket = Tensor::randn(0f32, 1e-3, DEFAULT_BUCKET_BYTES / 4, &dev)?;
    let raw_s = time_median(&dev, args.warmup, reps, || {
        comm.all_reduce_tensor(&bucket, ReduceOp::Sum)?;
        Ok(())
    })?;
    let mb = bytes as f64 / 1e6;
    emit(
        "bench_comm",
        json!({
            "backend": backend,
            "device": device_name(&dev),
            "model": args.model,
            "world_size": comm.world_size(),
            "gradient_mb": mb,
            "parameters": plan.total_len(),
            "tensors": plan.names().len(),
            "buckets": plan.num_buckets(),
            "bucket_mib": DEFAULT_BUCKET_BYTES >> 20,
            "scale": args.scale,
            "reps": reps,
            "sync_ms": 1000.0 * sync_s,
            "sync_mb_per_s": mb / sync_s,
            "raw_bucket_all_reduce_ms": 1000.0 * raw_s,
            "raw_bucket_mb_per_s": DEFAULT_BUCKET_BYTES as f64 / 1e6 / raw_s,
            "note": TRAINER_NOTE,
            "ok": sync_s.is_finite() && raw_s.is_finite(),
        }),
    );
    Ok(())
}
