//! # c2n-data
//!
//! Everything between a CodeSearchNet `.jsonl` file and padded id batches, with the exact
//! semantics of the reference CodeBERT `code2nl` pipeline (see
//! the project's specification `reference-semantics.md` §1–§3, whose sections
//! `docs/parity.md` maps to the original scripts, and `docs/data.md`):
//!
//! | step | module | what it reproduces or adds |
//! |---|---|---|
//! | hub | `hub` (feature `hub`) | the Hugging Face `google/code_x_glue_ct_code_to_text` parquet splits (cache first) converted to reference jsonl |
//! | read | [`reader`], [`record`] | streaming `.jsonl` / `.jsonl.gz`; strict (error names file and line) or lenient (skip and count) |
//! | code only | [`code_input`] | code to summarize without docstrings (`code_tokens` or `code`), for batch prediction |
//! | examples | [`example`], [`whitespace`] | `idx` = line number, Python-whitespace normalization, `\n` → space in code, deleted in docs |
//! | clean | [`clean`] | the published filters as concrete, documented rules, url dedup, a [`CleanReport`] |
//! | tokenize | [`tokenizer`] | RoBERTa byte-level BPE with the slow tokenizer's special-token quirk, `decode` as Python |
//! | features | [`features`] | truncation after BPE to `max − 2`, `<s>`…`</s>`, test-stage target `None`; stored unpadded |
//! | pipeline | [`pipeline`] | rayon over chunks of lines, output identical to a sequential run, bounded memory |
//! | cache | [`cache`], [`shard`] | memory-mapped `u16` shards + manifest with a sha256 fingerprint; corruption is rebuilt |
//! | batches | [`batch`], [`partition`] | seeded per-epoch shuffles identical on every rank, reference or dynamic padding, length buckets, token budgets; each rank takes its slice of the global batch; longest-first inference batches for decoding |
//! | stats | [`stats`] | per-language/split table (drops, BPE length percentiles, truncation) as Markdown |
//!
//! No candle here: batches are flat `u32` vectors plus shapes.
//!
//! Feature `hub` (on by default): the `hub` module and tokenizers by hub model id
//! ([`TokenizerFiles::from_hub`]), through `hf-hub` and `parquet`. Without it
//! (`default-features = false`) the crate reads local files only and builds about half as
//! many dependencies (no network or TLS stack).
//!
//! ## Example
//!
//! A toy byte-level vocabulary (every byte symbol, the five specials and one merge) is enough
//! to run the whole path; real use loads `vocab.json` + `merges.txt` with
//! [`RobertaTokenizer::load`] or prepares whole files with [`prepare`].
//!
//! ```
//! use std::collections::HashMap;
//! use c2n_data::{featurize, make_batch, Example, FeatureConfig, RobertaTokenizer, Stage};
//!
//! let mut vocab: HashMap<String, u32> = HashMap::new();
//! for s in ["<s>", "<pad>", "</s>", "<unk>"] {
//!     vocab.insert(s.into(), vocab.len() as u32);
//! }
//! for c in c2n_data::tokenizer::bytes_to_unicode() {
//!     vocab.insert(c.to_string(), vocab.len() as u32);
//! }
//! vocab.insert("he".into(), vocab.len() as u32);
//! vocab.insert("<mask>".into(), vocab.len() as u32);
//! let tok = RobertaTokenizer::from_vocab_merges(vocab, vec![("h".into(), "e".into())])?;
//!
//! // `read_examples` does this for every line of a file.
//! let example = Example::from_tokens(0, &["def", "he\n", "(x)"], &["Says", "he\nllo"]);
//! assert_eq!(example.source, "def he (x)");
//! assert_eq!(example.target, "Says hello");
//! // Space before a special string is dropped, space after it stays (§2.2).
//! assert_eq!(tok.tokenize("he <s>  he")?, ["he", "<s>", "Ġ", "Ġ", "he"]);
//!
//! let cfg = FeatureConfig { max_source_len: 6, max_target_len: 16, stage: Stage::Train };
//! let feature = featurize(&tok, &example, &cfg)?;
//! assert_eq!(feature.source_ids.len(), 6); // truncated: <s> + 4 BPE tokens + </s>
//! assert!(feature.source_truncated());
//!
//! let batch = make_batch(&vec![feature], &[0], 8, 16);
//! assert_eq!(&batch.source_mask[..], [1, 1, 1, 1, 1, 1, 0, 0]);
//! assert_eq!(batch.source_ids[7], c2n_data::PAD_ID);
//! assert_eq!(tok.decode(&tok.encode("he said")?), "he said");
//! # Ok::<(), c2n_data::DataError>(())
//! ```

pub mod batch;
pub mod cache;
pub mod clean;
pub mod code_input;
pub mod error;
pub mod example;
pub mod features;
pub mod folder;
#[cfg(feature = "hub")]
pub mod hub;
pub mod partition;
pub mod pipeline;
pub mod reader;
pub mod record;
pub mod shard;
pub mod stats;
pub mod tokenizer;
pub mod whitespace;
mod word_cache;

pub use batch::{
    inference_batches, make_batch, plan_epoch, rank_batches, Batch, BatchConfig, Padding,
};
pub use cache::{prepare, CacheStatus, Manifest, PrepareProgress, PrepareRequest, Prepared};
pub use clean::{CleanConfig, CleanReport, Cleaner, CommentStyle, DropReason};
pub use code_input::{code_features, read_code_examples, read_code_examples_from_reader};
pub use error::{DataError, Result};
pub use example::Example;
pub use features::{features_fingerprint, featurize, Feature, FeatureConfig, Stage};
pub use pipeline::{
    features_in_memory, read_examples, read_first_examples, run_file, PipelineConfig,
    PipelineOptions, PipelineReport,
};
pub use reader::{
    read_first_records, read_records, BadLineReason, JsonlLines, ReadReport, Strictness,
};
pub use record::{Record, TokenRecord};
pub use shard::{FeatureRef, FeatureSet, FeatureStore};
pub use stats::{markdown_table, stats_row, LengthSummary, StatsRow};
pub use tokenizer::{RobertaTokenizer, TokenizerFiles, BOS_ID, EOS_ID, PAD_ID};
pub use whitespace::{normalize_tokens, python_whitespace, Newline};
