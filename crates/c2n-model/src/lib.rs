//! c2n-model: see the crate README.

pub mod beam;
mod error;
pub mod generation;
pub mod step;

pub use error::{ModelError, Result};
pub use step::NextTokenLogProbs;
