//! Decoding sessions: implementations of [`NextTokenLogProbs`](crate::NextTokenLogProbs) that
//! beam search drives.
//!
//! Both are built from `(model, source_ids, source_mask, rows_per_example)`: the session starts
//! with `E × rows_per_example` empty rows, row `r` decoding example `r / rows_per_example`, and
//! every step extends, reorders or drops rows by `origin`. Rows never change example.
//!
//! - [`KvCacheSession`]: the fast path (self-attention cache, cross-attention K/V once); on a
//!   GPU it ranks each row's beam candidates on the device ([`CandidateRanking`]).
//! - [`FullPrefixSession`]: the reference path of §6.1 (whole prefix recomputed every step).

mod full_prefix;
mod host_log_probs;
mod kv_cache;
mod row_top_k;
#[cfg(feature = "cuda")]
mod row_top_k_cuda;
mod rows;

pub use full_prefix::FullPrefixSession;
pub use kv_cache::KvCacheSession;
pub use row_top_k::{device_row_top_k, logits_row_top_k, CandidateRanking};
