//! `profile-ops`: the building blocks of one training step, each timed alone (forward, and
//! forward + backward) at the encoder's shapes, with the bytes it must move at least, so a
//! slow kernel shows as an effective bandwidth far below the card's.
//!
//! Also the model's phases at batch size `--batch`: encoder forward, decoder forward, LM head +
//! loss forward, and backward of the whole loss, each with the device synchronised.
//!
//! Every figure is the median of `--reps` runs after one warm-up run.

use crate::common::{device, device_name, emit, median, model_config, synced_seconds};
use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use code2nl::model::config::Activation;
use code2nl::model::layers::{
    apply_activation, attend, dropout, softmax_last_dim, AttendOptions, LayerNorm, Linear,
};
use code2nl::model::Seq2Seq;
use serde_json::{json, Value};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct OpsProfileArgs {
    /// `codebert` or `small`.
    #[arg(long, default_value = "codebert")]
    model: String,
    /// Examples per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Source length (encoder shapes).
    #[arg(long, default_value_t = 256)]
    source_len: usize,
    /// Target length (decoder shapes).
    #[arg(long, default_value_t = 128)]
    target_len: usize,
    /// `f32` or `bf16` activations.
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

/// Median milliseconds of `f` (one warm-up run first).
fn time_ms(dev: &Device, reps: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut runs = Vec::with_capacity(reps);
    for _ in 0..reps {
        dev.synchronize()?;
        let start = Instant::now();
        f()?;
        runs.push(synced_seconds(dev, start)? * 1e3);
    }
    Ok(median(&runs))
}

/// Forward alone and forward + backward of `op` on a fresh variable input shaped like `x`.
fn op_row(
    dev: &Device,
    reps: usize,
    name: &str,
    x: &Tensor,
    min_bytes: f64,
    flops: f64,
    op: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Value> {
    let input = Var::from_tensor(x)?;
    let forward = time_ms(dev, reps, &mut || {
        op(input.as_tensor())?;
        Ok(())
    })?;
    let both = time_ms(dev, reps, &mut || {
        let y = op(input.as_tensor())?;
        // The sum's backward is a broadcast of ones: the op's own backward dominates.
        y.to_dtype(DType::F32)?.sum_all()?.backward()?;
        Ok(())
    })?;
    Ok(json!({
        "op": name,
        "shape": x.dims(),
        "dtype": format!("{:?}", x.dtype()),
        "forward_ms": forward,
        "forward_backward_ms": both,
        "forward_min_gb": min_bytes / 1e9,
        "forward_gb_per_s": min_bytes / (forward * 1e-3) / 1e9,
        "forward_tflop_per_s": if flops > 0.0 { Some(flops / (forward * 1e-3) / 1e12) } else { None },
    }))
}

pub fn run(args: &OpsProfileArgs) -> Result<()> {
    let dev = device(&args.device.device)?;
    let dtype = match args.dtype.as_str() {
        "bf16" => DType::BF16,
        _ => DType::F32,
    };
    let cfg = model_config(&args.model)?;
    let (b, s, t, h) = (
        args.batch,
        args.source_len,
        args.target_len,
        cfg.hidden_size,
    );
    let heads = cfg.num_attention_heads;
    let ff = cfg.intermediate_size;
    let elem = dtype.size_in_bytes() as f64;
    let reps = args.reps.max(1);
    let randn = |shape: &[usize]| -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1.0, shape, &dev)?.to_dtype(dtype)?)
    };
    let mut ops = Vec::new();

    // Encoder feed-forward GEMM: [b·s, h] × [h, ff].
    let x = randn(&[b * s, h])?;
    let w = randn(&[ff, h])?;
    let linear = Linear::new(w, None);
    ops.push(op_row(
        &dev,
        reps,
        "linear h→ff (GEMM)",
        &x,
        elem * (b * s * h + ff * h + b * s * ff) as f64,
        2.0 * (b * s * h * ff) as f64,
        &|x| linear.forward(x),
    )?);
    // Attention with the additive key mask, softmax and dropout: [b, heads, s, d].
    let d = h / heads;
    let q = randn(&[b, heads, s, d])?;
    let k = randn(&[b, heads, s, d])?;
    let v = randn(&[b, heads, s, d])?;
    let mask = Tensor::zeros((b, 1, 1, s), DType::F32, &dev)?;
    let scores_bytes = 4.0 * (b * heads * s * s) as f64;
    for (label, fused_softmax) in [
        (
            "attention (QKᵀ, mask, fused softmax, dropout 0.1, ·V)",
            true,
        ),
        (
            "attention (QKᵀ, mask, primitive softmax, dropout 0.1, ·V)",
            false,
        ),
    ] {
        let options = AttendOptions {
            query_scale: None,
            score_divisor: None,
            dropout_p: 0.1,
            train: true,
            fused_softmax,
        };
        ops.push(op_row(
            &dev,
            reps,
            label,
            &q,
            elem * 4.0 * (b * heads * s * d) as f64 + 2.0 * scores_bytes,
            4.0 * (b * heads * s * s * d) as f64,
            &|q| attend(q, &k, &v, Some(&mask), options),
        )?);
    }
    // Softmax alone on the scores.
    let scores = Tensor::randn(0f32, 1.0, (b, heads, s, s), &dev)?;
    ops.push(op_row(
        &dev,
        reps,
        "softmax (scores, f32, fused)",
        &scores,
        2.0 * scores_bytes,
        0.0,
        &softmax_last_dim,
    )?);
    ops.push(op_row(
        &dev,
        reps,
        "softmax (scores, f32, primitive)",
        &scores,
        2.0 * scores_bytes,
        0.0,
        &|x| candle_nn::ops::softmax(x, D::Minus1),
    )?);
    // LayerNorm, GELU, dropout on activations.
    let act = randn(&[b, s, h])?;
    let act_bytes = elem * (b * s * h) as f64;
    for (label, fused) in [
        ("layer norm (fused)", true),
        ("layer norm (primitive)", false),
    ] {
        let norm = LayerNorm::new(
            Var::ones(h, dtype, &dev)?.as_tensor().clone(),
            Var::zeros(h, dtype, &dev)?.as_tensor().clone(),
            1e-5,
        )
        .with_fused(fused);
        ops.push(op_row(
            &dev,
            reps,
            label,
            &act,
            2.0 * act_bytes,
            0.0,
            &|x| norm.forward(x),
        )?);
    }
    let wide = randn(&[b, s, ff])?;
    let wide_bytes = elem * (b * s * ff) as f64;
    ops.push(op_row(
        &dev,
        reps,
        "gelu (erf)",
        &wide,
        2.0 * wide_bytes,
        0.0,
        &|x| apply_activation(x, Activation::Gelu),
    )?);
    ops.push(op_row(
        &dev,
        reps,
        "dropout 0.1",
        &act,
        2.0 * act_bytes,
        0.0,
        &|x| dropout(x, 0.1, true),
    )?);
    ops.push(op_row(
        &dev,
        reps,
        "add (residual)",
        &act,
        3.0 * act_bytes,
        0.0,
        &|x| x + &act,
    )?);

    // The model's phases on random ids (reference padding: every position real).
    let model = Seq2Seq::new(&cfg, &VarMap::new(), &dev)?.with_compute_dtype(dtype);
    let ids = |n: usize, len: usize| -> Result<Tensor> {
        let v: Vec<u32> = (0..n * len)
            .map(|i| 3 + (i as u32 * 7919) % 50_000)
            .collect();
        Ok(Tensor::from_vec(v, (n, len), &dev)?)
    };
    let (src, tgt) = (ids(b, s)?, ids(b, t)?);
    let (src_mask, tgt_mask) = (
        Tensor::ones((b, s), DType::U32, &dev)?,
        Tensor::ones((b, t), DType::U32, &dev)?,
    );
    let encode = time_ms(&dev, reps, &mut || {
        model.encode(&src, &src_mask, true)?;
        Ok(())
    })?;
    let memory = model.encode(&src, &src_mask, true)?.detach();
    let decode = time_ms(&dev, reps, &mut || {
        model.decode_hidden(&tgt, &memory, &src_mask, true)?;
        Ok(())
    })?;
    let forward = time_ms(&dev, reps, &mut || {
        model.forward_loss(&src, &src_mask, &tgt, &tgt_mask, true)?;
        Ok(())
    })?;
    let step = time_ms(&dev, reps, &mut || {
        let out = model.forward_loss(&src, &src_mask, &tgt, &tgt_mask, true)?;
        out.loss.backward()?;
        Ok(())
    })?;
    emit(
        "profile_ops",
        json!({
            "device": device_name(&dev),
            "model": args.model,
            "dtype": args.dtype,
            "batch": b,
            "source_len": s,
            "target_len": t,
            "ops": ops,
            "phases_ms": {
                "encoder_forward": encode,
                "decoder_forward": decode,
                "head_and_loss_forward": forward - encode - decode,
                "forward": forward,
                "backward": step - forward,
                "forward_backward": step,
            },
            "ok": true,
        }),
    );
    Ok(())
}
