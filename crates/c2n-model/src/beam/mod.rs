//! Beam search: the reference state machine, a batched driver, and post-processing.
//!
//! The search drives any [`NextTokenLogProbs`](crate::NextTokenLogProbs) session and knows
//! nothing about layers. Semantics follow reference-semantics §6 exactly in the default
//! (reference) mode:
//!
//! - [`Beam`]: the per-example state machine (f32 scores, row-0-only first step, −1e20
//!   assignment to rows ending in EOS, top-K under the [tie rule](select), sticky `eos_top`,
//!   `done()`, `getFinal`, `getHyp`, `buildTargetTokens`).
//! - [`beam_search`]: B examples × K rows through one session, freezing examples once done;
//!   [`reference_search`]: the plain one-example algorithm.
//! - [`BeamOutput`]: n-best [`Hypothesis`] list (ids without `<s>`/EOS, rank order) and the
//!   `[K, max_length]` rows right-padded with 0; [`cut_at_first_zero`] gives the prediction.
//!
//! **Ties.** Candidates rank by value, higher first. Exactly equal values are ordered by the
//! [`TieOrder`] of the [`GenerationConfig`](crate::generation::GenerationConfig): by
//! default (`auto`) as `torch.topk` orders them on the CPU when the candidates are ranked on
//! the host ([`torch_order`]), so CPU decoding reproduces a CPU run of the original scripts
//! even on ties; by lower flat index `k·V + w` first ([`select`], `-0.0 == 0.0`, NaN ranks
//! like +∞) when a GPU ranks them, where torch's own order is unspecified (§11 item 17).
//!
//! ```
//! use c2n_model::beam::{beam_search, cut_at_first_zero};
//! use c2n_model::generation::GenerationConfig;
//! use c2n_model::NextTokenLogProbs;
//!
//! /// Every row prefers token 3, then EOS (2), whatever it has seen.
//! struct Fixed;
//! impl NextTokenLogProbs for Fixed {
//!     fn vocab_size(&self) -> usize { 4 }
//!     fn step(&mut self, origin: &[u32], _tokens: &[u32]) -> c2n_model::Result<Vec<f32>> {
//!         Ok(origin.iter().flat_map(|_| [-5.0, -6.0, -1.0, -0.5]).collect())
//!     }
//! }
//! let config = GenerationConfig { beam_size: 2, max_length: 3, ..Default::default() };
//! let out = beam_search(&mut Fixed, 1, &config).unwrap();
//! // Each step, row 0 extends with 3 and row 1 ends in EOS. Row 0 never ends, so the search
//! // runs all 3 steps; the finished hypotheses [] (-1.0) and [3] (-1.5) rank first.
//! assert!(!out[0].done);
//! assert_eq!(out[0].hypotheses[0].score, -1.0);
//! assert_eq!(out[0].rows, vec![vec![0, 0, 0], vec![3, 0, 0]]);
//! assert_eq!(cut_at_first_zero(&out[0].rows[1]), &[3]);
//! ```

mod output;
mod postprocess;
pub mod reference;
pub mod rules;
pub mod search;
pub mod select;
pub mod tie_order;
pub mod torch_order;

pub use output::{BeamOutput, FinalEntry, Hypothesis};
pub use postprocess::cut_at_first_zero;
pub use reference::{build_target_tokens, Beam, Selection, DEAD_ROW_SCORE};
pub use rules::BeamRules;
pub use search::{beam_search, reference_search};
pub use tie_order::TieOrder;
