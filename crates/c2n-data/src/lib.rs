//! c2n-data: see the crate README.
