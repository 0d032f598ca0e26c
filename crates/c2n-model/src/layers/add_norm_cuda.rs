//! A residual block's tail, `LayerNorm(dropout(a + a_bias) + b)`, as one CUDA kernel
//! (`kernels/add_layer_norm.cu`) that returns the sum (which the backward pass keeps) and the
//! normalised output. The tensor ops take the branch's bias add, a dropout, an add, and in bf16
//! two casts around the f32 layer norm: six launches where this takes one. On by default since
//! GPU run 10 checked it; `C2N_CUDA_FEWER_LAUNCHES=0` turns it off.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::dropout_rng::keep_scale;
use super::dropout_seed::seeded_dropout_active;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/add_layer_norm.ptx"));
const MODULE: &str = "c2n_add_layer_norm";

/// Whether the kernel serves `LayerNorm(dropout(a) + b)` with this f32 weight and bias: CUDA
/// tensors of one shape in f32 or bf16, the training kernels and the fewer-launch kernels on,
/// no [`seeded_dropout`](super::seeded_dropout) scope (whose masks come from a host RNG).
pub(crate) fn usable(a: &Tensor, b: &Tensor, weight: &Tensor, bias: &Tensor) -> bool {
    a.device().is_cuda()
        && matches!(a.dtype(), DType::F32 | DType::BF16)
        && b.dtype() == a.dtype()
        && a.shape() == b.shape()
        && weight.dtype() == DType::F32
        && bias.dtype() == DType::F32
        && a.dims().last() == Some(&weight.elem_count())
        && crate::cuda_training_kernels_enabled()
        && crate::cuda_fewer_launches_for("add_layer_norm")
        && !seeded_dropout_active()
}

/// `(sum, y)`: `sum = dropout(a + a_bias) + b` (`a_bias` over the last dim, of `a`'s dtype,
/// if any; mask of `seed`, none when `p` is 0) and `y = LayerNorm(sum)·weight + bias`, both in
/// the dtype and shape of `a`.
#[allow(clippy::too_many_arguments)]
pub fn dropout_add_layer_norm(
    a: &Tensor,
    a_bias: Option<&Tensor>,
    b: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    seed: u64,
    p: f32,
) -> candle_core::Result<(Tensor, Tensor)> {
    let op = DropoutAddLayerNorm {
        a_bias: a_bias.map(|t| t.contiguous()).transpose()?,
        weight: weight.contiguous()?,
        bias: bias.contiguous()?,
        eps: eps as f32,
        seed,
        p,
    };
    let both = a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &op)?;
    Ok((both.get(0)?, both.get(1)?))
}

struct DropoutAddLayerNorm {
    a_bias: Option<Tensor>,
    weight: Tensor,
    bias: Tensor,
    eps: f32,
    seed: u64,
    p: f32,
}

impl CustomOp2 for DropoutAddLayerNorm {
    fn name(&self) -> &'static str {
        "c2n-dropout-add-layer-norm"
    }

    crate::cuda_op::cpu_refused!(a, b);

    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        a_layout: &Layout,
        b: &CudaStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let name = self.name();
        let dims = a_layout.shape().dims();
        let width = dims.last().copied().unwrap_or(1).max(1);
        let n = a_layout.shape().elem_count();
        let rows = n / width;
        if b_layout.shape() != a_layout.shape() || a.dtype() != b.dtype() {
            return Err(candle_core::Error::Msg(format!(
                "{name}: a and b differ in shape or dtype"
            )));
        }
        let (as_, ae) = crate::cuda_op::contiguous(a_layout, name, "a")?;
        let (bs, be) = crate::cuda_op::contiguous(b_layout, name, "b")?;
        let (w_storage, w_layout) = self.weight.storage_and_layout();
        let (bias_storage, bias_layout) = self.bias.storage_and_layout();
        let w = crate::cuda_op::held_view::<f32>(&w_storage, w_layout, name, "weight")?;
        let bias = crate::cuda_op::held_view::<f32>(&bias_storage, bias_layout, name, "bias")?;
        if w.len() != width || bias.len() != width {
            return Err(candle_core::Error::Msg(format!(
                "{name}: weight and bias must have {width} elements"
            )));
        }
        let a_bias_held = self.a_bias.as_ref().map(|t| t.storage_and_layout());
        let device = a.device().clone();
        let stream = device.cuda_stream();
        let (width_i, scale) = (width as i32, keep_scale(self.p));
        let config: LaunchConfig = crate::kernel_launch::add_layer_norm_rows(rows, width).into();
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let a_bias: u64 = match &a_bias_held {
                    Some((storage, layout)) => {
                        let (address, len) = crate::cuda_op::held_range(
                            storage,
                            layout,
                            &stream,
                            name,
                            "branch bias",
                        )?;
                        if len != width || storage.dtype() != a.dtype() {
                            return Err(candle_core::Error::Msg(format!(
                                "{name}: the branch bias must have {width} elements of a's dtype"
                            )));
                        }
                        address
                    }
                    None => 0,
                };
                let a = a.as_cuda_slice::<$t>()?.slice(as_..ae);
                let b = b.as_cuda_slice::<$t>()?.slice(bs..be);
                let mut out = unsafe { device.alloc::<$t>((2 * n).max(1))? };
                if n > 0 {
                    let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                    let mut builder = func.builder();
                    builder.arg(&a);
                    builder.arg(&a_bias);
                    builder.arg(&b);
                    builder.arg(&w);
                    builder.arg(&bias);
                    builder.arg(&mut out);
                    builder.arg(&width_i);
                    builder.arg(&self.eps);
                    builder.arg(&self.seed);
                    builder.arg(&self.p);
                    builder.arg(&scale);
                    unsafe { builder.launch(config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match a.dtype() {
            DType::F32 => launch!(f32, "c2n_dropout_add_layer_norm_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_dropout_add_layer_norm_bf16"),
            other => {
                return Err(candle_core::Error::Msg(format!("{name}: no {other:?}")));
            }
        };
        drop(a_bias_held);
        let mut out_dims = vec![2];
        out_dims.extend_from_slice(dims);
        Ok((out, Shape::from(out_dims)))
    }
}
