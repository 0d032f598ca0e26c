//! MPI ranks (feature `mpi`): one process per rank, distributed memory, launched with `mpirun` or `srun`.
//!
//! Uses the `mpi` crate over the system MPI (Open MPI 4 tested). MPI's default error handler aborts the
//! whole job on a communication error, and `mpirun`/`srun` kill the remaining ranks when one exits with
//! an error. A rank whose work fails must not merely return: finalizing MPI (dropping [`MpiComm`])
//! waits for every rank, and the others may be blocked in a collective. [`launch`](super::launch)
//! therefore calls [`MpiComm::abort_job`] on an error, so a dead rank never leaves the others hanging.
//! A rank that is alive but stopped would still stall the others in a collective, silently: a
//! [`CollectiveWatchdog`] ends a process whose collective waits longer than the timeout, and the
//! launcher then ends the job.

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::Count;

use std::time::Duration;

use super::abort_group::exit_process;
use super::watchdog::{CollectiveWatchdog, Watch};
use super::wire::{decode_strings, encode_strings};
use super::{Backend, CommError, CommResult, Communicator, ReduceOp, DEFAULT_TIMEOUT};

/// Largest element count per MPI call: MPI counts are C `int`s.
const MAX_CHUNK: usize = 1 << 30;

/// The MPI world communicator; MPI is finalized when this is dropped.
pub struct MpiComm {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Bounds every wait in a collective (several ranks only).
    watchdog: Option<CollectiveWatchdog>,
    // Dropped last: finalizes MPI.
    _universe: Universe,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl MpiComm {
    /// Initializes MPI (once per process) and returns the world communicator, whose
    /// collectives may wait [`DEFAULT_TIMEOUT`] for the other ranks.
    pub fn init() -> CommResult<Self> {
        Self::init_with_timeout(DEFAULT_TIMEOUT)
    }

    /// [`MpiComm::init`] with another bound on one collective's wait: past it, the process
    /// says which collective waited and exits with status 1, and the launcher ends the job.
    pub fn init_with_timeout(timeout: Duration) -> CommResult<Self> {
        let universe = mpi::initialize().ok_or_else(|| CommError::Backend {
            backend: "mpi",
            message: "MPI is already initialized in this process (create one MpiComm and share it)"
                .into(),
        })?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        let rank = usize::try_from(rank).unwrap_or_default();
        let size = usize::try_from(size).unwrap_or(1);
        let watchdog =
            (size > 1).then(|| CollectiveWatchdog::start(rank, size, timeout, exit_process()));
        Ok(Self {
            rank,
            size,
            watchdog,
            world,
            _universe: universe,
        })
    }

    fn watch(&self, op: &'static str) -> Option<Watch<'_>> {
        self.watchdog.as_ref().map(|dog| dog.watch(op))
    }
}

impl MpiComm {
    /// Prints `message` as this rank's error and aborts every rank of the job (`MPI_Abort`,
    /// exit code 1). With one rank it returns, and the caller's error ends the process normally.
    pub fn abort_job(&self, message: &str) {
        if self.size > 1 {
            eprintln!(
                "rank {} of {}: {message}; aborting the MPI job",
                self.rank, self.size
            );
            self.world.abort(1);
        }
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn backend(&self) -> Backend {
        Backend::Mpi
    }

    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> CommResult<()> {
        if self.size == 1 {
            return Ok(());
        }
        let _watch = self.watch("all_reduce");
        // The crate has no MPI_IN_PLACE, so reduce from a copy of each chunk.
        let mut send = Vec::with_capacity(buf.len().min(MAX_CHUNK));
        for chunk in buf.chunks_mut(MAX_CHUNK) {
            send.clear();
            send.extend_from_slice(chunk);
            self.world
                .all_reduce_into(&send[..], chunk, SystemOperation::sum());
        }
        if op == ReduceOp::Avg {
            let n = self.size as f32;
            buf.iter_mut().for_each(|x| *x /= n);
        }
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32]) -> CommResult<()> {
        if self.size == 1 {
            return Ok(());
        }
        let _watch = self.watch("broadcast");
        // Different lengths would corrupt memory silently in MPI: compare them first.
        let mut len = [buf.len() as u64];
        self.world.process_at_rank(0).broadcast_into(&mut len[..]);
        if len[0] != buf.len() as u64 {
            return Err(CommError::Mismatch(format!(
                "rank {} broadcasts {} values, rank 0 sends {}",
                self.rank,
                buf.len(),
                len[0]
            )));
        }
        let root = self.world.process_at_rank(0);
        for chunk in buf.chunks_mut(MAX_CHUNK) {
            root.broadcast_into(chunk);
        }
        Ok(())
    }

    fn barrier(&self) -> CommResult<()> {
        let _watch = self.watch("barrier");
        self.world.barrier();
        Ok(())
    }

    fn gather_strings(&self, items: &[String]) -> CommResult<Option<Vec<Vec<String>>>> {
        let bytes = encode_strings(items);
        let my_len = Count::try_from(bytes.len()).map_err(|_| {
            CommError::InvalidInput(format!(
                "rank {} gathers {} bytes; MPI counts stop at 2 GiB",
                self.rank,
                bytes.len()
            ))
        })?;
        let _watch = self.watch("gather_strings");
        let root = self.world.process_at_rank(0);
        if self.rank != 0 {
            root.gather_into(&my_len);
            root.gather_varcount_into(&bytes[..]);
            return Ok(None);
        }
        let mut counts: Vec<Count> = vec![0; self.size];
        root.gather_into_root(&my_len, &mut counts[..]);
        let mut displs = Vec::with_capacity(self.size);
        let mut total: Count = 0;
        for &c in &counts {
            displs.push(total);
            total = total.checked_add(c).ok_or_else(|| {
                CommError::InvalidInput("gathered strings exceed 2 GiB on rank 0".into())
            })?;
        }
        let mut all = vec![0u8; usize::try_from(total).unwrap_or_default()];
        {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            root.gather_varcount_into_root(&bytes[..], &mut partition);
        }
        let mut per_rank = Vec::with_capacity(self.size);
        for (r, (&start, &len)) in displs.iter().zip(&counts).enumerate() {
            let (start, len) = (start as usize, len as usize);
            per_rank.push(decode_strings(&all[start..start + len]).ok_or_else(|| {
                CommError::Backend {
                    backend: "mpi",
                    message: format!("rank {r} sent malformed strings"),
                }
            })?);
        }
        Ok(Some(per_rank))
    }
}
