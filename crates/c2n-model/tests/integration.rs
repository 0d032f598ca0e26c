//! c2n-model's integration tests, one module per concern, linked into one test binary: each
//! binary links Candle whole, so one binary instead of eleven saves CI link time and about half
//! a gigabyte of disk. A test that needs a process of its own gets its own `[[test]]` target.

mod beam_support;
mod emulator_support;
mod model_support;

mod beam_batched;
mod beam_fixtures;
mod beam_model;
mod beam_options;
mod beam_torch_ties;
mod checkpoints;
mod explicit_backward;
mod fused_ops;
mod gradients;
mod kernels_emulated;
mod model_parity;
mod sessions;
