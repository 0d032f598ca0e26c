//! Flags of `examples/sweep.rs`.

use clap::Parser;
use std::path::PathBuf;

/// Runs a grid or list of pipeline configs, N at a time, and ranks them by dev BLEU.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "sweep",
    about = "Run a grid/list of pipeline configs (train + evaluate each), N at a time, ranked by dev BLEU",
    after_help = "Example:\n  cargo run --release --example sweep -- --grid examples/sweep-small.toml --parallel 2 --output-dir runs/sweep"
)]
pub struct SweepArgs {
    /// TOML sweep file: `[base]` pipeline config, `[grid]` key = list of values, `[[points]]` tables.
    #[arg(long, required_unless_present = "run_one")]
    pub grid: Option<PathBuf>,
    /// Runs at the same time (child processes; the CPU threads are split between them).
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one)]
    pub parallel: usize,
    /// Folder of the sweep: one sub-folder per run plus results.{md,json,png}.
    #[arg(long, default_value = "runs/sweep")]
    pub output_dir: PathBuf,
    /// Threads per run (default: available cores / --parallel).
    #[arg(long, value_parser = super::at_least_one)]
    pub threads_per_run: Option<usize>,
    /// Internal: run the one pipeline config FILE in this process (what each child does).
    #[arg(long, value_name = "FILE", hide = true)]
    pub run_one: Option<PathBuf>,
}
