//! Hyperparameter sweep: every point of a TOML grid/list is a pipeline run (train +
//! evaluate) in its own folder, run N at a time as child processes of this program.
//!
//! ```text
//! cargo run --release --example sweep -- --grid examples/sweep-small.toml --parallel 2 \
//!     --output-dir runs/sweep
//! ```
//! Rerunning skips finished points; a failing point is reported and the others go on.

use anyhow::{bail, Context, Result};
use clap::Parser;
use code2nl::cli::sweep::SweepArgs;
use code2nl::train::pipeline::{run_pipeline_interruptible, PipelineConfig};
use code2nl::train::sweep::{run_sweep_interruptible, threads_per_run, PointStatus, SweepFile};
use code2nl::{out, outln};
use std::process::Command;

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let args = SweepArgs::parse();
    if let Some(config) = &args.run_one {
        let config = PipelineConfig::load(config)?;
        let interrupt = code2nl::cli::interrupt::stop_after_this_update("the same sweep");
        let report = run_pipeline_interruptible(&config, interrupt.as_ref(), &mut |line| {
            eprintln!("{line}")
        })?;
        outln!("{}", report.markdown())?;
        return Ok(());
    }
    let Some(grid) = &args.grid else {
        bail!("--grid FILE is required");
    };
    let sweep = SweepFile::load(grid)?;
    // Every point is checked before the first one starts: a typo fails now, not in each child.
    for point in sweep.expand()? {
        point
            .config
            .validate()
            .with_context(|| format!("{}: point {}", grid.display(), point.name))?;
    }
    let parallel = args.parallel();
    let threads = args
        .threads_per_run
        .unwrap_or_else(|| threads_per_run(parallel));
    let exe = std::env::current_exe().context("locating this program for the child runs")?;
    let gpus = if args.gpus.is_empty() {
        String::new()
    } else {
        format!(", one of GPUs {} each", args.gpus.join(","))
    };
    eprintln!(
        "sweep {}: {} runs, {parallel} at a time, {threads} threads each{gpus} → {}",
        grid.display(),
        sweep.expand()?.len(),
        args.output_dir.display()
    );
    // Every runner's GPU is checked before the first run starts.
    let inherited = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let visible: Vec<Option<String>> = (0..parallel)
        .map(|slot| args.visible_device_for_slot(slot, inherited.as_deref()))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let launcher = |config: &std::path::Path, slot: usize| {
        let mut cmd = Command::new(&exe);
        cmd.arg("--run-one")
            .arg(config)
            .env("RAYON_NUM_THREADS", threads.to_string());
        if let Some(Some(gpu)) = visible.get(slot) {
            cmd.env("CUDA_VISIBLE_DEVICES", gpu);
        }
        // A sweep killed by a signal takes its runs with it.
        code2nl::cli::end_with_parent(&mut cmd);
        cmd
    };
    let interrupt = code2nl::cli::interrupt::install(
        "no further run starts, and the running ones are asked to stop (SIGTERM: their \
         training saves checkpoint-last after its current update); the same sweep command \
         continues them; another Ctrl-C a second or more later stops at once"
            .to_string(),
    );
    let outcome = run_sweep_interruptible(
        &sweep,
        &args.output_dir,
        parallel,
        interrupt.as_ref(),
        &launcher,
        &|r| {
            let what = match (&r.status, r.dev_bleu()) {
                (PointStatus::Failed { log_tail, .. }, _) => format!("FAILED: {log_tail}"),
                (PointStatus::Stopped { .. }, _) => "stopped (the same sweep continues it)".into(),
                (PointStatus::Skipped, Some(b)) => format!("done earlier, dev BLEU {b:.2}"),
                (_, Some(b)) => format!("dev BLEU {b:.2} in {:.0} s", r.seconds),
                (_, None) => "no report".into(),
            };
            eprintln!("{}: {what}", r.name);
        },
    )?;
    out!("{}", std::fs::read_to_string(&outcome.markdown)?)?;
    let failed = outcome
        .rows
        .iter()
        .filter(|r| matches!(r.status, PointStatus::Failed { .. }))
        .count();
    let stopped = outcome
        .rows
        .iter()
        .filter(|r| matches!(r.status, PointStatus::Stopped { .. }))
        .count();
    outln!(
        "{} runs in {:.0} s ({failed} failed{}); {}",
        outcome.rows.len(),
        outcome.seconds,
        if stopped > 0 {
            format!(", {stopped} stopped")
        } else {
            String::new()
        },
        outcome.markdown.display()
    )?;
    if outcome.not_started > 0 || stopped > 0 {
        bail!(
            "interrupted: {stopped} run(s) stopped and {} of {} not started ({failed} failed); \
             the same sweep command continues",
            outcome.not_started,
            outcome.rows.len() + outcome.not_started
        );
    }
    if failed > 0 {
        bail!("{failed} of {} runs failed", outcome.rows.len());
    }
    Ok(())
}
