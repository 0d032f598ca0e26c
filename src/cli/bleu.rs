//! Flags of `examples/bleu.rs`.

use clap::Parser;
use std::path::PathBuf;

/// code2nl / CodeXGLUE smoothed BLEU-4 (mean of sentence scores x 100).
#[derive(Parser, Debug, Clone)]
#[command(
    name = "bleu",
    about = "code2nl / CodeXGLUE smoothed BLEU-4 (mean of sentence scores x 100)"
)]
pub struct BleuArgs {
    /// Gold file: `idx<TAB>text` per line (e.g. test_1.gold, reference.txt).
    pub gold: PathBuf,
    /// Prediction file (`idx<TAB>text` rows); standard input when omitted.
    pub predictions: Option<PathBuf>,
    /// Print sacreBLEU corpus BLEU-4 (13a, exp smoothing) instead: a different metric.
    #[arg(long)]
    pub sacrebleu: bool,
}
