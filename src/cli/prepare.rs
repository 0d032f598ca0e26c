//! Flags of `examples/prepare.rs`.

use crate::data::Stage;
use clap::Parser;
use std::path::PathBuf;

/// Read, clean, tokenize and cache CodeSearchNet jsonl files.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "prepare",
    // `--lr -1e-3` reaches the value check instead of reading as an unknown flag.
    allow_negative_numbers = true,
    about = "Read, clean, tokenize and cache CodeSearchNet jsonl files"
)]
pub struct PrepareArgs {
    /// One `.jsonl` or `.jsonl.gz` file.
    #[arg(long, conflicts_with = "data_dir")]
    pub data: Option<PathBuf>,
    /// Folder with `<lang>/<split>.jsonl[.gz]` files.
    #[arg(long, requires = "lang")]
    pub data_dir: Option<PathBuf>,
    /// Language under `--data-dir` (with `--data`: the stats table's label).
    #[arg(long)]
    pub lang: Option<String>,
    /// Split under `--data-dir` (default: every one of train, valid, test that exists; with
    /// `--data`: the stats table's label).
    #[arg(long)]
    pub split: Option<String>,
    /// Tokenizer folder (vocab.json + merges.txt or tokenizer.json), file, or hub id.
    #[arg(long, default_value = "microsoft/codebert-base")]
    pub tokenizer: String,
    /// Source truncation length in BPE tokens, specials included.
    #[arg(long, default_value_t = 256)]
    pub max_source_len: usize,
    /// Target truncation length in BPE tokens, specials included.
    #[arg(long, default_value_t = 128)]
    pub max_target_len: usize,
    /// train | dev | test (test: target is `None`).
    #[arg(long, default_value = "train")]
    pub stage: Stage,
    /// Root of the feature cache.
    #[arg(long, default_value = "c2n-cache")]
    pub cache_dir: PathBuf,
    /// Write `{"idx","source_ids","target_ids"}` per line (unpadded, with `<s>`/`</s>`) to
    /// this file (`-`: stdout, and the statistics table goes to stderr).
    #[arg(long)]
    pub dump_features: Option<PathBuf>,
    /// Any bad line is an error naming file and line (default: skip, count, report).
    #[arg(long)]
    pub strict: bool,
    /// Cleaning filters: none (the reference) or published (README rules 2-4: docstring length,
    /// special tokens, non-English; plus url dedup; the parses-into-an-AST rule is not implemented).
    #[arg(long, default_value = "none")]
    pub clean: String,
    /// Strip whole-line comment tokens from code: hash (`#`) or slash (`//`, `/*`).
    #[arg(long)]
    pub strip_comments: Option<String>,
    /// Lines per parallel chunk.
    #[arg(long, default_value_t = 8192)]
    pub chunk_lines: usize,
    /// Features per shard file.
    #[arg(long, default_value_t = 65_536)]
    pub shard_examples: usize,
}
