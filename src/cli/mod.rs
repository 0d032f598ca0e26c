//! Command-line definitions of the example programs, kept in the library so that a test can
//! check every flag (`tests/cli.rs`) without running the programs. Each example parses its
//! struct and calls the library; nothing else lives here.

pub mod pipeline;
pub mod sweep;
