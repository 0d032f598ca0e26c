//! Flags shared by the programs that load a trained checkpoint (`evaluate`, `predict`).

use clap::Args;
use std::path::PathBuf;

/// Which trained model to load, and its tokenizer.
#[derive(Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// Checkpoint directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Tokenizer directory (vocab.json + merges.txt / tokenizer.json) or hub id.
    #[arg(long, default_value = "microsoft/codebert-base")]
    pub tokenizer: String,
}
