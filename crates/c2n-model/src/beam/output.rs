//! What a beam search returns for one example.

use serde::{Deserialize, Serialize};

/// One ranked entry of `getFinal`: a hypothesis that ended at step `step` in row `row`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinalEntry {
    /// Sum of the f32 log-probabilities of its tokens (EOS included when finished).
    pub score: f32,
    /// Step `t ≥ 1` at which it ended (the last step for unfinished entries).
    pub step: usize,
    /// Row `k` it occupied at that step.
    pub row: usize,
}

/// One n-best entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// Generated token ids without `<s>` and cut before the first EOS.
    pub ids: Vec<u32>,
    /// Raw sum of log-probabilities (also with a length penalty, which only changes ranks).
    pub score: f32,
}

/// The decoding result of one example.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamOutput {
    /// K hypotheses in rank order (reference `getFinal` order). They need not differ: when
    /// no hypothesis reached EOS, `getFinal` puts row 0 first and then every unfinished row,
    /// row 0 included, so the best hypothesis appears twice.
    pub hypotheses: Vec<Hypothesis>,
    /// The reference's `[K, max_length]` rows: the hypotheses right-padded with id 0.
    pub rows: Vec<Vec<u32>>,
    /// The K `(score, t, k)` entries behind `hypotheses`.
    pub final_entries: Vec<FinalEntry>,
    /// Steps the beam advanced.
    pub steps: usize,
    /// Whether `done()` stopped the search before `max_length` steps (the reference driver's
    /// `break`); a beam that becomes done at its last step ran `max_length` steps, like one
    /// that never does.
    pub done: bool,
    /// Whether row 0 ever ended in EOS.
    pub eos_top: bool,
    /// Entries appended by `advance` (before `getFinal` adds any substitute), in order.
    pub finished: Vec<FinalEntry>,
}

impl BeamOutput {
    /// The prediction the reference evaluates: row 0 cut at its first id 0 (§6.7).
    pub fn prediction(&self) -> &[u32] {
        self.rows
            .first()
            .map(|row| super::cut_at_first_zero(row))
            .unwrap_or(&[])
    }
}
