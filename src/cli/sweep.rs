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
    /// Runs at the same time (child processes; the CPU threads are split between them)
    /// (default: the number of --gpus, else 1).
    #[arg(long, value_parser = super::at_least_one)]
    pub parallel: Option<usize>,
    /// GPUs to share the runs out over (e.g. `0,1,2,3`, as this sweep sees them: positions in
    /// its own CUDA_VISIBLE_DEVICES when that is set): each running child sees one of them
    /// alone (CUDA_VISIBLE_DEVICES), so no two runs share a GPU unless --parallel asks for
    /// more runs than GPUs. A point's `device` stays as its config says: `auto` or `cuda`
    /// then means the child's one GPU (`cpu` stays on the CPU, `cuda:1` finds no GPU).
    #[arg(long, value_delimiter = ',', value_name = "IDS", value_parser = gpu_id)]
    pub gpus: Vec<String>,
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

impl SweepArgs {
    /// Runs at the same time: `--parallel`, else one per GPU, else 1.
    pub fn parallel(&self) -> usize {
        self.parallel.unwrap_or(self.gpus.len().max(1))
    }

    /// The GPU the child started by runner `slot` sees, if `--gpus` was given (runners beyond
    /// the GPU count share them in turn).
    pub fn gpu_for_slot(&self, slot: usize) -> Option<&str> {
        (!self.gpus.is_empty()).then(|| self.gpus[slot % self.gpus.len()].as_str())
    }

    /// The child's `CUDA_VISIBLE_DEVICES` for runner `slot`: its `--gpus` entry, read through
    /// the sweep's own `CUDA_VISIBLE_DEVICES` when it has one (under Slurm or in a container
    /// `--gpus 0,1` are the first two GPUs this sweep sees, not the machine's GPUs 0 and 1).
    /// An entry this sweep cannot see is an error, never another job's GPU.
    pub fn visible_device_for_slot(
        &self,
        slot: usize,
        inherited: Option<&str>,
    ) -> Result<Option<String>, String> {
        let Some(id) = self.gpu_for_slot(slot) else {
            return Ok(None);
        };
        let Some(inherited) = inherited else {
            return Ok(Some(id.to_string()));
        };
        let visible: Vec<&str> = inherited
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        match id.parse::<usize>() {
            Ok(n) => visible.get(n).map(|v| Some(v.to_string())).ok_or_else(|| {
                format!(
                    "--gpus {id}: this sweep sees {} GPU(s) (CUDA_VISIBLE_DEVICES={inherited:?}), \
                     numbered 0 to {}",
                    visible.len(),
                    visible.len().saturating_sub(1)
                )
            }),
            // A UUID names one GPU whatever the numbering; it must be one this sweep sees.
            Err(_) if visible.contains(&id) => Ok(Some(id.to_string())),
            Err(_) => Err(format!(
                "--gpus {id}: not among the GPUs this sweep sees (CUDA_VISIBLE_DEVICES={inherited:?})"
            )),
        }
    }
}

/// A CUDA device number (what `CUDA_VISIBLE_DEVICES` takes), or a GPU UUID (`GPU-…`).
fn gpu_id(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.parse::<u32>().is_ok() || value.starts_with("GPU-") || value.starts_with("MIG-") {
        Ok(value.to_string())
    } else {
        Err(format!(
            "`{value}` is not a GPU: give CUDA device numbers (0,1,…) or GPU UUIDs"
        ))
    }
}
