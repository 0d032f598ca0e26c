//! Attention heads in and out of the projection layout as one CUDA copy each
//! (`kernels/heads.cu`): a packed projection (with its bias added on the way) split into
//! heads, and per-head parts merged back side by side. Candle makes each of these a strided
//! copy that also uploads its dims and strides, plus a bias add or a stack. On by default
//! since GPU run 10 checked them; `C2N_CUDA_FEWER_LAUNCHES=0` turns them off.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::cuda_op::{contiguous, device_range, grid_stride, held_range};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/heads.ptx"));
const MODULE: &str = "c2n_heads";

/// Whether the kernels move `x` (a CUDA tensor in f32 or bf16, the fewer-launch kernels on).
pub(crate) fn usable(x: &Tensor) -> bool {
    x.device().is_cuda()
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && crate::cuda_training_kernels_enabled()
        && crate::cuda_fewer_launches_for("heads")
}

/// `x [b, L, parts·heads·d]` plus `bias [parts·heads·d]` (if any, of `x`'s dtype), split into
/// `parts` tensors `[b, heads, L, d]` (contiguous views of one `[parts, b, heads, L, d]`).
pub fn split_heads(
    x: &Tensor,
    bias: Option<&Tensor>,
    parts: usize,
    heads: usize,
) -> candle_core::Result<Vec<Tensor>> {
    let (b, l, width) = x.dims3()?;
    let d = width / (parts * heads).max(1);
    if parts * heads * d != width || parts == 0 {
        return Err(candle_core::Error::Msg(format!(
            "split heads: width {width} is not {parts} × {heads} heads"
        )));
    }
    if let Some(bias) = bias {
        if bias.elem_count() != width || bias.dtype() != x.dtype() {
            return Err(candle_core::Error::Msg(
                "split heads: the bias must match the width and dtype".into(),
            ));
        }
    }
    let op = Split {
        bias: bias.map(|t| t.contiguous()).transpose()?,
        batch: b,
        parts,
        heads,
        len: l,
        d,
    };
    let split = x.contiguous()?.apply_op1_no_bwd(&op)?;
    (0..parts).map(|i| split.get(i)).collect()
}

/// Parts `[b, heads, L, d]` (one to three, same shape and dtype) merged into
/// `[b, L, parts·heads·d]`.
pub fn merge_heads(parts: &[&Tensor]) -> candle_core::Result<Tensor> {
    let (first, rest) = parts
        .split_first()
        .ok_or_else(|| candle_core::Error::Msg("merge heads: no parts".into()))?;
    if parts.len() > 3
        || rest
            .iter()
            .any(|p| p.shape() != first.shape() || p.dtype() != first.dtype())
    {
        return Err(candle_core::Error::Msg(
            "merge heads: one to three parts of one shape and dtype".into(),
        ));
    }
    let (_, heads, len, d) = first.dims4()?;
    let rest = rest
        .iter()
        .map(|p| p.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let op = Merge {
        rest,
        heads,
        len,
        d,
    };
    first.contiguous()?.apply_op1_no_bwd(&op)
}

struct Split {
    bias: Option<Tensor>,
    batch: usize,
    parts: usize,
    heads: usize,
    len: usize,
    d: usize,
}

impl CustomOp1 for Split {
    fn name(&self) -> &'static str {
        "c2n-split-heads"
    }

    crate::cuda_op::cpu_refused!(a);

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let name = self.name();
        let (start, end) = contiguous(layout, name, "input")?;
        let n = end - start;
        let device = x.device().clone();
        let stream = device.cuda_stream();
        let held = self.bias.as_ref().map(|b| b.storage_and_layout());
        let ints = [self.batch, self.parts, self.heads, self.len, self.d].map(|v| v as i32);
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let x = x.as_cuda_slice::<$t>()?.slice(start..end);
                let bias: u64 = match &held {
                    Some((storage, layout)) => {
                        held_range(storage, layout, &stream, name, "bias")?.0
                    }
                    None => 0,
                };
                let mut out = unsafe { device.alloc::<$t>(n.max(1))? };
                if n > 0 {
                    let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                    let mut builder = func.builder();
                    let n_u64 = n as u64;
                    builder.arg(&x);
                    builder.arg(&bias);
                    builder.arg(&mut out);
                    builder.arg(&n_u64);
                    for v in &ints {
                        builder.arg(v);
                    }
                    unsafe { builder.launch(grid_stride(n)) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match x.dtype() {
            DType::F32 => launch!(f32, "c2n_split_heads_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_split_heads_bf16"),
            other => return Err(candle_core::Error::Msg(format!("{name}: no {other:?}"))),
        };
        drop(held);
        let shape = Shape::from(vec![self.parts, self.batch, self.heads, self.len, self.d]);
        Ok((out, shape))
    }
}

struct Merge {
    rest: Vec<Tensor>,
    heads: usize,
    len: usize,
    d: usize,
}

impl CustomOp1 for Merge {
    fn name(&self) -> &'static str {
        "c2n-merge-heads"
    }

    crate::cuda_op::cpu_refused!(a);

    fn cuda_fwd(
        &self,
        first: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let name = self.name();
        let (start, end) = contiguous(layout, name, "part")?;
        let per_part = end - start;
        let parts = 1 + self.rest.len();
        let n = per_part * parts;
        let batch = per_part / (self.heads * self.len * self.d).max(1);
        let device = first.device().clone();
        let stream = device.cuda_stream();
        let held: Vec<_> = self.rest.iter().map(|t| t.storage_and_layout()).collect();
        let ints = [parts, self.heads, self.len, self.d].map(|v| v as i32);
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let mut pointers = [0u64; 3];
                pointers[0] = device_range(first, layout, &stream, name, "part")?.0;
                for (k, (storage, layout)) in held.iter().enumerate() {
                    let (address, len) = held_range(storage, layout, &stream, name, "part")?;
                    if len != per_part || storage.dtype() != first.dtype() {
                        return Err(candle_core::Error::Msg(format!("{name}: parts differ")));
                    }
                    pointers[k + 1] = address;
                }
                let mut out = unsafe { device.alloc::<$t>(n.max(1))? };
                if n > 0 {
                    let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                    let mut builder = func.builder();
                    let n_u64 = n as u64;
                    for p in &pointers {
                        builder.arg(p);
                    }
                    builder.arg(&mut out);
                    builder.arg(&n_u64);
                    for v in &ints {
                        builder.arg(v);
                    }
                    unsafe { builder.launch(grid_stride(n)) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device.clone())
            }};
        }
        let out = match first.dtype() {
            DType::F32 => launch!(f32, "c2n_merge_heads_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_merge_heads_bf16"),
            other => return Err(candle_core::Error::Msg(format!("{name}: no {other:?}"))),
        };
        drop(held);
        let shape = Shape::from((batch, self.len, parts * self.heads * self.d));
        Ok((out, shape))
    }
}
