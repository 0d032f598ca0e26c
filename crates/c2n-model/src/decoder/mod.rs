//! The Transformer decoder (spec §4.3): a stack of post-norm layers with no final norm.

mod attention;
#[cfg(feature = "cuda")]
mod kv_append_cuda;
mod kv_cache;
mod layer;
mod masks;

pub use attention::MultiheadAttention;
pub use kv_cache::KvCache;
pub use layer::DecoderLayer;
pub use masks::{causal_mask, memory_key_padding_mask};
