//! c2n-train: see the crate README.

pub mod comm;
