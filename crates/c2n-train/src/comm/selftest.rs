//! A collective self-check and an all-reduce benchmark, run by `examples/comm_check.rs` under any
//! launcher (`mpirun`, `srun`, `torchrun`, or threads) to validate a deployment.

use std::time::{Duration, Instant};

use super::{CommError, CommResult, Communicator, ReduceOp};

/// Values chosen so that sums over up to 4096 ranks are exact in f32.
fn probe(rank: usize, i: usize) -> f32 {
    ((rank + 1) * (i % 1024)) as f32
}

/// What [`check_collectives`] verified on this rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Elements in the checked buffers.
    pub elements: usize,
}

/// Runs all-reduce (sum, avg), broadcast, gather and barrier on `elements` values and compares every
/// result with its closed form; any difference is a [`CommError::WrongResult`].
pub fn check_collectives(
    comm: &(impl Communicator + ?Sized),
    elements: usize,
) -> CommResult<CheckReport> {
    let (rank, world) = (comm.rank(), comm.world_size());
    let wrong = |what: &str, i: usize, got: f32, want: f32| {
        CommError::WrongResult(format!(
            "rank {rank}: {what}[{i}] = {got}, expected {want} (world size {world})"
        ))
    };
    let rank_weight = (world * (world + 1) / 2) as f32; // Σ (r + 1)

    let mut sum: Vec<f32> = (0..elements).map(|i| probe(rank, i)).collect();
    comm.all_reduce(&mut sum, ReduceOp::Sum)?;
    for (i, &got) in sum.iter().enumerate() {
        let want = rank_weight * (i % 1024) as f32;
        if got != want {
            return Err(wrong("all_reduce(sum)", i, got, want));
        }
    }

    let mut avg: Vec<f32> = (0..elements).map(|i| probe(rank, i)).collect();
    comm.all_reduce(&mut avg, ReduceOp::Avg)?;
    for (i, &got) in avg.iter().enumerate() {
        let want = rank_weight * (i % 1024) as f32 / world as f32;
        if (got - want).abs() > 1e-6 * want.abs() {
            return Err(wrong("all_reduce(avg)", i, got, want));
        }
    }

    let mut bcast: Vec<f32> = (0..elements).map(|i| probe(rank, i)).collect();
    comm.broadcast(&mut bcast)?;
    for (i, &got) in bcast.iter().enumerate() {
        if got != probe(0, i) {
            return Err(wrong("broadcast", i, got, probe(0, i)));
        }
    }

    let mine: Vec<String> = (0..=rank % 3)
        .map(|j| format!("rank {rank} line {j} ✓"))
        .collect();
    if let Some(per_rank) = comm.gather_strings(&mine)? {
        for (r, items) in per_rank.iter().enumerate() {
            let want: Vec<String> = (0..=r % 3)
                .map(|j| format!("rank {r} line {j} ✓"))
                .collect();
            if *items != want {
                return Err(CommError::WrongResult(format!(
                    "gather_strings from rank {r}: got {items:?}, expected {want:?}"
                )));
            }
        }
        if per_rank.len() != world {
            return Err(CommError::WrongResult(format!(
                "gather_strings returned {} ranks, expected {world}",
                per_rank.len()
            )));
        }
    }

    comm.barrier()?;
    Ok(CheckReport {
        rank,
        world_size: world,
        elements,
    })
}

/// One benchmark row: the mean time of an all-reduce (sum) of `bytes` of f32.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// Buffer size in bytes.
    pub bytes: usize,
    /// Timed repetitions.
    pub iterations: usize,
    /// Mean wall time per all-reduce (the slowest rank's, after a final barrier).
    pub mean: Duration,
}

impl BenchRow {
    /// Milliseconds per MiB of buffer.
    pub fn ms_per_mib(&self) -> f64 {
        self.mean.as_secs_f64() * 1e3 / (self.bytes as f64 / (1 << 20) as f64)
    }

    /// Buffer bytes per second ("algorithm bandwidth"), in GB/s.
    pub fn algbw_gb_s(&self) -> f64 {
        self.bytes as f64 / self.mean.as_secs_f64() / 1e9
    }
}

/// Times `iterations` all-reduces per size after one warm-up; ranks start each size together.
pub fn bench_all_reduce(
    comm: &(impl Communicator + ?Sized),
    sizes_bytes: &[usize],
    iterations: usize,
) -> CommResult<Vec<BenchRow>> {
    let iterations = iterations.max(1);
    let mut rows = Vec::with_capacity(sizes_bytes.len());
    for &bytes in sizes_bytes {
        let mut buf = vec![1.0f32; (bytes / 4).max(1)];
        comm.all_reduce(&mut buf, ReduceOp::Sum)?; // warm-up: page faults, connections
        comm.barrier()?;
        let started = Instant::now();
        for _ in 0..iterations {
            comm.all_reduce(&mut buf, ReduceOp::Sum)?;
        }
        comm.barrier()?;
        let mut elapsed = [started.elapsed().as_secs_f32()];
        // Report the slowest rank; with one rank this is the identity.
        let mut per_rank = vec![0.0f32; comm.world_size()];
        per_rank[comm.rank()] = elapsed[0];
        comm.all_reduce(&mut per_rank, ReduceOp::Sum)?;
        elapsed[0] = per_rank.iter().copied().fold(0.0, f32::max);
        rows.push(BenchRow {
            bytes: buf.len() * 4,
            iterations,
            mean: Duration::from_secs_f64(f64::from(elapsed[0]) / iterations as f64),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::{SingleComm, ThreadGroup};

    #[test]
    fn check_passes_on_correct_backends() {
        assert_eq!(check_collectives(&SingleComm, 3000).unwrap().world_size, 1);
        let reports = ThreadGroup::new(3)
            .unwrap()
            .run(|comm| check_collectives(comm, 3000))
            .unwrap();
        for (rank, report) in reports.into_iter().enumerate() {
            assert_eq!(report.unwrap().rank, rank);
        }
    }

    /// A communicator that adds 1 to every all-reduce result: the check must notice.
    struct OffByOne;

    impl Communicator for OffByOne {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            1
        }
        fn backend(&self) -> crate::comm::Backend {
            crate::comm::Backend::Single
        }
        fn all_reduce(&self, buf: &mut [f32], _op: ReduceOp) -> CommResult<()> {
            buf.iter_mut().for_each(|x| *x += 1.0);
            Ok(())
        }
        fn broadcast(&self, _buf: &mut [f32]) -> CommResult<()> {
            Ok(())
        }
        fn barrier(&self) -> CommResult<()> {
            Ok(())
        }
        fn gather_strings(&self, items: &[String]) -> CommResult<Option<Vec<Vec<String>>>> {
            Ok(Some(vec![items.to_vec()]))
        }
    }

    #[test]
    fn check_detects_wrong_results() {
        let err = check_collectives(&OffByOne, 10).unwrap_err();
        assert!(matches!(err, CommError::WrongResult(_)), "{err}");
        assert!(err.to_string().contains("all_reduce(sum)[0] = 1"), "{err}");
    }

    #[test]
    fn bench_reports_one_row_per_size() {
        let rows = bench_all_reduce(&SingleComm, &[4096, 1 << 16], 2).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.bytes).collect::<Vec<_>>(),
            vec![4096, 1 << 16]
        );
        assert!(rows.iter().all(|r| r.ms_per_mib().is_finite()));
    }
}
