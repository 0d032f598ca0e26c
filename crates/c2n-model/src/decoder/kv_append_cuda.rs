//! [`super::kv_cache`]'s reorder-and-append as one CUDA kernel (`kernels/kv_cache_append.cu`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kv_cache_append.ptx"));
const MODULE: &str = "c2n_kv_cache_append";

/// `cat([cache.index_select(origin, 0), fresh], 2)` in one kernel: `cache [R, H, L, D]`,
/// `origin` u32 `[R']` (every entry below R), `fresh [R', H, 1, D]`. `None` for a dtype the
/// kernel does not take (the caller uses the tensor ops).
pub(crate) fn reorder_append(
    cache: &Tensor,
    origin: &Tensor,
    fresh: &Tensor,
) -> Result<Option<Tensor>> {
    if !matches!(cache.dtype(), DType::F32 | DType::BF16 | DType::F16)
        || fresh.dtype() != cache.dtype()
        || origin.dtype() != DType::U32
    {
        return Ok(None);
    }
    let (_, heads, _, width) = cache.dims4()?;
    let (rows, fresh_heads, one, fresh_width) = fresh.dims4()?;
    if (fresh_heads, one, fresh_width) != (heads, 1, width) || origin.dims1()? != rows {
        return Err(crate::ModelError::InvalidInput(format!(
            "cache append: cache {:?}, origin {:?}, new position {:?}",
            cache.dims(),
            origin.dims(),
            fresh.dims()
        )));
    }
    Ok(Some(cache.contiguous()?.apply_op3(
        &origin.contiguous()?,
        &fresh.contiguous()?,
        ReorderAppend,
    )?))
}

struct ReorderAppend;

/// A contiguous view of `storage` as `T`, from `layout`.
macro_rules! view {
    ($storage:expr, $layout:expr, $t:ty) => {{
        let (start, end) = crate::cuda_op::contiguous($layout, "cache append", "input")?;
        $storage.as_cuda_slice::<$t>()?.slice(start..end)
    }};
}

impl CustomOp3 for ReorderAppend {
    fn name(&self) -> &'static str {
        "c2n-kv-reorder-append"
    }

    crate::cuda_op::cpu_refused!(a, b, c);

    fn cuda_fwd(
        &self,
        cache: &CudaStorage,
        cache_layout: &Layout,
        origin: &CudaStorage,
        origin_layout: &Layout,
        fresh: &CudaStorage,
        fresh_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (_, heads, len, width) = cache_layout.shape().dims4()?;
        let rows = origin_layout.shape().elem_count();
        let out_shape = Shape::from((rows, heads, len + 1, width));
        let n = out_shape.elem_count();
        let device = cache.device().clone();
        let origin = view!(origin, origin_layout, u32);
        let config: LaunchConfig = crate::kernel_launch::kv_reorder_append(rows, heads).into();
        let (heads_i, len_i, width_i) = (heads as i32, len as i32, width as i32);
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let cache = view!(cache, cache_layout, $t);
                let fresh = view!(fresh, fresh_layout, $t);
                let mut out = unsafe { device.alloc::<$t>(n)? };
                let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                let mut builder = func.builder();
                builder.arg(&cache);
                builder.arg(&fresh);
                builder.arg(&origin);
                builder.arg(&mut out);
                builder.arg(&heads_i);
                builder.arg(&len_i);
                builder.arg(&width_i);
                if rows * heads > 0 {
                    unsafe { builder.launch(config) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device)
            }};
        }
        let storage = match cache.dtype() {
            DType::F32 => launch!(f32, "c2n_kv_reorder_append_u32"),
            DType::BF16 => launch!(half::bf16, "c2n_kv_reorder_append_u16"),
            DType::F16 => launch!(half::f16, "c2n_kv_reorder_append_u16"),
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "cache append kernel: no {other:?}"
                )))
            }
        };
        Ok((storage, out_shape))
    }
}
