//! What the `bleu` command prints, as a library call so that it can be tested.

use std::path::Path;

use crate::corpus::smoothed_bleu;
use crate::error::EvalError;
use crate::maps::{Gold, Predictions};
use crate::sacre::sacrebleu_corpus;

/// Which number to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// The code2nl / CodeXGLUE smoothed BLEU-4 (mean of sentence scores × 100).
    #[default]
    CodeXglue,
    /// sacreBLEU-style corpus BLEU-4 (a different metric).
    SacreBleu,
}

/// The evaluator's output: `Total: {matched}` on stderr, `score` as the last stdout line.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorOutput {
    /// Gold ids with a prediction.
    pub matched: usize,
    /// Gold rows in all: more than `matched` when some have no prediction, which the
    /// reference skips without a word (the score covers the matched ones only).
    pub gold: usize,
    /// The unrounded score.
    pub score: f64,
    /// The score as Python's `print` shows it (`repr`).
    pub printed: String,
    /// Prediction ids that no gold row has, sorted: the reference ignores them without a
    /// word (a byte-order mark before the first id makes one of these).
    pub unmatched_predictions: Vec<String>,
}

/// Scores a gold file against prediction rows, like `evaluator.py GOLD < PRED`.
///
/// `predictions` is a file, or `None` to read `stdin` (any reader, named `<stdin>` in errors).
pub fn evaluate(
    gold: &Path,
    predictions: Option<&Path>,
    stdin: impl std::io::Read,
    metric: Metric,
) -> Result<EvaluatorOutput, EvalError> {
    let gold = Gold::read(gold)?;
    let predictions = match predictions {
        Some(path) => Predictions::read(path)?,
        None => Predictions::read_from(stdin, "<stdin>")?,
    };
    let mut unmatched_predictions: Vec<String> = predictions
        .ids()
        .filter(|id| !gold.contains(id))
        .map(str::to_string)
        .collect();
    unmatched_predictions.sort();
    Ok(match metric {
        Metric::CodeXglue => {
            let score = smoothed_bleu(&gold, &predictions)?;
            EvaluatorOutput {
                matched: score.matched,
                gold: gold.len(),
                score: score.bleu,
                printed: score.to_string(),
                unmatched_predictions,
            }
        }
        Metric::SacreBleu => {
            let score = sacrebleu_corpus(&gold, &predictions)?;
            EvaluatorOutput {
                matched: gold.matched(&predictions)?.len(),
                gold: gold.len(),
                score: score.score,
                printed: score.to_string(),
                unmatched_predictions,
            }
        }
    })
}
