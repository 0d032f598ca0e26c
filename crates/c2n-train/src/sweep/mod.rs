//! Hyperparameter sweeps: a TOML file with a base pipeline config and a grid and/or list of
//! points ([`grid`]); each point is a whole [`pipeline`](crate::pipeline) run (train +
//! evaluate dev and test) in its own folder, run as a child process, N at a time with the
//! CPU threads split between them ([`runner`]); a point whose `report.json` exists is
//! skipped (unless its recorded configuration, its preset's training recipe or its source
//! files changed since: then it is
//! reported as failed, saying so), a failing point is reported and does not stop the
//! others; the results are a
//! table sorted by dev BLEU as `results.md` + `results.json` and a PNG ([`table`]).
//!
//! ```
//! use c2n_train::sweep::SweepFile;
//! let sweep: SweepFile = toml::from_str(r#"
//!     [base]
//!     lang = "ruby"
//!     preset = "small"
//!     [grid]
//!     lr = [1e-3, 5e-4]
//!     beam_size = [5, 10]
//! "#).unwrap();
//! let points = sweep.expand().unwrap();
//! assert_eq!(points.len(), 4);
//! assert_eq!(points[1].name, "01-beam_size=5-lr=0.0005");
//! ```

pub mod grid;
pub mod runner;
pub mod table;

pub use grid::{SweepFile, SweepPoint};
pub use runner::{lay_out_points, run_points, PointResult, PointStatus};

use crate::{Result, TrainError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a finished sweep wrote.
#[derive(Debug, Clone)]
pub struct SweepOutcome {
    /// Rows sorted by dev BLEU.
    pub rows: Vec<PointResult>,
    pub markdown: PathBuf,
    pub json: PathBuf,
    pub png: PathBuf,
    pub seconds: f64,
    /// Points not started because the interrupt was requested
    /// ([`run_sweep_interruptible`]); their rows are missing.
    pub not_started: usize,
}

/// Threads per run when `parallel` runs share the machine's cores (at least 1).
pub fn threads_per_run(parallel: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / parallel.max(1)).max(1)
}

/// Runs a sweep into `output_dir` and writes `results.md`, `results.json`, `results.png`.
pub fn run_sweep(
    sweep: &SweepFile,
    output_dir: &Path,
    parallel: usize,
    launcher: &(dyn Fn(&Path, usize) -> Command + Sync),
    on_finish: &(dyn Fn(&PointResult) + Sync),
) -> Result<SweepOutcome> {
    run_sweep_interruptible(sweep, output_dir, parallel, None, launcher, on_finish)
}

/// [`run_sweep`] that starts no further point once `interrupt` is requested; the points
/// already running end as their own signal handling makes them (a Ctrl-C at a terminal
/// reaches them too, and their training saves `checkpoint-last`), and the tables cover the
/// points that ran. A rerun of the sweep continues the rest.
pub fn run_sweep_interruptible(
    sweep: &SweepFile,
    output_dir: &Path,
    parallel: usize,
    interrupt: Option<&std::sync::Arc<crate::interrupt::Interrupt>>,
    launcher: &(dyn Fn(&Path, usize) -> Command + Sync),
    on_finish: &(dyn Fn(&PointResult) + Sync),
) -> Result<SweepOutcome> {
    let start = std::time::Instant::now();
    let points = sweep.expand()?;
    if points.is_empty() {
        return Err(TrainError::Config("the sweep has no point".into()));
    }
    // A second sweep here would start the same points and truncate their logs.
    let _lock = crate::run_lock::RunLock::acquire(output_dir, "sweep")?;
    let laid_out = lay_out_points(&points, output_dir)?;
    let results = {
        // Watched while points run: a first request is this loop's to act on.
        let _watching = interrupt.map(|i| i.watch());
        run_points(
            &laid_out,
            parallel,
            interrupt.map(|i| &**i),
            launcher,
            on_finish,
        )
    };
    let not_started = laid_out.len() - results.len();
    let rows = table::sorted(&results);
    let markdown = output_dir.join("results.md");
    let md = format!(
        "# Sweep results ({} runs, {} at a time)\n\n{}\n![results](results.png)\n\n{}\n",
        rows.len(),
        parallel,
        table::markdown(&rows),
        table::PLOT_LEGEND
    );
    let write = crate::output_file::write_text_aside;
    write(&markdown, &md)?;
    let json = output_dir.join("results.json");
    let text = serde_json::to_string_pretty(&rows).map_err(|e| TrainError::parse(&json, e))?;
    write(&json, &text)?;
    let png = output_dir.join("results.png");
    table::results_png(&rows, &png)?;
    Ok(SweepOutcome {
        rows,
        markdown,
        json,
        png,
        seconds: start.elapsed().as_secs_f64(),
        not_started,
    })
}
