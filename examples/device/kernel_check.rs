//! `check-kernels`: our CUDA kernels against the tensor-op formulation they replace, on random
//! data of CodeBERT shapes, and their time. On a build or device without CUDA the kernels'
//! public entry points fall back to the tensor ops, so the comparisons still run (and must
//! agree exactly) but say nothing about the kernels.
//!
//! - `layer_norm_backward`: dx, dw, db at `[rows, width]`;
//! - `row_top_k` (decoding): the 10 best candidates of `log_softmax(logits) + row score` for
//!   `beam rows × V` logits with many exact ties, one NaN row and one row of −∞ scores,
//!   against Candle's log-softmax ranked on the host;
//! - `kv_cache_append` (decoding): a beam reorder and one appended position of a
//!   `[rows, heads, len, d]` cache in f32 and bf16, against `index_select` + `cat`;
//! - `slot_attention` (decoding; the default cache of f32 decoding since run 7,
//!   `C2N_CUDA_SLOTTED_CACHE=0` turns it off): the slotted cache's append-and-attend step against the dense
//!   cache's reorder, append and attention, f32, per step over 16 reordering steps;
//! - `cross_attention` (decoding; opt-in with `C2N_CUDA_CROSS_ATTENTION_KERNEL=1`): the grouped
//!   cross-attention kernel against the decoder layer's tensor ops, 10 beams per example;
//! - `dropout` (training): the counter-based kernel against `x ⊙ mask` with the mask built on
//!   the host from the same seed (`layers::dropout_mask_from_seed`), f32 and bf16;
//! - `attention_probs` / `attention_probs_backward` (training): softmax of masked scores and
//!   the softmax-and-dropout gradient at `[b, 12, 256, 256]` with a key-padding and a causal
//!   mask, against the tensor ops with the same host mask.
//!
//! - `gelu_backward`, `column_sum` (training; on with the other training kernels since run 7):
//!   against the tensor ops at `[rows, 4·width]`.
//!
//! The training kernels have no CPU fallback: on the CPU those lines say that nothing ran.

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
    /// Decoding rows (examples × beam) for the decoding kernels.
    #[arg(long, default_value_t = 2560)]
    decode_rows: usize,
    /// Vocabulary size of the ranked logits.
    #[arg(long, default_value_t = 50265)]
    vocab: usize,
    /// Cached positions of the self-attention cache.
    #[arg(long, default_value_t = 64)]
    cache_len: usize,
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
    // The layer-norm backward in f32 and in bf16 (x and g read as bf16, dx written in bf16),
    // against the tensor ops on the same (widened) values.
    for dtype in [candle_core::DType::F32, candle_core::DType::BF16] {
        check_layer_norm_backward(args, &dev, dtype)?;
    }
    check_row_top_k(args, &dev)?;
    check_kv_cache_append(args, &dev)?;
    check_slot_attention(args, &dev)?;
    check_cross_attention(args, &dev)?;
    training::check(args, &dev)?;
    Ok(())
}

/// The layer-norm backward kernels in `dtype` against the tensor ops.
fn check_layer_norm_backward(
    args: &KernelCheckArgs,
    dev: &Device,
    dtype: candle_core::DType,
) -> Result<()> {
    use candle_core::DType;
    let x = Tensor::randn(0f32, 1.0, (args.rows, args.width), dev)?.to_dtype(dtype)?;
    let w = Tensor::randn(1f32, 0.1, args.width, dev)?;
    let g = Tensor::randn(0f32, 1.0, (args.rows, args.width), dev)?.to_dtype(dtype)?;
    let eps = 1e-5;
    let widened = |t: &Tensor| t.to_dtype(DType::F32);
    let ops = code2nl::model::layers::layer_norm_grads_ops(&widened(&x)?, &w, &widened(&g)?, eps)?;
    let ops_s = timed(dev, args.reps, &|| {
        code2nl::model::layers::layer_norm_grads_ops(&x, &w, &g, eps)?;
        Ok(())
    })?;
    let kernels = cuda_kernels(&x, &w, &g, eps, dev)?;
    // bf16 dx is rounded to 8 bits of mantissa once; dw and db stay f32.
    let dx_tolerance = if dtype == DType::F32 { 1e-4 } else { 1e-2 };
    let (fields, ok) = match kernels {
        Some((dx, dw, db)) => {
            let (rdx, rdw, rdb) = (
                rel_diff(&widened(&dx)?, &ops.0)?,
                rel_diff(&dw, &ops.1)?,
                rel_diff(&db, &ops.2)?,
            );
            let kernel_s = timed(dev, args.reps, &|| {
                cuda_kernels(&x, &w, &g, eps, dev)?;
                Ok(())
            })?;
            let ok = rdx <= dx_tolerance && rdw <= 1e-4 && rdb <= 1e-4 && dx.dtype() == dtype;
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
        "device": device_name(dev),
        "shape": format!("{}×{} {dtype:?}", args.rows, args.width),
        "ok": ok,
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (out.as_object_mut(), fields) {
        map.extend(extra);
    }
    emit("check_kernels", out);
    Ok(())
}

/// Median seconds of `f` over `reps` runs after one warm-up, the device synchronised.
fn timed(dev: &Device, reps: usize, f: &dyn Fn() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(synced_seconds(dev, t)?);
    }
    Ok(median(&times))
}

fn check_row_top_k(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
    use code2nl::model::{device_row_top_k, logits_row_top_k, row_top_k_host};
    let (rows, vocab, k) = (args.decode_rows.max(3), args.vocab.max(16), 10);
    // Small integers: many exact ties, ranked by the lower token id.
    let mut logits = Tensor::randn(0f32, 3.0, (rows, vocab), dev)?.round()?;
    let mut poisoned = logits.narrow(0, 1, 1)?.flatten_all()?.to_vec1::<f32>()?;
    poisoned[vocab / 2] = f32::NAN;
    let poisoned = Tensor::from_vec(poisoned, (1, vocab), dev)?;
    logits = Tensor::cat(
        &[
            &logits.narrow(0, 0, 1)?,
            &poisoned,
            &logits.narrow(0, 2, rows - 2)?,
        ],
        0,
    )?;
    let mut scores: Vec<f32> = (0..rows).map(|r| -((r % 7) as f32) * 0.75).collect();
    scores[2] = f32::NEG_INFINITY;
    let got = logits_row_top_k(&logits, Some(&scores), k)?;
    let logp = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?;
    let want = row_top_k_host(
        &logp.flatten_all()?.to_vec1::<f32>()?,
        vocab,
        Some(&scores),
        k,
    )?;
    let token_mismatches = got
        .tokens
        .iter()
        .zip(&want.tokens)
        .filter(|(a, b)| a != b)
        .count();
    let value_rel_diff = got
        .values
        .iter()
        .zip(&want.values)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0f32, f32::max);
    let clean = logits.narrow(0, 3, rows - 3)?;
    let clean_scores = &scores[3..];
    let kernel_s = timed(dev, args.reps, &|| {
        logits_row_top_k(&clean, Some(clean_scores), k)?;
        Ok(())
    })?;
    let ops_s = timed(dev, args.reps, &|| {
        let logp = candle_nn::ops::log_softmax(&clean, candle_core::D::Minus1)?;
        device_row_top_k(&logp, Some(clean_scores), k)?;
        Ok(())
    })?;
    emit(
        "check_kernels",
        json!({
            "kernel": "row_top_k",
            "device": device_name(dev),
            "shape": format!("{rows}×{vocab}, k {k}"),
            "kernels_enabled": code2nl::model::cuda_decode_kernels_enabled(),
            "token_mismatches": token_mismatches,
            "value_rel_diff": value_rel_diff,
            "kernel_ms": 1e3 * kernel_s,
            "ops_ms": 1e3 * ops_s,
            "ok": token_mismatches == 0 && value_rel_diff <= 1e-6 && got.values.len() == want.values.len(),
        }),
    );
    Ok(())
}

fn check_kv_cache_append(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
    use candle_core::DType;
    use code2nl::model::decoder::KvCache;
    let (rows, heads, len, d) = (args.decode_rows.max(2), 12, args.cache_len.max(1), 64);
    // A beam reorder: rows repeat and skip, as after a step where some beams die.
    let origin: Vec<u32> = (0..rows as u32)
        .map(|r| (r * 7 + r / 3) % rows as u32)
        .collect();
    let origin = Tensor::new(origin.as_slice(), dev)?;
    for dtype in [DType::F32, DType::BF16] {
        let keys = Tensor::randn(0f32, 1.0, (rows, heads, len, d), dev)?.to_dtype(dtype)?;
        let values = Tensor::randn(0f32, 1.0, (rows, heads, len, d), dev)?.to_dtype(dtype)?;
        let fresh_k = Tensor::randn(0f32, 1.0, (rows, heads, 1, d), dev)?.to_dtype(dtype)?;
        let fresh_v = Tensor::randn(0f32, 1.0, (rows, heads, 1, d), dev)?.to_dtype(dtype)?;
        let grow = || -> Result<KvCache> {
            let mut cache = KvCache::new(keys.clone(), values.clone());
            cache.reorder(&origin)?;
            Ok(cache.append(&fresh_k, &fresh_v)?)
        };
        let ops = || -> Result<(Tensor, Tensor)> {
            Ok((
                Tensor::cat(&[&keys.index_select(&origin, 0)?, &fresh_k], 2)?,
                Tensor::cat(&[&values.index_select(&origin, 0)?, &fresh_v], 2)?,
            ))
        };
        let got = grow()?;
        let want = ops()?;
        let differing = |a: &Tensor, b: &Tensor| -> Result<usize> {
            let ne = a
                .ne(b)?
                .to_dtype(DType::U32)?
                .sum_all()?
                .to_scalar::<u32>()?;
            Ok(ne as usize)
        };
        let mismatches = differing(&got.keys, &want.0)? + differing(&got.values, &want.1)?;
        let kernel_s = timed(dev, args.reps, &|| {
            grow()?;
            Ok(())
        })?;
        let ops_s = timed(dev, args.reps, &|| {
            ops()?;
            Ok(())
        })?;
        emit(
            "check_kernels",
            json!({
                "kernel": "kv_cache_append",
                "device": device_name(dev),
                "shape": format!("{rows}×{heads}×{len}×{d} {dtype:?}"),
                "kernels_enabled": code2nl::model::cuda_decode_kernels_enabled(),
                "element_mismatches": mismatches,
                "kernel_ms": 1e3 * kernel_s,
                "ops_ms": 1e3 * ops_s,
                "ok": mismatches == 0 && got.keys.dims() == want.0.dims(),
            }),
        );
    }
    Ok(())
}

/// The slotted cache's step (`slot_attention.cu` on CUDA; the tensor-op gather elsewhere)
/// against the dense cache's reorder, append and attention on the same keys and values:
/// `cache_len` steps fill both without reorders, then `STEPS` timed steps reorder the rows
/// (repeating and skipping, as when beams die) before each append.
fn check_slot_attention(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
    use candle_core::DType;
    use code2nl::model::decoder::{KvCache, SlotAttention, SlotCache};
    use code2nl::model::layers::{attend, merge_heads, AttendOptions};
    const STEPS: usize = 16;
    let (rows, heads, len, d) = (args.decode_rows.max(2), 12, args.cache_len.max(1), 64);
    let origin: Vec<u32> = (0..rows as u32)
        .map(|r| (r * 7 + r / 3) % rows as u32)
        .collect();
    let origin = Tensor::new(origin.as_slice(), dev)?;
    let random = || Tensor::randn(0f32, 1.0, (rows, heads, 1, d), dev);
    let positions: Vec<(Tensor, Tensor, Tensor)> = (0..len + STEPS)
        .map(|_| Ok((random()?, random()?, random()?)))
        .collect::<candle_core::Result<_>>()?;

    // Both caches hold positions 0..len in row order.
    let mut slotted = SlotCache::new(rows, heads, d, DType::F32, dev)?;
    for (q, k, v) in &positions[..len] {
        slotted.append(q, k, v)?;
    }
    let stack = |i: usize| -> Result<Tensor> {
        let parts: Vec<&Tensor> = positions[..len]
            .iter()
            .map(|p| match i {
                1 => &p.1,
                _ => &p.2,
            })
            .collect();
        Ok(Tensor::cat(&parts, 2)?)
    };
    let mut dense = Some(KvCache::new(stack(1)?, stack(2)?));

    let mut worst = 0f32;
    let (mut slotted_s, mut dense_s) = (0f64, 0f64);
    let mut kernel_ran = false;
    for (q, k, v) in &positions[len..] {
        let t = Instant::now();
        slotted.reorder(&origin)?;
        let got = match slotted.append(q, k, v)? {
            SlotAttention::Context(ctx) => {
                kernel_ran = true;
                ctx
            }
            SlotAttention::Gathered { keys, values } => {
                merge_heads(&attend(q, &keys, &values, None, AttendOptions::default())?)?
            }
        };
        slotted_s += synced_seconds(dev, t)?;

        let t = Instant::now();
        let mut cache = dense.take().expect("dense cache");
        cache.reorder(&origin)?;
        let cache = cache.append(k, v)?;
        let want = merge_heads(&attend(
            q,
            &cache.keys,
            &cache.values,
            None,
            AttendOptions::default(),
        )?)?;
        dense_s += synced_seconds(dev, t)?;
        dense = Some(cache);
        worst = worst.max(rel_diff(&got, &want)?);
    }
    emit(
        "check_kernels",
        json!({
            "kernel": "slot_attention",
            "device": device_name(dev),
            "shape": format!("{rows}×{heads}×{len}..{}×{d} F32", len + STEPS),
            "kernels_enabled": kernel_ran,
            "context_rel_diff": worst,
            "kernel_ms": 1e3 * slotted_s / STEPS as f64,
            "ops_ms": 1e3 * dense_s / STEPS as f64,
            "ok": worst <= 1e-5,
        }),
    );
    Ok(())
}

/// The grouped cross-attention kernel (`cross_attention.cu`; decoding uses it only with
/// `C2N_CUDA_CROSS_ATTENTION_KERNEL=1`, this check always) against the tensor ops the decoder layer runs
/// otherwise: `decode_rows / 10` examples of 10 beams over 256 memory positions, the last
/// quarter of each example's positions padded.
fn check_cross_attention(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
    use code2nl::model::layers::{attend, merge_heads, AttendOptions};
    let (group, heads, s, d) = (10, 12, 256, 64);
    let entries = (args.decode_rows / group).max(1);
    let rows = entries * group;
    let q = Tensor::randn(0f32, 0.2, (rows, heads, 1, d), dev)?;
    let keys = Tensor::randn(0f32, 1.0, (entries, heads, s, d), dev)?;
    let values = Tensor::randn(0f32, 1.0, (entries, heads, s, d), dev)?;
    let mask: Vec<f32> = (0..entries * s)
        .map(|i| {
            if i % s >= s * 3 / 4 {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (entries, 1, 1, s), dev)?;
    // What `DecoderLayer::step` runs without the kernel.
    let ops = || -> Result<Tensor> {
        let grouped = q
            .reshape((entries, group, heads, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let ctx = merge_heads(&attend(
            &grouped,
            &keys,
            &values,
            Some(&mask),
            AttendOptions::default(),
        )?)?;
        Ok(ctx.reshape((rows, 1, heads * d))?)
    };
    let want = ops()?;
    let ops_s = timed(dev, args.reps, &|| {
        ops()?;
        Ok(())
    })?;
    let mut row = json!({
        "kernel": "cross_attention",
        "device": device_name(dev),
        "shape": format!("{entries}×{group} rows, {heads}×{s}×{d} memory, F32"),
        "ops_ms": 1e3 * ops_s,
    });
    let kernel = cross_kernel(&q, &keys, &values, &mask)?;
    let extra = match kernel {
        Some(got) => {
            let diff = rel_diff(&got, &want)?;
            let kernel_s = timed(dev, args.reps, &|| {
                cross_kernel(&q, &keys, &values, &mask)?;
                Ok(())
            })?;
            json!({"context_rel_diff": diff, "kernel_ms": 1e3 * kernel_s, "ok": diff <= 1e-5})
        }
        None => {
            json!({"note": "no CUDA device or build: kernel not run", "ok": true})
        }
    };
    if let (Some(map), serde_json::Value::Object(extra)) = (row.as_object_mut(), extra) {
        map.extend(extra);
    }
    emit("check_kernels", row);
    Ok(())
}

#[cfg(feature = "cuda")]
fn cross_kernel(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: &Tensor,
) -> Result<Option<Tensor>> {
    Ok(code2nl::model::decoder::cuda_grouped_cross_attention(
        q, keys, values, mask,
    )?)
}

#[cfg(not(feature = "cuda"))]
fn cross_kernel(_: &Tensor, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<Option<Tensor>> {
    Ok(None)
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

#[cfg(not(feature = "cuda"))]
mod training {
    use super::*;

    pub fn check(_: &KernelCheckArgs, dev: &Device) -> Result<()> {
        for kernel in [
            "dropout",
            "attention_probs",
            "attention_probs_backward",
            "gelu_backward",
            "column_sum",
            "pack",
            "dropout_add_layer_norm",
            "layer_norm_backward_fused",
            "bias_activation_dropout",
            "heads",
        ] {
            emit(
                "check_kernels",
                json!({"kernel": kernel, "device": device_name(dev),
                       "note": "built without CUDA: kernel not run", "ok": true}),
            );
        }
        Ok(())
    }
}

#[cfg(feature = "cuda")]
mod training {
    use super::*;
    use candle_core::DType;
    use code2nl::model::layers::{
        cuda_attention_probabilities, cuda_attention_probabilities_backward,
        cuda_bias_activation_dropout, cuda_column_sum, cuda_dropout, cuda_dropout_add_layer_norm,
        cuda_dropout_relu_backward, cuda_gelu_backward, cuda_merge_heads, cuda_pack,
        cuda_split_heads, dropout_mask_from_seed, layer_norm_grads_cuda,
        layer_norm_grads_fused_cuda, softmax_last_dim, LayerNorm,
    };

    const SEED: u64 = 0x5EED_C2A1;
    const P: f32 = 0.1;

    fn not_run(kernel: &str, dev: &Device) {
        emit(
            "check_kernels",
            json!({"kernel": kernel, "device": device_name(dev),
                   "note": "no CUDA device: kernel not run", "ok": true}),
        );
    }

    pub fn check(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        if !dev.is_cuda() {
            for kernel in [
                "dropout",
                "attention_probs",
                "attention_probs_backward",
                "gelu_backward",
                "column_sum",
                "pack",
                "dropout_add_layer_norm",
                "layer_norm_backward_fused",
                "bias_activation_dropout",
                "heads",
            ] {
                not_run(kernel, dev);
            }
            return Ok(());
        }
        check_dropout(args, dev)?;
        check_attention(args, dev)?;
        check_gelu_and_column_sum(args, dev)?;
        check_pack(args, dev)?;
        check_dropout_add_layer_norm(args, dev)?;
        check_layer_norm_backward_fused(args, dev)?;
        check_bias_activation(args, dev)?;
        check_heads(args, dev)?;
        Ok(())
    }

    fn check_dropout(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let shape = (args.rows, args.width);
        let mask = dropout_mask_from_seed(shape, SEED, P, dev)?;
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let got = cuda_dropout(&x, SEED, P, dtype)?;
            let want = (x.to_dtype(DType::F32)? * &mask)?.to_dtype(dtype)?;
            let mismatches = got
                .ne(&want)?
                .to_dtype(DType::U32)?
                .sum_all()?
                .to_scalar::<u32>()?;
            let kept = got
                .ne(0.0)?
                .to_dtype(DType::F32)?
                .mean_all()?
                .to_scalar::<f32>()?;
            let kernel_s = timed(dev, args.reps, &|| {
                cuda_dropout(&x, SEED, P, dtype)?;
                Ok(())
            })?;
            // What the tensor-op dropout runs: uniforms, compare, cast, scale, product.
            let ops_s = timed(dev, args.reps, &|| {
                let u = Tensor::rand(0f32, 1f32, shape, dev)?;
                let keep = (u.ge(f64::from(P))?.to_dtype(DType::F32)? * (1.0 / 0.9))?;
                (&x * keep.to_dtype(dtype)?)?;
                Ok(())
            })?;
            emit(
                "check_kernels",
                json!({
                    "kernel": "dropout",
                    "device": device_name(dev),
                    "shape": format!("{}×{} {dtype:?}, p {P}", args.rows, args.width),
                    "element_mismatches": mismatches,
                    "kept_fraction": kept,
                    "kernel_ms": 1e3 * kernel_s,
                    "ops_ms": 1e3 * ops_s,
                    "ok": mismatches == 0 && (kept - (1.0 - P)).abs() < 0.01,
                }),
            );
        }
        Ok(())
    }

    /// Largest |a − b| over the largest |b|, both read as f32.
    fn rel(a: &Tensor, b: &Tensor) -> Result<f32> {
        rel_diff(&a.to_dtype(DType::F32)?, &b.to_dtype(DType::F32)?)
    }

    fn check_attention(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let (b, h, l) = ((args.rows / 256).clamp(1, 8), 12, 256.min(args.rows));
        let shape = (b, h, l, l);
        // Key padding (the last quarter of every other example) and causal masks.
        let key_mask: Vec<f32> = (0..b * l)
            .map(|i| {
                if (i / l) % 2 == 1 && i % l >= 3 * l / 4 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let key_mask = Tensor::from_vec(key_mask, (b, 1, 1, l), dev)?;
        let causal: Vec<f32> = (0..l * l)
            .map(|i| if i % l > i / l { -10000.0 } else { 0.0 })
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, l, l), dev)?;
        let keep = dropout_mask_from_seed(shape, SEED, P, dev)?;
        for dtype in [DType::F32, DType::BF16] {
            let scores = (Tensor::randn(0f32, 3.0, shape, dev)?).to_dtype(dtype)?;
            let d_dropped = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            for (mask_name, mask) in [("key padding", &key_mask), ("causal", &causal)] {
                let ops_probs = || -> Result<Tensor> {
                    Ok(softmax_last_dim(
                        &scores.to_dtype(DType::F32)?.broadcast_add(mask)?,
                    )?)
                };
                let want = ops_probs()?;
                let got = cuda_attention_probabilities(&scores, Some(mask))?
                    .ok_or_else(|| anyhow::anyhow!("kernel refused a {mask_name} mask"))?;
                let probs_rel = rel(&got, &want)?;
                let kernel_s = timed(dev, args.reps, &|| {
                    cuda_attention_probabilities(&scores, Some(mask))?;
                    Ok(())
                })?;
                let ops_s = timed(dev, args.reps, &|| {
                    ops_probs()?;
                    Ok(())
                })?;
                emit(
                    "check_kernels",
                    json!({
                        "kernel": "attention_probs",
                        "device": device_name(dev),
                        "shape": format!("{b}×{h}×{l}×{l} {dtype:?}, {mask_name} mask"),
                        "probs_rel_diff": probs_rel,
                        "kernel_ms": 1e3 * kernel_s,
                        "ops_ms": 1e3 * ops_s,
                        "ok": probs_rel <= 1e-5,
                    }),
                );
                let ops_back = || -> Result<Tensor> {
                    let d_probs = (d_dropped.to_dtype(DType::F32)? * &keep)?;
                    let dot = (&d_probs * &want)?.sum_keepdim(candle_core::D::Minus1)?;
                    Ok((d_probs.broadcast_sub(&dot)? * &want)?.to_dtype(dtype)?)
                };
                let want_ds = ops_back()?;
                let got_ds = cuda_attention_probabilities_backward(&d_dropped, &want, SEED, P)?;
                let ds_rel = rel(&got_ds, &want_ds)?;
                let kernel_s = timed(dev, args.reps, &|| {
                    cuda_attention_probabilities_backward(&d_dropped, &want, SEED, P)?;
                    Ok(())
                })?;
                let ops_s = timed(dev, args.reps, &|| {
                    ops_back()?;
                    Ok(())
                })?;
                let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
                emit(
                    "check_kernels",
                    json!({
                        "kernel": "attention_probs_backward",
                        "device": device_name(dev),
                        "shape": format!("{b}×{h}×{l}×{l} {dtype:?}, {mask_name} mask, p {P}"),
                        "d_scores_rel_diff": ds_rel,
                        "kernel_ms": 1e3 * kernel_s,
                        "ops_ms": 1e3 * ops_s,
                        "ok": ds_rel <= tolerance,
                    }),
                );
            }
        }
        Ok(())
    }

    /// GELU backward and column sums at the encoder's feed-forward shape `[rows, 4·width]`.
    fn check_gelu_and_column_sum(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let shape = (args.rows, 4 * args.width);
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 2.0, shape, dev)?.to_dtype(dtype)?;
            let g = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            // The tensor ops of `activation_slope`, in f32 (the kernel computes in f32).
            let ops_gelu = || -> Result<Tensor> {
                let x = x.to_dtype(DType::F32)?;
                let cdf = x
                    .affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?
                    .erf()?
                    .affine(0.5, 0.5)?;
                let pdf = x
                    .sqr()?
                    .affine(-0.5, 0.0)?
                    .exp()?
                    .affine(1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
                Ok((g.to_dtype(DType::F32)? * (cdf + (&x * pdf)?)?)?)
            };
            let want = ops_gelu()?;
            let got = cuda_gelu_backward(&x, &g)?;
            let gelu_rel = rel(&got, &want)?;
            let kernel_s = timed(dev, args.reps, &|| {
                cuda_gelu_backward(&x, &g)?;
                Ok(())
            })?;
            let ops_s = timed(dev, args.reps, &|| {
                ops_gelu()?;
                Ok(())
            })?;
            let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
            emit(
                "check_kernels",
                json!({
                    "kernel": "gelu_backward",
                    "device": device_name(dev),
                    "shape": format!("{}×{} {dtype:?}", shape.0, shape.1),
                    "dx_rel_diff": gelu_rel,
                    "kernel_ms": 1e3 * kernel_s,
                    "ops_ms": 1e3 * ops_s,
                    "ok": gelu_rel <= tolerance,
                }),
            );
            let ops_sum = || -> Result<Tensor> { Ok(g.to_dtype(DType::F32)?.sum(0)?) };
            let want = ops_sum()?;
            let got = cuda_column_sum(&g)?;
            let sum_rel = rel(&got, &want)?;
            let kernel_s = timed(dev, args.reps, &|| {
                cuda_column_sum(&g)?;
                Ok(())
            })?;
            let ops_s = timed(dev, args.reps, &|| {
                ops_sum()?;
                Ok(())
            })?;
            emit(
                "check_kernels",
                json!({
                    "kernel": "column_sum",
                    "device": device_name(dev),
                    "shape": format!("{}×{} {dtype:?}", shape.0, shape.1),
                    "sum_rel_diff": sum_rel,
                    "kernel_ms": 1e3 * kernel_s,
                    "ops_ms": 1e3 * ops_s,
                    "ok": sum_rel <= 1e-5,
                }),
            );
        }
        Ok(())
    }

    /// The pack kernel against per-part casts and `cat` on the parameter shapes of 12 encoder
    /// layers at `width` (and one view with a start offset): every conversion exact to the
    /// bit, and the time of each way.
    fn check_pack(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let h = args.width;
        let mut shapes: Vec<Vec<usize>> = Vec::new();
        for _ in 0..12 {
            for (out, inp) in [(h, h), (h, h), (h, h), (h, h), (4 * h, h), (h, 4 * h)] {
                shapes.push(vec![out, inp]);
                shapes.push(vec![out]);
            }
        }
        for (from, to) in [
            (DType::F32, DType::BF16),
            (DType::F32, DType::F32),
            (DType::BF16, DType::F32),
        ] {
            let mut parts = shapes
                .iter()
                .map(|s| Ok(Tensor::randn(0f32, 1.0, s.as_slice(), dev)?.to_dtype(from)?))
                .collect::<Result<Vec<_>>>()?;
            // One part that starts inside its storage, as views of packed tensors do.
            parts.push(
                Tensor::randn(0f32, 1.0, h + 5, dev)?
                    .to_dtype(from)?
                    .narrow(0, 5, h)?,
            );
            let elems: usize = parts.iter().map(Tensor::elem_count).sum();
            let refs: Vec<&Tensor> = parts.iter().collect();
            let ops = || -> Result<Tensor> {
                let flat = parts
                    .iter()
                    .map(|p| Ok(p.flatten_all()?.to_dtype(to)?))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&flat, 0)?)
            };
            let want = ops()?.to_dtype(DType::F32)?;
            let got = cuda_pack(&refs, to)?.to_dtype(DType::F32)?;
            let differing = got
                .ne(&want)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            let kernel_s = timed(dev, args.reps, &|| {
                cuda_pack(&refs, to)?;
                Ok(())
            })?;
            let ops_s = timed(dev, args.reps, &|| {
                ops()?;
                Ok(())
            })?;
            emit(
                "check_kernels",
                json!({
                    "kernel": "pack",
                    "device": device_name(dev),
                    "shape": format!("{} tensors, {elems} elements, {from:?} → {to:?}", parts.len()),
                    "differing_elements": differing,
                    "kernel_ms": 1e3 * kernel_s,
                    "ops_ms": 1e3 * ops_s,
                    "ok": differing == 0.0,
                }),
            );
        }
        Ok(())
    }

    /// `LayerNorm(dropout(a + a_bias) + b)` in one kernel against Candle's bias add, the
    /// dropout kernel, Candle's add and the fused layer norm (with its casts in bf16), at
    /// `[rows, width]`.
    fn check_dropout_add_layer_norm(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let shape = (args.rows, args.width);
        let w = Tensor::randn(1f32, 0.1, args.width, dev)?;
        let b = Tensor::randn(0f32, 0.1, args.width, dev)?;
        let norm = LayerNorm::new(w.clone(), b.clone(), 1e-5);
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let residual = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let a_bias = Tensor::randn(0f32, 0.1, args.width, dev)?.to_dtype(dtype)?;
            let ops = || -> Result<(Tensor, Tensor)> {
                let biased = x.broadcast_add(&a_bias)?;
                let sum = (cuda_dropout(&biased, SEED, P, dtype)? + &residual)?;
                let y = norm.forward(&sum)?;
                Ok((sum, y))
            };
            let fused = || -> Result<(Tensor, Tensor)> {
                Ok(cuda_dropout_add_layer_norm(
                    &x,
                    Some(&a_bias),
                    &residual,
                    &w,
                    &b,
                    1e-5,
                    SEED,
                    P,
                )?)
            };
            let (want_sum, want_y) = ops()?;
            let (sum, y) = fused()?;
            let f32s = |t: &Tensor| t.to_dtype(DType::F32);
            let sum_mismatches = f32s(&sum)?
                .ne(&f32s(&want_sum)?)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            let y_rel = rel(&f32s(&y)?, &f32s(&want_y)?)?;
            let kernel_s = timed(dev, args.reps, &|| {
                fused()?;
                Ok(())
            })?;
            let ops_s = timed(dev, args.reps, &|| {
                ops()?;
                Ok(())
            })?;
            // The sums match bit for bit in both dtypes: in bf16 the kernel rounds twice (f32,
            // then bf16) where Candle rounds once, but f32's 24 bits are more than 2·8 + 2, so
            // a sum or product of bf16 values rounds the same either way. A mismatch is a bug.
            let (sum_allowed, y_tolerance) = if dtype == DType::F32 {
                (0.0, 1e-5)
            } else {
                (0.0, 1e-2)
            };
            emit(
                "check_kernels",
                json!({
                    "kernel": "dropout_add_layer_norm",
                    "device": device_name(dev),
                    "shape": format!("{}×{} {dtype:?}", shape.0, shape.1),
                    "sum_mismatches": sum_mismatches,
                    "y_rel_diff": y_rel,
                    "kernel_ms": 1e3 * kernel_s,
                    "ops_ms": 1e3 * ops_s,
                    "ok": sum_mismatches <= sum_allowed && y_rel <= y_tolerance,
                }),
            );
        }
        Ok(())
    }

    /// The fused layer-norm backward (two upstream gradients added on load, `dx` also through
    /// the dropout mask) against the add, the plain kernels and the dropout kernel.
    fn check_layer_norm_backward_fused(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let shape = (args.rows, args.width);
        let w = Tensor::randn(1f32, 0.1, args.width, dev)?;
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let g = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let g2 = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let separate = || -> Result<(Tensor, Tensor, Tensor, Tensor)> {
                let (dx, dw, db) = layer_norm_grads_cuda(&x, &w, &(&g + &g2)?, 1e-5)?;
                let dropped = cuda_dropout(&dx, SEED, P, dtype)?;
                Ok((dx, dropped, dw, db))
            };
            let fused = || -> Result<(Tensor, Tensor, Tensor, Tensor)> {
                let (dx, dropped, dw, db) =
                    layer_norm_grads_fused_cuda(&x, &w, &g, Some(&g2), Some((SEED, P)), 1e-5)?;
                let dropped = anyhow::Context::context(dropped, "no dropped output")?;
                Ok((dx, dropped, dw, db))
            };
            let want = separate()?;
            let got = fused()?;
            let f32s = |t: &Tensor| t.to_dtype(DType::F32);
            let diffs = [
                rel(&f32s(&got.0)?, &f32s(&want.0)?)?,
                rel(&f32s(&got.1)?, &f32s(&want.1)?)?,
                rel(&got.2, &want.2)?,
                rel(&got.3, &want.3)?,
            ];
            let kernel_s = timed(dev, args.reps, &|| {
                fused()?;
                Ok(())
            })?;
            let ops_s = timed(dev, args.reps, &|| {
                separate()?;
                Ok(())
            })?;
            // bf16: the sum g + g2 may round differently in its last bit (one rounding from
            // the exact sum in Candle's add, two in the kernel).
            let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
            emit(
                "check_kernels",
                json!({
                    "kernel": "layer_norm_backward_fused",
                    "device": device_name(dev),
                    "shape": format!("{}×{} {dtype:?}", shape.0, shape.1),
                    "dx_rel_diff": diffs[0],
                    "dropped_rel_diff": diffs[1],
                    "dw_rel_diff": diffs[2],
                    "db_rel_diff": diffs[3],
                    "kernel_ms": 1e3 * kernel_s,
                    "ops_ms": 1e3 * ops_s,
                    "ok": diffs.iter().all(|d| *d <= tolerance),
                }),
            );
        }
        Ok(())
    }

    /// Bias + ReLU + dropout (and its backward) and bias + GELU in one kernel against the
    /// bias add, Candle's activation and the dropout kernel, at the feed-forward shape
    /// `[rows, 4·width]`.
    fn check_bias_activation(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        use code2nl::model::Activation;
        let shape = (args.rows, 4 * args.width);
        for dtype in [DType::F32, DType::BF16] {
            let y = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            let bias = Tensor::randn(0f32, 0.1, shape.1, dev)?.to_dtype(dtype)?;
            let g = Tensor::randn(0f32, 1.0, shape, dev)?.to_dtype(dtype)?;
            for (act, p) in [(Activation::Relu, P), (Activation::Gelu, 0.0)] {
                let ops = || -> Result<(Tensor, Tensor)> {
                    let pre = y.broadcast_add(&bias)?;
                    let a = match act {
                        Activation::Relu => pre.relu()?,
                        Activation::Gelu => pre.gelu_erf()?,
                    };
                    let out = if p > 0.0 {
                        cuda_dropout(&a, SEED, p, dtype)?
                    } else {
                        a
                    };
                    Ok((pre, out))
                };
                let fused = || -> Result<(Tensor, Tensor)> {
                    Ok(cuda_bias_activation_dropout(&y, &bias, act, SEED, p)?)
                };
                let (want_pre, want) = ops()?;
                let (pre, got) = fused()?;
                let f32s = |t: &Tensor| t.to_dtype(DType::F32);
                let pre_rel = rel(&f32s(&pre)?, &f32s(&want_pre)?)?;
                let out_rel = rel(&f32s(&got)?, &f32s(&want)?)?;
                let mut fields = json!({
                    "kernel": "bias_activation_dropout",
                    "device": device_name(dev),
                    "shape": format!("{}×{} {dtype:?} {act:?}, p {p}", shape.0, shape.1),
                    "pre_rel_diff": pre_rel,
                    "out_rel_diff": out_rel,
                    "kernel_ms": 1e3 * timed(dev, args.reps, &|| { fused()?; Ok(()) })?,
                    "ops_ms": 1e3 * timed(dev, args.reps, &|| { ops()?; Ok(()) })?,
                });
                let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
                let mut ok = pre_rel <= tolerance && out_rel <= tolerance;
                if act == Activation::Relu {
                    let ops_back = || -> Result<Tensor> {
                        let d = cuda_dropout(&g, SEED, p, dtype)?;
                        Ok((d * want_pre.gt(0.0)?.to_dtype(dtype)?)?)
                    };
                    let back_rel = rel(
                        &f32s(&cuda_dropout_relu_backward(&g, &want_pre, SEED, p)?)?,
                        &f32s(&ops_back()?)?,
                    )?;
                    ok &= back_rel <= tolerance;
                    fields["backward_rel_diff"] = json!(back_rel);
                    fields["backward_kernel_ms"] = json!(
                        1e3 * timed(dev, args.reps, &|| {
                            cuda_dropout_relu_backward(&g, &want_pre, SEED, p)?;
                            Ok(())
                        })?
                    );
                    fields["backward_ops_ms"] = json!(
                        1e3 * timed(dev, args.reps, &|| {
                            ops_back()?;
                            Ok(())
                        })?
                    );
                }
                fields["ok"] = json!(ok);
                emit("check_kernels", fields);
            }
        }
        Ok(())
    }

    /// The packed q/k/v projection split into 12 heads with its bias, and the three per-head
    /// gradients merged back, against Candle's bias add, reshape/permute copies and stack, at
    /// `[rows / 256, 256, 3·width]`.
    fn check_heads(args: &KernelCheckArgs, dev: &Device) -> Result<()> {
        let (b, l, heads) = ((args.rows / 256).max(1), 256.min(args.rows), 12);
        let width = 3 * args.width;
        let d = args.width / heads;
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1.0, (b, l, width), dev)?.to_dtype(dtype)?;
            let bias = Tensor::randn(0f32, 0.1, width, dev)?.to_dtype(dtype)?;
            let ops_split = || -> Result<Tensor> {
                Ok(x.broadcast_add(&bias)?
                    .reshape((b, l, 3, heads, d))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()?)
            };
            let split =
                || -> Result<Vec<Tensor>> { Ok(cuda_split_heads(&x, Some(&bias), 3, heads)?) };
            let want = ops_split()?;
            let got = Tensor::stack(&split()?, 0)?;
            let f32s = |t: &Tensor| t.to_dtype(DType::F32);
            let split_rel = rel(&f32s(&got)?, &f32s(&want)?)?;
            let parts: Vec<Tensor> = (0..3)
                .map(|i| want.get(i))
                .collect::<candle_core::Result<_>>()?;
            let refs: Vec<&Tensor> = parts.iter().collect();
            let ops_merge = || -> Result<Tensor> {
                Ok(Tensor::stack(&refs, 2)?
                    .permute((0, 3, 2, 1, 4))?
                    .contiguous()?
                    .reshape((b, l, width))?)
            };
            let merged = cuda_merge_heads(&refs)?;
            let merge_mismatches = merged
                .ne(&ops_merge()?)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?;
            let tolerance = if dtype == DType::F32 { 1e-6 } else { 1e-2 };
            emit(
                "check_kernels",
                json!({
                    "kernel": "heads",
                    "device": device_name(dev),
                    "shape": format!("{b}×{l}×{width} {dtype:?}, {heads} heads"),
                    "split_rel_diff": split_rel,
                    "merge_mismatches": merge_mismatches,
                    "split_kernel_ms": 1e3 * timed(dev, args.reps, &|| { split()?; Ok(()) })?,
                    "split_ops_ms": 1e3 * timed(dev, args.reps, &|| { ops_split()?; Ok(()) })?,
                    "merge_kernel_ms": 1e3 * timed(dev, args.reps, &|| { cuda_merge_heads(&refs)?; Ok(()) })?,
                    "merge_ops_ms": 1e3 * timed(dev, args.reps, &|| { ops_merge()?; Ok(()) })?,
                    "ok": split_rel <= tolerance && merge_mismatches == 0.0,
                }),
            );
        }
        Ok(())
    }
}
