//! What every custom CUDA op of ours needs around its launch: the CPU refusal, contiguous
//! input ranges and the grid-stride launch shape of elementwise kernels.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaStream, CudaView, DevicePtr, LaunchConfig};
use candle_core::cuda_backend::CudaDType;
use candle_core::{CudaStorage, DType, Layout, Storage};

/// The error of a CUDA-only op asked to run on the CPU (callers check the device first, so
/// this is a misuse, not a fallback).
pub(crate) fn cuda_only<T>(op: &str) -> candle_core::Result<T> {
    Err(candle_core::Error::Msg(format!("{op} runs on CUDA only")))
}

/// `cpu_fwd` of a CUDA-only custom op with 1, 2 or 3 inputs: the [`cuda_only`] error.
macro_rules! cpu_refused {
    ($($arg:ident),+) => {
        fn cpu_fwd(
            &self,
            $($arg: &candle_core::CpuStorage, _: &candle_core::Layout,)+
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            $(let _ = $arg;)+
            $crate::cuda_op::cuda_only(self.name())
        }
    };
}
pub(crate) use cpu_refused;

/// The element range of a contiguous `layout`, or an error naming `op` and `what`.
pub(crate) fn contiguous(
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: {what} must be contiguous")))
}

/// The launch of an elementwise grid-stride kernel ([`crate::kernel_launch::grid_stride`]).
pub(crate) fn grid_stride(n: usize) -> LaunchConfig {
    crate::kernel_launch::grid_stride(n).into()
}

/// The contiguous range of `storage` that `layout` covers, as `T` (an op's input `what`).
pub(crate) fn contiguous_view<'a, T: CudaDType>(
    storage: &'a CudaStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<CudaView<'a, T>> {
    let (start, end) = contiguous(layout, op, what)?;
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

/// [`contiguous_view`] of a tensor's storage that an op holds beside its inputs (read or
/// written through its pointer while the op runs).
pub(crate) fn held_view<'a, T: CudaDType>(
    storage: &'a Storage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<CudaView<'a, T>> {
    match storage {
        Storage::Cuda(storage) => contiguous_view(storage, layout, op, what),
        _ => cuda_only(op),
    }
}

/// The device address (bytes) and length (elements) of the contiguous f32 or bf16 range that
/// `layout` covers in `storage`: for kernels that take pointers from a table or nullable
/// pointer arguments (an op's input `what`).
pub(crate) fn device_range(
    storage: &CudaStorage,
    layout: &Layout,
    stream: &CudaStream,
    op: &str,
    what: &str,
) -> candle_core::Result<(u64, usize)> {
    let (start, end) = contiguous(layout, op, what)?;
    let (base, size) = match storage.dtype() {
        DType::F32 => (storage.as_cuda_slice::<f32>()?.device_ptr(stream).0, 4),
        DType::BF16 => (
            storage.as_cuda_slice::<half::bf16>()?.device_ptr(stream).0,
            2,
        ),
        other => {
            return Err(candle_core::Error::Msg(format!(
                "{op}: {what} in {other:?}, not f32 or bf16"
            )))
        }
    };
    Ok((base + size * start as u64, end - start))
}

/// [`device_range`] of a tensor's storage that an op holds beside its inputs.
pub(crate) fn held_range(
    storage: &Storage,
    layout: &Layout,
    stream: &CudaStream,
    op: &str,
    what: &str,
) -> candle_core::Result<(u64, usize)> {
    match storage {
        Storage::Cuda(storage) => device_range(storage, layout, stream, op, what),
        _ => cuda_only(op),
    }
}
