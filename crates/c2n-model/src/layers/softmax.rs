//! Softmax over the last dimension as one fused op that also has a backward pass.
//!
//! `candle_nn::ops::softmax_last_dim` is a single kernel but has no gradient, and the
//! differentiable `candle_nn::ops::softmax` is five kernels forward (max, subtract, exp, sum,
//! divide) whose op graph keeps every intermediate for the backward pass. On attention scores
//! (`[b, heads, L, L]`) that is the largest memory and bandwidth cost of a training step. This op
//! runs one kernel forward (Candle's own `softmax` CUDA kernel, a row loop on the CPU) and keeps
//! only its output: the gradient is `y ⊙ (g − Σ g ⊙ y)`, four kernels.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};
use rayon::prelude::*;

struct SoftmaxLastDim;

/// `exp(x − max) / Σ exp(x − max)` over each row of `src`, accumulated in f32.
fn softmax_rows<T>(
    src: &[T],
    row_len: usize,
    to_f32: fn(T) -> f32,
    from_f32: fn(f32) -> T,
) -> Vec<T>
where
    T: Copy + Send + Sync,
{
    let mut dst: Vec<T> = src.to_vec();
    dst.par_chunks_mut(row_len).for_each(|row| {
        let max = row
            .iter()
            .map(|&v| to_f32(v))
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        let mut exps = Vec::with_capacity(row.len());
        for &v in row.iter() {
            let e = (to_f32(v) - max).exp();
            sum += e;
            exps.push(e);
        }
        for (d, e) in row.iter_mut().zip(exps) {
            *d = from_f32(e / sum);
        }
    });
    dst
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "c2n-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("softmax: input must be contiguous".into()))?;
        let row_len = layout.dims().last().copied().unwrap_or(1).max(1);
        let out = match storage {
            CpuStorage::F32(s) => {
                CpuStorage::F32(softmax_rows(&s[start..end], row_len, |v| v, |v| v))
            }
            CpuStorage::F64(s) => {
                // f64 keeps its own precision: no f32 round trip.
                let mut dst = s[start..end].to_vec();
                dst.par_chunks_mut(row_len).for_each(|row| {
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mut sum = 0f64;
                    for v in row.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    row.iter_mut().for_each(|v| *v /= sum);
                });
                CpuStorage::F64(dst)
            }
            CpuStorage::BF16(s) => CpuStorage::BF16(softmax_rows(
                &s[start..end],
                row_len,
                half::bf16::to_f32,
                half::bf16::from_f32,
            )),
            CpuStorage::F16(s) => CpuStorage::F16(softmax_rows(
                &s[start..end],
                row_len,
                half::f16::to_f32,
                half::f16::from_f32,
            )),
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "softmax: unsupported dtype {:?}",
                    candle_core::backend::BackendStorage::dtype(other)
                )))
            }
        };
        Ok((out, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::cuda_backend::{kernel_name, kernels, Map1, WrapErr};
        use candle_core::{CudaDevice, WithDType};

        /// Launches `softmax_<dtype>` of candle-kernels: one warp per row.
        struct Launch;
        impl Map1 for Launch {
            fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
                &self,
                src: &CudaSlice<T>,
                dev: &CudaDevice,
                layout: &Layout,
            ) -> candle_core::Result<CudaSlice<T>> {
                let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
                    candle_core::Error::Msg("softmax: input must be contiguous".into())
                })?;
                let src = src.slice(start..end);
                let elements = layout.shape().elem_count();
                let row_len = layout.dims().last().copied().unwrap_or(1).max(1);
                let rows = elements / row_len;
                let func = dev.get_or_load_func(&kernel_name::<T>("softmax"), &kernels::REDUCE)?;
                // SAFETY: every element is written by the kernel below.
                let dst = unsafe { dev.alloc::<T>(elements)? };
                let config = LaunchConfig {
                    grid_dim: (rows as u32, 1, 1),
                    block_dim: (1, 32, 1),
                    shared_mem_bytes: 0,
                };
                let mut builder = func.builder();
                builder.arg(&src);
                builder.arg(&dst);
                let row_len = row_len as i32;
                builder.arg(&row_len);
                // SAFETY: the argument list matches the kernel's signature.
                unsafe { builder.launch(config) }.w()?;
                Ok(dst)
            }
        }

        let device = storage.device();
        let slice = Launch.map(&storage.slice, device, layout)?;
        let out = candle_core::CudaStorage {
            slice,
            device: device.clone(),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((grad_res.broadcast_sub(&dot)? * res)?))
    }
}

/// Softmax over the last dimension of `x`, differentiable, in the dtype of `x`.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(SoftmaxLastDim)
}
