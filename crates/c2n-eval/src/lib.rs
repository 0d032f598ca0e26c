//! c2n-eval: see the crate README.
