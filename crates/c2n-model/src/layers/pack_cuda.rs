//! [`pack`](super::pack::pack) on CUDA: every part copied (and converted) into one new flat
//! buffer by one launch of `kernels/pack.cu`, from a chunk table of source addresses uploaded
//! with it. On by default since GPU run 10 checked it; `C2N_CUDA_FEWER_LAUNCHES=0` turns it
//! off.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::cuda_op::{device_range, held_range};
use crate::kernel_launch::{pack_chunks, PACK_CHUNK_ELEMS};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/pack.ptx"));
const MODULE: &str = "c2n_pack";

/// The kernel of a conversion, if there is one.
fn kernel(from: DType, to: DType) -> Option<&'static str> {
    match (from, to) {
        (DType::F32, DType::BF16) => Some("c2n_pack_f32_bf16"),
        (DType::F32, DType::F32) => Some("c2n_pack_f32_f32"),
        (DType::BF16, DType::F32) => Some("c2n_pack_bf16_f32"),
        _ => None,
    }
}

/// Whether the kernel packs `parts` into `dtype`: all on one CUDA device, of one dtype that
/// it converts from, contiguous, and the switch on.
pub(crate) fn usable(parts: &[&Tensor], dtype: DType) -> bool {
    let Some(first) = parts.first() else {
        return false;
    };
    // The switch first: the pass asks with all its weights every step.
    crate::cuda_fewer_launches_for("pack")
        && first.device().is_cuda()
        && kernel(first.dtype(), dtype).is_some()
        && parts.iter().all(|p| {
            p.dtype() == first.dtype()
                && p.device().same_device(first.device())
                && p.is_contiguous()
        })
}

/// `parts` flattened, converted to `dtype` (f32 → bf16, f32 → f32 or bf16 → f32) and laid
/// back to back, `[Σ elements]`, by one launch (whatever the switch says; `device
/// check-kernels` compares it with the per-part casts).
pub fn pack(parts: &[&Tensor], dtype: DType) -> candle_core::Result<Tensor> {
    let (first, rest) = parts
        .split_first()
        .ok_or_else(|| candle_core::Error::Msg("pack: no parts".into()))?;
    let op = Pack {
        rest: rest.iter().map(|t| (*t).clone()).collect(),
        dtype,
    };
    first.apply_op1_no_bwd(&op)
}

/// The op runs on the first part and reads the others through their storages.
struct Pack {
    rest: Vec<Tensor>,
    dtype: DType,
}

impl CustomOp1 for Pack {
    fn name(&self) -> &'static str {
        "c2n-pack"
    }

    crate::cuda_op::cpu_refused!(a);

    fn cuda_fwd(
        &self,
        first: &CudaStorage,
        first_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let device = first.device().clone();
        let stream = device.cuda_stream();
        let from = first.dtype();
        let name = kernel(from, self.dtype).ok_or_else(|| {
            candle_core::Error::Msg(format!("pack kernel: no {from:?} → {:?}", self.dtype))
        })?;
        // Read guards on the other parts' storages, held until the launch is queued.
        let held: Vec<_> = self.rest.iter().map(|t| t.storage_and_layout()).collect();
        let op = self.name();
        let mut sources = vec![device_range(first, first_layout, &stream, op, "a part")?];
        for (storage, layout) in &held {
            if storage.dtype() != from {
                return Err(candle_core::Error::Msg(
                    "pack: parts of mixed dtypes".into(),
                ));
            }
            sources.push(held_range(storage, layout, &stream, op, "a part")?);
        }
        let total: usize = sources.iter().map(|s| s.1).sum();
        let elem_size = if from == DType::F32 { 4 } else { 2 };
        let table = pack_chunks(&sources, elem_size, PACK_CHUNK_ELEMS);
        let n_chunks = table.len() / 3;
        let func = device.get_or_load_custom_func(name, MODULE, PTX)?;
        let config: LaunchConfig = crate::kernel_launch::multi_tensor(n_chunks).into();
        macro_rules! launch {
            ($out:ty) => {{
                let mut out = unsafe { device.alloc::<$out>(total.max(1))? };
                if n_chunks > 0 {
                    let chunks = device.clone_htod(&table)?;
                    let mut builder = func.builder();
                    builder.arg(&chunks);
                    builder.arg(&mut out);
                    unsafe { builder.launch(config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match self.dtype {
            DType::BF16 => launch!(half::bf16),
            _ => launch!(f32),
        };
        drop(held);
        Ok((out, Shape::from(total)))
    }
}
