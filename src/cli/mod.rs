//! Command-line definitions of the example programs, kept in the library so that a test can
//! check every flag (`tests/cli.rs`: clap's debug assertions and help text on each flag)
//! without running the programs. Each example parses its struct and calls the library;
//! nothing else lives here.

pub mod bleu;
pub mod checkpoint;
pub mod evaluate;
pub mod pipeline;
pub mod predict;
pub mod prepare;
pub mod sweep;
pub mod tie_order;
pub mod train;

/// A count flag that must be at least 1 (clap reports `0 is not in 1..`).
pub(crate) fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}
