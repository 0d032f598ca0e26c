//! `check-kernels`: our CUDA kernels against the tensor-op formulation they replace, on random
//! data of CodeBERT shapes, and their time. On a build or device without CUDA it reports that
//! nothing ran.

use crate::common::{device, device_name, emit, median, synced_seconds};
use anyhow::Result;
use candle_core::{Device, Tensor};
use serde_json::json;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct KernelCheckArgs {
    /// Rows of the layer-norm input (batch × sequence).
    #[arg(long, default_value_t = 8192)]
    rows: usize,
    /// Width (hidden size).
    #[arg(long, default_value_t = 768)]
    width: usize,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

/// Largest |a − b| over the largest |b|.
fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(diff / scale.max(f32::MIN_POSITIVE))
}

pub fn run(args: &KernelCheckArgs) -> Result<()> {
    let dev = device(&args.device.device)?;
    let x = Tensor::randn(0f32, 1.0, (args.rows, args.width), &dev)?;
    let w = Tensor::randn(1f32, 0.1, args.width, &dev)?;
    let g = Tensor::randn(0f32, 1.0, (args.rows, args.width), &dev)?;
    let eps = 1e-5;
    let ops = code2nl::model::layers::layer_norm_grads_ops(&x, &w, &g, eps)?;
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        f()?;
        let mut times = Vec::new();
        for _ in 0..args.reps.max(1) {
            let t = Instant::now();
            f()?;
            times.push(synced_seconds(&dev, t)?);
        }
        Ok(median(&times))
    };
    let ops_s = time(&|| {
        code2nl::model::layers::layer_norm_grads_ops(&x, &w, &g, eps)?;
        Ok(())
    })?;
    let kernels = cuda_kernels(&x, &w, &g, eps, &dev)?;
    let (fields, ok) = match kernels {
        Some((dx, dw, db)) => {
            let (rdx, rdw, rdb) = (
                rel_diff(&dx, &ops.0)?,
                rel_diff(&dw, &ops.1)?,
                rel_diff(&db, &ops.2)?,
            );
            let kernel_s = time(&|| {
                cuda_kernels(&x, &w, &g, eps, &dev)?;
                Ok(())
            })?;
            let ok = rdx <= 1e-4 && rdw <= 1e-4 && rdb <= 1e-4;
            (
                json!({"dx_rel_diff": rdx, "dw_rel_diff": rdw, "db_rel_diff": rdb,
                       "kernel_ms": 1e3 * kernel_s, "ops_ms": 1e3 * ops_s}),
                ok,
            )
        }
        None => (
            json!({"note": "no CUDA device or build: kernels not run", "ops_ms": 1e3 * ops_s}),
            true,
        ),
    };
    let mut out = json!({
        "kernel": "layer_norm_backward",
        "device": device_name(&dev),
        "rows": args.rows,
        "width": args.width,
        "ok": ok,
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (out.as_object_mut(), fields) {
        map.extend(extra);
    }
    emit("check_kernels", out);
    Ok(())
}

#[cfg(feature = "cuda")]
fn cuda_kernels(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    eps: f32,
    dev: &Device,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !dev.is_cuda() {
        return Ok(None);
    }
    Ok(Some(code2nl::model::layers::layer_norm_grads_cuda(
        x, w, g, eps,
    )?))
}

#[cfg(not(feature = "cuda"))]
fn cuda_kernels(
    _: &Tensor,
    _: &Tensor,
    _: &Tensor,
    _: f32,
    _: &Device,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    Ok(None)
}
