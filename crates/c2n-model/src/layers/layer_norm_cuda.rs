//! The layer-norm backward pass as two CUDA kernels (`kernels/layer_norm_backward.cu`), used on
//! CUDA devices unless `C2N_CUDA_LN_BACKWARD=0`.
//!
//! The closed-form gradient in `layer_norm_op.rs` is about 18 tensor ops per layer norm (44 layer
//! norms in a CodeBERT step); these kernels do the same arithmetic in two launches. On an H100
//! (docs/gpu-runs/2026-11-26-run5.md) they agree with the tensor ops within 4e-7 of the largest
//! entry at `[8192, 768]`, take 0.22 ms instead of 1.09 ms, and cut the f32 CodeBERT training
//! step from 319 to 289 ms. `C2N_CUDA_LN_BACKWARD=0` keeps the tensor ops (for A/B runs).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp3, DType, Layout, Shape, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/layer_norm_backward.ptx"));
const MODULE: &str = "c2n_layer_norm_backward";

/// `(dx, dw, db)` from f32 `x [rows, width]`, `w [width]`, `g [rows, width]` on a CUDA device,
/// all computed by the kernels.
pub(crate) fn layer_norm_grads(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    eps: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (rows, width) = x.dims2()?;
    let packed = x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &g.contiguous()?,
        LayerNormBackward { eps },
    )?;
    let n = rows * width;
    let dx = packed.narrow(0, 0, n)?.reshape((rows, width))?;
    // Copies, so that the packed buffer dies with dx.
    let dw = packed.narrow(0, n, width)?.copy()?;
    let db = packed.narrow(0, n + width, width)?.copy()?;
    Ok((dx, dw, db))
}

/// Output: `dx` (`rows × width`), then `dw` and `db` (`width` each), flat.
struct LayerNormBackward {
    eps: f32,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "c2n-layer-norm-backward"
    }

    crate::cuda_op::cpu_refused!(a, b, c);

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        w: &CudaStorage,
        w_layout: &Layout,
        g: &CudaStorage,
        g_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        if [x.dtype(), w.dtype(), g.dtype()] != [DType::F32; 3] {
            return Err(candle_core::Error::Msg(
                "layer-norm backward kernels take f32".into(),
            ));
        }
        let (rows, width) = x_layout.shape().dims2()?;
        let (xs, xe) = crate::cuda_op::contiguous(x_layout, self.name(), "x")?;
        let (ws, we) = crate::cuda_op::contiguous(w_layout, self.name(), "weight")?;
        let (gs, ge) = crate::cuda_op::contiguous(g_layout, self.name(), "gradient")?;
        let device = x.device().clone();
        let x = x.as_cuda_slice::<f32>()?.slice(xs..xe);
        let w = w.as_cuda_slice::<f32>()?.slice(ws..we);
        let g = g.as_cuda_slice::<f32>()?.slice(gs..ge);
        let n = rows * width;
        let mut out = unsafe { device.alloc::<f32>(n + 2 * width)? };
        let mut stats = unsafe { device.alloc::<f32>(2 * rows.max(1))? };
        let (width_i, rows_i) = (width as i32, rows as i32);

        let row_fn = device.get_or_load_custom_func("c2n_layer_norm_bwd_rows", MODULE, PTX)?;
        let mut dx = out.slice_mut(0..n);
        let mut builder = row_fn.builder();
        builder.arg(&x);
        builder.arg(&w);
        builder.arg(&g);
        builder.arg(&mut dx);
        builder.arg(&mut stats);
        builder.arg(&width_i);
        builder.arg(&self.eps);
        let config: LaunchConfig =
            crate::kernel_launch::layer_norm_backward_rows(rows, width).into();
        unsafe { builder.launch(config) }.w()?;

        let param_fn = device.get_or_load_custom_func("c2n_layer_norm_bwd_params", MODULE, PTX)?;
        let mut dwdb = out.slice_mut(n..n + 2 * width);
        let mut builder = param_fn.builder();
        builder.arg(&x);
        builder.arg(&g);
        builder.arg(&stats);
        builder.arg(&mut dwdb);
        builder.arg(&rows_i);
        builder.arg(&width_i);
        let config: LaunchConfig = crate::kernel_launch::column_blocks(width).into();
        unsafe { builder.launch(config) }.w()?;
        drop(stats);

        let storage = CudaStorage::wrap_cuda_slice(out, device);
        Ok((storage, Shape::from(n + 2 * width)))
    }
}
