//! [`AdamW`](super::AdamW)'s update as one CUDA kernel per parameter (`kernels/adamw.cu`):
//! the parameter and both moments updated in place in one pass, with the tensor-op update's
//! arithmetic rounded op by op, so the results are bit-identical. Used for f32 parameters,
//! gradients and moments on a CUDA device unless `C2N_CUDA_TRAIN_KERNELS=0`.
//!
//! Unless `C2N_CUDA_FEWER_LAUNCHES=0`, [`step_many`]'s one launch updates every parameter of a
//! moment chunk (about 200 launches per step become one per chunk, 2 to 6), from a table of
//! their addresses; the arithmetic per element is the same function.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, DType, InplaceOp3, Layout, Storage, Tensor, Var};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/adamw.ptx"));
const MODULE: &str = "c2n_adamw";

/// The update's scalars, as the tensor ops round them (f64 on the host, f32 on the device).
#[derive(Debug, Clone, Copy)]
pub(super) struct AdamWScalars {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub step_size: f64,
    /// `lr · weight_decay` when the parameter decays.
    pub lr_decay: Option<f64>,
}

/// Whether the kernel updates a chunk of `dtype` on `device` whose gradients are `grads`.
pub(super) fn usable(dtype: DType, device: &candle_core::Device, grads: &[&Tensor]) -> bool {
    device.is_cuda()
        && dtype == DType::F32
        && c2n_model::cuda_training_kernels_enabled()
        && grads.iter().all(|g| g.dtype() == DType::F32)
}

/// Updates `var` from `grad` and its moments, the `var.elem_count()` elements of the flat
/// chunk moments `exp_avg`/`exp_avg_sq` from `offset`, all in place.
///
/// The moments are written through their device pointers while Candle holds them as
/// sources of the in-place op: the optimizer owns the chunk tensors and nothing reads them
/// during its step.
pub(super) fn step_param(
    var: &Var,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    offset: usize,
    scalars: AdamWScalars,
) -> candle_core::Result<()> {
    let grad = grad.flatten_all()?.contiguous()?;
    var.as_tensor().inplace_op3(
        &grad,
        exp_avg,
        &AdamWKernel {
            exp_avg_sq: exp_avg_sq.clone(),
            offset,
            scalars,
        },
    )
}

/// The scalars both kernels take, in their order and rounding (f32, computed in f64).
struct KernelScalars {
    floats: [f32; 6],
    decay: i32,
    neg_lr_decay: f32,
}

impl KernelScalars {
    fn of(s: AdamWScalars) -> Self {
        Self {
            floats: [
                s.beta1 as f32,
                (1.0 - s.beta1) as f32,
                s.beta2 as f32,
                (1.0 - s.beta2) as f32,
                s.eps as f32,
                (-s.step_size) as f32,
            ],
            decay: i32::from(s.lr_decay.is_some()),
            neg_lr_decay: (-s.lr_decay.unwrap_or(0.0)) as f32,
        }
    }

    /// Pushes β1, 1−β1, β2, 1−β2, ε, −step size, the decay flag and −lr·wd.
    fn push<'a>(&'a self, builder: &mut candle_core::cuda_backend::cudarc::driver::LaunchArgs<'a>) {
        for f in &self.floats {
            builder.arg(f);
        }
        builder.arg(&self.decay);
        builder.arg(&self.neg_lr_decay);
    }
}

struct AdamWKernel {
    exp_avg_sq: Tensor,
    offset: usize,
    scalars: AdamWScalars,
}

fn contiguous(layout: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("AdamW kernel: {what} not contiguous")))
}

impl InplaceOp3 for AdamWKernel {
    fn name(&self) -> &'static str {
        "c2n-adamw"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        Err(candle_core::Error::Msg(
            "the AdamW kernel runs on CUDA only".into(),
        ))
    }

    fn cuda_fwd(
        &self,
        param: &mut CudaStorage,
        param_layout: &Layout,
        grad: &CudaStorage,
        grad_layout: &Layout,
        exp_avg: &CudaStorage,
        exp_avg_layout: &Layout,
    ) -> candle_core::Result<()> {
        let (ps, pe) = contiguous(param_layout, "parameter")?;
        let (gs, ge) = contiguous(grad_layout, "gradient")?;
        let (ms, me) = contiguous(exp_avg_layout, "first moment")?;
        let (sq_storage, sq_layout) = self.exp_avg_sq.storage_and_layout();
        let Storage::Cuda(exp_avg_sq) = &*sq_storage else {
            return Err(candle_core::Error::Msg(
                "AdamW kernel: second moment not on CUDA".into(),
            ));
        };
        let (vs, ve) = contiguous(sq_layout, "second moment")?;
        let n = pe - ps;
        if ge - gs != n || self.offset + n > (me - ms).min(ve - vs) {
            return Err(candle_core::Error::Msg(
                "AdamW kernel: parameter, gradient and moments disagree in size".into(),
            ));
        }
        let device = param.device().clone();
        let grad = grad.as_cuda_slice::<f32>()?.slice(gs..ge);
        let (m0, v0) = (ms + self.offset, vs + self.offset);
        let exp_avg = exp_avg.as_cuda_slice::<f32>()?.slice(m0..m0 + n);
        let exp_avg_sq = exp_avg_sq.as_cuda_slice::<f32>()?.slice(v0..v0 + n);
        let mut param = param.as_cuda_slice_mut::<f32>()?.slice_mut(ps..pe);
        let n_u64 = n as u64;
        let func = device.get_or_load_custom_func("c2n_adamw_f32", MODULE, PTX)?;
        let mut builder = func.builder();
        builder.arg(&mut param);
        builder.arg(&grad);
        builder.arg(&exp_avg);
        builder.arg(&exp_avg_sq);
        builder.arg(&n_u64);
        let args = KernelScalars::of(self.scalars);
        args.push(&mut builder);
        let config: LaunchConfig = c2n_model::kernel_launch::grid_stride(n).into();
        if n > 0 {
            unsafe { builder.launch(config) }.w()?;
            c2n_model::cuda_sync_check(&device, self.name())?;
        }
        Ok(())
    }
}

/// The device address and length of the contiguous f32 range `layout` covers in `storage`.
fn f32_range(
    storage: &Storage,
    layout: &Layout,
    stream: &CudaStream,
    what: &str,
) -> candle_core::Result<(u64, usize)> {
    let (start, end) = contiguous(layout, what)?;
    let Storage::Cuda(storage) = storage else {
        return Err(candle_core::Error::Msg(format!(
            "AdamW kernel: {what} not on CUDA"
        )));
    };
    let base = storage.as_cuda_slice::<f32>()?.device_ptr(stream).0;
    Ok((base + 4 * start as u64, end - start))
}

/// Updates every `vars[k]` from `grads[k]` and its moments, which lie back to back from
/// element 0 of the chunk moments `exp_avg`/`exp_avg_sq`, all in place, in one launch.
///
/// Parameters and moments are written through their device pointers while Candle holds them
/// as the op's sources (see [`step_param`]); nothing else touches them during the step.
pub(super) fn step_many(
    vars: &[&Var],
    grads: &[&Tensor],
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    scalars: AdamWScalars,
) -> candle_core::Result<()> {
    if vars.len() != grads.len() {
        return Err(candle_core::Error::Msg(
            "AdamW kernel: one gradient per parameter".into(),
        ));
    }
    let device = exp_avg.device().as_cuda_device()?.clone();
    let stream = device.cuda_stream();
    let grads = grads
        .iter()
        .map(|g| g.flatten_all()?.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let params: Vec<_> = vars
        .iter()
        .map(|v| v.as_tensor().storage_and_layout())
        .collect();
    let held: Vec<_> = grads.iter().map(|g| g.storage_and_layout()).collect();
    let mut rows = Vec::with_capacity(vars.len());
    let mut offset = 0usize;
    for ((param, param_layout), (grad, grad_layout)) in params.iter().zip(&held) {
        let (p, n) = f32_range(param, param_layout, &stream, "parameter")?;
        let (g, gn) = f32_range(grad, grad_layout, &stream, "gradient")?;
        if gn != n {
            return Err(candle_core::Error::Msg(
                "AdamW kernel: parameter and gradient disagree in size".into(),
            ));
        }
        rows.push(([p, g, offset as u64], n));
        offset += n;
    }
    // Blocks update their parameters at the same time: two that share memory would race
    // (one after the other in the per-parameter path), so they take that path.
    let mut spans: Vec<(u64, u64)> = rows
        .iter()
        .map(|([p, ..], n)| (*p, 4 * *n as u64))
        .collect();
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
        return Err(candle_core::Error::Msg(
            "AdamW kernel: parameters that share memory".into(),
        ));
    }
    let (m_storage, m_layout) = exp_avg.storage_and_layout();
    let (v_storage, v_layout) = exp_avg_sq.storage_and_layout();
    let (Storage::Cuda(m_storage), Storage::Cuda(v_storage)) = (&*m_storage, &*v_storage) else {
        return Err(candle_core::Error::Msg(
            "AdamW kernel: moments not on CUDA".into(),
        ));
    };
    let (ms, me) = contiguous(m_layout, "first moment")?;
    let (vs, ve) = contiguous(v_layout, "second moment")?;
    if offset > (me - ms).min(ve - vs) {
        return Err(candle_core::Error::Msg(
            "AdamW kernel: the parameters do not fit their moment chunk".into(),
        ));
    }
    let exp_avg = m_storage.as_cuda_slice::<f32>()?.slice(ms..me);
    let exp_avg_sq = v_storage.as_cuda_slice::<f32>()?.slice(vs..ve);
    let table = c2n_model::kernel_launch::chunk_table(
        &rows,
        [4, 4, 1],
        c2n_model::kernel_launch::PACK_CHUNK_ELEMS,
    );
    let n_rows = table.len() / 4;
    if n_rows == 0 {
        return Ok(());
    }
    let table = device.clone_htod(&table)?;
    let func = device.get_or_load_custom_func("c2n_adamw_multi_f32", MODULE, PTX)?;
    let mut builder = func.builder();
    builder.arg(&table);
    builder.arg(&exp_avg);
    builder.arg(&exp_avg_sq);
    let args = KernelScalars::of(scalars);
    args.push(&mut builder);
    let config: LaunchConfig = c2n_model::kernel_launch::multi_tensor(n_rows).into();
    unsafe { builder.launch(config) }.w()?;
    c2n_model::cuda_sync_check(&device, "c2n-adamw-multi")?;
    drop((params, held));
    Ok(())
}
