//! c2n-train's integration tests, one module per concern, linked into one test binary: each
//! binary links Candle whole, so one binary instead of seventeen saves CI link time and most of
//! a gigabyte of disk. `adamw_op_count` keeps a binary of its own: it reads Candle's global
//! tensor counter, which tests on other threads would move.

mod adamw_reference;
#[path = "../../c2n-model/tests/emulator_support/mod.rs"]
mod emulator_support;
mod support;

mod adamw_emulated;
mod adamw_flat;
mod comm_parity;
mod comm_rendezvous;
mod comm_sgd;
mod comm_threads;
mod data_parallel;
mod data_parallel_ruby;
mod decode_order;
mod pipeline;
mod pipeline_sweep;
mod precision;
mod reference_fixtures;
mod resume;
mod ruby_data;
mod train_parity;
mod trainer_from_parts;
