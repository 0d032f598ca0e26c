//! Dropout as one CUDA kernel with a counter-based mask (`kernels/dropout.cu`): the forward
//! pass and the backward pass call it with the same seed, so no mask is made or stored (the
//! tensor-op dropout draws uniforms, compares, casts and scales: four passes and a mask kept
//! until the backward pass).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp1, DType, Layout, Shape, Tensor};

use super::dropout_rng::keep_scale;
use super::dropout_seed::seeded_dropout_active;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/dropout.ptx"));
const MODULE: &str = "c2n_dropout";

/// Whether the kernels serve dropout on `x`: a CUDA tensor in f32 or bf16, the training
/// kernels switched on, and no [`seeded_dropout`](super::seeded_dropout) scope (whose masks
/// come from a host RNG).
pub(crate) fn usable(x: &Tensor) -> bool {
    x.device().is_cuda()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && crate::cuda_training_kernels_enabled()
        && !seeded_dropout_active()
}

/// `x · keep(seed)` in `out_dtype` (f32 → f32, bf16 → bf16 or f32 → bf16), computed in f32.
pub fn dropout(x: &Tensor, seed: u64, p: f32, out_dtype: DType) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op1_no_bwd(&SeededDropout { seed, p, out_dtype })
}

struct SeededDropout {
    seed: u64,
    p: f32,
    out_dtype: DType,
}

impl CustomOp1 for SeededDropout {
    fn name(&self) -> &'static str {
        "c2n-seeded-dropout"
    }

    crate::cuda_op::cpu_refused!(a);

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (start, end) = crate::cuda_op::contiguous(layout, self.name(), "input")?;
        let n = end - start;
        let device = x.device().clone();
        let config = crate::cuda_op::grid_stride(n);
        let (n_u64, scale) = (n as u64, keep_scale(self.p));
        macro_rules! launch {
            ($in:ty, $out:ty, $kernel:literal) => {{
                let x = x.as_cuda_slice::<$in>()?.slice(start..end);
                let mut y = unsafe { device.alloc::<$out>(n.max(1))? };
                let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                let mut builder = func.builder();
                builder.arg(&x);
                builder.arg(&mut y);
                builder.arg(&n_u64);
                builder.arg(&self.seed);
                builder.arg(&self.p);
                builder.arg(&scale);
                if n > 0 {
                    unsafe { builder.launch(config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(y, device)
            }};
        }
        let storage = match (x.dtype(), self.out_dtype) {
            (DType::F32, DType::F32) => launch!(f32, f32, "c2n_dropout_f32_f32"),
            (DType::BF16, DType::BF16) => {
                launch!(half::bf16, half::bf16, "c2n_dropout_bf16_bf16")
            }
            (DType::F32, DType::BF16) => launch!(f32, half::bf16, "c2n_dropout_f32_bf16"),
            (from, to) => {
                return Err(candle_core::Error::Msg(format!(
                    "dropout kernel: no {from:?} → {to:?}"
                )))
            }
        };
        Ok((storage, layout.shape().clone()))
    }
}
