//! The reference corpus score: the mean of sentence scores × 100 (spec §9.6).

use crate::error::EvalError;
use crate::maps::{Gold, Predictions};
use crate::pyfloat::{python_repr, python_round};
use crate::sentence::SentenceScorer;

/// The CodeXGLUE / code2nl BLEU of a prediction set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedBleu {
    /// Mean smoothed sentence BLEU-4 × 100, unrounded (what the evaluator prints).
    pub bleu: f64,
    /// Gold ids that had a prediction (the evaluator's `Total: N`).
    pub matched: usize,
}

impl SmoothedBleu {
    /// Python `round(bleu, 2)`: what run.py logs and uses to pick `checkpoint-best-bleu`.
    pub fn rounded(&self) -> f64 {
        python_round(self.bleu, 2)
    }
}

impl std::fmt::Display for SmoothedBleu {
    /// The unrounded score as Python prints it (`repr`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&python_repr(self.bleu))
    }
}

/// Scores `predictions` against `gold` exactly like `bleuFromMaps(computeMaps(..))`.
///
/// Gold ids without a prediction are skipped; sentence scores are summed in gold order in f64
/// and the sum is scaled as `(total * 100) / count`.
///
/// ```
/// use c2n_eval::{smoothed_bleu, Gold, Predictions};
/// let gold = Gold::from_text("0\tReturns the value .\n1\tSets the name\n", "<memory>")?;
/// let predictions = Predictions::from_rows(["0\treturns the value .", "1\tSets the name"]);
/// let score = smoothed_bleu(&gold, &predictions)?;
/// assert_eq!((score.bleu, score.matched), (100.0, 2));
/// assert_eq!(score.to_string(), "100.0");
/// # Ok::<(), c2n_eval::EvalError>(())
/// ```
pub fn smoothed_bleu(gold: &Gold, predictions: &Predictions) -> Result<SmoothedBleu, EvalError> {
    let matched = gold.matched(predictions)?;
    let mut scorer = SentenceScorer::default();
    let mut total = 0.0f64;
    for (entry, prediction) in &matched {
        total += scorer.score_texts(&entry.references, prediction);
    }
    Ok(SmoothedBleu {
        bleu: (total * 100.0) / matched.len() as f64,
        matched: matched.len(),
    })
}
