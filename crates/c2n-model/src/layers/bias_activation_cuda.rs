//! A feed-forward layer's bias, activation and dropout after its GEMM as one CUDA kernel
//! (`kernels/bias_activation.cu`), returning the pre-activation (which the backward pass
//! keeps) and the output; and the dropout-and-ReLU backward as one. On by default
//! since GPU run 10 checked them; `C2N_CUDA_FEWER_LAUNCHES=0` turns them off.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::dropout_rng::keep_scale;
use super::dropout_seed::seeded_dropout_active;
use crate::config::Activation;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/bias_activation.ptx"));
const MODULE: &str = "c2n_bias_activation";

/// Whether the kernels serve `y [.., width]` (f32 or bf16, CUDA) with a bias of its dtype:
/// the training and fewer-launch kernels on, no seeded-dropout scope.
pub(crate) fn usable(y: &Tensor, bias: &Tensor) -> bool {
    y.device().is_cuda()
        && matches!(y.dtype(), DType::F32 | DType::BF16)
        && bias.dtype() == y.dtype()
        && y.dims().last() == Some(&bias.elem_count())
        && crate::cuda_training_kernels_enabled()
        && crate::cuda_fewer_launches_for("bias_activation")
        && !seeded_dropout_active()
}

/// Whether [`dropout_relu_backward`] serves the gradient `g` of a pre-activation `pre`: CUDA
/// tensors of one shape and dtype (f32 or bf16), the kernels on, no seeded-dropout scope.
pub(crate) fn backward_usable(g: &Tensor, pre: &Tensor) -> bool {
    g.device().is_cuda()
        && matches!(g.dtype(), DType::F32 | DType::BF16)
        && pre.dtype() == g.dtype()
        && pre.shape() == g.shape()
        && crate::cuda_training_kernels_enabled()
        && crate::cuda_fewer_launches_for("dropout_relu_backward")
        && !seeded_dropout_active()
}

/// `(pre, out)`: `pre = y + bias` (bias over the last dim), `out = act(pre) · keep(seed)` (no
/// dropout when `p` is 0), both shaped and typed as `y`.
pub fn bias_activation_dropout(
    y: &Tensor,
    bias: &Tensor,
    act: Activation,
    seed: u64,
    p: f32,
) -> candle_core::Result<(Tensor, Tensor)> {
    let op = BiasActivation { act, seed, p };
    let both = y.contiguous()?.apply_op2_no_bwd(&bias.contiguous()?, &op)?;
    Ok((both.get(0)?, both.get(1)?))
}

/// `(g · keep(seed)) · [pre > 0]`: the gradient of ReLU-then-dropout, in the dtype of `g`.
pub fn dropout_relu_backward(
    g: &Tensor,
    pre: &Tensor,
    seed: u64,
    p: f32,
) -> candle_core::Result<Tensor> {
    g.contiguous()?
        .apply_op2_no_bwd(&pre.contiguous()?, &DropoutReluBackward { seed, p })
}

struct BiasActivation {
    act: Activation,
    seed: u64,
    p: f32,
}

impl CustomOp2 for BiasActivation {
    fn name(&self) -> &'static str {
        "c2n-bias-activation-dropout"
    }

    crate::cuda_op::cpu_refused!(a, b);

    fn cuda_fwd(
        &self,
        y: &CudaStorage,
        y_layout: &Layout,
        bias: &CudaStorage,
        bias_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let name = self.name();
        let (ys, ye) = crate::cuda_op::contiguous(y_layout, name, "input")?;
        let (bs, be) = crate::cuda_op::contiguous(bias_layout, name, "bias")?;
        let width = be - bs;
        let n = ye - ys;
        if width == 0 || n % width != 0 || y.dtype() != bias.dtype() {
            return Err(candle_core::Error::Msg(format!(
                "{name}: the bias must match the input's last dim and dtype"
            )));
        }
        let device = y.device().clone();
        let (n_u64, width_i, scale) = (n as u64, width as i32, keep_scale(self.p));
        let act: i32 = match self.act {
            Activation::Relu => 0,
            Activation::Gelu => 1,
        };
        let config = crate::cuda_op::grid_stride(n);
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let y = y.as_cuda_slice::<$t>()?.slice(ys..ye);
                let bias = bias.as_cuda_slice::<$t>()?.slice(bs..be);
                let mut out = unsafe { device.alloc::<$t>((2 * n).max(1))? };
                if n > 0 {
                    let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                    let mut builder = func.builder();
                    builder.arg(&y);
                    builder.arg(&bias);
                    builder.arg(&mut out);
                    builder.arg(&n_u64);
                    builder.arg(&width_i);
                    builder.arg(&act);
                    builder.arg(&self.seed);
                    builder.arg(&self.p);
                    builder.arg(&scale);
                    unsafe { builder.launch(config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match y.dtype() {
            DType::F32 => launch!(f32, "c2n_bias_activation_dropout_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_bias_activation_dropout_bf16"),
            other => return Err(candle_core::Error::Msg(format!("{name}: no {other:?}"))),
        };
        let mut dims = vec![2];
        dims.extend_from_slice(y_layout.dims());
        Ok((out, Shape::from(dims)))
    }
}

struct DropoutReluBackward {
    seed: u64,
    p: f32,
}

impl CustomOp2 for DropoutReluBackward {
    fn name(&self) -> &'static str {
        "c2n-dropout-relu-backward"
    }

    crate::cuda_op::cpu_refused!(a, b);

    fn cuda_fwd(
        &self,
        g: &CudaStorage,
        g_layout: &Layout,
        pre: &CudaStorage,
        pre_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let name = self.name();
        let (gs, ge) = crate::cuda_op::contiguous(g_layout, name, "gradient")?;
        let (ps, pe) = crate::cuda_op::contiguous(pre_layout, name, "pre-activation")?;
        if ge - gs != pe - ps || g.dtype() != pre.dtype() {
            return Err(candle_core::Error::Msg(format!(
                "{name}: gradient and pre-activation differ in size or dtype"
            )));
        }
        let n = ge - gs;
        let device = g.device().clone();
        let (n_u64, scale) = (n as u64, keep_scale(self.p));
        let config: LaunchConfig = crate::cuda_op::grid_stride(n);
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let g = g.as_cuda_slice::<$t>()?.slice(gs..ge);
                let pre = pre.as_cuda_slice::<$t>()?.slice(ps..pe);
                let mut out = unsafe { device.alloc::<$t>(n.max(1))? };
                if n > 0 {
                    let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                    let mut builder = func.builder();
                    builder.arg(&g);
                    builder.arg(&pre);
                    builder.arg(&mut out);
                    builder.arg(&n_u64);
                    builder.arg(&self.seed);
                    builder.arg(&self.p);
                    builder.arg(&scale);
                    unsafe { builder.launch(config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match g.dtype() {
            DType::F32 => launch!(f32, "c2n_dropout_relu_backward_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_dropout_relu_backward_bf16"),
            other => return Err(candle_core::Error::Msg(format!("{name}: no {other:?}"))),
        };
        Ok((out, g_layout.shape().clone()))
    }
}
