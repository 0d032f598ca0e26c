//! A decoding step's cross-attention for groups of rows sharing an example's memory, as one
//! CUDA kernel per layer (`kernels/cross_attention.cu`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::cuda_op::{contiguous_view, held_view};
use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/cross_attention.ptx"));
const MODULE: &str = "c2n_cross_attention";
const OP: &str = "cross attention";
/// The kernel's `C2N_CROSS_MAX_*` limits.
const MAX_GROUP: usize = 16;
const MAX_QUERY: usize = 1024;
const MAX_SCORES: usize = 8192;

/// The context `[rows, 1, heads·d]` of scaled queries `q [rows, heads, 1, d]` over
/// `keys`/`values [entries, heads, S, d]` with the additive `mask [entries, 1, 1, S]`, rows in
/// groups of `rows / entries`; `None` where the kernel does not apply (not CUDA or f32,
/// beyond its limits): the caller attends with tensor ops. The caller checks the switches.
pub fn grouped_cross_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: &Tensor,
) -> Result<Option<Tensor>> {
    let (rows, heads, one, d) = q.dims4()?;
    let (entries, key_heads, s, key_d) = keys.dims4()?;
    let usable = q.device().is_cuda()
        && [q, keys, values, mask]
            .iter()
            .all(|t| t.dtype() == DType::F32)
        && one == 1
        && (key_heads, key_d) == (heads, d)
        && values.dims() == keys.dims()
        && mask.dims() == [entries, 1, 1, s]
        && entries > 0
        && rows % entries == 0;
    let group = if usable { rows / entries } else { 0 };
    if !usable
        || group > MAX_GROUP
        || group * d > MAX_QUERY
        || group * s > MAX_SCORES
        || d > crate::kernel_launch::CROSS_ATTENTION_THREADS as usize
    {
        return Ok(None);
    }
    let width = heads * d;
    let op = GroupedCrossAttention {
        mask: mask.contiguous()?,
        heads,
        d,
        s,
        group,
    };
    let ctx = q.contiguous()?.reshape((rows, width))?.apply_op3(
        &keys.contiguous()?,
        &values.contiguous()?,
        op,
    )?;
    Ok(Some(ctx.reshape((rows, 1, width))?))
}

struct GroupedCrossAttention {
    /// Read through its device pointer while the op runs.
    mask: Tensor,
    heads: usize,
    d: usize,
    s: usize,
    group: usize,
}

impl CustomOp3 for GroupedCrossAttention {
    fn name(&self) -> &'static str {
        "c2n-grouped-cross-attention"
    }

    crate::cuda_op::cpu_refused!(a, b, c);

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_layout: &Layout,
        keys: &CudaStorage,
        keys_layout: &Layout,
        values: &CudaStorage,
        values_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, width) = q_layout.shape().dims2()?;
        let entries = rows / self.group;
        let device = q.device().clone();
        let q = contiguous_view::<f32>(q, q_layout, OP, "queries")?;
        let keys = contiguous_view::<f32>(keys, keys_layout, OP, "keys")?;
        let values = contiguous_view::<f32>(values, values_layout, OP, "values")?;
        let (mask_storage, mask_layout) = self.mask.storage_and_layout();
        let mask = held_view::<f32>(&mask_storage, mask_layout, OP, "mask")?;
        let ctx = unsafe { device.alloc::<f32>(rows * width)? };
        let func =
            device.get_or_load_custom_func("c2n_grouped_cross_attention_f32", MODULE, PTX)?;
        let (heads, d, s, group) = (
            self.heads as i32,
            self.d as i32,
            self.s as i32,
            self.group as i32,
        );
        let mut builder = func.builder();
        builder.arg(&q);
        builder.arg(&keys);
        builder.arg(&values);
        builder.arg(&mask);
        builder.arg(&ctx);
        builder.arg(&heads);
        builder.arg(&d);
        builder.arg(&s);
        builder.arg(&group);
        let config: LaunchConfig =
            crate::kernel_launch::grouped_cross_attention(entries, self.heads).into();
        if rows > 0 {
            unsafe { builder.launch(config) }.w()?;
            crate::cuda_sync_check(&device, self.name())?;
        }
        Ok((
            CudaStorage::wrap_cuda_slice(ctx, device),
            Shape::from((rows, width)),
        ))
    }
}
