//! NCCL ranks (feature `nccl`), on Candle's own stream, in either of two layouts:
//!
//! - **one process per GPU** ([`NcclComm::from_launch_env`], under torchrun or srun): rank 0
//!   creates the 128-byte NCCL unique id and hands it to the other ranks over the TCP rendezvous
//!   ([`share_from_rank0`]), then every rank joins with `ncclCommInitRank`. The GPU is chosen by
//!   `LOCAL_RANK`, never by the global rank;
//! - **one thread per GPU in this process** ([`NcclComm::run_threads`], no launcher): the
//!   communicators of `cuda:0 .. cuda:N-1` come from one `ncclCommInitAll`
//!   (`Comm::from_devices`), and a rank that fails aborts its peers' communicators
//!   ([`super::abort_group`]), so none waits for it for ever.
//!
//! Use [`Communicator::device`] for all tensors of a rank: Candle gives every `Device::new_cuda`
//! call a new device id, so create no second one.
//!
//! Only NCCL's own collectives are used (all-reduce, broadcast, all-gather); the string gather is an
//! all-gather of lengths and then of padded bytes. NCCL cannot put two ranks on one GPU, so on a one-GPU
//! machine only world size 1 runs; multi-rank logic is tested with the thread backend.

use std::sync::Arc;
use std::time::Duration;

use candle_core::backend::BackendStorage;
use candle_core::cuda::cudarc::driver::{CudaContext, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda::cudarc::nccl::{Comm, Id, NcclType, ReduceOp as NcclReduceOp};
use candle_core::cuda::{CudaDType, CudaStorage};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use super::abort_group::{exit_process, run_ranks, AbortableGroup};
use super::rendezvous::share_from_rank0;
use super::watchdog::{CollectiveWatchdog, Watch};
use super::wire::{decode_strings, encode_strings};
use super::{Backend, CommError, CommResult, Communicator, LaunchEnv, ReduceOp};

/// A cudarc communicator that may move to the thread of the rank that uses it.
struct SendComm(Comm);

// SAFETY: an NCCL communicator may be used from any thread as long as one thread at a time
// does: each rank's thread uses its own, and `AbortableGroup` hands it out under a lock. The
// other uses are its drop (`ncclCommAbort`), either by a failing rank that took it out of its
// slot under that lock, or by whichever thread drops the group last, when no rank uses it.
unsafe impl Send for SendComm {}

/// Size of `ncclUniqueId`.
const NCCL_ID_BYTES: usize = 128;

/// One GPU rank of an NCCL communicator.
pub struct NcclComm {
    /// The communicators of the ranks this process hosts (one, or one per thread).
    group: Arc<AbortableGroup<SendComm>>,
    /// This rank's place in `group`.
    slot: usize,
    /// Bounds the waits of the collectives that end on the host (several ranks only).
    watchdog: Option<CollectiveWatchdog>,
    device: Device,
    rank: usize,
    world_size: usize,
}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("device", &self.device)
            .finish()
    }
}

fn nccl_error(what: &str, e: impl std::fmt::Debug) -> CommError {
    CommError::Backend {
        backend: "nccl",
        message: format!("{what}: {e:?}"),
    }
}

impl NcclComm {
    /// Opens `cuda:LOCAL_RANK`, exchanges the NCCL id over TCP (bounded by `timeout`) and joins.
    pub fn from_launch_env(env: &LaunchEnv, timeout: Duration) -> CommResult<Self> {
        let device = Device::new_cuda(env.local_rank)
            .map(crate::device::tuned)
            .map_err(|e| CommError::Backend {
                backend: "nccl",
                message: format!(
                    "rank {}: cannot open cuda:{} (LOCAL_RANK; check CUDA_VISIBLE_DEVICES and \
                 --nproc-per-node): {e}",
                    env.rank, env.local_rank
                ),
            })?;
        let stream = device.as_cuda_device()?.cuda_stream();
        let id_bytes = share_from_rank0(
            env,
            || {
                let id = Id::new().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
                Ok(id.internal().iter().map(|&c| c as u8).collect())
            },
            timeout,
        )?;
        if id_bytes.len() != NCCL_ID_BYTES {
            return Err(nccl_error(
                "rendezvous",
                format!(
                    "the NCCL id has {} bytes, expected {NCCL_ID_BYTES}",
                    id_bytes.len()
                ),
            ));
        }
        let mut internal = [0 as std::ffi::c_char; NCCL_ID_BYTES];
        for (dst, &src) in internal.iter_mut().zip(&id_bytes) {
            *dst = src as std::ffi::c_char;
        }
        // Blocks until every rank has joined; the launcher kills the job if a rank dies meanwhile.
        let comm = Comm::from_rank(stream, env.rank, env.world_size, Id::uninit(internal))
            .map_err(|e| nccl_error("ncclCommInitRank", e))?;
        Ok(Self {
            group: Arc::new(AbortableGroup::new(vec![SendComm(comm)])),
            slot: 0,
            watchdog: watchdog_for(env.rank, env.world_size, timeout),
            device,
            rank: env.rank,
            world_size: env.world_size,
        })
    }

    /// Runs `body` as ranks `0 .. world_size` on threads of this process, rank `r` on `cuda:r`
    /// (`world_size` `None`: every visible GPU), and returns the results in rank order, or the
    /// error of the rank that failed first. If ranks are still running `timeout` after a rank
    /// failed and their communicators were aborted, the process prints why and exits with
    /// status 1.
    pub fn run_threads<T, E, F>(
        world_size: Option<usize>,
        timeout: Duration,
        body: F,
    ) -> Result<Vec<T>, E>
    where
        T: Send,
        E: Send + From<CommError> + std::fmt::Display,
        F: Fn(&NcclComm) -> Result<T, E> + Sync,
    {
        let visible = CudaContext::device_count()
            .map_err(|e| nccl_error("counting the CUDA devices", e))?
            .max(0) as usize;
        let world_size = world_size.unwrap_or(visible);
        if world_size == 0 || world_size > visible {
            return Err(CommError::InvalidInput(format!(
                "--backend nccl without a launcher runs one thread per GPU: {world_size} rank(s) \
                 asked, {visible} GPU(s) visible (CUDA_VISIBLE_DEVICES={})",
                std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "unset".into())
            ))
            .into());
        }
        let devices = (0..world_size)
            .map(|ordinal| {
                Device::new_cuda(ordinal)
                    .map(crate::device::tuned)
                    .map_err(|e| nccl_error(&format!("opening cuda:{ordinal}"), e))
            })
            .collect::<CommResult<Vec<_>>>()?;
        let streams = devices
            .iter()
            .map(|d| Ok(d.as_cuda_device()?.cuda_stream()))
            .collect::<CommResult<Vec<_>>>()?;
        // A rank must never block inside a collective's launch waiting for a peer (NCCL 2.22+
        // connects peers lazily there), or a failing rank could not take its communicator to
        // abort it: connect every peer in ncclCommInitAll instead. NCCL reads the variable at
        // init; a value the user set is kept.
        if std::env::var_os("NCCL_RUNTIME_CONNECT").is_none() {
            std::env::set_var("NCCL_RUNTIME_CONNECT", "0");
        }
        let comms = Comm::from_devices(streams).map_err(|e| nccl_error("ncclCommInitAll", e))?;
        let group = Arc::new(AbortableGroup::new(
            comms.into_iter().map(SendComm).collect(),
        ));
        run_ranks(&group, timeout, exit_process(), |rank| {
            let comm = NcclComm {
                group: Arc::clone(&group),
                slot: rank,
                watchdog: watchdog_for(rank, world_size, timeout),
                device: devices[rank].clone(),
                rank,
                world_size,
            };
            body(&comm)
        })
    }

    fn run(&self, t: &Tensor, kind: Collective) -> CommResult<Tensor> {
        let t = t.contiguous()?;
        let op_name = kind.name();
        self.group
            .with_comm(self.slot, self.rank, op_name, |comm| {
                t.apply_op1_no_bwd(&NcclCollective {
                    comm: &comm.0,
                    kind,
                })
            })?
            .map_err(CommError::from)
    }

    fn watch(&self, op: &'static str) -> Option<Watch<'_>> {
        self.watchdog.as_ref().map(|dog| dog.watch(op))
    }

    /// Fails if a peer's failure aborted this rank's communicator (after a host sync: the
    /// collective that just completed may have been cut short).
    fn check_not_aborted(&self, op: &'static str) -> CommResult<()> {
        self.group.with_comm(self.slot, self.rank, op, |_| ())
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> CommResult<Vec<Vec<u8>>> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            CommError::InvalidInput(format!("rank {} gathers more than 4 GiB", self.rank))
        })?;
        let lens = self.run(&Tensor::new(&[len], &self.device)?, Collective::AllGather)?;
        let lens: Vec<u32> = lens.to_vec1()?;
        let max = lens.iter().copied().max().unwrap_or(0) as usize;
        let mut padded = bytes.to_vec();
        padded.resize(max.max(1), 0); // NCCL needs equal, non-empty buffers
        let all = self.run(
            &Tensor::from_vec(padded, max.max(1), &self.device)?,
            Collective::AllGather,
        )?;
        let all: Vec<u8> = all.to_vec1()?;
        self.check_not_aborted("gather_strings")?;
        Ok(lens
            .iter()
            .enumerate()
            .map(|(r, &l)| all[r * max.max(1)..r * max.max(1) + l as usize].to_vec())
            .collect())
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn backend(&self) -> Backend {
        Backend::Nccl
    }

    fn device(&self) -> Option<Device> {
        Some(self.device.clone())
    }

    fn all_reduce(&self, buf: &mut [f32], op: ReduceOp) -> CommResult<()> {
        if self.world_size == 1 {
            return Ok(());
        }
        let _watch = self.watch("all_reduce");
        let t = Tensor::from_slice(buf, buf.len(), &self.device)?;
        let reduced: Vec<f32> = self.all_reduce_tensor(&t, op)?.to_vec1()?;
        // An abort while it ran leaves partial sums: say so rather than return them.
        self.check_not_aborted("all_reduce")?;
        buf.copy_from_slice(&reduced);
        Ok(())
    }

    fn broadcast(&self, buf: &mut [f32]) -> CommResult<()> {
        if self.world_size == 1 {
            return Ok(());
        }
        let _watch = self.watch("broadcast");
        let t = Tensor::from_slice(buf, buf.len(), &self.device)?;
        let root: Vec<f32> = self.broadcast_tensor(&t)?.to_vec1()?;
        self.check_not_aborted("broadcast")?;
        buf.copy_from_slice(&root);
        Ok(())
    }

    fn barrier(&self) -> CommResult<()> {
        let _watch = self.watch("barrier");
        let token = Tensor::zeros(1, DType::F32, &self.device)?;
        self.run(&token, Collective::AllReduce(ReduceOp::Sum))?;
        self.device.synchronize()?;
        self.check_not_aborted("barrier")
    }

    fn gather_strings(&self, items: &[String]) -> CommResult<Option<Vec<Vec<String>>>> {
        let per_rank = {
            let _watch = self.watch("gather_strings");
            self.all_gather_bytes(&encode_strings(items))?
        };
        if self.rank != 0 {
            return Ok(None);
        }
        per_rank
            .iter()
            .enumerate()
            .map(|(r, bytes)| {
                decode_strings(bytes).ok_or_else(|| {
                    nccl_error("gather_strings", format!("rank {r} sent malformed strings"))
                })
            })
            .collect::<CommResult<Vec<_>>>()
            .map(Some)
    }

    fn all_reduce_tensor(&self, t: &Tensor, op: ReduceOp) -> CommResult<Tensor> {
        if self.world_size == 1 {
            return Ok(t.clone());
        }
        let reduced = self.run(&t.to_dtype(DType::F32)?, Collective::AllReduce(op))?;
        Ok(reduced.to_dtype(t.dtype())?)
    }

    fn broadcast_tensor(&self, t: &Tensor) -> CommResult<Tensor> {
        if self.world_size == 1 {
            return Ok(t.clone());
        }
        // Once per run (initial weights): f32 on the wire keeps the op to three dtypes.
        let root = self.run(&t.to_dtype(DType::F32)?, Collective::Broadcast)?;
        Ok(root.to_dtype(t.dtype())?)
    }
}

/// A watchdog over the host-synced collectives of rank `rank` of `world_size` (none alone):
/// the per-update statistics exchange is one, so a peer that stalls is noticed within
/// `timeout` of its next update, and the process ends with a message (see
/// [`CollectiveWatchdog`]); the launcher, or the process's end, takes the job down.
fn watchdog_for(rank: usize, world_size: usize, timeout: Duration) -> Option<CollectiveWatchdog> {
    (world_size > 1).then(|| CollectiveWatchdog::start(rank, world_size, timeout, exit_process()))
}

#[derive(Debug, Clone, Copy)]
enum Collective {
    AllReduce(ReduceOp),
    Broadcast,
    AllGather,
}

impl Collective {
    fn name(self) -> &'static str {
        match self {
            Collective::AllReduce(_) => "all_reduce",
            Collective::Broadcast => "broadcast",
            Collective::AllGather => "all_gather",
        }
    }
}

/// An NCCL collective as a Candle op: reads the input's CUDA slice, writes a fresh output slice, all on
/// Candle's stream (the communicator was created with it), so it is ordered with the kernels around it.
struct NcclCollective<'a> {
    comm: &'a Comm,
    kind: Collective,
}

impl NcclCollective<'_> {
    fn apply<T>(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)>
    where
        T: CudaDType + NcclType + DeviceRepr + ValidAsZeroBits,
    {
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("NCCL collectives need contiguous tensors".into())
        })?;
        let src = storage.as_cuda_slice::<T>()?.slice(start..end);
        let n = end - start;
        let out_len = match self.kind {
            Collective::AllGather => n * self.comm.world_size(),
            _ => n,
        };
        let device = storage.device.clone();
        let mut dst = device.alloc_zeros::<T>(out_len)?;
        let status = match self.kind {
            Collective::AllReduce(op) => {
                let op = match op {
                    ReduceOp::Sum => NcclReduceOp::Sum,
                    ReduceOp::Avg => NcclReduceOp::Avg,
                };
                self.comm.all_reduce(&src, &mut dst, &op)
            }
            // The send buffer is only read on the root; passing it everywhere is allowed.
            Collective::Broadcast => self.comm.broadcast(Some(&src), &mut dst, 0),
            Collective::AllGather => self.comm.all_gather(&src, &mut dst),
        };
        status
            .map_err(|e| candle_core::Error::Msg(format!("NCCL {:?} failed: {e:?}", self.kind)))?;
        let shape = match self.kind {
            Collective::AllGather => Shape::from(out_len),
            _ => layout.shape().clone(),
        };
        Ok((CudaStorage::wrap_cuda_slice(dst, device), shape))
    }
}

impl CustomOp1 for NcclCollective<'_> {
    fn name(&self) -> &'static str {
        "nccl-collective"
    }

    fn cpu_fwd(
        &self,
        _storage: &CpuStorage,
        _layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Err(candle_core::Error::Msg(
            "NCCL collectives need CUDA tensors; create tensors on Communicator::device()".into(),
        ))
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        match storage.dtype() {
            DType::F32 => self.apply::<f32>(storage, layout),
            DType::U8 => self.apply::<u8>(storage, layout),
            DType::U32 => self.apply::<u32>(storage, layout),
            dtype => Err(candle_core::Error::Msg(format!(
                "NCCL collectives: unsupported dtype {dtype:?}"
            ))),
        }
    }
}
