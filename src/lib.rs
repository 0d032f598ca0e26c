//! # code2nl
//!
//! Turns source code into documentation: a CodeBERT-style encoder-decoder fine-tuned on
//! CodeSearchNet, decoded with beam search, scored with the reference smoothed BLEU-4.
//!
//! This root crate only re-exports the four library crates so that the thin binaries in
//! `examples/` and the criterion benches in `benches/` can use them through one dependency.
//! Depend on the individual crates when you need only one piece:
//!
//! | crate | what it owns |
//! |---|---|
//! | [`data`] (`c2n-data`) | jsonl records, cleaning, RoBERTa BPE, features, cache, shards, batches |
//! | [`eval`] (`c2n-eval`) | the reference smoothed BLEU-4 and a sacreBLEU-style corpus BLEU |
//! | [`model`] (`c2n-model`) | the encoder-decoder on Candle, checkpoints, KV-cached beam search |
//! | [`train`] (`c2n-train`) | AdamW and schedule as the reference, the training loop, resume |

pub mod cli;

pub use c2n_data as data;
pub use c2n_eval as eval;
pub use c2n_model as model;
pub use c2n_train as train;
