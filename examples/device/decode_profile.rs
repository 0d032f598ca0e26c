//! `profile-decode`: where one decoding step spends its time, at a chosen number of rows and
//! prefix length, so the next decoding optimisation is named by measurement.
//!
//! A KV-cached session over `examples × beam` rows is advanced `prefix` steps (identity
//! origins, a fixed token), then each phase is timed on its own with the device synchronised:
//!
//! - `step_ranked`: one whole session step with the candidates ranked on the device (what
//!   beam search does on a GPU);
//! - `step_full_copy`: one whole step returning all `rows × V` log-probabilities to the host;
//! - `lm_head`: `tanh(dense)` and the tied LM head on `[rows, H]` (logits);
//! - `rank_from_logits`: [`logits_row_top_k`] on the `[rows, V]` logits, what a step runs (on
//!   CUDA one kernel: log-softmax, row scores and ranking);
//! - `log_softmax_rank_ops`: the same with tensor ops (Candle's log-softmax, then
//!   [`device_row_top_k`]), the path before the kernel;
//! - `copy_to_host`: copying `[rows, V]` f32 to the host;
//! - `decoder_layers` (derived): `step_ranked − lm_head − rank_from_logits`.

use crate::common::{device, device_name, emit, median, read_features, synced_seconds};
use crate::memory::keep_pool_memory;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, D};
use code2nl::data::make_batch;
use code2nl::model::{
    device_row_top_k, load_checkpoint, logits_row_top_k, CandidateRanking, KvCacheSession,
    NextTokenLogProbs,
};
use code2nl::train::tensors::BatchTensors;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct DecodeProfileArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Test-stage features (JSON lines); only the source side is used.
    #[arg(long, default_value = "build/device/data/ruby_test_features.jsonl")]
    sources: PathBuf,
    /// Examples in the session (rows = examples × beam size).
    #[arg(long, default_value_t = 128)]
    examples: usize,
    #[arg(long, default_value_t = 10)]
    beam_size: usize,
    /// Steps decoded before timing (the self-attention cache length).
    #[arg(long, default_value_t = 48)]
    prefix: usize,
    /// Timed repetitions of each phase (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

pub fn run(args: &DecodeProfileArgs) -> Result<()> {
    let dev = device(&args.device.device)?;
    keep_pool_memory(&dev);
    let model = load_checkpoint(&args.checkpoint, &dev)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let features = read_features(&args.sources, Some(args.examples))?;
    let longest = features
        .iter()
        .map(|f| f.source_ids.len())
        .max()
        .unwrap_or(2);
    let positions: Vec<usize> = (0..features.len()).collect();
    let batch = make_batch(&features, &positions, longest.min(args.max_source_len), 2);
    let x = BatchTensors::new(&batch, &dev)?;
    let mut session = KvCacheSession::new(&model, &x.source_ids, &x.source_mask, args.beam_size)?
        .with_candidate_ranking(CandidateRanking::Device);
    let rows = features.len() * args.beam_size;
    let identity: Vec<u32> = (0..rows as u32).collect();
    let token = vec![100u32; rows];
    let scores = vec![-1.5f32; rows];
    for _ in 0..args.prefix {
        session.step_row_top_k(&identity, &token, Some(&scores), args.beam_size)?;
    }
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?; // warm-up
        let mut runs = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            dev.synchronize()?;
            let start = Instant::now();
            f()?;
            runs.push(synced_seconds(&dev, start)? * 1e3);
        }
        Ok(median(&runs))
    };
    let step_ranked = time(&mut || {
        session.step_row_top_k(&identity, &token, Some(&scores), args.beam_size)?;
        Ok(())
    })?;
    let step_full_copy = time(&mut || {
        session.step(&identity, &token)?;
        Ok(())
    })?;
    let hidden_size = model.config().hidden_size;
    let hidden = Tensor::randn(0f32, 1.0, (rows, hidden_size), &dev)?;
    let mut logits = None;
    let lm_head = time(&mut || {
        let h = model.head_hidden(&hidden)?;
        logits = Some(model.lm_logits(&h)?.to_dtype(DType::F32)?);
        Ok(())
    })?;
    let logits = logits.context("no logits")?;
    let rank = time(&mut || {
        logits_row_top_k(&logits, Some(&scores), args.beam_size)?;
        Ok(())
    })?;
    let rank_ops = time(&mut || {
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        device_row_top_k(&logp, Some(&scores), args.beam_size)?;
        Ok(())
    })?;
    let copy = time(&mut || {
        logits.flatten_all()?.to_vec1::<f32>()?;
        Ok(())
    })?;
    emit(
        "profile_decode",
        json!({
            "device": device_name(&dev),
            "rows": rows,
            "examples": features.len(),
            "beam_size": args.beam_size,
            "cache_length": args.prefix,
            "source_length": longest.min(args.max_source_len),
            "decode_kernels": code2nl::model::cuda_decode_kernels_enabled(),
            "ms": {
                "step_ranked": step_ranked,
                "step_full_copy": step_full_copy,
                "lm_head": lm_head,
                "rank_from_logits": rank,
                "log_softmax_rank_ops": rank_ops,
                "copy_to_host": copy,
                "decoder_layers": step_ranked - lm_head - rank,
            },
            "ok": true,
        }),
    );
    Ok(())
}
