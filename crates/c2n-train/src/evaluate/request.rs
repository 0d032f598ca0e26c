//! One jsonl file decoded, written and scored: what the `evaluate` example runs.

use super::{decode_sharded, EvalBatching, Predictions};
use crate::comm::{Communicator, SingleComm};
use crate::{Result, TrainError};
use c2n_data::{
    featurize, Example, Feature, FeatureConfig, Padding, RobertaTokenizer, Stage, Strictness,
};
use c2n_eval::SmoothedBleu;
use c2n_model::generation::GenerationConfig;
use c2n_model::Seq2Seq;
use std::path::PathBuf;

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
