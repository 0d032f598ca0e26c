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

/// 256-thread blocks for a grid-stride loop over `n` elements, at most 16 blocks per SM of an
/// H100 (more only add scheduling).
pub(crate) fn grid_stride(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 132 * 16) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}
