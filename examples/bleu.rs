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

use anyhow::Result;
use clap::Parser;
use code2nl::cli::bleu::BleuArgs;
use code2nl::eval::{evaluate, EvalError, Metric};
use code2nl::outln;
use std::io::IsTerminal;

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    code2nl::cli::end_quietly_on_closed_pipe();
    let args = BleuArgs::parse();
    let metric = if args.sacrebleu {
        Metric::SacreBleu
    } else {
        Metric::CodeXglue
    };
    if args.predictions.is_none() && std::io::stdin().is_terminal() {
        eprintln!("reading predictions from standard input; end them with Ctrl-D (or give PRED)");
    }
    let output = evaluate(
        &args.gold,
        args.predictions.as_deref(),
        std::io::stdin().lock(),
        metric,
    )
    .inspect_err(|e| {
        // The Python evaluator prints its count before it divides by zero.
        if matches!(e, EvalError::NoMatchedIds { .. }) {
            eprintln!("Total: 0");
        }
    })?;
    if output.matched < output.gold {
        // bleu.py scores the matched ids only and says nothing; say it, before its line.
        eprintln!(
            "note: {} of {} gold ids have no prediction; the score covers the {} that do",
            output.gold - output.matched,
            output.gold,
            output.matched
        );
    }
    let unmatched = &output.unmatched_predictions;
    if !unmatched.is_empty() {
        // Ignored by the reference too; a byte-order mark makes the first id one of these.
        let shown: Vec<String> = unmatched
            .iter()
            .take(5)
            .map(|id| format!("{id:?}"))
            .collect();
        eprintln!(
            "note: {} prediction id(s) are not in the gold file and are not scored: {}{}",
            unmatched.len(),
            shown.join(", "),
            if unmatched.len() > 5 { ", …" } else { "" }
        );
        if unmatched.iter().any(|id| id.starts_with('\u{feff}')) {
            eprintln!(
                "note: the predictions start with a byte-order mark (U+FEFF), which is read as \
                 part of the first id; save them without one"
            );
        }
    }
    eprintln!("Total: {}", output.matched);
    outln!("{}", output.printed)?;
    Ok(())
}
