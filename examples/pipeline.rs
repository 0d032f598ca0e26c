//! One command from data to report: prepare → train → evaluate (dev, test) → report.
//!
//! ```text
//! # Offline on 2 CPU cores (small random model, trains on ruby valid, tests on ruby test):
//! cargo run --release --example pipeline -- --data-dir ../shared/data/codesearchnet \
//!     --lang ruby --train-split valid --preset small
//! # The CodeBERT recipe on a GPU, data from the Hugging Face hub:
//! cargo run --release --features cuda --example pipeline -- --lang ruby --preset codebert
//! ```
//! Writes `report.md`, `report.json` and `curves.png` into the output folder and prints the
//! report. Rerunning with the same flags skips finished stages and resumes training.

use anyhow::Result;
use clap::Parser;
use code2nl::cli::pipeline::PipelineArgs;
use code2nl::outln;
use code2nl::train::pipeline::run_pipeline_interruptible;

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let config = PipelineArgs::parse().into_config()?;
    let interrupt = code2nl::cli::interrupt::stop_after_this_update("the same command");
    let report =
        run_pipeline_interruptible(&config, interrupt.as_ref(), &mut |line| eprintln!("{line}"))?;
    outln!("{}", report.markdown())?;
    outln!(
        "test BLEU {:.2} ({}) vs published {} {}; report: {}",
        report.test.bleu_2dp,
        // Python's repr: 5.09e-77, not 77 zeros.
        code2nl::eval::python_repr(report.test.bleu),
        report.published_row,
        report
            .published_bleu
            .map_or_else(|| "–".to_string(), |b| format!("{b:.2}")),
        config.output_dir.join("report.md").display()
    )?;
    Ok(())
}
