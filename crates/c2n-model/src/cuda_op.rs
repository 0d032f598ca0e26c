//! What every custom CUDA op of ours needs around its launch: the CPU refusal, contiguous
//! input ranges and the grid-stride launch shape of elementwise kernels.

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::Layout;

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
