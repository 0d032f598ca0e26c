//! The layer-norm backward pass as two CUDA kernels (`kernels/layer_norm_backward.cu`), used on
//! CUDA devices unless `C2N_CUDA_LN_BACKWARD=0`.
//!
//! The closed-form gradient in `layer_norm_op.rs` is about 18 tensor ops per layer norm (44 layer
//! norms in a CodeBERT step); these kernels do the same arithmetic in two launches. On an H100
//! (docs/gpu-runs/2026-11-26-run5.md) they agree with the tensor ops within 4e-7 of the largest
//! entry at `[8192, 768]`, take 0.22 ms instead of 1.09 ms, and cut the f32 CodeBERT training
//! step from 319 to 289 ms. `C2N_CUDA_LN_BACKWARD=0` keeps the tensor ops (for A/B runs).
//!
//! Since the ninth session they take bf16 `x` and `g` as they are and write `dx` in bf16 (no
//! casts around them), and `dw`, `db` and the row statistics go to a small buffer of their
//! own, so `dw` and `db` are views of it instead of copies out of the `dx` buffer: two
//! kernels and three allocations per layer norm, where there were seven kernels in bf16.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp3, DType, Layout, Shape, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/layer_norm_backward.ptx"));
const MODULE: &str = "c2n_layer_norm_backward";

/// Whether the kernels take `x` and `g` of this dtype as they are.
pub(crate) fn takes(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16)
}

/// `(dx, dw, db)` from `x [rows, width]` and `g [rows, width]` (both f32 or both bf16) and an
/// f32 `w [width]` on a CUDA device, all computed by the kernels: `dx` in the dtype of `x`,
/// `dw` and `db` in f32.
pub(crate) fn layer_norm_grads(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    eps: f32,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (dx, _, dw, db) = run(x, w, g, None, None, eps)?;
    Ok((dx, dw, db))
}

/// What [`layer_norm_grads_fused`] returns: `dx`, `dx` through the dropout mask when one was
/// asked for, `dw` and `db`.
pub(crate) type FusedGrads = (Tensor, Option<Tensor>, Tensor, Tensor);

/// [`layer_norm_grads`] for the upstream gradient `g + g2` (added on load, as a separate add
/// would round it), also returning `dx` times the dropout mask of `dropout = (seed, p)`: the
/// `_fused` kernels, one launch each for the rows and the parameters.
pub(crate) fn layer_norm_grads_fused(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    g2: Option<&Tensor>,
    dropout: Option<(u64, f32)>,
    eps: f32,
) -> candle_core::Result<FusedGrads> {
    let (rows, width) = x.dims2()?;
    let g2 = g2
        .map(|t| t.reshape((rows, width))?.contiguous())
        .transpose()?;
    // With neither extra, the plain kernels (the same arithmetic).
    let fused = g2.is_some() || dropout.is_some();
    let (dx, dropped, dw, db) = run(x, w, g, g2, dropout.filter(|_| fused), eps)?;
    Ok((dx, dropped, dw, db))
}

/// The kernels: the plain pair without `g2` and `dropout`, the `_fused` pair with either.
fn run(
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    g2: Option<Tensor>,
    dropout: Option<(u64, f32)>,
    eps: f32,
) -> candle_core::Result<FusedGrads> {
    let (rows, width) = x.dims2()?;
    // dw, db, then the rows' means and rstds: every element is written by the kernels (which
    // do not run without rows: then dw and db are zeros).
    let side_len = 2 * width + 2 * rows;
    let side = if rows == 0 {
        Tensor::zeros(side_len, DType::F32, x.device())?
    } else {
        unsafe { Tensor::empty(side_len, DType::F32, x.device())? }
    };
    let out = x.contiguous()?.apply_op3_no_bwd(
        &w.contiguous()?,
        &g.contiguous()?,
        &LayerNormBackward {
            eps,
            side: side.clone(),
            g2,
            dropout,
        },
    )?;
    let (dx, dropped) = match dropout {
        Some(_) => (out.get(0)?, Some(out.get(1)?)),
        None => (out, None),
    };
    Ok((
        dx,
        dropped,
        side.narrow(0, 0, width)?,
        side.narrow(0, width, width)?,
    ))
}

/// Output: `dx`, or `[dx, dx_dropped]` stacked when `dropout` is set; `dw`, `db` and the row
/// statistics go to `side`, which the op holds beside its inputs. With `g2` or `dropout` the
/// `_fused` kernels run, else the plain ones.
struct LayerNormBackward {
    eps: f32,
    side: Tensor,
    g2: Option<Tensor>,
    dropout: Option<(u64, f32)>,
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
        let dtype = x.dtype();
        let name = self.name();
        if !takes(dtype) || g.dtype() != dtype || w.dtype() != DType::F32 {
            return Err(candle_core::Error::Msg(format!(
                "layer-norm backward kernels take f32 or bf16 x and g of one dtype and an f32 \
                 weight, not {dtype:?}, {:?} and {:?}",
                g.dtype(),
                w.dtype()
            )));
        }
        let (rows, width) = x_layout.shape().dims2()?;
        let (xs, xe) = crate::cuda_op::contiguous(x_layout, name, "x")?;
        let (gs, ge) = crate::cuda_op::contiguous(g_layout, name, "gradient")?;
        let w = crate::cuda_op::contiguous_view::<f32>(w, w_layout, name, "weight")?;
        let (side_storage, side_layout) = self.side.storage_and_layout();
        let side = crate::cuda_op::held_view::<f32>(&side_storage, side_layout, name, "side")?;
        if side.len() != 2 * width + 2 * rows {
            return Err(candle_core::Error::Msg(format!(
                "{name}: side buffer of the wrong size"
            )));
        }
        let g2_held = self.g2.as_ref().map(|t| t.storage_and_layout());
        let device = x.device().clone();
        let stream = device.cuda_stream();
        let n = rows * width;
        // The second gradient's address (0: none), checked like the others.
        let g2 = match &g2_held {
            Some((storage, layout)) => {
                let (address, len) =
                    crate::cuda_op::held_range(storage, layout, &stream, name, "second gradient")?;
                if storage.dtype() != dtype || len != n {
                    return Err(candle_core::Error::Msg(format!(
                        "{name}: the second gradient differs in dtype or size"
                    )));
                }
                address
            }
            None => 0u64,
        };
        let fused = self.g2.is_some() || self.dropout.is_some();
        let (seed, p) = self.dropout.unwrap_or((0, 0.0));
        let scale = super::dropout_rng::keep_scale(p);
        let outputs = if self.dropout.is_some() { 2 } else { 1 };
        let dwdb = side.slice(0..2 * width);
        let stats = side.slice(2 * width..2 * width + 2 * rows);
        let (width_i, rows_i) = (width as i32, rows as i32);
        let rows_config: LaunchConfig =
            crate::kernel_launch::layer_norm_backward_rows(rows, width).into();
        let params_config: LaunchConfig = crate::kernel_launch::column_blocks(width).into();
        macro_rules! launch {
            ($t:ty, $size:expr, $plain:expr, $fused:expr) => {{
                let x = x.as_cuda_slice::<$t>()?.slice(xs..xe);
                let g = g.as_cuda_slice::<$t>()?.slice(gs..ge);
                let out = unsafe { device.alloc::<$t>((outputs * n).max(1))? };
                if n > 0 {
                    let dx = out.device_ptr(&stream).0;
                    let dropped = if outputs == 2 {
                        dx + $size * n as u64
                    } else {
                        0
                    };
                    let (rows_name, params_name) = if fused { $fused } else { $plain };
                    let rows_fn = device.get_or_load_custom_func(rows_name, MODULE, PTX)?;
                    let mut builder = rows_fn.builder();
                    builder.arg(&x);
                    builder.arg(&w);
                    builder.arg(&g);
                    if fused {
                        builder.arg(&g2);
                    }
                    builder.arg(&dx);
                    if fused {
                        builder.arg(&dropped);
                    }
                    builder.arg(&stats);
                    builder.arg(&width_i);
                    builder.arg(&self.eps);
                    if fused {
                        builder.arg(&seed);
                        builder.arg(&p);
                        builder.arg(&scale);
                    }
                    unsafe { builder.launch(rows_config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;

                    let params_fn = device.get_or_load_custom_func(params_name, MODULE, PTX)?;
                    let mut builder = params_fn.builder();
                    builder.arg(&x);
                    builder.arg(&g);
                    if fused {
                        builder.arg(&g2);
                    }
                    builder.arg(&stats);
                    builder.arg(&dwdb);
                    builder.arg(&rows_i);
                    builder.arg(&width_i);
                    unsafe { builder.launch(params_config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match dtype {
            DType::BF16 => launch!(
                half::bf16,
                2u64,
                (
                    "c2n_layer_norm_bwd_rows_bf16",
                    "c2n_layer_norm_bwd_params_bf16"
                ),
                (
                    "c2n_layer_norm_bwd_rows_fused_bf16",
                    "c2n_layer_norm_bwd_params_fused_bf16"
                )
            ),
            _ => launch!(
                f32,
                4u64,
                ("c2n_layer_norm_bwd_rows", "c2n_layer_norm_bwd_params"),
                (
                    "c2n_layer_norm_bwd_rows_fused_f32",
                    "c2n_layer_norm_bwd_params_fused_f32"
                )
            ),
        };
        drop(g2_held);
        let shape = if outputs == 2 {
            Shape::from((2, rows, width))
        } else {
            Shape::from((rows, width))
        };
        Ok((out, shape))
    }
}
