//! Flags of `examples/evaluate.rs`.

use super::checkpoint::{CheckpointArgs, DecodingArgs};
use super::search_rules::SearchRuleArgs;
use super::tie_order::TieOrderArg;
use super::train::{BackendArg, PaddingArg, PrecisionArg};
use crate::train::comm::{CommError, LaunchSpec};
use clap::Parser;
use std::path::PathBuf;

/// Beam-search a jsonl file and score it with the reference smoothed BLEU-4.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "evaluate",
    // `--lr -1e-3` reaches the value check instead of reading as an unknown flag.
    allow_negative_numbers = true,
    about = "Beam-search a jsonl file and score it with the reference smoothed BLEU-4"
)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub model: CheckpointArgs,
    /// The jsonl(.gz) file to decode and score.
    #[arg(long)]
    pub data: PathBuf,
    /// Only the first N lines of --data (later lines are not read).
    #[arg(long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub decoding: DecodingArgs,
    /// Examples decoded together (each with beam-size rows).
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one)]
    pub batch_size: usize,
    /// Folder for test.output, test.gold (see --prefix) and nbest.jsonl.
    #[arg(long, default_value = ".")]
    pub output_dir: PathBuf,
    /// Name of the output files, PREFIX.output and PREFIX.gold: run.py --do_test writes
    /// test_0 for the dev file and test_1 for the test file.
    #[arg(long, default_value = "test", value_parser = file_prefix)]
    pub prefix: String,
    /// Write nbest.jsonl with K hypotheses per example (K at most --beam-size), in the
    /// reference's getFinal order: those that reached `</s>` first, by score, then
    /// unfinished ones, by score; an example where none reached `</s>` lists its best one
    /// twice. One nbest.jsonl per output folder whatever --prefix (the name the command-line
    /// contract gives): evaluate each prefix into its own --output-dir to keep both.
    #[arg(long, value_parser = super::at_least_one)]
    pub nbest: Option<usize>,
    /// Source padding: reference (max-source-len) or dynamic (longest in the batch).
    #[arg(long, value_enum, default_value = "dynamic")]
    pub padding: PaddingArg,
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
    /// Ranks that share the decoding (threads: threads to start; nccl without a launcher: GPUs,
    /// default all; mpi, nccl under torchrun/srun: a check on the launcher's count). Outputs
    /// are identical for any number of ranks.
    #[arg(long, value_parser = super::at_least_one)]
    pub world_size: Option<usize>,
    /// Data-parallel backend; without it, the launcher's environment decides (mpirun: mpi,
    /// torchrun/srun: nccl), else threads when --world-size > 1, else single.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
}

impl EvaluateArgs {
    /// The backend and world size to launch ([`super::train::launch_spec`]).
    pub fn launch_spec(&self) -> Result<LaunchSpec, CommError> {
        super::train::launch_spec(self.backend, self.world_size)
    }
}

/// A file name stem: not empty, no folder in it.
fn file_prefix(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(['/', '\\']) || text == "." || text == ".." {
        return Err("a file name without folders, e.g. test_1".into());
    }
    Ok(text.to_string())
}
