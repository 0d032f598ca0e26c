//! Optimization: named parameters, gradient bookkeeping and the reference AdamW.

mod adamw;
#[cfg(feature = "cuda")]
mod adamw_cuda;
mod gradients;
mod packed;
mod params;

pub use adamw::{AdamW, AdamWConfig, ParamGroup};
pub use gradients::Gradients;
pub use packed::{CPU_MAX_CHUNK_ELEMS, GPU_MAX_CHUNK_ELEMS};
pub use params::NamedParams;
