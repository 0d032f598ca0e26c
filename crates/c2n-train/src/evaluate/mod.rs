//! Evaluation shared by the training loop and the `evaluate` example (spec §8).
//!
//! * [`dev_loss`]: teacher-forced loss over a whole feature set in sequential batches,
//!   summing the f32 `loss × N_act` and `N_act` of every batch in f64 (§8.1);
//! * [`decode`]: batched, KV-cached beam search over features (test stage), one
//!   [`BeamOutput`](c2n_model::beam::BeamOutput) per example (§6, §8.2);
//! * [`Predictions`]: decoded texts in CodeXGLUE `idx<TAB>text` files, `nbest.jsonl`, and the
//!   smoothed BLEU-4 of the in-memory rows against the gold rows (§8.2 step 4);
//! * [`evaluate_file`]: all of the above for one jsonl file (the `evaluate` example).
//!
//! ## Sharded evaluation
//!
//! With several data-parallel ranks, [`dev_loss_sharded`] and [`decode_sharded`] split the
//! work by whole evaluation batches of the single-rank run (dev loss: rank `r` takes a
//! contiguous range of them; decoding: every `W`-th batch of the length-sorted plan, which
//! shares the long batches out), so every batch holds the same examples, padded alike, and is
//! computed exactly as with one rank.
//! Dev-loss sums travel as one f32 slot per batch (zeros elsewhere, summed across ranks: adding
//! zeros is exact) and are added up in f64 in batch order on every rank; decoded examples are
//! gathered to rank 0 in their original order. Outputs are therefore identical for any number
//! of ranks. [`evaluate_file_sharded`] writes and scores on rank 0 only.

mod batching;
mod decode;
mod dev_loss;
mod predictions;
mod request;

pub use batching::EvalBatching;
pub use decode::{broadcast_f64, decode, decode_sharded, Decoded};
pub use dev_loss::{dev_loss, dev_loss_sharded, DevLoss};
pub use predictions::Predictions;
pub use request::{
    evaluate_file, evaluate_file_sharded, test_features, EvaluateReport, EvaluateRequest,
    NBEST_FILE,
};
