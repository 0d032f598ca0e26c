//! `make-checkpoint` and `bench-decode`: batched reference-mode beam search (KV-cached
//! session, streaming top-K, done examples frozen; outputs equal to decoding each example
//! alone with the reference algorithm) on real ruby test sources, timed per phase, with the
//! n-best ids compared to the PyTorch per-example reference (`tools/gpu/bench_decode.py`)
//! run on the same checkpoint.

use crate::common::{
    device, device_name, emit, median, model_config, read_features, synced_seconds,
};
use crate::memory::{keep_pool_memory, PeakMemory};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use candle_nn::VarMap;
use code2nl::data::{inference_batches, make_batch, Feature, Padding};
use code2nl::model::beam::TieOrder;
use code2nl::model::beam::{beam_search, BeamOutput};
use code2nl::model::generation::GenerationConfig;
use code2nl::model::{
    load_checkpoint, save_checkpoint, CandidateRanking, KvCacheSession, NextTokenLogProbs, Seq2Seq,
};
use code2nl::train::tensors::BatchTensors;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct MakeCheckpointArgs {
    /// `codebert` (172.5 M parameters) or `small`.
    #[arg(long, default_value = "codebert")]
    model: String,
    #[arg(long)]
    out: PathBuf,
    /// Multiply the (tied) word embeddings by this factor. Random weights give a nearly
    /// uniform next-token distribution, where thousands of beam candidates lie within float
    /// round-off of each other and any two implementations break those ties differently; a
    /// factor of ~50 makes the distribution peaked like a trained model's, so n-best lists can
    /// be compared for identity.
    #[arg(long, default_value_t = 1.0)]
    sharpen: f64,
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

/// Scales the word-embedding matrix in place.
fn sharpen_word_embeddings(model: &Seq2Seq, factor: f64) -> Result<()> {
    let data = model
        .varmap()
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("VarMap lock poisoned"))?;
    let var = data
        .get(WORD_EMBEDDINGS)
        .with_context(|| format!("the model has no `{WORD_EMBEDDINGS}`"))?;
    var.set(&(var.as_tensor() * factor)?)?;
    Ok(())
}

const WORD_EMBEDDINGS: &str = "encoder.embeddings.word_embeddings.weight";

pub fn make_checkpoint(args: &MakeCheckpointArgs) -> Result<()> {
    let dev = device(&args.device.device)?;
    let start = Instant::now();
    let model = Seq2Seq::new(&model_config(&args.model)?, &VarMap::new(), &dev)?;
    if args.sharpen != 1.0 {
        sharpen_word_embeddings(&model, args.sharpen)?;
    }
    save_checkpoint(&model, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    emit(
        "make_checkpoint",
        json!({"model": args.model, "out": args.out.display().to_string(), "sharpen": args.sharpen,
               "seconds": start.elapsed().as_secs_f64(), "device": device_name(&dev), "ok": true}),
    );
    Ok(())
}

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum RankingArg {
    Auto,
    Device,
    Host,
}

#[derive(clap::Args, Debug)]
pub struct DecodeBenchArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Test-stage features (JSON lines); only the source side is used.
    #[arg(long, default_value = "build/device/data/ruby_test_features.jsonl")]
    sources: PathBuf,
    /// Decode the first N examples (0: all).
    #[arg(long, default_value_t = 0)]
    examples: usize,
    /// Examples per session (B × K beam rows on the device at once).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 10)]
    beam_size: usize,
    #[arg(long, default_value_t = 128)]
    max_length: usize,
    /// Pad sources to the longest of each batch (results are identical; pads are masked keys).
    /// The batches then go longest source first, as `evaluate` runs them.
    #[arg(long)]
    dynamic_padding: bool,
    /// With --dynamic-padding, cut the batches in file order instead of longest source first
    /// (the A/B of length-sorted batches).
    #[arg(long)]
    file_order: bool,
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    /// The PyTorch reference's n-best (`{"nbest": [[ids, ...], ...]}`) to compare with.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Write our n-best ids here (same format).
    #[arg(long)]
    nbest_out: Option<PathBuf>,
    #[arg(long)]
    keep_pool: bool,
    /// Where beam candidates are ranked: `auto` (on the device for a GPU), `device`, `host`.
    #[arg(long, value_enum, default_value = "auto")]
    ranking: RankingArg,
    /// Stop after the batch in progress once this many seconds are spent (0: no limit); the
    /// result line says how many examples were decoded.
    #[arg(long, default_value_t = 0.0)]
    time_budget: f64,
    /// A label for the result line.
    #[arg(long, default_value = "candle batched reference-mode")]
    variant: String,
    #[command(flatten)]
    device: crate::common::DeviceArgs,
}

/// A session wrapper that accumulates the time spent in `step` (decoder + log-softmax + on a
/// GPU the per-row candidate ranking, + the copy to the host, which synchronises).
struct TimedSession<'a> {
    inner: KvCacheSession<'a>,
    step_seconds: f64,
    steps: usize,
}

impl NextTokenLogProbs for TimedSession<'_> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn layout(&self) -> Option<(usize, usize)> {
        self.inner.layout()
    }

    fn max_prefix_len(&self) -> Option<usize> {
        self.inner.max_prefix_len()
    }

    fn step(&mut self, origin: &[u32], tokens: &[u32]) -> code2nl::model::Result<Vec<f32>> {
        let start = Instant::now();
        let out = self.inner.step(origin, tokens);
        self.step_seconds += start.elapsed().as_secs_f64();
        self.steps += 1;
        out
    }

    fn prefers_row_top_k(&self) -> bool {
        self.inner.prefers_row_top_k()
    }

    fn step_row_top_k(
        &mut self,
        origin: &[u32],
        tokens: &[u32],
        row_scores: Option<&[f32]>,
        k: usize,
    ) -> code2nl::model::Result<code2nl::model::RowTopK> {
        let start = Instant::now();
        let out = self.inner.step_row_top_k(origin, tokens, row_scores, k);
        self.step_seconds += start.elapsed().as_secs_f64();
        self.steps += 1;
        out
    }
}

#[derive(Default)]
struct DecodeTimes {
    total: f64,
    encode: f64,
    session_step: f64,
    beam: f64,
    steps: usize,
}

/// Decodes `features` batch by batch (longest source first with dynamic padding, unless
/// `--file-order`); each result lands at its example's position. A time budget leaves the
/// examples of the batches not run as `None`.
fn decode_batches(
    model: &Seq2Seq,
    features: &[Feature],
    args: &DecodeBenchArgs,
    config: &GenerationConfig,
    budget: Option<f64>,
    times: &mut DecodeTimes,
) -> Result<Vec<Option<BeamOutput>>> {
    let dev = model.device().clone();
    let mut outputs: Vec<Option<BeamOutput>> = vec![None; features.len()];
    let begin = Instant::now();
    for positions in inference_batches(features, args.batch_size, batch_order(args)) {
        if budget.is_some_and(|b| begin.elapsed().as_secs_f64() > b) {
            break;
        }
        let start = Instant::now();
        let longest = positions
            .iter()
            .map(|&p| features[p].source_ids.len())
            .max()
            .unwrap_or(2);
        let s = if args.dynamic_padding {
            longest.min(args.max_source_len)
        } else {
            args.max_source_len
        };
        let x = BatchTensors::new(&make_batch(features, &positions, s, 2), &dev)?;
        let session = KvCacheSession::new(model, &x.source_ids, &x.source_mask, args.beam_size)?
            .with_candidate_ranking(match args.ranking {
                RankingArg::Auto => CandidateRanking::Auto,
                RankingArg::Device => CandidateRanking::Device,
                RankingArg::Host => CandidateRanking::Host,
            });
        let encode = synced_seconds(&dev, start)?;
        let mut timed = TimedSession {
            inner: session,
            step_seconds: 0.0,
            steps: 0,
        };
        let search = Instant::now();
        let results = beam_search(&mut timed, positions.len(), config)?;
        for (&p, result) in positions.iter().zip(results) {
            outputs[p] = Some(result);
        }
        let search = synced_seconds(&dev, search)?;
        times.encode += encode;
        times.session_step += timed.step_seconds;
        times.beam += search - timed.step_seconds;
        times.steps += timed.steps;
        times.total += start.elapsed().as_secs_f64();
    }
    Ok(outputs)
}

/// How [`inference_batches`] orders the examples: `Dynamic` sorts them longest first.
fn batch_order(args: &DecodeBenchArgs) -> Padding {
    if args.dynamic_padding && !args.file_order {
        Padding::Dynamic
    } else {
        Padding::Reference
    }
}

fn nbest_ids(outputs: &[BeamOutput]) -> Vec<Vec<Vec<u32>>> {
    outputs
        .iter()
        .map(|o| o.hypotheses.iter().map(|h| h.ids.clone()).collect())
        .collect()
}

/// Our n-best against the reference's: counts of identical lists and, where they differ, how
/// close the reference's scores are at the first differing rank (a near-tie that rounding on
/// another GEMM shape may flip) — and the largest score difference where the ids agree.
fn compare(ours: &[BeamOutput], path: &PathBuf) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let theirs: Vec<Vec<Vec<u32>>> = serde_json::from_value(value["nbest"].clone())
        .with_context(|| format!("{}: field `nbest`", path.display()))?;
    let their_scores: Option<Vec<Vec<f64>>> = serde_json::from_value(value["scores"].clone()).ok();
    let ids = nbest_ids(ours);
    let n = ids.len().min(theirs.len());
    let nbest = (0..n).filter(|&i| ids[i] == theirs[i]).count();
    let top1 = (0..n)
        .filter(|&i| ids[i].first() == theirs[i].first())
        .count();
    let mut differing = Vec::new();
    let mut max_rel_score_diff_same_ids = 0.0f64;
    if let Some(scores) = &their_scores {
        for i in 0..n.min(scores.len()) {
            let hyps = &ours[i].hypotheses;
            let rank = (0..hyps.len().min(theirs[i].len())).find(|&r| hyps[r].ids != theirs[i][r]);
            for (r, h) in hyps.iter().enumerate().take(rank.unwrap_or(hyps.len())) {
                if let Some(&want) = scores[i].get(r) {
                    let rel = (f64::from(h.score) - want).abs() / want.abs().max(1e-30);
                    max_rel_score_diff_same_ids = max_rel_score_diff_same_ids.max(rel);
                }
            }
            if let Some(r) = rank {
                let (Some(&theirs_here), Some(ours_here)) = (scores[i].get(r), hyps.get(r)) else {
                    continue;
                };
                // Our hypothesis at rank r ranks where the reference put another one: the gap
                // between the two scores says whether this is a near-tie.
                differing.push(json!({
                    "example": i,
                    "rank": r,
                    "our_score": ours_here.score,
                    "their_score": theirs_here,
                    "relative_gap": (f64::from(ours_here.score) - theirs_here).abs()
                        / theirs_here.abs().max(1e-30),
                }));
            }
        }
    }
    Ok(json!({
        "compared": n,
        "nbest_identical": nbest,
        "top1_identical": top1,
        "max_rel_score_diff_where_ids_agree": max_rel_score_diff_same_ids,
        "first_differences": differing,
    }))
}

pub fn run(args: &DecodeBenchArgs) -> Result<()> {
    let dev: Device = device(&args.device.device)?;
    let kept = args.keep_pool && keep_pool_memory(&dev);
    let model = load_checkpoint(&args.checkpoint, &dev)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let limit = (args.examples > 0).then_some(args.examples);
    let features = read_features(&args.sources, limit)?;
    if features
        .iter()
        .any(|f| f.source_ids.len() > args.max_source_len)
    {
        bail!(
            "a source is longer than --max-source-len {}",
            args.max_source_len
        );
    }
    let config = GenerationConfig {
        beam_size: args.beam_size,
        max_length: args.max_length,
        // As earlier runs: ties by lower index (`auto` on a GPU; on the CPU dry run too).
        tie_order: TieOrder::LowerIndex,
        ..Default::default()
    };
    // Warm-up: kernel loading and first allocations, on two examples and a few steps.
    let warm = GenerationConfig {
        max_length: config.max_length.min(4),
        ..config.clone()
    };
    decode_batches(
        &model,
        &features[..features.len().min(2)],
        args,
        &warm,
        None,
        &mut DecodeTimes::default(),
    )?;

    let probe = PeakMemory::start(&dev);
    let mut times = DecodeTimes::default();
    let budget = (args.time_budget > 0.0).then_some(args.time_budget);
    let decoded = decode_batches(&model, &features, args, &config, budget, &mut times)?;
    let memory = probe.finish();
    let examples = decoded.iter().flatten().count();
    // The n-best files and the comparison cover the examples decoded from the first on (all
    // of them unless the time budget ran out).
    let outputs: Vec<BeamOutput> = decoded.iter().map_while(Clone::clone).collect();
    let ids = nbest_ids(&outputs);
    if let Some(path) = &args.nbest_out {
        std::fs::write(path, serde_json::to_string(&json!({"nbest": ids}))?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let comparison = match &args.compare {
        Some(path) => compare(&outputs, path)?,
        None => Value::Null,
    };
    let decode_steps: Vec<f64> = decoded.iter().flatten().map(|o| o.steps as f64).collect();
    emit(
        "bench_decode",
        json!({
            "variant": args.variant,
            "device": device_name(&dev),
            "hidden_size": model.config().hidden_size,
            "examples": examples,
            "requested_examples": features.len(),
            "stopped_by_time_budget": examples < features.len(),
            "batch_size": args.batch_size,
            "beam_size": args.beam_size,
            "max_length": args.max_length,
            "dynamic_padding": args.dynamic_padding,
            "batch_order": if batch_order(args) == Padding::Dynamic { "longest_first" } else { "file" },
            "decode_kernels": code2nl::model::cuda_decode_kernels_enabled(),
            "cache_layout": format!(
                "{:?}",
                code2nl::model::CacheLayout::Auto.resolve(model.compute_dtype(), &dev)
            ),
            "keep_pool": kept,
            "seconds": times.total,
            "examples_per_s": examples as f64 / times.total,
            "phases": {
                "encode_s": times.encode,
                "session_step_s": times.session_step,
                "beam_select_s": times.beam,
                "session_steps": times.steps,
            },
            "median_decode_steps": median(&decode_steps),
            "comparison": comparison,
            "memory": memory,
            "ok": times.total.is_finite(),
        }),
    );
    Ok(())
}
