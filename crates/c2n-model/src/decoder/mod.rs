//! The Transformer decoder (spec §4.3): a stack of post-norm layers with no final norm.

mod attention;
#[cfg(feature = "cuda")]
mod cross_attention_cuda;
#[cfg(feature = "cuda")]
mod kv_append_cuda;
mod kv_cache;
mod layer;
mod masks;
mod self_attention_cache;
#[cfg(feature = "cuda")]
mod slot_attention_cuda;
mod slot_cache;

pub use attention::MultiheadAttention;
/// The grouped cross-attention kernel itself, for `device check-kernels`.
#[cfg(feature = "cuda")]
pub use cross_attention_cuda::grouped_cross_attention as cuda_grouped_cross_attention;
pub use kv_cache::KvCache;
pub use layer::DecoderLayer;
pub use masks::{causal_mask, memory_key_padding_mask};
pub use self_attention_cache::{CacheLayout, SelfAttentionCache};
pub use slot_cache::{SlotAttention, SlotCache};
