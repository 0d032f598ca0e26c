//! Communicators for data-parallel training.
//!
//! # Data parallelism in one paragraph
//!
//! Every rank holds a full replica of the model and the optimizer. Each step, the global batch is split
//! into one shard per rank; every rank runs forward and backward on its shard, the gradients are
//! **all-reduced** (summed, after weighting, see [`GradWeighting`]) so that every rank holds the same
//! global gradient, and every rank takes the same optimizer step. The replicas stay identical without ever
//! exchanging weights (except once, [`broadcast_vars`], to make sure they start identical).
//!
//! # Backends
//!
//! | backend | memory | ranks are | launched by | feature |
//! |---|---|---|---|---|
//! | [`SingleComm`] | – | this process | – | always |
//! | [`ThreadComm`] | shared | threads of one process | [`ThreadGroup::run`] | always |
//! | `MpiComm` | distributed | processes (any node) | `mpirun`, `srun` | `mpi` |
//! | `NcclComm` | distributed, GPU | one process per GPU | `torchrun --no-python`, `srun` | `nccl` |
//! | `NcclComm` | shared host, GPU | one thread per GPU | `NcclComm::run_threads` (no launcher) | `nccl` |
//!
//! All of them implement [`Communicator`]: flat `f32` buffers for all-reduce and broadcast, a barrier,
//! and a gather of strings to rank 0 (sharded evaluation). The tensor methods have host round-trip
//! defaults; the NCCL backend overrides them to stay on the GPU.
//!
//! # Failure behaviour
//!
//! A job never hangs silently: the thread backend bounds every wait ([`ThreadGroup::with_timeout`]) and
//! fails every waiting rank as soon as one rank errors, panics or leaves; the TCP rendezvous
//! ([`rendezvous`]) has a deadline on both sides. MPI and NCCL jobs are ended by their launcher when a
//! process dies (`mpirun`, `torchrun` and `srun` kill the remaining ranks).
//! NCCL ranks as threads abort each other's communicators when one fails, and a watchdog ends
//! the process if that does not free them ([`abort_group`]).
//!
//! # Example: two thread ranks average a buffer
//!
//! ```
//! use c2n_train::comm::{Communicator, ReduceOp, ThreadGroup};
//!
//! let results = ThreadGroup::new(2)?.run(|comm| {
//!     let mut grad = vec![comm.rank() as f32 + 1.0; 3]; // rank 0: 1.0, rank 1: 2.0
//!     comm.all_reduce(&mut grad, ReduceOp::Avg).map(|()| grad)
//! })?;
//! for grad in results {
//!     assert_eq!(grad?, vec![1.5; 3]);
//! }
//! # Ok::<(), c2n_train::comm::CommError>(())
//! ```
//!
//! # Example: token-weighted gradient sync of named buffers
//!
//! ```
//! use std::collections::BTreeMap;
//! use c2n_train::comm::{
//!     exchange_batch_stats, BucketPlan, Communicator, GradWeighting, LocalBatch, ThreadGroup,
//! };
//!
//! let plan = BucketPlan::new([("w".to_string(), 2), ("b".to_string(), 1)], 25 << 20)?;
//! let out = ThreadGroup::new(2)?.run(|comm| -> Result<_, c2n_train::comm::CommError> {
//!     // Rank 0 saw 1 target token, rank 1 saw 3: their gradients count 1/4 and 3/4.
//!     let tokens = if comm.rank() == 0 { 1 } else { 3 };
//!     let stats = exchange_batch_stats(comm, GradWeighting::TokenMean, LocalBatch { mean_loss: 0.0, tokens })?;
//!     let mut grads = BTreeMap::from([
//!         ("w".to_string(), vec![comm.rank() as f32; 2]),
//!         ("b".to_string(), vec![4.0]),
//!     ]);
//!     plan.sync_named(comm, &mut grads, stats.grad_scale)?;
//!     Ok(grads)
//! })?;
//! let grads = out[0].as_ref().unwrap();
//! assert_eq!(grads["w"], vec![0.75, 0.75]); // 1/4 * 0 + 3/4 * 1
//! assert_eq!(grads["b"], vec![4.0]);
//! # Ok::<(), c2n_train::comm::CommError>(())
//! ```

pub mod abort_group;
mod buckets;
mod env;
mod error;
mod launch;
pub mod parity;
pub mod rendezvous;
pub mod selftest;
mod single;
mod tensors;
mod threads;
pub mod watchdog;
mod weighting;
mod wire;

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;

pub use buckets::{BucketPlan, Segment, DEFAULT_BUCKET_BYTES};
pub use env::{
    timeout_from_lookup, LaunchEnv, Launcher, DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT, TIMEOUT_VAR,
};
pub use error::{CommError, CommResult};
pub use launch::{launch, Backend, LaunchSpec};
pub use single::SingleComm;
pub use tensors::{
    broadcast_vars, empty_grad_store, sync_grad_store, sync_tensor_grads, tensor_to_vec,
    vec_to_tensor,
};
pub use threads::{ThreadComm, ThreadGroup, DEFAULT_TIMEOUT, MAX_THREAD_RANKS};
pub use weighting::{
    exchange_batch_stats, rank_grad_scale, GlobalBatch, GradWeighting, LocalBatch,
};

#[cfg(feature = "mpi")]
pub use self::mpi::MpiComm;
#[cfg(feature = "nccl")]
pub use self::nccl::NcclComm;

use candle_core::{DType, Device, Tensor};

/// How an all-reduce combines the ranks' buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Element-wise sum over ranks.
    Sum,
    /// Element-wise sum divided by the world size (PyTorch DDP's gradient averaging).
    Avg,
}

impl ReduceOp {
    /// The operation's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Avg => "avg",
        }
    }
}

/// A group of ranks that run the same program and meet in collectives.
///
/// Every rank must call the same collectives in the same order with buffers of the same length;
/// backends that can check this (threads) report a [`CommError::Mismatch`] instead of hanging.
/// Results are bitwise identical on every rank, so replicas never drift apart.
pub trait Communicator {
    /// This rank's index, `0 .. world_size()`.
    fn rank(&self) -> usize;

    /// Number of ranks in the group.
    fn world_size(&self) -> usize;

    /// Which backend this is (for logs and checks).
    fn backend(&self) -> Backend;

    /// Combines `buf` element-wise across ranks; on return every rank holds the result.
    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> CommResult<()>;

    /// Copies rank 0's `buf` into every other rank's `buf` (all lengths must be equal).
    fn broadcast(&self, buf: &mut [f32]) -> CommResult<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> CommResult<()>;

    /// Collects every rank's strings on rank 0: `Some(per_rank)` there (index = rank), `None` elsewhere.
    fn gather_strings(&self, items: &[String]) -> CommResult<Option<Vec<Vec<String>>>>;

    /// True on rank 0, the rank that writes files and logs.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The device this rank must compute on, when the backend decides it (NCCL: `cuda:LOCAL_RANK`).
    fn device(&self) -> Option<Device> {
        None
    }

    /// All-reduces a scalar (token counts, loss sums); exact for integers below 2^24.
    fn all_reduce_scalar(&self, value: f32, op: ReduceOp) -> CommResult<f32> {
        let mut buf = [value];
        self.all_reduce(&mut buf, op)?;
        Ok(buf[0])
    }

    /// All-reduces a tensor of any shape and dtype; the result has `t`'s shape, dtype and device.
    ///
    /// The default goes through host memory in f32; GPU backends override it.
    fn all_reduce_tensor(&self, t: &Tensor, op: ReduceOp) -> CommResult<Tensor> {
        let mut host = tensor_to_vec(t)?;
        self.all_reduce(&mut host, op)?;
        vec_to_tensor(host, t)
    }

    /// Returns rank 0's value of `t` on every rank (same shape, dtype and device as `t`).
    fn broadcast_tensor(&self, t: &Tensor) -> CommResult<Tensor> {
        let mut host = tensor_to_vec(t)?;
        self.broadcast(&mut host)?;
        vec_to_tensor(host, t)
    }
}

/// The dtype used on the wire: gradients are communicated in f32 whatever the compute precision.
pub const WIRE_DTYPE: DType = DType::F32;
