//! Which checkpoints an evaluation writes (spec §8.3).
//!
//! * `checkpoint-last`: at every evaluation;
//! * `checkpoint-best-ppl`: when the dev loss is strictly below the best so far, compared
//!   unrounded, starting from 1e6;
//! * `checkpoint-best-bleu`: when `round(dev_bleu, 2)` is strictly above the best rounded
//!   value so far, starting from 0 — so a tie keeps the earlier checkpoint and a run whose
//!   BLEU always rounds to 0.0 never writes one.
//!
//! ```
//! use c2n_train::checkpoint_policy::CheckpointPolicy;
//! let mut policy = CheckpointPolicy::default();
//! assert!(policy.observe_dev_loss(3.2));
//! assert!(!policy.observe_dev_loss(3.2)); // strict
//! assert!(policy.observe_dev_bleu(10.004).improved);
//! assert!(!policy.observe_dev_bleu(10.001).improved); // both round to 10.0
//! ```

use serde::{Deserialize, Serialize};

/// Directory name of the checkpoint written at every evaluation (and at the end of a run).
pub const LAST: &str = "checkpoint-last";
/// Directory name of the best-perplexity checkpoint.
pub const BEST_PPL: &str = "checkpoint-best-ppl";
/// Directory name of the best-BLEU checkpoint.
pub const BEST_BLEU: &str = "checkpoint-best-bleu";

/// Python's `round(x, 2)`: rounds the exact binary value, ties to even. Rust's `{:.2}`
/// formatting rounds the exact value the same way, and parsing it back gives Python's f64.
pub fn python_round2(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.2}").parse().unwrap_or(x)
}

/// The best scores so far (part of the resumable train state).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckpointPolicy {
    /// Best unrounded dev loss; starts at 1e6.
    pub best_loss: f64,
    /// Best rounded dev BLEU; starts at 0.
    pub best_bleu: f64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            best_loss: 1e6,
            best_bleu: 0.0,
        }
    }
}

/// Outcome of one dev-BLEU observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleuDecision {
    /// `round(bleu, 2)`, the value that is logged and compared.
    pub rounded: f64,
    /// Whether `checkpoint-best-bleu` must be written.
    pub improved: bool,
}

impl CheckpointPolicy {
    /// The best dev loss once one beat the starting value (a best-ppl checkpoint exists).
    pub fn recorded_best_loss(&self) -> Option<f64> {
        (self.best_loss < Self::default().best_loss).then_some(self.best_loss)
    }

    /// The best dev BLEU once one beat the starting 0 (a best-BLEU checkpoint exists).
    pub fn recorded_best_bleu(&self) -> Option<f64> {
        (self.best_bleu > Self::default().best_bleu).then_some(self.best_bleu)
    }

    /// Records a dev loss; `true` when `checkpoint-best-ppl` must be written.
    pub fn observe_dev_loss(&mut self, dev_loss: f64) -> bool {
        let improved = dev_loss < self.best_loss;
        if improved {
            self.best_loss = dev_loss;
        }
        improved
    }

    /// Records an unrounded dev BLEU (0–100 scale).
    pub fn observe_dev_bleu(&mut self, bleu: f64) -> BleuDecision {
        let rounded = python_round2(bleu);
        let improved = rounded > self.best_bleu;
        if improved {
            self.best_bleu = rounded;
        }
        BleuDecision { rounded, improved }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_matches_cpython_on_binary_ties() {
        // CPython: round(2.675, 2) == 2.67, round(0.125, 2) == 0.12, round(0.375, 2) == 0.38,
        // round(17.825, 2) == 17.82, round(1.005, 2) == 1.0
        assert_eq!(python_round2(2.675), 2.67);
        assert_eq!(python_round2(0.125), 0.12);
        assert_eq!(python_round2(0.375), 0.38);
        assert_eq!(python_round2(17.825), 17.82);
        assert_eq!(python_round2(1.005), 1.0);
    }

    #[test]
    fn bleu_all_zero_never_saves_and_loss_starts_at_1e6() {
        let mut p = CheckpointPolicy::default();
        assert!(!p.observe_dev_bleu(0.004).improved);
        assert!(!p.observe_dev_loss(1e6));
        assert!(p.observe_dev_loss(999_999.9));
        let d = p.observe_dev_bleu(0.005_000_1);
        assert_eq!((d.rounded, d.improved), (0.01, true));
    }
}
