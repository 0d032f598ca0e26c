//! Fine-tune the code2nl model with the reference semantics (variant A with `--train-steps`,
//! variant B with `--epochs`), evaluating on a dev file and writing checkpoints.
//!
//! ```text
//! # CPU smoke run: random small model, 50 updates on ruby valid, dev = first lines of test
//! cargo run --release --example train -- --init small --tokenizer ../shared/data/roberta-base \
//!     --train-data ../shared/data/codesearchnet/ruby/valid.jsonl \
//!     --dev-data ../shared/data/codesearchnet/ruby/test.jsonl \
//!     --output-dir /tmp/c2n-run --batch-size 16 --train-steps 50 --eval-steps 25 --lr 1e-3
//! # The CodeBERT README recipe for ruby (GPU):
//! cargo run --release --features cuda --example train -- --init microsoft/codebert-base \
//!     --train-data ruby/train.jsonl --dev-data ruby/valid.jsonl --output-dir model/ruby \
//!     --batch-size 64 --lr 5e-5 --train-steps 20000 --eval-steps 400
//! ```
//! Always ends by writing `OUTPUT/checkpoint-last/model.safetensors`. `--resume` continues from
//! `OUTPUT/checkpoint-last` exactly where it stopped (`--stop-after N` stops after N updates
//! while the schedule still spans the whole run).
//!
//! Data parallel (docs/distributed.md): `--batch-size` is the global batch, each of N ranks
//! takes batch-size / N, and the result does not depend on N (with dropout on, up to the masks:
//! each rank draws its own).
//! ```text
//! train --backend threads --world-size 2 ...          # 2 ranks as threads, one model each
//! mpirun -n 4 target/release/examples/train ...        # backend from the launcher (--features mpi)
//! torchrun --no-python --nproc-per-node 8 target/release/examples/train ...   # nccl
//! ```
//! Only rank 0 writes checkpoints, metrics and dev outputs, and prints.

use anyhow::Result;
use clap::Parser;
use code2nl::cli::train::TrainArgs;
use code2nl::outln;
use code2nl::train::comm::{self, Communicator};
use code2nl::train::config::{Precision, TrainConfig};
use code2nl::train::interrupt::Interrupt;
use code2nl::train::trainer::{TrainSummary, Trainer};
use code2nl::train::TrainError;
use std::sync::Arc;

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let args = TrainArgs::parse();
    let spec = args.launch_spec()?;
    let resolved = args.resolve_config()?;
    for note in &resolved.notes {
        eprintln!("note: {note}");
    }
    let config = resolved.config;
    let output_dir = config.output_dir.clone();
    let resume = args.resume;
    // One handler for the process; every rank it hosts stops after the same update.
    let interrupt = code2nl::cli::interrupt::stop_after_this_update(&format!(
        "`train --resume --output-dir {}`",
        output_dir.display()
    ));
    // Its message shows once: from the process where rank 0 runs.
    code2nl::cli::interrupt::announce(false);
    // The closure is the whole run of one rank; with threads it runs once per thread.
    let ended = comm::launch(&spec, |comm| {
        train_rank(config.clone(), resume, interrupt.clone(), comm)
    })?;
    // An interrupted run fails only now, after every rank has left its collectives (an
    // error inside an MPI rank takes the whole job down, maybe before rank 0 has saved).
    if let Some(Ended::Interrupted(stopped)) = ended {
        return Err(stopped.into());
    }
    if let Some(Ended::Finished(summary)) = ended {
        let shown = |best: Option<f64>| best.map_or_else(|| "none".to_string(), |v| v.to_string());
        let (best_loss, best_bleu) = (shown(summary.best_loss), shown(summary.best_bleu));
        outln!(
            "updates {} batches {} evaluations {} best dev loss {best_loss} best dev bleu {best_bleu} ({:.1} s)",
            summary.updates,
            summary.batches,
            summary.evaluations,
            summary.seconds
        )?;
        outln!(
            "{}",
            output_dir
                .join("checkpoint-last")
                .join("model.safetensors")
                .display()
        )?;
    }
    Ok(())
}

/// How rank 0's run ended.
enum Ended {
    Finished(TrainSummary),
    /// Stopped on a signal: where, and what continues it.
    Interrupted(TrainError),
}

/// One rank's run; `Some` on rank 0 only.
fn train_rank(
    config: TrainConfig,
    resume: bool,
    interrupt: Option<Arc<Interrupt>>,
    comm: &dyn Communicator,
) -> Result<Option<Ended>, TrainError> {
    if comm.is_main() {
        code2nl::cli::interrupt::announce(true);
    }
    let tf32 = config.precision == Precision::Tf32;
    let warnings = config.warnings();
    let mut trainer = Trainer::from_config_on(config, resume, comm)?;
    if comm.is_main() {
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }
    if tf32 && comm.is_main() && trainer.model().device().is_cpu() {
        eprintln!("note: tf32 changes CUDA matrix products only; on the CPU this run is f32");
    }
    if let (Some((saved, now)), true) = (trainer.resumed_on_other_world_size(), comm.is_main()) {
        eprintln!(
            "note: the saved run trained on {saved} rank(s), this one runs on {now}: dropout masks \
             and the split of each batch follow the ranks, so the result will differ from an \
             uninterrupted run's"
        );
    }
    if let Some(earlier) = trainer.earlier_run_set_aside() {
        eprintln!(
            "note: the output folder held an earlier run, moved to {} ({:.1} MB; delete it if \
             not needed; --resume continues a run instead)",
            earlier.dir.display(),
            earlier.bytes as f64 / 1e6
        );
    }
    if resume && comm.is_main() {
        let (done, planned) = (
            trainer.state().counters.global_step,
            trainer.total_updates(),
        );
        eprintln!(
            "resuming from {} after {done} of {planned} updates{}",
            trainer
                .config()
                .output_dir
                .join("checkpoint-last")
                .display(),
            match trainer.config().stop_after {
                _ if done >= planned => ": the run is complete, nothing is left to train".into(),
                _ if trainer.stopped_early() => ": early stopping ended the run, nothing is left \
                                                 to train"
                    .into(),
                Some(stop) if stop <= done => format!(
                    ": already past --stop-after {stop}, nothing is trained (raise it, or drop it \
                     to go on to the end)"
                ),
                _ => String::new(),
            }
        );
    }
    if comm.is_main() {
        eprintln!(
            "training {} parameters on {:?} ({} rank(s), {}): {} updates planned",
            trainer.params().numel(),
            trainer.model().device().location(),
            comm.world_size(),
            comm.backend(),
            trainer.total_updates()
        );
    }
    if let Some(interrupt) = interrupt {
        trainer.stop_on(interrupt);
    }
    let summary = trainer.run_with(comm)?;
    if !comm.is_main() {
        return Ok(None); // rank 0 reports (every rank stops after the same update)
    }
    if summary.interrupted {
        return Ok(Some(Ended::Interrupted(TrainError::Interrupted(format!(
            "training stopped after update {} of {}, {} saved; `train --resume --output-dir {}` \
             continues",
            summary.updates,
            trainer.total_updates(),
            summary.last_checkpoint.display(),
            trainer.config().output_dir.display()
        )))));
    }
    let sync = trainer.sync_stats();
    if sync.updates > 0 {
        let ms = 1e3 * sync.seconds / sync.updates as f64;
        let mb = sync.bytes_per_update as f64 / 1e6;
        eprintln!(
            "gradient all-reduce: {ms:.2} ms per update for {mb:.2} MB ({:.2} ms/MB), {:.1} % of the run",
            ms / mb.max(1e-9),
            100.0 * sync.seconds / summary.seconds.max(1e-9)
        );
    }
    Ok(Some(Ended::Finished(summary)))
}
