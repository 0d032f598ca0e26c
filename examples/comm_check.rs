//! Checks (and optionally benchmarks) the data-parallel communicator under a launcher, and checks
//! that training under it equals one rank on the combined batch.
//!
//! ```text
//! cargo run --release --example comm_check -- --backend threads --world-size 4
//! cargo build --release --features mpi --example comm_check
//! mpirun -n 2 --oversubscribe target/release/examples/comm_check --backend mpi
//! mpirun -n 2 --oversubscribe target/release/examples/comm_check --backend mpi --bench
//! torchrun --no-python --nproc-per-node 8 target/release/examples/comm_check --backend nccl
//! target/release/examples/comm_check --backend nccl --world-size 8   # one thread per GPU
//! ```
//! Exits non-zero if any collective returns a wrong value.
//!
//! Training parity (what `scripts/mpi-test.sh` runs): every rank trains the tiny fixture of
//! `c2n_train::comm::parity` for `--steps` updates of a global batch of 4; rank 0 saves the final
//! parameters. The backend comes from the launcher (mpirun: MPI) unless `--backend` is given;
//! without a launcher it is one rank on the combined batch. `compare` then fails, naming the
//! worst tensor, if any tensor's relative L2 difference exceeds the tolerance.
//! ```text
//! mpirun -n 2 --oversubscribe target/release/examples/comm_check train-parity --out /tmp/a.safetensors
//! target/release/examples/comm_check train-parity --out /tmp/b.safetensors
//! target/release/examples/comm_check compare /tmp/a.safetensors /tmp/b.safetensors
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use code2nl::cli::train::{launch_spec, BackendArg};
use code2nl::train::comm::parity::{
    params_snapshot, replica_mismatches, tensor_diffs, worst, write_parity_fixture,
    PARITY_TOLERANCE,
};
use code2nl::train::comm::selftest::{bench_all_reduce, check_collectives};
use code2nl::train::comm::{launch, Backend, CommError, Communicator, LaunchSpec, ReduceOp};
use code2nl::train::trainer::Trainer;
use code2nl::train::TrainError;

/// The tiny PyTorch-exported model that the training tests start from.
const FIXTURE_INIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crates/c2n-train/tests/data/train_steps/init"
);

#[derive(Parser, Debug)]
#[command(about = "Check and benchmark the communicator (single, threads, mpi, nccl)")]
struct Args {
    /// Collective check: default threads. train-parity: default from the launcher's environment.
    #[arg(long, value_enum, global = true)]
    backend: Option<BackendArg>,
    /// Ranks to start (threads) or to expect from the launcher (mpi, nccl).
    #[arg(long, global = true)]
    world_size: Option<usize>,
    /// Elements per checked buffer.
    #[arg(long, default_value_t = 1_000_003)]
    elements: usize,
    /// Also time all-reduces of --sizes-mib buffers.
    #[arg(long)]
    bench: bool,
    /// Buffer sizes for --bench, in MiB.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    sizes_mib: Vec<usize>,
    /// Timed all-reduces per size.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Seconds any rank may wait in one collective or the rendezvous.
    #[arg(long, default_value_t = 120, global = true)]
    timeout_s: u64,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Train the tiny parity fixture on every rank; rank 0 saves the final parameters.
    TrainParity {
        /// Where rank 0 writes the parameters (safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Optimizer updates (global batch 4 of 8 examples).
        #[arg(long, default_value_t = 3)]
        steps: u64,
        /// The initial code2nl checkpoint (vocabulary of at least 34, 14 positions).
        #[arg(long, default_value = FIXTURE_INIT)]
        init: String,
    },
    /// Rank --rank fails at once while the others wait in an all-reduce: the job must end
    /// with an error (non-zero exit), not hang.
    FailOnRank {
        #[arg(long, default_value_t = 1)]
        rank: usize,
        /// Panic instead of returning an error.
        #[arg(long)]
        panic: bool,
    },
    /// Rank --rank stays alive but joins no collective for --seconds (a stopped process):
    /// the others must end the job after --timeout-s, not wait for it.
    StallOnRank {
        #[arg(long, default_value_t = 1)]
        rank: usize,
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
    /// Compare two saved parameter sets tensor by tensor; fails above --tolerance.
    Compare {
        got: PathBuf,
        want: PathBuf,
        /// Largest accepted relative L2 difference of any tensor.
        #[arg(long, default_value_t = PARITY_TOLERANCE)]
        tolerance: f64,
    },
}

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    match &args.mode {
        None => check(&args),
        Some(Mode::TrainParity { out, steps, init }) => train_parity(&args, out, *steps, init),
        Some(Mode::FailOnRank { rank, panic }) => fail_on_rank(&args, *rank, *panic),
        Some(Mode::StallOnRank { rank, seconds }) => stall_on_rank(&args, *rank, *seconds),
        Some(Mode::Compare {
            got,
            want,
            tolerance,
        }) => compare(got, want, *tolerance),
    }
}

/// The launch of the collective checks: `--backend` (default threads), `--world-size`,
/// `--timeout-s`.
fn collective_spec(args: &Args) -> LaunchSpec {
    let backend = Backend::from(args.backend.unwrap_or(BackendArg::Threads));
    let mut spec = LaunchSpec::new(backend, args.world_size);
    spec.timeout = Duration::from_secs(args.timeout_s);
    spec
}

fn fail_on_rank(args: &Args, failing: usize, panic: bool) -> Result<()> {
    let spec = collective_spec(args);
    launch(&spec, |comm: &dyn Communicator| -> Result<(), CommError> {
        if comm.rank() == failing {
            assert!(!panic, "rank {failing} panics on purpose");
            return Err(CommError::InvalidInput(format!(
                "rank {failing} fails on purpose"
            )));
        }
        comm.all_reduce_scalar(1.0, ReduceOp::Sum).map(|_| ())
    })?;
    bail!("no rank failed: rank {failing} is not below the world size")
}

fn stall_on_rank(args: &Args, stalling: usize, seconds: u64) -> Result<()> {
    let spec = collective_spec(args);
    launch(&spec, |comm: &dyn Communicator| -> Result<(), CommError> {
        if comm.rank() == stalling {
            std::thread::sleep(Duration::from_secs(seconds));
        }
        comm.all_reduce_scalar(1.0, ReduceOp::Sum).map(|_| ())
    })?;
    bail!("every rank finished: the stall of rank {stalling} was shorter than the timeout")
}

fn check(args: &Args) -> Result<()> {
    let spec = collective_spec(args);
    let backend = spec.backend;
    let sizes: Vec<usize> = args.sizes_mib.iter().map(|m| m << 20).collect();
    let rows = launch(&spec, |comm: &dyn Communicator| -> Result<_, CommError> {
        let report = check_collectives(comm, args.elements)?;
        if comm.is_main() {
            println!(
                "comm_check OK: backend={} world_size={} elements={}",
                comm.backend(),
                report.world_size,
                report.elements
            );
        }
        if args.bench {
            bench_all_reduce(comm, &sizes, args.iterations)
                .map(|rows| (comm.rank(), comm.world_size(), rows))
        } else {
            Ok((comm.rank(), comm.world_size(), Vec::new()))
        }
    })
    .with_context(|| format!("communicator check failed (backend {backend})"))?;
    let (rank, world_size, rows) = rows;
    if rank == 0 && !rows.is_empty() {
        println!("backend\tranks\tMiB\tms/all-reduce\tms/MiB\talgbw GB/s");
        for row in rows {
            println!(
                "{}\t{}\t{}\t{:.3}\t{:.3}\t{:.2}",
                backend,
                world_size,
                row.bytes >> 20,
                row.mean.as_secs_f64() * 1e3,
                row.ms_per_mib(),
                row.algbw_gb_s()
            );
        }
    }
    Ok(())
}

fn train_parity(args: &Args, out: &Path, steps: u64, init: &str) -> Result<()> {
    let mut spec = launch_spec(args.backend, args.world_size)?;
    spec.timeout = Duration::from_secs(args.timeout_s);
    // One scratch directory per process (MPI ranks are separate processes).
    let scratch = tempfile::tempdir()?;
    launch(&spec, |comm| -> Result<(), TrainError> {
        let dir = scratch.path().join(format!("rank{}", comm.rank()));
        let config = write_parity_fixture(&dir, init, steps)?;
        let mut trainer = Trainer::from_config_on(config, false, comm)?;
        let initial = params_snapshot(trainer.params())?;
        let summary = trainer.run_with(comm)?;
        let drifted = replica_mismatches(comm, trainer.params())?;
        if drifted > 0 {
            return Err(TrainError::InvalidInput(format!(
                "{drifted} parameter tensors differ from rank 0's after training"
            )));
        }
        if comm.is_main() {
            let last = params_snapshot(trainer.params())?;
            let moved = tensor_diffs(&last, &initial)?;
            let most = worst(&moved).map_or(0.0, |d| d.relative_l2);
            // Unmoved weights would make the comparison prove nothing.
            if most.is_nan() || most <= 100.0 * PARITY_TOLERANCE {
                return Err(TrainError::InvalidInput(format!(
                    "training moved the weights by at most {most:.2e} (relative L2)"
                )));
            }
            candle_core::safetensors::save(&last, out)?;
            println!(
                "train-parity: backend={} ranks={} updates={} tensors={}, moved up to {most:.2e} \
                 (relative L2 from init){}; wrote {}",
                comm.backend(),
                comm.world_size(),
                summary.updates,
                last.len(),
                if comm.world_size() > 1 {
                    ", replicas bit-identical"
                } else {
                    ""
                },
                out.display()
            );
        }
        Ok(())
    })
    .with_context(|| format!("train-parity failed (backend {})", spec.backend))
}

fn compare(got: &Path, want: &Path, tolerance: f64) -> Result<()> {
    let load = |p: &Path| {
        candle_core::safetensors::load(p, &candle_core::Device::Cpu)
            .with_context(|| format!("reading {}", p.display()))
    };
    let diffs = tensor_diffs(&load(got)?, &load(want)?)?;
    let Some(w) = worst(&diffs) else {
        bail!("{} holds no tensor", want.display());
    };
    let verdict = if w.relative_l2 <= tolerance {
        "OK"
    } else {
        "FAIL"
    };
    let zero_gradient = diffs
        .iter()
        .map(|d| d.zero_gradient_max_abs)
        .fold(0.0, f64::max);
    println!(
        "compare {verdict}: {} tensors, max relative L2 difference {:.3e} ({}), tolerance {tolerance:.0e}; \
         entries with an exactly zero gradient (attention key biases, Adam-amplified noise) apart by at most {zero_gradient:.3e}",
        diffs.len(),
        w.relative_l2,
        w.name
    );
    if verdict != "OK" {
        bail!(
            "{} differs from {}: tensor {} has relative L2 difference {:.3e} > {tolerance:.0e}",
            got.display(),
            want.display(),
            w.name,
            w.relative_l2
        );
    }
    Ok(())
}
