//! Flags of `examples/predict.rs`.

use super::checkpoint::{CheckpointArgs, DecodingArgs};
use super::search_rules::SearchRuleArgs;
use super::tie_order::TieOrderArg;
use super::train::PrecisionArg;
use clap::Parser;
use std::path::PathBuf;

/// Generate a docstring for code read from stdin or --file, or one per line of a --jsonl file.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "predict",
    // `--lr -1e-3` reaches the value check instead of reading as an unknown flag.
    allow_negative_numbers = true,
    about = "Generate a docstring for code read from stdin or --file, or one per line of a --jsonl file"
)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: CheckpointArgs,
    /// Code file (default, or `-`: stdin). Its text is split at whitespace only; models trained on
    /// CodeSearchNet saw `code_tokens` (punctuation split off: `def f ( x )`), so code
    /// tokenized that way summarizes as `evaluate` does, raw source somewhat differently.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A jsonl(.gz) file of functions to summarize (`-`: stdin), one per line, each with
    /// `code_tokens` (a list, as in CodeSearchNet) or `code` (text); other fields, a docstring
    /// included, are ignored. Prints `idx<TAB>summary` per function, idx being its 0-based line number (the
    /// CodeXGLUE output format); blank lines are skipped.
    #[arg(long, conflicts_with = "file")]
    pub jsonl: Option<PathBuf>,
    /// With --jsonl: write the summaries to this file instead of stdout (`-`: stdout).
    #[arg(long, requires = "jsonl")]
    pub output: Option<PathBuf>,
    /// With --jsonl: functions decoded together (each with beam-size rows).
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
    pub batch_size: usize,
    /// Print the K best hypotheses as `score<TAB>text` (K at most --beam-size; with --jsonl
    /// `idx<TAB>score<TAB>text`), in the reference's getFinal order: hypotheses that reached
    /// `</s>` first, by score, then unfinished ones, by score (so scores need not fall down
    /// the list); when none reached `</s>`, the best one is listed twice.
    #[arg(long, value_parser = super::at_least_one)]
    pub nbest: Option<usize>,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    /// Order of exactly equal beam candidates: auto (torch-cpu on the CPU, lower-index on a
    /// GPU), torch-cpu (as torch.topk on the CPU) or lower-index.
    #[arg(long, value_enum, default_value = "auto")]
    pub tie_order: TieOrderArg,
    #[command(flatten)]
    pub search_rules: SearchRuleArgs,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Compute precision of the decoding: f32 (the reference), tf32 (f32 with TF32 matrix
    /// products on a GPU) or bf16 (weights kept in f32, activations in bf16: faster on a GPU,
    /// and outputs may differ from f32 where scores are close).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
}

impl PredictArgs {
    /// `--file -` and `--output -` name stdin and stdout, as for most command-line tools (a
    /// file called `-` is `./-`): this makes them the defaults they stand for.
    pub fn standard_streams_as_defaults(mut self) -> Self {
        let dash = |path: &PathBuf| path.as_os_str() == "-";
        self.file = self.file.filter(|p| !dash(p));
        self.output = self.output.filter(|p| !dash(p));
        self
    }
}
