//! [`super::slot_cache`]'s step as one CUDA kernel per layer (`kernels/slot_attention.cu`):
//! append the newest position, rewrite the slot table by the beam, attend.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::cuda_op::{contiguous_view, held_view};
use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/slot_attention.ptx"));
const MODULE: &str = "c2n_slot_attention";
const OP: &str = "slot attention";
/// `C2N_SLOT_MAX_POSITIONS` of the kernel.
const MAX_POSITIONS: usize = 1024;

/// Whether the kernel takes a step of `q` (f32 on CUDA, head width ≤ the block) with `len`
/// positions cached.
pub(super) fn usable(q: &Tensor, head_dim: usize, len: usize) -> bool {
    q.device().is_cuda()
        && q.dtype() == DType::F32
        && crate::cuda_decode_kernels_enabled()
        && head_dim <= crate::kernel_launch::SLOT_ATTENTION_THREADS as usize
        && len < MAX_POSITIONS
}

/// One step: `q`, `k`, `v` `[rows, heads, 1, d]`; `keys`/`values` `[physical, capacity,
/// heads·d]` with room for position `len` in rows `0..rows`. Returns the context
/// `[rows, 1, heads·d]` and the new slot table `[rows, len + 1]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn step(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    slots: Option<&Tensor>,
    origin: Option<&Tensor>,
    len: usize,
) -> Result<(Tensor, Tensor)> {
    let (rows, heads, _, head_dim) = q.dims4()?;
    let width = heads * head_dim;
    let flat = |x: &Tensor| -> Result<Tensor> { Ok(x.contiguous()?.reshape((rows, width))?) };
    let slots_new = Tensor::zeros((rows, len + 1), DType::U32, q.device())?;
    let op = SlotAttentionStep {
        keys: keys.clone(),
        values: values.clone(),
        slots: slots.cloned(),
        origin: origin.cloned(),
        slots_new: slots_new.clone(),
        heads,
        head_dim,
        len,
    };
    let ctx = flat(q)?.apply_op3(&flat(k)?, &flat(v)?, op)?;
    Ok((ctx.reshape((rows, 1, width))?, slots_new))
}

/// The kernel's in-place operands (written or read through their device pointers while
/// the op runs: the cache owns them and nothing else touches them during a step).
struct SlotAttentionStep {
    keys: Tensor,
    values: Tensor,
    slots: Option<Tensor>,
    origin: Option<Tensor>,
    slots_new: Tensor,
    heads: usize,
    head_dim: usize,
    len: usize,
}

impl CustomOp3 for SlotAttentionStep {
    fn name(&self) -> &'static str {
        "c2n-slot-attention-step"
    }

    crate::cuda_op::cpu_refused!(a, b, c);

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        q_layout: &Layout,
        k: &CudaStorage,
        k_layout: &Layout,
        v: &CudaStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (rows, width) = q_layout.shape().dims2()?;
        let (_, capacity, cache_width) = self.keys.dims3()?;
        if cache_width != width || self.len >= capacity {
            return Err(candle_core::Error::Msg(format!(
                "slot attention: cache {:?} has no room for position {} of width {width}",
                self.keys.dims(),
                self.len
            )));
        }
        let device = q.device().clone();
        let input = |s, l, what| contiguous_view::<f32>(s, l, OP, what);
        let (q, k, v) = (
            input(q, q_layout, "q")?,
            input(k, k_layout, "k")?,
            input(v, v_layout, "v")?,
        );
        let (keys_storage, keys_layout) = self.keys.storage_and_layout();
        let (values_storage, values_layout) = self.values.storage_and_layout();
        let (new_storage, new_layout) = self.slots_new.storage_and_layout();
        let keys = held_view::<f32>(&keys_storage, keys_layout, OP, "keys")?;
        let values = held_view::<f32>(&values_storage, values_layout, OP, "values")?;
        let slots_new = held_view::<u32>(&new_storage, new_layout, OP, "new slots")?;
        // Absent when nothing is cached yet or no reorder is pending; the kernel then does not
        // read them, and gets the new table's pointer as a placeholder.
        let slots_guard = self.slots.as_ref().map(|t| t.storage_and_layout());
        let origin_guard = self.origin.as_ref().map(|t| t.storage_and_layout());
        let slots_old = match &slots_guard {
            Some((s, l)) => held_view::<u32>(s, l, OP, "slots")?,
            None => held_view::<u32>(&new_storage, new_layout, OP, "new slots")?,
        };
        let origin = match &origin_guard {
            Some((s, l)) => held_view::<u32>(s, l, OP, "origin")?,
            None => held_view::<u32>(&new_storage, new_layout, OP, "new slots")?,
        };
        let has_origin = i32::from(self.origin.is_some());
        let ctx = unsafe { device.alloc::<f32>(rows * width)? };
        let func = device.get_or_load_custom_func("c2n_slot_attention_step_f32", MODULE, PTX)?;
        let (heads, head_dim, len, capacity) = (
            self.heads as i32,
            self.head_dim as i32,
            self.len as i32,
            capacity as i32,
        );
        let mut builder = func.builder();
        builder.arg(&q);
        builder.arg(&k);
        builder.arg(&v);
        builder.arg(&keys);
        builder.arg(&values);
        builder.arg(&slots_old);
        builder.arg(&origin);
        builder.arg(&has_origin);
        builder.arg(&slots_new);
        builder.arg(&ctx);
        builder.arg(&heads);
        builder.arg(&head_dim);
        builder.arg(&len);
        builder.arg(&capacity);
        let config: LaunchConfig = crate::kernel_launch::slot_attention(rows, self.heads).into();
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
