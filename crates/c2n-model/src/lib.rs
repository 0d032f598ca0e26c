//! c2n-model: see the crate README.

pub mod beam;
pub mod config;
pub mod decoder;
pub mod encoder;
mod error;
pub mod generation;
pub mod init;
pub mod keys;
pub mod layers;
pub mod load;
pub mod save;
mod seq2seq;
pub mod session;
pub mod step;

pub use config::{Activation, ModelConfig};
pub use error::{ModelError, Result};
pub use load::{load_checkpoint, load_pretrained_encoder};
pub use save::save_checkpoint;
pub use seq2seq::{LossOutput, Seq2Seq};
pub use session::{FullPrefixSession, KvCacheSession};
pub use step::NextTokenLogProbs;
