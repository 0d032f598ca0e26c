//! c2n-train: reference-exact fine-tuning (in progress).

pub mod checkpoint_policy;
pub mod comm;
pub mod config;
pub mod data;
pub mod device;
pub mod early_stopping;
mod error;
pub mod evaluate;
pub mod loop_plan;
pub mod metrics;
pub mod model_setup;
pub mod optim;
pub mod pyrandom;
pub mod schedule;
pub mod state;
pub mod tensors;
pub mod trainer;

pub use error::{Result, TrainError};
