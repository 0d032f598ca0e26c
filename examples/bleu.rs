//! Score predictions against a gold file like the CodeXGLUE evaluator.
//!
//! ```text
//! cargo run --release --example bleu -- GOLD PRED
//! cargo run --release --example bleu -- GOLD < PRED
//! cargo run --release --example bleu -- --sacrebleu GOLD PRED
//! ```
//! Prints `Total: N` (gold ids with a prediction) on stderr and the unrounded score as the last
//! stdout line, formatted like Python's `repr(float)`. `--sacrebleu` prints the sacreBLEU-style
//! corpus BLEU-4 instead: a different metric, not the CodeXGLUE number.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use code2nl::eval::{evaluate, Metric};

#[derive(Parser)]
#[command(about = "code2nl / CodeXGLUE smoothed BLEU-4 (mean of sentence scores x 100)")]
struct Args {
    /// Gold file: `idx<TAB>text` per line (e.g. test_1.gold, reference.txt).
    gold: PathBuf,
    /// Prediction file (`idx<TAB>text` rows); standard input when omitted.
    predictions: Option<PathBuf>,
    /// Print sacreBLEU corpus BLEU-4 (13a, exp smoothing) instead: a different metric.
    #[arg(long)]
    sacrebleu: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let metric = if args.sacrebleu {
        Metric::SacreBleu
    } else {
        Metric::CodeXglue
    };
    let output = evaluate(
        &args.gold,
        args.predictions.as_deref(),
        std::io::stdin().lock(),
        metric,
    )?;
    eprintln!("Total: {}", output.matched);
    println!("{}", output.printed);
    Ok(())
}
