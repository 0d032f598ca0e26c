//! Optional early stopping on the dev metric that selects checkpoints.
//!
//! The reference has none (it trains for the full schedule); with `patience = None` this
//! never stops. With `Some(p)`, training ends after `p` consecutive evaluations without an
//! improvement of the watched metric (as decided by [`crate::checkpoint_policy`]).

use serde::{Deserialize, Serialize};

/// Which improvement resets the patience counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StopMetric {
    /// Rounded dev BLEU (best-bleu rule).
    #[default]
    Bleu,
    /// Dev loss (best-ppl rule).
    Loss,
}

/// Patience counter (part of the resumable train state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EarlyStopping {
    pub patience: Option<u32>,
    pub metric: StopMetric,
    /// Evaluations since the last improvement.
    pub stale_evaluations: u32,
}

impl EarlyStopping {
    pub fn new(patience: Option<u32>, metric: StopMetric) -> Self {
        Self {
            patience,
            metric,
            stale_evaluations: 0,
        }
    }

    /// Whether the evaluations so far have stopped training (a resumed run that had).
    pub fn has_stopped(&self) -> bool {
        self.patience.is_some_and(|p| self.stale_evaluations >= p)
    }

    /// Records one evaluation; returns `true` when training should stop now.
    pub fn observe(&mut self, loss_improved: bool, bleu_improved: bool) -> bool {
        let improved = match self.metric {
            StopMetric::Bleu => bleu_improved,
            StopMetric::Loss => loss_improved,
        };
        if improved {
            self.stale_evaluations = 0;
        } else {
            self.stale_evaluations += 1;
        }
        self.has_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_stale_evaluations_only() {
        let mut never = EarlyStopping::new(None, StopMetric::Bleu);
        assert!(!(0..100).any(|_| never.observe(false, false)));
        let mut es = EarlyStopping::new(Some(2), StopMetric::Loss);
        assert!(!es.observe(false, true));
        assert!(!es.observe(true, false)); // loss improved: reset
        assert!(!es.observe(false, true));
        assert!(es.observe(false, true));
    }
}
