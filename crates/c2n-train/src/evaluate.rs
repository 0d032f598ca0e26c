//! Evaluation shared by the training loop and the `evaluate` example (spec §8).
//!
//! * [`dev_loss`]: teacher-forced loss over a whole feature set in sequential batches,
//!   summing the f32 `loss × N_act` and `N_act` of every batch in f64 (§8.1);
//! * [`decode`]: batched, KV-cached beam search over features (test stage), one
//!   [`BeamOutput`] per example (§6, §8.2);
//! * [`Predictions`]: decoded texts in CodeXGLUE `idx<TAB>text` files, `nbest.jsonl`, and the
//!   smoothed BLEU-4 of the in-memory rows against the gold rows (§8.2 step 4);
//! * [`evaluate_file`]: all of the above for one jsonl file (the `evaluate` example).

use crate::tensors::BatchTensors;
use crate::{Result, TrainError};
use c2n_data::{
    featurize, make_batch, Example, Feature, FeatureConfig, Padding, RobertaTokenizer, Stage,
    Strictness,
};
use c2n_eval::{smoothed_bleu, Gold, SmoothedBleu};
use c2n_model::beam::{beam_search, BeamOutput};
use c2n_model::generation::GenerationConfig;
use c2n_model::{KvCacheSession, Seq2Seq};
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

/// Source/target padding lengths of a chunk of features.
fn chunk_lengths(
    chunk: &[Feature],
    padding: Padding,
    max_source_len: usize,
    max_target_len: usize,
) -> (usize, usize) {
    match padding {
        Padding::Reference => (max_source_len, max_target_len),
        Padding::Dynamic => chunk.iter().fold((1, 2), |(s, t), f| {
            (s.max(f.source_ids.len()), t.max(f.target_ids.len()))
        }),
    }
}

/// Teacher-forced loss over `features` in order, `batch_size` at a time, eval mode.
pub fn dev_loss(
    model: &Seq2Seq,
    features: &[Feature],
    batch_size: usize,
    padding: Padding,
    max_source_len: usize,
    max_target_len: usize,
) -> Result<DevLoss> {
    let mut out = DevLoss {
        loss_sum: 0.0,
        tokens: 0,
    };
    for chunk in features.chunks(batch_size.max(1)) {
        let (s, t) = chunk_lengths(chunk, padding, max_source_len, max_target_len);
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
        out.loss_sum += f64::from(loss.loss_sum.to_scalar::<f32>()?);
        out.tokens += loss.n_active as u64;
    }
    Ok(out)
}

/// Beam search over `features` (only the source side is used), `batch_size` examples per
/// session; with reference settings each result equals decoding the example alone.
pub fn decode(
    model: &Seq2Seq,
    features: &[Feature],
    batch_size: usize,
    generation: &GenerationConfig,
    padding: Padding,
    max_source_len: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<BeamOutput>> {
    let mut outputs = Vec::with_capacity(features.len());
    for chunk in features.chunks(batch_size.max(1)) {
        let (s, _) = chunk_lengths(chunk, padding, max_source_len, 2);
        let positions: Vec<usize> = (0..chunk.len()).collect();
        let batch = make_batch(chunk, &positions, s, 2);
        let x = BatchTensors::new(&batch, model.device())?;
        let mut session = KvCacheSession::new(
            model,
            &x.source_ids,
            &x.source_mask,
            generation.effective_beam_size(),
        )?;
        outputs.extend(beam_search(&mut session, chunk.len(), generation)?);
        on_batch(chunk.len());
    }
    Ok(outputs)
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
    /// at most `k` hypotheses in rank order, ids without `<s>`/EOS.
    pub fn write_nbest(
        &self,
        path: &Path,
        tokenizer: &RobertaTokenizer,
        outputs: &[BeamOutput],
        k: usize,
    ) -> Result<()> {
        let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        for (idx, output) in self.idx.iter().zip(outputs) {
            let hypotheses = output
                .hypotheses
                .iter()
                .take(k)
                .map(|h| NbestHypothesis {
                    ids: &h.ids,
                    score: h.score,
                    text: tokenizer.decode(&h.ids),
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
    let start = std::time::Instant::now();
    let (mut examples, _) = c2n_data::read_examples(&req.data, Strictness::Strict)?;
    if let Some(limit) = req.limit {
        examples.truncate(limit);
    }
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
    let outputs = decode(
        model,
        &features,
        req.batch_size,
        &req.generation,
        req.padding,
        req.max_source_len,
        on_batch,
    )?;
    let predictions = Predictions::new(
        tokenizer,
        &outputs,
        examples.iter().map(|e| e.idx as u64).collect(),
        examples.iter().map(|e| e.target.clone()).collect(),
    );
    std::fs::create_dir_all(&req.output_dir).map_err(|e| TrainError::io(&req.output_dir, e))?;
    let (output, gold) = predictions.write(&req.output_dir, &req.prefix)?;
    if let Some(k) = req.nbest {
        predictions.write_nbest(&req.output_dir.join("nbest.jsonl"), tokenizer, &outputs, k)?;
    }
    let bleu = predictions.bleu()?;
    Ok(EvaluateReport {
        bleu,
        examples: examples.len(),
        output,
        gold,
        seconds: start.elapsed().as_secs_f64(),
    })
}
