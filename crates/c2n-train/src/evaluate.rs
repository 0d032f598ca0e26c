//! Evaluation shared by the training loop and the `evaluate` example (spec §8).
//!
//! * [`dev_loss`]: teacher-forced loss over a whole feature set in sequential batches,
//!   summing the f32 `loss × N_act` and `N_act` of every batch in f64 (§8.1);
//! * [`decode`]: batched, KV-cached beam search over features (test stage), one
//!   [`BeamOutput`] per example (§6, §8.2);
//! * [`Predictions`]: decoded texts in CodeXGLUE `idx<TAB>text` files, `nbest.jsonl`, and the
//!   smoothed BLEU-4 of the in-memory rows against the gold rows (§8.2 step 4);
//! * [`evaluate_file`]: all of the above for one jsonl file (the `evaluate` example).
//!
//! ## Sharded evaluation
//!
//! With several data-parallel ranks, [`dev_loss_sharded`] and [`decode_sharded`] split the
//! work by whole evaluation batches of the single-rank run (dev loss: rank `r` takes a
//! contiguous range of them; decoding: every `W`-th batch of the length-sorted plan, which
//! shares the long batches out), so every batch holds the same examples, padded alike, and is
//! computed exactly as with one rank.
//! Dev-loss sums travel as one f32 slot per batch (zeros elsewhere, summed across ranks: adding
//! zeros is exact) and are added up in f64 in batch order on every rank; decoded examples are
//! gathered to rank 0 in their original order. Outputs are therefore identical for any number
//! of ranks. [`evaluate_file_sharded`] writes and scores on rank 0 only.

use crate::comm::{Communicator, ReduceOp, SingleComm};
use crate::tensors::BatchTensors;
use crate::{Result, TrainError};
use c2n_data::partition::rank_range;
use c2n_data::{
    featurize, inference_batches, make_batch, Example, Feature, FeatureConfig, Padding,
    RobertaTokenizer, Stage, Strictness,
};
use c2n_eval::{smoothed_bleu, Gold, SmoothedBleu};
use c2n_model::beam::{cut_at_first_zero, BeamOutput, Hypothesis};
use c2n_model::generation::GenerationConfig;
use c2n_model::Seq2Seq;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Dev loss sums of §8.1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevLoss {
    /// Σ over batches of the f32 `loss × N_act`, in f64.
    pub loss_sum: f64,
    /// Σ `N_act`.
    pub tokens: u64,
}

impl DevLoss {
    /// `loss_sum / tokens`.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.tokens.max(1) as f64
    }

    /// `exp(loss)`.
    pub fn perplexity(&self) -> f64 {
        self.loss().exp()
    }
}

/// How evaluation cuts features into batches and pads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalBatching {
    /// Examples per batch (0 counts as 1).
    pub batch_size: usize,
    /// Reference padding (every batch to the maximum lengths) or dynamic.
    pub padding: Padding,
    pub max_source_len: usize,
    /// Used by the dev loss only (decoding has no target side).
    pub max_target_len: usize,
}

impl EvalBatching {
    /// The batches of `features`, in order.
    fn chunks<'a>(&self, features: &'a [Feature]) -> std::slice::Chunks<'a, Feature> {
        features.chunks(self.batch_size.max(1))
    }

    /// Source/target padding lengths of one batch.
    fn lengths<'a>(&self, chunk: impl IntoIterator<Item = &'a Feature>) -> (usize, usize) {
        match self.padding {
            Padding::Reference => (self.max_source_len, self.max_target_len),
            Padding::Dynamic => chunk.into_iter().fold((1, 2), |(s, t), f| {
                (s.max(f.source_ids.len()), t.max(f.target_ids.len()))
            }),
        }
    }
}

/// Teacher-forced loss over `features` in order, one batch at a time, eval mode.
pub fn dev_loss(model: &Seq2Seq, features: &[Feature], batching: &EvalBatching) -> Result<DevLoss> {
    let mut out = DevLoss {
        loss_sum: 0.0,
        tokens: 0,
    };
    for chunk in batching.chunks(features) {
        let (loss_sum, tokens) = chunk_loss(model, chunk, batching)?;
        out.loss_sum += f64::from(loss_sum);
        out.tokens += tokens as u64;
    }
    Ok(out)
}

/// The f32 `loss × N_act` and `N_act` of one evaluation batch.
fn chunk_loss(model: &Seq2Seq, chunk: &[Feature], batching: &EvalBatching) -> Result<(f32, usize)> {
    // No backward pass follows: the closed-form ops run as plain ops (same values).
    let _no_grad = c2n_model::layers::no_grad();
    let (s, t) = batching.lengths(chunk);
    let positions: Vec<usize> = (0..chunk.len()).collect();
    let batch = make_batch(chunk, &positions, s, t);
    let x = BatchTensors::new(&batch, model.device())?;
    let loss = model.forward_loss(
        &x.source_ids,
        &x.source_mask,
        &x.target_ids,
        &x.target_mask,
        false,
    )?;
    Ok((loss.loss_sum.to_scalar::<f32>()?, loss.n_active))
}

/// [`dev_loss`] with the batches shared out among the ranks of `comm`; every rank gets the
/// single-rank result, bit for bit.
pub fn dev_loss_sharded(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    features: &[Feature],
    batching: &EvalBatching,
) -> Result<DevLoss> {
    if comm.world_size() == 1 {
        return dev_loss(model, features, batching);
    }
    let chunks: Vec<&[Feature]> = batching.chunks(features).collect();
    // Slots [2b, 2b+1] hold batch b's loss sum and token count; other ranks leave them 0.
    let mut slots = vec![0f32; 2 * chunks.len()];
    for b in rank_range(chunks.len(), comm.rank(), comm.world_size())? {
        let (loss_sum, tokens) = chunk_loss(model, chunks[b], batching)?;
        slots[2 * b] = loss_sum;
        slots[2 * b + 1] = tokens as f32; // exact below 2^24 tokens per batch
    }
    comm.all_reduce(&mut slots, ReduceOp::Sum)?;
    let mut out = DevLoss {
        loss_sum: 0.0,
        tokens: 0,
    };
    for pair in slots.chunks_exact(2) {
        out.loss_sum += f64::from(pair[0]);
        out.tokens += pair[1] as u64;
    }
    Ok(out)
}

/// Beam search over `features` (only the source side is used), one batch per session; with
/// reference settings each result equals decoding the example alone. With dynamic padding the
/// batches go longest source first ([`inference_batches`]), so each pads little; the results
/// come back in the order of `features` either way. `on_batch` gets each batch's size.
pub fn decode(
    model: &Seq2Seq,
    features: &[Feature],
    batching: &EvalBatching,
    generation: &GenerationConfig,
    on_batch: impl FnMut(usize),
) -> Result<Vec<BeamOutput>> {
    let batches = inference_batches(features, batching.batch_size, batching.padding);
    let outputs = decode_batches(model, features, &batches, batching, generation, on_batch)?;
    in_feature_order(features.len(), &batches, outputs)
}

/// Beam search over the given batches of positions into `features`, one session per batch;
/// the results in batch order.
fn decode_batches(
    model: &Seq2Seq,
    features: &[Feature],
    batches: &[Vec<usize>],
    batching: &EvalBatching,
    generation: &GenerationConfig,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<BeamOutput>> {
    if model.device().is_cpu() {
        let largest = batches.iter().map(Vec::len).max().unwrap_or(0);
        crate::decode_memory::check_rows_fit(
            largest.saturating_mul(generation.effective_beam_size()),
            model.config().vocab_size,
            crate::decode_memory::available_host_memory(),
        )?;
    }
    let mut outputs = Vec::with_capacity(batches.iter().map(Vec::len).sum());
    for positions in batches {
        let (s, _) = batching.lengths(positions.iter().map(|&p| &features[p]));
        let batch = make_batch(features, positions, s, 2);
        let x = BatchTensors::new(&batch, model.device())?;
        outputs.extend(model.generate(&x.source_ids, &x.source_mask, generation)?);
        on_batch(positions.len());
    }
    Ok(outputs)
}

/// Puts results given in the order of `batches` (positions into a set of `n`) back in
/// position order; every position must get exactly one result.
fn in_feature_order<T>(n: usize, batches: &[Vec<usize>], results: Vec<T>) -> Result<Vec<T>> {
    let mut placed: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    let mut results = results.into_iter();
    for &p in batches.iter().flatten() {
        let slot = placed
            .get_mut(p)
            .ok_or_else(|| TrainError::InvalidInput(format!("batch position {p} of {n}")))?;
        *slot = results.next();
    }
    if results.next().is_some() {
        return Err(TrainError::InvalidInput(
            "more decoded examples than batch positions".into(),
        ));
    }
    placed
        .into_iter()
        .enumerate()
        .map(|(p, o)| {
            o.ok_or_else(|| {
                TrainError::InvalidInput(format!("beam search returned no result for example {p}"))
            })
        })
        .collect()
}

/// What evaluation keeps of one example's beam search: enough to write `*.output` and
/// `nbest.jsonl`, small enough to send between ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Row 0 cut at its first id 0 ([`BeamOutput::prediction`]).
    pub prediction: Vec<u32>,
    /// The hypotheses in rank order.
    pub hypotheses: Vec<Hypothesis>,
}

impl From<&BeamOutput> for Decoded {
    fn from(o: &BeamOutput) -> Self {
        Self {
            prediction: o.prediction().to_vec(),
            hypotheses: o.hypotheses.clone(),
        }
    }
}

/// Wire form of [`Decoded`]: scores as bit patterns, so every value survives the trip.
#[derive(Serialize, serde::Deserialize)]
struct DecodedWire {
    p: Vec<u32>,
    h: Vec<(Vec<u32>, u32)>,
}

impl Decoded {
    fn to_wire(&self) -> Result<String> {
        let wire = DecodedWire {
            p: self.prediction.clone(),
            h: self
                .hypotheses
                .iter()
                .map(|h| (h.ids.clone(), h.score.to_bits()))
                .collect(),
        };
        serde_json::to_string(&wire)
            .map_err(|e| TrainError::InvalidInput(format!("encoding a decoded example: {e}")))
    }

    fn from_wire(text: &str) -> Result<Self> {
        let wire: DecodedWire = serde_json::from_str(text).map_err(|e| {
            TrainError::InvalidInput(format!("a rank sent a malformed decoded example: {e}"))
        })?;
        Ok(Self {
            prediction: wire.p,
            hypotheses: wire
                .h
                .into_iter()
                .map(|(ids, bits)| Hypothesis {
                    ids,
                    score: f32::from_bits(bits),
                })
                .collect(),
        })
    }
}

/// [`decode`] with its batches shared out among the ranks of `comm` (rank `r` takes batches
/// `r`, `r + W`, …, which also spreads the long ones of a length-sorted plan): `Some(all
/// examples in order)` on rank 0, `None` on the others. Every batch holds the same examples,
/// padded to the same length, as with one rank. `on_batch` sees this rank's batches only.
pub fn decode_sharded(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    features: &[Feature],
    batching: &EvalBatching,
    generation: &GenerationConfig,
    on_batch: impl FnMut(usize),
) -> Result<Option<Vec<Decoded>>> {
    let batches = inference_batches(features, batching.batch_size, batching.padding);
    let world = comm.world_size().max(1);
    let of_rank = |rank: usize| -> Vec<Vec<usize>> {
        batches.iter().skip(rank).step_by(world).cloned().collect()
    };
    let mine = of_rank(comm.rank());
    let outputs = decode_batches(model, features, &mine, batching, generation, on_batch)?;
    let decoded: Vec<Decoded> = outputs.iter().map(Decoded::from).collect();
    if world == 1 {
        return in_feature_order(features.len(), &mine, decoded).map(Some);
    }
    let wire = decoded
        .iter()
        .map(Decoded::to_wire)
        .collect::<Result<Vec<_>>>()?;
    let Some(per_rank) = comm.gather_strings(&wire)? else {
        return Ok(None);
    };
    // Rank 0 knows every rank's batches, so the gathered results need no positions.
    let mut order = Vec::with_capacity(batches.len());
    let mut all = Vec::with_capacity(features.len());
    for (rank, texts) in per_rank.iter().enumerate() {
        order.extend(of_rank(rank));
        for t in texts {
            all.push(Decoded::from_wire(t)?);
        }
    }
    if all.len() != features.len() {
        return Err(TrainError::InvalidInput(format!(
            "gathered {} decoded examples for {} features",
            all.len(),
            features.len()
        )));
    }
    in_feature_order(features.len(), &order, all).map(Some)
}

/// Sends rank 0's `value` to every rank exactly (as three integer-valued f32 pieces of its
/// bit pattern: f32 holds integers below 2^24 exactly).
pub fn broadcast_f64(comm: &dyn Communicator, value: f64) -> Result<f64> {
    if comm.world_size() == 1 {
        return Ok(value);
    }
    let bits = value.to_bits();
    let mut buf = [
        (bits & 0x1f_ffff) as f32,
        ((bits >> 21) & 0x1f_ffff) as f32,
        (bits >> 42) as f32,
    ];
    comm.broadcast(&mut buf)?;
    let bits = buf[0] as u64 | (buf[1] as u64) << 21 | (buf[2] as u64) << 42;
    Ok(f64::from_bits(bits))
}

/// Decoded predictions with their ids and gold targets, in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    pub idx: Vec<u64>,
    /// Decoded row 0, cut at its first id 0 (§6.7).
    pub texts: Vec<String>,
    /// Normalized gold targets.
    pub golds: Vec<String>,
}

#[derive(Serialize)]
struct NbestHypothesis<'a> {
    ids: &'a [u32],
    score: f32,
    text: String,
}

#[derive(Serialize)]
struct NbestLine<'a> {
    idx: u64,
    hypotheses: Vec<NbestHypothesis<'a>>,
}

impl Predictions {
    /// Decodes the best row of every output.
    pub fn new(
        tokenizer: &RobertaTokenizer,
        outputs: &[BeamOutput],
        idx: Vec<u64>,
        golds: Vec<String>,
    ) -> Self {
        let texts = outputs
            .iter()
            .map(|o| tokenizer.decode(o.prediction()))
            .collect();
        Self { idx, texts, golds }
    }

    /// [`Predictions::new`] from [`Decoded`] examples (sharded evaluation).
    pub fn from_decoded(
        tokenizer: &RobertaTokenizer,
        decoded: &[Decoded],
        idx: Vec<u64>,
        golds: Vec<String>,
    ) -> Self {
        let texts = decoded
            .iter()
            .map(|d| tokenizer.decode(&d.prediction))
            .collect();
        Self { idx, texts, golds }
    }

    /// Writes `<prefix>.output` and `<prefix>.gold` (`idx<TAB>text` lines) into `dir`.
    pub fn write(&self, dir: &Path, prefix: &str) -> Result<(PathBuf, PathBuf)> {
        let output = dir.join(format!("{prefix}.output"));
        let gold = dir.join(format!("{prefix}.gold"));
        c2n_eval::write_idx_text(&output, self.idx.iter().zip(&self.texts))?;
        c2n_eval::write_idx_text(&gold, self.idx.iter().zip(&self.golds))?;
        Ok((output, gold))
    }

    /// Smoothed BLEU-4 of the in-memory rows against the gold rows, as run.py scores.
    pub fn bleu(&self) -> Result<SmoothedBleu> {
        let gold = Gold::from_pairs(self.idx.iter().zip(&self.golds))?;
        let predictions = c2n_eval::Predictions::from_pairs(self.idx.iter().zip(&self.texts));
        Ok(smoothed_bleu(&gold, &predictions)?)
    }

    /// Writes `nbest.jsonl`: `{"idx", "hypotheses": [{"ids", "score", "text"}]}` per example,
    /// at most `k` hypotheses in rank order, ids without `<s>`/EOS and cut at their first id 0
    /// as the evaluated prediction is (§6.7: a generated `<s>` ends it), so the first
    /// hypothesis is the `*.output` row.
    pub fn write_nbest(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        outputs: &[BeamOutput],
        k: usize,
    ) -> Result<()> {
        self.write_nbest_of(path, tokenizer, outputs.iter().map(|o| &o.hypotheses), k)
    }

    /// [`Predictions::write_nbest`] from [`Decoded`] examples.
    pub fn write_nbest_decoded(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        decoded: &[Decoded],
        k: usize,
    ) -> Result<()> {
        self.write_nbest_of(path, tokenizer, decoded.iter().map(|d| &d.hypotheses), k)
    }

    fn write_nbest_of<'a>(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        per_example: impl Iterator<Item = &'a Vec<Hypothesis>>,
        k: usize,
    ) -> Result<()> {
        let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        for (idx, hyps) in self.idx.iter().zip(per_example) {
            let hypotheses = hyps
                .iter()
                .take(k)
                .map(|h| {
                    // Cut like the evaluated prediction (§6.7), so rank 0 is `*.output`'s row.
                    let ids = cut_at_first_zero(&h.ids);
                    NbestHypothesis {
                        ids,
                        score: h.score,
                        text: tokenizer.decode(ids),
                    }
                })
                .collect();
            let line = serde_json::to_string(&NbestLine {
                idx: *idx,
                hypotheses,
            })
            .map_err(|e| TrainError::parse(path, e))?;
            writeln!(out, "{line}").map_err(|e| TrainError::io(path, e))?;
        }
        out.flush().map_err(|e| TrainError::io(path, e))
    }
}

/// Test-stage features of `examples`, in their order.
pub fn test_features(
    tokenizer: &RobertaTokenizer,
    examples: &[Example],
    max_source_len: usize,
    max_target_len: usize,
) -> Result<Vec<Feature>> {
    let cfg = FeatureConfig {
        max_source_len,
        max_target_len,
        stage: Stage::Test,
    };
    cfg.validate()?;
    Ok(examples
        .iter()
        .map(|e| featurize(tokenizer, e, &cfg))
        .collect::<c2n_data::Result<_>>()?)
}

/// The n-best file an evaluation with `nbest` writes into its output folder (one name
/// whatever the prefix, as the command-line contract has it).
pub const NBEST_FILE: &str = "nbest.jsonl";

/// What [`evaluate_file`] needs.
#[derive(Debug, Clone)]
pub struct EvaluateRequest {
    pub data: PathBuf,
    /// Only the first N examples.
    pub limit: Option<usize>,
    pub generation: GenerationConfig,
    pub max_source_len: usize,
    pub batch_size: usize,
    pub padding: Padding,
    pub output_dir: PathBuf,
    /// Output file prefix (`test` → `test.output`, `test.gold`).
    pub prefix: String,
    /// Write `nbest.jsonl` with this many hypotheses per example.
    pub nbest: Option<usize>,
}

impl EvaluateRequest {
    /// The request a training run's settings make (as its dev evaluation and the pipeline
    /// decode): its lengths, beam size, evaluation batch size and padding; no limit, no
    /// n-best file. A checkpoint written by the trainer keeps them in its
    /// [`TRAIN_CONFIG_FILE`](crate::config::TRAIN_CONFIG_FILE) (`TrainConfig::load`).
    pub fn from_train_config(
        config: &crate::config::TrainConfig,
        data: impl Into<PathBuf>,
        output_dir: impl Into<PathBuf>,
        prefix: &str,
    ) -> Self {
        Self {
            data: data.into(),
            limit: None,
            generation: GenerationConfig {
                beam_size: config.beam_size,
                max_length: config.max_target_len,
                ..Default::default()
            },
            max_source_len: config.max_source_len,
            batch_size: config.eval_batch_size,
            padding: config.padding,
            output_dir: output_dir.into(),
            prefix: prefix.to_string(),
            nbest: None,
        }
    }

    /// Refuses settings that would fail late or quietly do something else.
    pub fn validate(&self) -> Result<()> {
        let length_range = 2..=512;
        let problem = if !length_range.contains(&self.max_source_len) {
            Some(format!(
                "max_source_len = {}: must be between 2 and 512",
                self.max_source_len
            ))
        } else if !length_range.contains(&self.generation.max_length) {
            // It is also the gold targets' truncation length (max_target_len in training).
            Some(format!(
                "generation.max_length = {}: must be between 2 and 512 (it is the target \
                 length too)",
                self.generation.max_length
            ))
        } else if self.batch_size == 0 {
            Some("batch_size must be at least 1".to_string())
        } else if self.nbest == Some(0) {
            Some("nbest must be at least 1".to_string())
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(TrainError::InvalidInput(message));
        }
        self.generation.validate()?;
        let beam = self.generation.effective_beam_size();
        match self.nbest.filter(|&k| k > beam) {
            Some(k) => Err(TrainError::InvalidInput(format!(
                "nbest {k} exceeds the beam size {beam}: a beam keeps only beam-size hypotheses"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;
    use crate::config::TrainConfig;

    #[test]
    fn lengths_are_checked_under_the_names_of_the_request() {
        let ok =
            EvaluateRequest::from_train_config(&TrainConfig::default(), "d.jsonl", "out", "test");
        assert!(ok.validate().is_ok());
        assert_eq!(
            ok.generation.max_length,
            TrainConfig::default().max_target_len
        );
        for max_length in [0, 1, 513] {
            let mut bad = ok.clone();
            bad.generation.max_length = max_length;
            let err = bad.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "generation.max_length = {max_length}: must be between 2 and 512"
                )),
                "{err}"
            );
        }
        let mut bad = ok.clone();
        bad.max_source_len = 600;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_source_len = 600"));
        let mut bad = ok;
        bad.nbest = Some(11);
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("nbest 11 exceeds"));
    }
}

/// Result of [`evaluate_file`].
#[derive(Debug, Clone)]
pub struct EvaluateReport {
    pub bleu: SmoothedBleu,
    pub examples: usize,
    pub output: PathBuf,
    pub gold: PathBuf,
    pub seconds: f64,
}

/// Decodes a jsonl file with beam search, writes `<prefix>.output`/`.gold` (and
/// `nbest.jsonl`), and scores it.
pub fn evaluate_file(
    model: &Seq2Seq,
    tokenizer: &RobertaTokenizer,
    req: &EvaluateRequest,
    on_batch: impl FnMut(usize),
) -> Result<EvaluateReport> {
    evaluate_file_sharded(&SingleComm, model, tokenizer, req, on_batch)?
        .ok_or_else(|| TrainError::InvalidInput("a single rank is always rank 0".into()))
}

/// [`evaluate_file`] over the ranks of `comm`: each rank decodes its batches, rank 0 gathers,
/// writes the files and scores (`Some` there, `None` elsewhere). The files are identical for
/// any number of ranks.
pub fn evaluate_file_sharded(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    tokenizer: &RobertaTokenizer,
    req: &EvaluateRequest,
    on_batch: impl FnMut(usize),
) -> Result<Option<EvaluateReport>> {
    req.validate()?;
    crate::model_setup::check_tokenizer_fits(tokenizer, model)?;
    let start = std::time::Instant::now();
    let (examples, _) = c2n_data::read_first_examples(&req.data, Strictness::Strict, req.limit)?;
    if examples.is_empty() {
        return Err(TrainError::InvalidInput(format!(
            "{}: no example to evaluate",
            req.data.display()
        )));
    }
    let features = test_features(
        tokenizer,
        &examples,
        req.max_source_len,
        req.generation.max_length,
    )?;
    let batching = EvalBatching {
        batch_size: req.batch_size,
        padding: req.padding,
        max_source_len: req.max_source_len,
        max_target_len: req.generation.max_length,
    };
    let Some(decoded) =
        decode_sharded(comm, model, &features, &batching, &req.generation, on_batch)?
    else {
        return Ok(None);
    };
    let predictions = Predictions::from_decoded(
        tokenizer,
        &decoded,
        examples.iter().map(|e| e.idx as u64).collect(),
        examples.iter().map(|e| e.target.clone()).collect(),
    );
    crate::output_dir::create(&req.output_dir)?;
    let (output, gold) = predictions.write(&req.output_dir, &req.prefix)?;
    if let Some(k) = req.nbest {
        predictions.write_nbest_decoded(
            &req.output_dir.join(NBEST_FILE),
            tokenizer,
            &decoded,
            k,
        )?;
    }
    let bleu = predictions.bleu()?;
    Ok(Some(EvaluateReport {
        bleu,
        examples: examples.len(),
        output,
        gold,
        seconds: start.elapsed().as_secs_f64(),
    }))
}
