//! Checks (and optionally benchmarks) the data-parallel communicator under a launcher.
//!
//! ```text
//! cargo run --release --example comm_check -- --backend threads --world-size 4
//! cargo build --release --features mpi --example comm_check
//! mpirun -n 2 --oversubscribe target/release/examples/comm_check --backend mpi
//! mpirun -n 2 --oversubscribe target/release/examples/comm_check --backend mpi --bench
//! torchrun --no-python --nproc-per-node 8 target/release/examples/comm_check --backend nccl
//! ```
//! Exits non-zero if any collective returns a wrong value.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use code2nl::train::comm::selftest::{bench_all_reduce, check_collectives};
use code2nl::train::comm::{launch, Backend, CommError, Communicator, LaunchSpec};

#[derive(Parser, Debug)]
#[command(about = "Check and benchmark the communicator (single, threads, mpi, nccl)")]
struct Args {
    /// single | threads | mpi | nccl
    #[arg(long, default_value = "threads")]
    backend: Backend,
    /// Ranks to start (threads) or to expect from the launcher (mpi, nccl).
    #[arg(long)]
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
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut spec = LaunchSpec::new(args.backend, args.world_size);
    spec.timeout = Duration::from_secs(args.timeout_s);
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
    .with_context(|| format!("communicator check failed (backend {})", args.backend))?;
    let (rank, world_size, rows) = rows;
    if rank == 0 && !rows.is_empty() {
        println!("backend\tranks\tMiB\tms/all-reduce\tms/MiB\talgbw GB/s");
        for row in rows {
            println!(
                "{}\t{}\t{}\t{:.3}\t{:.3}\t{:.2}",
                args.backend,
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
