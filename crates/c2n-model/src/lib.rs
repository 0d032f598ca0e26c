//! c2n-model: see the crate README.

mod error;
pub mod step;

pub use error::{ModelError, Result};
pub use step::NextTokenLogProbs;
