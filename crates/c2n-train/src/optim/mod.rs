//! Optimization: named parameters, gradient bookkeeping and the reference AdamW.

mod adamw;
mod gradients;
mod params;

pub use adamw::{AdamW, AdamWConfig, ParamGroup};
pub use gradients::Gradients;
pub use params::NamedParams;
