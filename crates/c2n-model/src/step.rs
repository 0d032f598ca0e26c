//! The contract between a model and the beam search: one decoding step over a set of rows.
//!
//! Beam search knows nothing about tensors or layers. It drives a [`NextTokenLogProbs`]
//! session: at every step it says, for each new row, which row of the previous step it
//! continues (`origin`) and which token it appends (`tokens`), and receives the
//! log-probabilities of the next token for every new row. Rows that are not listed in
//! `origin` are dropped, which is how finished examples are frozen and how a KV cache is
//! reordered. The first call has `origin = [0, 1, .., rows-1]` and `tokens` all `<s>` (0):
//! every row starts from the empty prefix.

use crate::Result;

/// One decoding session over a fixed set of encoded examples.
pub trait NextTokenLogProbs {
    /// Vocabulary size `V`: the length of each returned row.
    fn vocab_size(&self) -> usize;

    /// Extend row `origin[i]` of the previous step with `tokens[i]` to form the new row `i`,
    /// and return `log_softmax` of the next-token logits for every new row, row-major,
    /// `origin.len() * vocab_size()` values in f32.
    fn step(&mut self, origin: &[u32], tokens: &[u32]) -> Result<Vec<f32>>;
}
