//! LayerNorm over the last dimension as one fused op with a backward pass.
//!
//! The primitive-op LayerNorm is nine kernels forward and keeps each intermediate for the
//! backward pass; `candle_nn::ops::layer_norm` is one kernel but gives no gradient. This op runs
//! one kernel forward (Candle's `layernorm` CUDA kernel, a two-pass row loop on the CPU) and keeps
//! only its inputs. The backward recomputes the row statistics and applies the closed form
//! `dx = rstd · (g·w − mean(g·w) − x̂ · mean(g·w·x̂))`, `dw = Σ g·x̂`, `db = Σ g`, all in f32.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use super::closed_form::{wants_grad, GradWants};

pub(super) struct LayerNormOp {
    pub(super) eps: f32,
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("layer norm: {what} must be contiguous")))?;
    Ok(&data[start..end])
}

/// Two-pass statistics (mean, then the biased variance of the centred row) in f32.
fn normalize_rows(src: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let width = weight.len().max(1);
    let mut dst = src.to_vec();
    dst.par_chunks_mut(width).for_each(|row| {
        let mean = row.iter().sum::<f32>() / width as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * rstd * w + b;
        }
    });
    dst
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "c2n-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) = (x, weight, bias) else {
            return Err(candle_core::Error::Msg(
                "layer norm: the fused CPU kernel takes f32 input, weight and bias".into(),
            ));
        };
        let out = normalize_rows(
            contiguous(x, x_layout, "input")?,
            contiguous(w, weight_layout, "weight")?,
            contiguous(b, bias_layout, "bias")?,
            self.eps,
        );
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_layout: &Layout,
        weight: &candle_core::CudaStorage,
        weight_layout: &Layout,
        bias: &candle_core::CudaStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{
            CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
        };
        use candle_core::cuda_backend::{kernel_name, kernels, Map3, WrapErr};
        use candle_core::{CudaDevice, WithDType};

        /// Launches `layernorm_<dtype>` of candle-kernels: one block per row.
        struct Launch {
            eps: f32,
        }
        impl Map3 for Launch {
            fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
                &self,
                x: &CudaSlice<T>,
                x_layout: &Layout,
                weight: &CudaSlice<T>,
                weight_layout: &Layout,
                bias: &CudaSlice<T>,
                bias_layout: &Layout,
                dev: &CudaDevice,
            ) -> candle_core::Result<CudaSlice<T>> {
                let offsets = |layout: &Layout, what: &str| {
                    layout.contiguous_offsets().ok_or_else(|| {
                        candle_core::Error::Msg(format!("layer norm: {what} must be contiguous"))
                    })
                };
                let (xs, xe) = offsets(x_layout, "input")?;
                let (ws, we) = offsets(weight_layout, "weight")?;
                let (bs, be) = offsets(bias_layout, "bias")?;
                let (x, weight, bias) = (x.slice(xs..xe), weight.slice(ws..we), bias.slice(bs..be));
                let elements = x_layout.shape().elem_count();
                let width = x_layout.dims().last().copied().unwrap_or(1).max(1);
                let rows = elements / width;
                let block = if width < 1024 { 32 } else { 1024 };
                let func =
                    dev.get_or_load_func(&kernel_name::<T>("layernorm"), &kernels::REDUCE)?;
                // SAFETY: every element is written by the kernel below.
                let dst = unsafe { dev.alloc::<T>(elements)? };
                let config = LaunchConfig {
                    grid_dim: (rows as u32, 1, 1),
                    block_dim: (block, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut builder = func.builder();
                builder.arg(&x);
                builder.arg(&dst);
                builder.arg(&weight);
                builder.arg(&bias);
                let (width, block, eps) = (width as i32, block as i32, self.eps);
                builder.arg(&width);
                builder.arg(&block);
                builder.arg(&eps);
                // SAFETY: the argument list matches the kernel's signature.
                unsafe { builder.launch(config) }.w()?;
                Ok(dst)
            }
        }

        let device = x.device();
        let slice = Launch { eps: self.eps }.map(
            &x.slice,
            x_layout,
            &weight.slice,
            weight_layout,
            &bias.slice,
            bias_layout,
            device,
        )?;
        let out = candle_core::CudaStorage {
            slice,
            device: device.clone(),
        };
        Ok((out, x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Like the closed-form ops: no gradient for an argument the graph does not track.
        let wants = GradWants {
            input: wants_grad(x),
            weight: wants_grad(weight),
            bias: wants_grad(bias),
        };
        layer_norm_grads(x, weight, grad, self.eps, wants)
    }
}

/// Gradients of `LayerNorm(x)·w + b` for upstream `grad` (statistics recomputed from `x`, in
/// f32): `dx` in the dtype of `x`, `dw`/`db` in the dtype of the weight, each only when wanted.
pub(crate) fn layer_norm_grads(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f32,
    wants: GradWants,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    layer_norm_grads_with(x, weight, grad, eps, wants, true)
}

/// [`layer_norm_grads`]; `allow_kernels`: the CUDA kernels may be used when switched on.
fn layer_norm_grads_with(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f32,
    wants: GradWants,
    allow_kernels: bool,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    #[cfg(not(feature = "cuda"))]
    let _ = allow_kernels;
    let width = x.dim(D::Minus1)?;
    let rows = x.elem_count() / width.max(1);
    // Detached: a gradient computed from a Var would record (and keep) an op graph.
    let w = weight.detach().to_dtype(DType::F32)?;
    #[cfg(feature = "cuda")]
    if allow_kernels && x.device().is_cuda() && crate::cuda_layer_norm_kernels_enabled() {
        // The kernels read f32 or bf16 `x` and `g` as they are (one dtype for both).
        let dtype = if super::layer_norm_cuda::takes(x.dtype()) && grad.dtype() == x.dtype() {
            x.dtype()
        } else {
            DType::F32
        };
        let xk = x.detach().to_dtype(dtype)?.reshape((rows, width))?;
        let gk = grad.to_dtype(dtype)?.reshape((rows, width))?;
        let (dx, dw, db) = super::layer_norm_cuda::layer_norm_grads(&xk, &w, &gk, eps)?;
        return Ok((
            wants
                .input
                .then(|| dx.reshape(x.shape())?.to_dtype(x.dtype()))
                .transpose()?,
            wants
                .weight
                .then(|| dw.to_dtype(weight.dtype()))
                .transpose()?,
            wants
                .bias
                .then(|| db.to_dtype(weight.dtype()))
                .transpose()?,
        ));
    }
    let x32 = x.detach().to_dtype(DType::F32)?.reshape((rows, width))?;
    let g = grad.to_dtype(DType::F32)?.reshape((rows, width))?;
    let mean = x32.mean_keepdim(1)?;
    let centred = x32.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    let rstd = (var + f64::from(eps))?.sqrt()?.recip()?;
    let normed = centred.broadcast_mul(&rstd)?;
    let dw = match wants.weight {
        true => Some((&g * &normed)?.sum(0)?.to_dtype(weight.dtype())?),
        false => None,
    };
    let db = match wants.bias {
        true => Some(g.sum(0)?.to_dtype(weight.dtype())?),
        false => None,
    };
    let dx = if wants.input {
        let gw = g.broadcast_mul(&w)?;
        let gw_mean = gw.mean_keepdim(1)?;
        let gw_normed_mean = (&gw * &normed)?.mean_keepdim(1)?;
        let dx = (gw.broadcast_sub(&gw_mean)? - normed.broadcast_mul(&gw_normed_mean)?)?
            .broadcast_mul(&rstd)?;
        Some(dx.reshape(x.shape())?.to_dtype(x.dtype())?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

/// `(dx, dw, db)` of a layer norm from f32 `x [rows, width]`, `weight [width]` and upstream
/// `grad [rows, width]` with tensor ops: the reference `device check-kernels` compares the CUDA
/// kernels (`layer_norm_grads_cuda`, with the `cuda` feature) against.
pub fn layer_norm_grads_ops(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let wants = GradWants {
        input: true,
        weight: true,
        bias: true,
    };
    let (dx, dw, db) =
        layer_norm_grads_with(&x.detach(), &weight.detach(), grad, eps, wants, false)?;
    let missing = || candle_core::Error::Msg("layer norm: a gradient is missing".into());
    Ok((
        dx.ok_or_else(missing)?,
        dw.ok_or_else(missing)?,
        db.ok_or_else(missing)?,
    ))
}

/// The same with the CUDA kernels, whatever `C2N_CUDA_LN_BACKWARD` says (`x` and `grad` both f32
/// or both bf16, `dx` in their dtype).
#[cfg(feature = "cuda")]
pub fn layer_norm_grads_cuda(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    eps: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    super::layer_norm_cuda::layer_norm_grads(&x.detach(), &weight.detach(), grad, eps)
}

/// [`layer_norm_grads_cuda`] for the upstream gradient `grad + grad2`, also returning `dx`
/// times the dropout mask of `dropout = (seed, p)`: `(dx, dropped dx, dw, db)` from the fused
/// kernels (`device check-kernels` compares them with the plain ones).
#[cfg(feature = "cuda")]
pub fn layer_norm_grads_fused_cuda(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    grad2: Option<&Tensor>,
    dropout: Option<(u64, f32)>,
    eps: f32,
) -> candle_core::Result<(Tensor, Option<Tensor>, Tensor, Tensor)> {
    super::layer_norm_cuda::layer_norm_grads_fused(
        &x.detach(),
        &weight.detach(),
        grad,
        grad2,
        dropout,
        eps,
    )
}
