//! The progress bar of long per-example work (decoding, summarizing), shared by the pipeline
//! and the example programs.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar on stderr counting examples (`what`: the verb shown), with rate, and with ETA when
/// the total `len` is known; indicatif hides it when stderr is no terminal.
pub fn examples_bar(len: Option<u64>, what: &str) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{elapsed_precise} [{wide_bar}] {pos}/{len} examples, {per_sec}, ETA {eta} | {msg}",
        ),
        None => (
            ProgressBar::no_length(),
            "{elapsed_precise} {pos} examples, {per_sec} | {msg}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}
