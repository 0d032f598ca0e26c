//! The Transformer decoder (spec §4.3): a stack of post-norm layers with no final norm.

mod attention;
mod layer;
mod masks;

pub use attention::MultiheadAttention;
pub use layer::{DecoderLayer, KvCache};
pub use masks::{causal_mask, memory_key_padding_mask};
