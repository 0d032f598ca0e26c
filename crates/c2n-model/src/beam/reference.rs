//! The reference beam state machine of one example (reference-semantics §6.2–6.6).
//!
//! A [`Beam`] holds K rows. Every [`Beam::advance`] takes the `[K, V]` next-token
//! log-probabilities of the current rows and keeps the K best one-token extensions:
//!
//! - **First step**: the candidates are row 0 only (all rows are the same empty prefix).
//! - **Later steps**: `cand[k, w] = logp[k, w] + scores[k]` as an `f32` addition, and every
//!   row whose last token is EOS is **assigned** −1e20 (a finished hypothesis cannot grow).
//! - The K best of the flattened candidates under the [tie rule](super::select) become the
//!   new rows: `origin = flat / V`, `word = flat − origin·V`.
//! - Rows that chose EOS are appended to `finished` as `(score, t, k)` in k order; if row 0
//!   chose EOS, `eos_top` is set for good.
//!
//! [`Beam::done`] (`eos_top` and at least K finished) is checked before every step by the
//! drivers. [`Beam::final_entries`] ranks finished hypotheses first and unfinished ones
//! after them, substituting row 0 when nothing finished; [`Beam::hypothesis`] walks the
//! back-pointers and [`build_target_tokens`] cuts at the first EOS.

use super::output::{BeamOutput, FinalEntry, Hypothesis};
use super::rules::BeamRules;
use super::select::{rank_value, select_top_k_full_sort, TopK};
use super::tie_order::TieOrder;
use super::torch_order::{select_top_k_torch_cpu, torch_cpu_uses_heap, TorchHeapTopK};
use crate::{ModelError, Result, RowTopK};

/// The value assigned to every candidate of a row that already ended in EOS.
pub const DEAD_ROW_SCORE: f32 = -1e20;

/// How [`Beam::advance`] finds the K best candidates under the lower-index tie order; both
/// give identical results. (The torch-CPU order has its own selection.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    /// Materialize all `K × V` candidates and sort them: the literal reference algorithm.
    #[default]
    FullSort,
    /// One pass with a bounded top-K; dead rows contribute only their first K words.
    Streaming,
}

/// Beam state of one example.
#[derive(Debug, Clone)]
pub struct Beam {
    size: usize,
    eos: u32,
    rules: BeamRules,
    selection: Selection,
    tie_order: TieOrder,
    /// Score of every current row (f32 sums of log-probabilities).
    scores: Vec<f32>,
    /// `back[j][k]`: row of step j that row k of step j+1 extends.
    back: Vec<Vec<u32>>,
    /// `toks[j][k]`: token of row k at step j; `toks[0]` is all `<s>`.
    toks: Vec<Vec<u32>>,
    eos_top: bool,
    finished: Vec<FinalEntry>,
    top_k: TopK,
    torch_top_k: TorchHeapTopK,
}

impl Beam {
    /// The reference beam: K rows, `<s>` = `sos`, end token `eos`, full-sort selection, the
    /// [`Auto`](TieOrder::Auto) tie order.
    pub fn new(size: usize, sos: u32, eos: u32) -> Self {
        Self::with_rules(size, sos, eos, BeamRules::default(), Selection::FullSort)
    }

    /// A beam with extra decoding rules and a choice of candidate selection.
    pub fn with_rules(
        size: usize,
        sos: u32,
        eos: u32,
        rules: BeamRules,
        selection: Selection,
    ) -> Self {
        let mut first = vec![0; size];
        if let Some(row0) = first.first_mut() {
            *row0 = sos;
        }
        Self {
            size,
            eos,
            rules,
            selection,
            tie_order: TieOrder::Auto,
            scores: vec![0.0; size],
            back: Vec::new(),
            toks: vec![first],
            eos_top: false,
            finished: Vec::new(),
            top_k: TopK::new(size),
            torch_top_k: TorchHeapTopK::new(size),
        }
    }

    /// This beam with another [tie order](TieOrder). With [`Auto`](TieOrder::Auto),
    /// [`advance`](Self::advance) (full rows, ranked on the host) orders ties as torch does on
    /// the CPU and [`advance_row_top_k`](Self::advance_row_top_k) (rows ranked on a device) by
    /// lower index.
    pub fn with_tie_order(mut self, tie_order: TieOrder) -> Self {
        self.tie_order = tie_order;
        self
    }

    /// Number of rows K.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Steps taken so far (`len(toks) − 1`).
    pub fn steps(&self) -> usize {
        self.toks.len() - 1
    }

    /// Current row scores.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// Last token of every row (the reference's current state).
    pub fn current_tokens(&self) -> &[u32] {
        self.toks.last().map(Vec::as_slice).unwrap_or(&[])
    }

    /// Row of the previous step that every row extends; `None` before the first step.
    pub fn current_origin(&self) -> Option<&[u32]> {
        self.back.last().map(Vec::as_slice)
    }

    /// Whether row 0 has ever chosen EOS (sticky).
    pub fn eos_top(&self) -> bool {
        self.eos_top
    }

    /// Hypotheses that ended in EOS, in the order `advance` found them.
    pub fn finished(&self) -> &[FinalEntry] {
        &self.finished
    }

    /// Whether this beam needs full log-probability rows: its rules mask tokens, or ties
    /// must be ordered as torch orders them on the CPU.
    pub(crate) fn needs_full_rows(&self) -> bool {
        self.rules.masks_tokens() || self.tie_order == TieOrder::TorchCpu
    }

    /// The reference stop test: the top row ended at some step and ≥ K hypotheses finished.
    /// With `early_stopping` the first condition is dropped.
    pub fn done(&self) -> bool {
        (self.eos_top || self.rules.early_stopping) && self.finished.len() >= self.size
    }

    /// One step with the row-major `[K, V]` log-probabilities of the current rows.
    pub fn advance(&mut self, logp: &[f32], vocab: usize) -> Result<()> {
        let k = self.size;
        if k == 0 || vocab < k {
            return Err(ModelError::InvalidInput(format!(
                "beam of {k} rows needs 1 ≤ K ≤ vocabulary size, got V = {vocab}"
            )));
        }
        if logp.len() != k * vocab {
            return Err(ModelError::InvalidInput(format!(
                "beam advance expects {k} × {vocab} = {} log-probabilities, got {}",
                k * vocab,
                logp.len()
            )));
        }
        let step = self.toks.len();
        let masked;
        let logp = if self.rules.masks_tokens() {
            masked = self.masked_logp(logp, vocab, step);
            masked.as_slice()
        } else {
            logp
        };
        let selected = match (self.tie_order.resolve(false), self.selection) {
            (TieOrder::LowerIndex, Selection::FullSort) => self.select_full_sort(logp, vocab),
            (TieOrder::LowerIndex, Selection::Streaming) => self.select_streaming(logp, vocab),
            _ => self.select_torch_cpu(logp, vocab),
        };
        self.apply_selection(&selected, vocab, step);
        Ok(())
    }

    /// One step from each current row's best candidates instead of all log-probabilities.
    ///
    /// Rows `first_row .. first_row + K` of `top` are this beam's rows; before the first
    /// step they must be the bare log-probabilities (only row 0 is used), afterwards
    /// `scores()[k] + logp[k, w]` (see [`NextTokenLogProbs::step_row_top_k`]). The result is
    /// the same as [`advance`](Self::advance) on the full rows, because the K best candidates
    /// of the beam are among the K best of each row. Ties are ordered by lower index (also
    /// under [`TieOrder::Auto`]); rules that mask tokens and the torch-CPU tie order need the
    /// full rows: with them this returns an error.
    ///
    /// [`NextTokenLogProbs::step_row_top_k`]: crate::NextTokenLogProbs::step_row_top_k
    pub fn advance_row_top_k(
        &mut self,
        top: &RowTopK,
        first_row: usize,
        vocab: usize,
    ) -> Result<()> {
        let k = self.size;
        if self.rules.masks_tokens() {
            return Err(ModelError::InvalidInput(
                "min_length and no_repeat_ngram_size need full log-probability rows".into(),
            ));
        }
        if self.tie_order == TieOrder::TorchCpu {
            return Err(ModelError::InvalidInput(
                "the torch-cpu tie order needs full log-probability rows".into(),
            ));
        }
        if k == 0 || vocab < k || top.k < k || top.rows() < first_row + k {
            return Err(ModelError::InvalidInput(format!(
                "beam of {k} rows (vocabulary {vocab}) cannot use rows {first_row}..{} of {} \
                 with {} candidates each",
                first_row + k,
                top.rows(),
                top.k
            )));
        }
        let step = self.toks.len();
        let mut selector = std::mem::replace(&mut self.top_k, TopK::new(0));
        selector.clear();
        // The selector needs increasing flat indices: offer each row's entries by token id.
        let mut row_entries: Vec<(f32, u32)> = Vec::with_capacity(top.k);
        let live_rows = if self.back.is_empty() { 1 } else { k };
        for row in 0..live_rows {
            let base = (row * vocab) as u32;
            if !self.back.is_empty() && self.is_dead(row) {
                for word in 0..k {
                    selector.offer(DEAD_ROW_SCORE, base + word as u32);
                }
                continue;
            }
            row_entries.clear();
            row_entries.extend(top.row(first_row + row));
            if let Some(&(_, bad)) = row_entries.iter().find(|e| e.1 as usize >= vocab) {
                self.top_k = selector;
                return Err(ModelError::InvalidInput(format!(
                    "candidate token {bad} out of range (vocabulary {vocab})"
                )));
            }
            row_entries.sort_unstable_by_key(|e| e.1);
            for &(value, word) in &row_entries {
                selector.offer(value, base + word);
            }
        }
        let selected = selector.entries().to_vec();
        self.top_k = selector;
        self.apply_selection(&selected, vocab, step);
        Ok(())
    }

    /// Make the selected `(value, flat_index)` candidates the new rows.
    fn apply_selection(&mut self, selected: &[(f32, u32)], vocab: usize, step: usize) {
        let k = self.size;
        let mut origin = Vec::with_capacity(k);
        let mut word = Vec::with_capacity(k);
        for (slot, &(value, flat)) in selected.iter().enumerate() {
            let row = flat / vocab as u32;
            origin.push(row);
            word.push(flat - row * vocab as u32);
            self.scores[slot] = value;
        }
        for (row, &token) in word.iter().enumerate() {
            if token == self.eos {
                self.finished.push(FinalEntry {
                    score: self.scores[row],
                    step,
                    row,
                });
            }
        }
        if word[0] == self.eos {
            self.eos_top = true;
        }
        self.back.push(origin);
        self.toks.push(word);
    }

    fn is_dead(&self, row: usize) -> bool {
        !self.back.is_empty() && self.current_tokens()[row] == self.eos
    }

    fn select_full_sort(&self, logp: &[f32], vocab: usize) -> Vec<(f32, u32)> {
        if self.back.is_empty() {
            return select_top_k_full_sort(&logp[..vocab], self.size);
        }
        select_top_k_full_sort(&self.flat_candidates(logp, vocab), self.size)
    }

    fn select_streaming(&mut self, logp: &[f32], vocab: usize) -> Vec<(f32, u32)> {
        let mut top = std::mem::replace(&mut self.top_k, TopK::new(0));
        top.clear();
        // A dead row's V values are equal: only its K lowest indices can ever be chosen.
        self.offer_candidates(logp, vocab, self.size.min(vocab), &mut top);
        let selected = top.entries().to_vec();
        self.top_k = top;
        selected
    }

    /// Offer this step's candidates in flat index order: the bare log-probabilities of row 0
    /// at the first step, else `score + logp` per live row and −1e20 for the first
    /// `dead_row_words` words of each row that ended in EOS.
    fn offer_candidates(
        &self,
        logp: &[f32],
        vocab: usize,
        dead_row_words: usize,
        sink: &mut impl CandidateSink,
    ) {
        if self.back.is_empty() {
            // Bare values (adding a 0.0 score would turn -0.0 into 0.0).
            for (word, &value) in logp[..vocab].iter().enumerate() {
                sink.offer(value, word as u32);
            }
            return;
        }
        for (row, logp_row) in logp.chunks_exact(vocab).enumerate() {
            let base = (row * vocab) as u32;
            if self.is_dead(row) {
                for word in 0..dead_row_words {
                    sink.offer(DEAD_ROW_SCORE, base + word as u32);
                }
            } else {
                sink.offer_row(logp_row, self.scores[row], base);
            }
        }
    }

    /// The K best candidates in the order `torch.topk` gives them on the CPU: streamed through
    /// its heap when it uses one (`K · 64 ≤ n`, every real vocabulary), else materialized.
    fn select_torch_cpu(&mut self, logp: &[f32], vocab: usize) -> Vec<(f32, u32)> {
        let first_step = self.back.is_empty();
        let total = if first_step { vocab } else { logp.len() };
        if !torch_cpu_uses_heap(self.size, total) {
            let candidates = if first_step {
                logp[..vocab].to_vec()
            } else {
                self.flat_candidates(logp, vocab)
            };
            return select_top_k_torch_cpu(&candidates, self.size);
        }
        let mut top = std::mem::replace(&mut self.torch_top_k, TorchHeapTopK::new(0));
        top.clear();
        // Every word of a dead row: the heap's contents depend on all candidates offered.
        self.offer_candidates(logp, vocab, vocab, &mut top);
        let selected = top.sorted();
        self.torch_top_k = top;
        selected
    }

    /// All `K × V` candidates in flat order: `score + logp` (f32), −1e20 on rows ended in EOS.
    fn flat_candidates(&self, logp: &[f32], vocab: usize) -> Vec<f32> {
        let mut candidates = Vec::with_capacity(logp.len());
        for (row, logp_row) in logp.chunks_exact(vocab).enumerate() {
            if self.is_dead(row) {
                candidates.extend(std::iter::repeat_n(DEAD_ROW_SCORE, vocab));
            } else {
                let score = self.scores[row];
                candidates.extend(logp_row.iter().map(|&value| value + score));
            }
        }
        candidates
    }

    /// A copy of `logp` with the tokens forbidden by the rules set to −∞.
    fn masked_logp(&self, logp: &[f32], vocab: usize, step: usize) -> Vec<f32> {
        let mut masked = logp.to_vec();
        let mut banned = Vec::new();
        for (row, masked_row) in masked.chunks_exact_mut(vocab).enumerate() {
            let history = if self.rules.no_repeat_ngram_size > 0 {
                self.row_history(row)
            } else {
                Vec::new()
            };
            self.rules
                .banned_tokens(&history, step, self.eos, &mut banned);
            for &token in &banned {
                if let Some(value) = masked_row.get_mut(token as usize) {
                    *value = f32::NEG_INFINITY;
                }
            }
        }
        masked
    }

    /// Tokens generated so far by current row `row` (`<s>` excluded).
    fn row_history(&self, row: usize) -> Vec<u32> {
        self.hypothesis(FinalEntry {
            score: 0.0,
            step: self.steps(),
            row,
        })
    }

    /// The K ranked entries of the reference `getFinal` (§6.5); does not change the beam.
    ///
    /// Finished hypotheses (stable-sorted by score, descending) come first; if fewer than K
    /// finished, the best unfinished rows of the last step fill up. When nothing finished,
    /// row 0 of the last step is added as a substitute first, so it appears twice.
    pub fn final_entries(&self) -> Vec<FinalEntry> {
        let last = self.steps();
        let mut finished = self.finished.clone();
        let Some(&row0_score) = self.scores.first() else {
            return Vec::new(); // a beam of size 0 ranks nothing
        };
        if finished.is_empty() {
            finished.push(FinalEntry {
                score: row0_score,
                step: last,
                row: 0,
            });
        }
        self.sort_ranked(&mut finished);
        if finished.len() < self.size {
            let mut unfinished: Vec<FinalEntry> = (0..self.size)
                .filter(|&row| self.current_tokens()[row] != self.eos)
                .map(|row| FinalEntry {
                    score: self.scores[row],
                    step: last,
                    row,
                })
                .collect();
            self.sort_ranked(&mut unfinished);
            let missing = self.size - finished.len();
            finished.extend(unfinished.into_iter().take(missing));
        }
        // More than K finished: the reference's negative slice cannot reach the first K.
        finished.truncate(self.size);
        finished
    }

    /// Stable sort, best first, by the (possibly length-penalized) score.
    fn sort_ranked(&self, entries: &mut [FinalEntry]) {
        let rules = self.rules;
        entries.sort_by(|a, b| {
            let a = rank_value(rules.ranking_score(a.score, a.step));
            let b = rank_value(rules.ranking_score(b.score, b.step));
            b.total_cmp(&a)
        });
    }

    /// Tokens chosen at steps `1..=t` by the entry's row, found by walking the back-pointers.
    /// An entry that cannot belong to this beam (a step it has not taken, a row beyond its
    /// size) has no tokens.
    pub fn hypothesis(&self, entry: FinalEntry) -> Vec<u32> {
        if entry.step > self.steps() || entry.row >= self.size {
            return Vec::new();
        }
        let mut row = entry.row;
        let mut tokens = Vec::with_capacity(entry.step);
        for j in (0..entry.step).rev() {
            tokens.push(self.toks[j + 1][row]);
            row = self.back[j][row] as usize;
        }
        tokens.reverse();
        tokens
    }

    /// The example's result: ranked hypotheses and the `[K, max_length]` 0-padded rows.
    pub fn output(&self, max_length: usize) -> BeamOutput {
        let final_entries = self.final_entries();
        let hypotheses: Vec<Hypothesis> = final_entries
            .iter()
            .map(|&entry| Hypothesis {
                ids: build_target_tokens(&self.hypothesis(entry), self.eos).to_vec(),
                score: entry.score,
            })
            .collect();
        let rows = hypotheses
            .iter()
            .map(|hypothesis| {
                let mut row = hypothesis.ids.clone();
                row.resize(max_length.max(row.len()), 0);
                row.truncate(max_length);
                row
            })
            .collect();
        BeamOutput {
            hypotheses,
            rows,
            final_entries,
            steps: self.steps(),
            // The driver's `break`: done() held while steps were left.
            done: self.done() && self.steps() < max_length,
            eos_top: self.eos_top,
            finished: self.finished.clone(),
        }
    }
}

/// A hypothesis cut at its first EOS, which is excluded (reference `buildTargetTokens`).
pub fn build_target_tokens(hypothesis: &[u32], eos: u32) -> &[u32] {
    let end = hypothesis
        .iter()
        .position(|&token| token == eos)
        .unwrap_or(hypothesis.len());
    &hypothesis[..end]
}

/// A top-K selector fed candidates in increasing flat index order.
trait CandidateSink {
    fn offer(&mut self, value: f32, flat_index: u32);
    fn offer_row(&mut self, logp_row: &[f32], score: f32, base: u32);
}

impl CandidateSink for TopK {
    fn offer(&mut self, value: f32, flat_index: u32) {
        TopK::offer(self, value, flat_index);
    }
    fn offer_row(&mut self, logp_row: &[f32], score: f32, base: u32) {
        TopK::offer_row(self, logp_row, score, base);
    }
}

impl CandidateSink for TorchHeapTopK {
    fn offer(&mut self, value: f32, flat_index: u32) {
        TorchHeapTopK::offer(self, value, flat_index);
    }
    fn offer_row(&mut self, logp_row: &[f32], score: f32, base: u32) {
        TorchHeapTopK::offer_row(self, logp_row, score, base);
    }
}

#[cfg(test)]
mod tests {
    //! Hand-written log-probability matrices (reference-semantics §12 item 12). Values are
    //! multiples of 1/4 so every f32 sum below is exact.
    use super::*;

    const EOS: u32 = 2;
    const NEG: f32 = f32::NEG_INFINITY;

    /// The lower-index tie order through both selections, which must agree.
    fn both_selections(size: usize, steps: &[Vec<f32>], vocab: usize) -> Beam {
        let mut full = Beam::new(size, 0, EOS).with_tie_order(TieOrder::LowerIndex);
        let mut streaming =
            Beam::with_rules(size, 0, EOS, BeamRules::default(), Selection::Streaming)
                .with_tie_order(TieOrder::LowerIndex);
        for logp in steps {
            full.advance(logp, vocab).unwrap();
            streaming.advance(logp, vocab).unwrap();
            assert_eq!(full.scores(), streaming.scores());
            assert_eq!(full.current_origin(), streaming.current_origin());
            assert_eq!(full.current_tokens(), streaming.current_tokens());
        }
        assert_eq!(full.final_entries(), streaming.final_entries());
        full
    }

    #[test]
    fn first_step_uses_row_zero_only() {
        // Row 1 has better values, but at step 1 only row 0 counts.
        let step1 = vec![-1.0, -0.25, -3.0, -0.5, /* row 1 */ 0.0, 0.0, 0.0, 0.0];
        let beam = both_selections(2, &[step1], 4);
        assert_eq!(beam.current_origin(), Some(&[0, 0][..]));
        assert_eq!(beam.current_tokens(), &[1, 3]);
        assert_eq!(beam.scores(), &[-0.25, -0.5]);
    }

    #[test]
    fn flat_index_splits_into_origin_and_word() {
        let step1 = vec![
            -0.5, -1.0, -4.0, -0.25, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0,
        ];
        // Rows after step 1: [3] -0.25, [0] -0.5, [1] -1.0.
        let step2 = vec![
            -2.0, -3.0, -4.0, -1.0, // row 0: best -1.25 (flat 3)
            -0.25, -5.0, -5.0, -5.0, // row 1: -0.75 (flat 4)
            -5.0, -5.0, -0.5, -5.0, // row 2: -1.5 (flat 10 = EOS)
        ];
        let beam = both_selections(3, &[step1, step2], 4);
        assert_eq!(beam.current_origin(), Some(&[1, 0, 2][..]));
        assert_eq!(beam.current_tokens(), &[0, 3, 2]);
        assert_eq!(beam.scores(), &[-0.75, -1.25, -1.5]);
        assert_eq!(
            beam.finished(),
            &[FinalEntry {
                score: -1.5,
                step: 2,
                row: 2
            }]
        );
    }

    #[test]
    fn rows_ending_in_eos_are_assigned_minus_1e20_not_added_to() {
        // Step 1: row 0 = [1] (-0.5), row 1 = [EOS] (-1.0, finished).
        let step1 = vec![-3.0, -0.5, -1.0, -2.0, -9.0, -9.0, -9.0, -9.0];
        // Step 2: the live row has one finite candidate; the dead row has a great logp at
        // word 3, which an addition would pick. Assignment makes its words all equal, so the
        // tie rule picks its word 0, at exactly -1e20.
        let step2 = vec![NEG, -0.25, NEG, NEG, -50.0, -60.0, -70.0, 0.0];
        let beam = both_selections(2, &[step1, step2], 4);
        assert_eq!(beam.current_origin(), Some(&[0, 1][..]));
        assert_eq!(beam.current_tokens(), &[1, 0]);
        assert_eq!(beam.scores(), &[-0.75, DEAD_ROW_SCORE]);
    }

    #[test]
    fn torch_cpu_order_picks_the_dead_row_word_torch_picks() {
        // The case above: the second slot is a tie among the dead row's four -1e20 words.
        // torch.topk(2) of [-inf, -0.75, -inf, -inf, -1e20 × 4] returns indices [1, 5].
        let step1 = vec![-3.0, -0.5, -1.0, -2.0, -9.0, -9.0, -9.0, -9.0];
        let step2 = vec![NEG, -0.25, NEG, NEG, -50.0, -60.0, -70.0, 0.0];
        for order in [TieOrder::TorchCpu, TieOrder::Auto] {
            let mut beam = Beam::new(2, 0, EOS).with_tie_order(order);
            beam.advance(&step1, 4).unwrap();
            beam.advance(&step2, 4).unwrap();
            assert_eq!(beam.current_origin(), Some(&[0, 1][..]));
            assert_eq!(beam.current_tokens(), &[1, 1], "{order:?}");
            assert_eq!(beam.scores(), &[-0.75, DEAD_ROW_SCORE]);
        }
        // Row-ranked candidates cannot be ordered as torch orders them.
        let beam = Beam::new(2, 0, EOS).with_tie_order(TieOrder::TorchCpu);
        assert!(beam.needs_full_rows());
        assert!(!Beam::new(2, 0, EOS).needs_full_rows());
    }

    #[test]
    fn eos_top_is_sticky_and_done_needs_k_finished() {
        // Step 1: row 0 ends ([EOS] -0.25), row 1 = [1] (-0.5).
        let step1 = vec![-9.0, -0.5, -0.25, -9.0, 0.0, 0.0, 0.0, 0.0];
        let mut beam = Beam::new(2, 0, EOS);
        beam.advance(&step1, 4).unwrap();
        assert!(beam.eos_top());
        assert!(!beam.done(), "one finished hypothesis is not K = 2");
        // Step 2: row 1 continues with 3 twice-best; nothing ends in row 0's slot.
        let step2 = vec![0.0, 0.0, 0.0, 0.0, -9.0, -0.25, -9.0, -0.5];
        beam.advance(&step2, 4).unwrap();
        assert_eq!(beam.current_tokens(), &[1, 3]);
        assert!(beam.eos_top(), "eos_top is never reset");
        // Step 3: row 1 ends; now 2 finished and eos_top: done.
        let step3 = vec![-0.25, -9.0, -1.0, -9.0, -9.0, -9.0, -0.5, -9.0];
        beam.advance(&step3, 4).unwrap();
        assert_eq!(beam.current_tokens(), &[0, 2]);
        assert!(beam.done());
        // The output's `done` is the driver's `break`: with max_length 3 the loop ran out of
        // steps before it could test done() again; with 4 steps left over it breaks.
        assert!(!beam.output(3).done);
        assert!(beam.output(4).done);
    }

    #[test]
    fn final_entries_sort_ties_stably_and_put_finished_first() {
        // Step 1: [EOS] -1.0 (row 1, finished), [3] -0.5 (row 0), [1] -2.0 (row 2).
        let step1 = vec![
            -9.0, -2.0, -1.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        // Step 2: row 0 (-0.5) gives [3, EOS] at -1.0, a tie with the step-1 entry; row 2
        // (-2.0) gives [1, 1] at -2.25. Row 1 is dead.
        let step2 = vec![
            -5.0, -5.0, -0.5, -5.0, //
            0.0, 0.0, 0.0, 0.0, //
            -5.0, -0.25, -5.0, -5.0,
        ];
        let beam = both_selections(3, &[step1, step2], 4);
        let finals = beam.final_entries();
        let as_tuples: Vec<(f32, usize, usize)> =
            finals.iter().map(|e| (e.score, e.step, e.row)).collect();
        // Tied finished entries keep insertion order (step 1 before step 2); the unfinished
        // row at -2.25 comes after them although -5.0 finished ones would also rank first.
        assert_eq!(as_tuples[0], (-1.0, 1, 1));
        assert_eq!(as_tuples[1], (-1.0, 2, 0));
        assert_eq!(as_tuples[2].1, 2);
        assert_eq!(beam.hypothesis(finals[0]), vec![EOS]);
        assert_eq!(beam.hypothesis(finals[1]), vec![3, EOS]);
    }

    #[test]
    fn finished_rank_above_better_unfinished() {
        // Step 1: [EOS] at -20 is finished; [1] at -0.25 stays unfinished until the end.
        let step1 = vec![-40.0, -0.25, -20.0, -30.0, 0.0, 0.0, 0.0, 0.0];
        let beam = {
            let mut b = Beam::new(2, 0, EOS);
            b.advance(&step1, 4).unwrap();
            b
        };
        let finals = beam.final_entries();
        assert_eq!((finals[0].score, finals[0].row), (-20.0, 1));
        assert_eq!((finals[1].score, finals[1].row), (-0.25, 0));
    }

    #[test]
    fn nothing_finished_gives_row_zero_twice() {
        let step = vec![
            -1.0, -0.5, -9.0, -0.25, -1.0, -0.5, -9.0, -0.25, -1.0, -0.5, -9.0, -0.25,
        ];
        let beam = both_selections(3, &[step.clone(), step], 4);
        let rows: Vec<usize> = beam.final_entries().iter().map(|e| e.row).collect();
        assert_eq!(rows, vec![0, 0, 1]);
        let out = beam.output(4);
        assert_eq!(out.hypotheses[0], out.hypotheses[1]);
        assert_eq!(out.rows[0], vec![3, 3, 0, 0]);
    }

    #[test]
    fn hypothesis_backtracks_across_reordered_rows() {
        // Step 1: row 0 = [1], row 1 = [3].
        let step1 = vec![-9.0, -0.25, -9.0, -0.5, 0.0, 0.0, 0.0, 0.0];
        // Step 2: both new rows extend old row 1 ([3]): swap happens through back-pointers.
        let step2 = vec![-9.0, -9.0, -9.0, -9.0, -9.0, -0.25, -9.0, -0.5];
        // Step 3: new row 0 extends old row 1 ([3, 3]) with EOS.
        let step3 = vec![-9.0, -9.0, -9.0, -9.0, -9.0, -9.0, -0.25, -0.5];
        let beam = both_selections(2, &[step1, step2, step3], 4);
        assert_eq!(beam.current_origin(), Some(&[1, 1][..]));
        let top = FinalEntry {
            score: beam.scores()[0],
            step: 3,
            row: 0,
        };
        assert_eq!(beam.hypothesis(top), vec![3, 3, EOS]);
        let second = FinalEntry { row: 1, ..top };
        assert_eq!(beam.hypothesis(second), vec![3, 3, 3]);
        assert_eq!(beam.hypothesis(FinalEntry { step: 2, ..top }), vec![3, 1]);
        // Entries from elsewhere give no tokens rather than an index panic.
        assert!(beam.hypothesis(FinalEntry { step: 99, ..top }).is_empty());
        assert!(beam.hypothesis(FinalEntry { row: 99, ..top }).is_empty());
        assert!(Beam::new(0, 0, EOS).output(4).hypotheses.is_empty());
    }

    #[test]
    fn build_target_tokens_cuts_at_first_eos() {
        assert_eq!(build_target_tokens(&[5, 6, EOS], EOS), &[5, 6]);
        assert_eq!(build_target_tokens(&[5, EOS, 7, EOS], EOS), &[5]);
        assert_eq!(build_target_tokens(&[5, 7], EOS), &[5, 7]);
        assert_eq!(build_target_tokens(&[EOS], EOS), &[] as &[u32]);
    }

    #[test]
    fn prediction_cuts_row_zero_at_first_zero_including_generated_sos() {
        // Row 0 generates <s> (0) mid-sequence: the prediction stops there.
        let step1 = vec![-9.0, -9.0, -9.0, -0.25, 0.0, 0.0, 0.0, 0.0];
        let step2 = vec![-0.25, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0, -9.0];
        let step3 = vec![-9.0, -9.0, -9.0, -0.25, -9.0, -9.0, -9.0, -9.0];
        let beam = both_selections(2, &[step1, step2, step3], 4);
        let out = beam.output(5);
        assert_eq!(out.rows[0], vec![3, 0, 3, 0, 0]);
        assert_eq!(out.prediction(), &[3]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut beam = Beam::new(3, 0, EOS);
        assert!(beam.advance(&[0.0; 4], 2).is_err(), "K > V");
        assert!(beam.advance(&[0.0; 5], 4).is_err(), "length is not K·V");
        assert_eq!(beam.steps(), 0);
    }
}
