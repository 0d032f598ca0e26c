//! The contract between a model and the beam search: one decoding step over a set of rows.
//!
//! Beam search knows nothing about tensors or layers. It drives a [`NextTokenLogProbs`]
//! session: at every step it says, for each new row, which row of the previous step it
//! continues (`origin`) and which token it appends (`tokens`), and receives the
//! log-probabilities of the next token for every new row. Rows that are not listed in
//! `origin` are dropped, which is how finished examples are frozen and how a KV cache is
//! reordered. The first call has `origin = [0, 1, .., rows-1]` and `tokens` all `<s>` (0):
//! every row starts from the empty prefix.

use crate::beam::select::TopK;
use crate::{ModelError, Result};

/// One decoding session over a fixed set of encoded examples.
pub trait NextTokenLogProbs {
    /// Vocabulary size `V`: the length of each returned row.
    fn vocab_size(&self) -> usize;

    /// Extend row `origin[i]` of the previous step with `tokens[i]` to form the new row `i`,
    /// and return `log_softmax` of the next-token logits for every new row, row-major,
    /// `origin.len() * vocab_size()` values in f32.
    fn step(&mut self, origin: &[u32], tokens: &[u32]) -> Result<Vec<f32>>;

    /// `(examples, rows per example)` the session was built for, when it knows. Beam search
    /// checks it against its own layout: a session built for another beam size or example
    /// count would otherwise hand one example's rows to another without an error.
    fn layout(&self) -> Option<(usize, usize)> {
        None
    }

    /// The longest prefix (`<s>` included) the session can extend a row to, when it knows
    /// (a model's [`max_sequence_len`](crate::ModelConfig::max_sequence_len)). Beam search
    /// feeds prefixes of up to `max_length` tokens, and refuses a longer `max_length` before
    /// its first step rather than failing when the positions run out.
    fn max_prefix_len(&self) -> Option<usize> {
        None
    }

    /// Whether beam search should call [`step_row_top_k`](Self::step_row_top_k) instead of
    /// [`step`](Self::step). Sessions whose log-probabilities live on a GPU say yes: the step
    /// then copies `rows × k` candidates to the host instead of `rows × V` log-probabilities.
    fn prefers_row_top_k(&self) -> bool {
        false
    }

    /// The same step as [`step`](Self::step), but returns the best `k` candidates
    /// `row_scores[r] + logp[r, w]` of every new row (`row_scores: None`: the log-probabilities
    /// themselves, no addition).
    ///
    /// Beam search only needs these: adding the row score is a per-row shift, so the K best of
    /// an example's `K × V` candidates are among the K best of each of its rows. The default
    /// ranks the rows of [`step`](Self::step) on the host.
    fn step_row_top_k(
        &mut self,
        origin: &[u32],
        tokens: &[u32],
        row_scores: Option<&[f32]>,
        k: usize,
    ) -> Result<RowTopK> {
        let logp = self.step(origin, tokens)?;
        row_top_k_host(&logp, self.vocab_size(), row_scores, k)
    }
}

/// Ranks every row of row-major `[rows, vocab]` log-probabilities on the host (see
/// [`NextTokenLogProbs::step_row_top_k`]); `k` is capped at `vocab`.
pub fn row_top_k_host(
    logp: &[f32],
    vocab: usize,
    row_scores: Option<&[f32]>,
    k: usize,
) -> Result<RowTopK> {
    if vocab == 0 || !logp.len().is_multiple_of(vocab) {
        return Err(ModelError::InvalidInput(format!(
            "{} log-probabilities do not form rows of vocabulary {vocab}",
            logp.len()
        )));
    }
    let rows = logp.len() / vocab;
    if let Some(scores) = row_scores {
        if scores.len() != rows {
            return Err(ModelError::InvalidInput(format!(
                "{} row scores for {rows} rows",
                scores.len()
            )));
        }
    }
    let k = k.min(vocab);
    let mut values = Vec::with_capacity(rows * k);
    let mut tokens = Vec::with_capacity(rows * k);
    let mut top = TopK::new(k);
    for (r, row) in logp.chunks_exact(vocab).enumerate() {
        top.clear();
        match row_scores {
            Some(scores) => top.offer_row(row, scores[r], 0),
            None => {
                for (w, &value) in row.iter().enumerate() {
                    top.offer(value, w as u32);
                }
            }
        }
        for &(value, token) in top.entries() {
            values.push(value);
            tokens.push(token);
        }
    }
    Ok(RowTopK { k, values, tokens })
}

/// The best `k` candidates of every row of one step, ranked where the log-probabilities live.
///
/// Row `r` holds entries `r·k .. (r+1)·k` of `values` and `tokens`, in rank order under the
/// [tie rule](crate::beam::select): value `row_score[r] + logp[r, w]` (an `f32` addition, as the
/// reference adds) higher first, equal values by lower token id first.
#[derive(Debug, Clone, PartialEq)]
pub struct RowTopK {
    /// Entries kept per row.
    pub k: usize,
    /// Candidate values, `rows × k`.
    pub values: Vec<f32>,
    /// Token ids of the candidates, `rows × k`.
    pub tokens: Vec<u32>,
}

impl RowTopK {
    /// No rows (a step after every row was dropped).
    pub fn empty(k: usize) -> Self {
        Self {
            k,
            values: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Number of complete rows (of both values and tokens, so [`RowTopK::row`] of any row
    /// below it is in range).
    pub fn rows(&self) -> usize {
        self.values
            .len()
            .min(self.tokens.len())
            .checked_div(self.k)
            .unwrap_or(0)
    }

    /// `(value, token)` entries of row `r`, in rank order.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (f32, u32)> + '_ {
        let range = r * self.k..(r + 1) * self.k;
        self.values[range.clone()]
            .iter()
            .copied()
            .zip(self.tokens[range].iter().copied())
    }
}
