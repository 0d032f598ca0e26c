//! Sentence-level smoothed BLEU-4 of the reference `bleu.py` (spec §9.5), bit for bit.

use crate::ngram::{NgramCounter, NgramStats, MAX_ORDER};
use crate::normalize::BleuTokens;

/// `sys.float_info.min`: added inside every logarithm by the reference.
pub const EPSILON: f64 = 2.2250738585072014e-308;

/// The smoothed BLEU-4 of one hypothesis from its n-gram statistics and lengths.
///
/// `reflen` is the length of the shortest reference, `testlen` the hypothesis length.
/// Orders 2–4 get add-one smoothing on both counts; the brevity penalty adds one to both lengths.
/// The f64 operations follow the reference's order exactly.
pub fn smoothed_bleu_from_stats(stats: &NgramStats, reflen: usize, testlen: usize) -> f64 {
    let mut logbleu = 0.0f64;
    for k in 0..MAX_ORDER {
        let smooth = if k == 0 { 0 } else { 1 };
        let correct = (stats.correct[k] + smooth) as f64 + EPSILON;
        let guess = (stats.total[k] + smooth) as f64 + EPSILON;
        logbleu += correct.ln() - guess.ln();
    }
    logbleu /= MAX_ORDER as f64;
    let ratio = (reflen + 1) as f64 / (testlen + 1) as f64;
    let brevity = (1.0 - ratio).min(0.0);
    // Python's `min(0, x)` returns the int 0 when x >= 0; adding 0 or 0.0 is the same here.
    (logbleu + brevity).exp()
}

/// Scores hypotheses against references with reusable buffers.
///
/// ```
/// use c2n_eval::{BleuTokens, SentenceScorer};
/// let mut scorer = SentenceScorer::default();
/// let hyp = BleuTokens::new("Returns the value");
/// let reference = BleuTokens::new("returns THE value");
/// assert_eq!(scorer.score(&[reference], &hyp), 1.0);
/// ```
#[derive(Debug, Default)]
pub struct SentenceScorer {
    counter: NgramCounter,
    hypothesis: BleuTokens,
    references: Vec<BleuTokens>,
}

impl SentenceScorer {
    /// Smoothed BLEU-4 in `[0, 1]` of `hypothesis` against `references` (max clipping over
    /// references, shortest reference length). With no reference the score is 0.
    pub fn score(&mut self, references: &[BleuTokens], hypothesis: &BleuTokens) -> f64 {
        score_tokens(&mut self.counter, references, hypothesis)
    }

    /// [`SentenceScorer::score`] of raw texts, normalizing them into reused buffers.
    pub fn score_texts<S: AsRef<str>>(&mut self, references: &[S], hypothesis: &str) -> f64 {
        self.hypothesis.reset(hypothesis);
        self.references
            .resize_with(references.len(), BleuTokens::default);
        for (tokens, text) in self.references.iter_mut().zip(references) {
            tokens.reset(text.as_ref());
        }
        score_tokens(&mut self.counter, &self.references, &self.hypothesis)
    }
}

fn score_tokens(
    counter: &mut NgramCounter,
    references: &[BleuTokens],
    hypothesis: &BleuTokens,
) -> f64 {
    let Some(reflen) = references.iter().map(BleuTokens::len).min() else {
        return 0.0;
    };
    let stats = counter.count(hypothesis.iter(), references.iter().map(BleuTokens::iter));
    smoothed_bleu_from_stats(&stats, reflen, hypothesis.len())
}

/// Smoothed sentence BLEU-4 in `[0, 1]` of raw texts, normalized as the reference does.
///
/// An empty hypothesis scores `exp(−reflen)`, not 0:
/// ```
/// let score = c2n_eval::sentence_bleu(&["a b c d"], "");
/// assert_eq!(score, (-4.0f64).exp());
/// ```
pub fn sentence_bleu(references: &[&str], hypothesis: &str) -> f64 {
    SentenceScorer::default().score_texts(references, hypothesis)
}
