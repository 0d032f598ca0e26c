//! `--tie-order` of the decoding examples.

use crate::model::beam::TieOrder;
use clap::ValueEnum;

/// Order of exactly equal beam candidates (reference-semantics §11 item 17).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TieOrderArg {
    /// torch-cpu when decoding on the CPU, lower-index on a GPU.
    Auto,
    /// As torch.topk on the CPU: reproduces a CPU run of the original scripts on ties.
    TorchCpu,
    /// Lower flat index first (documented rule; lets a GPU rank candidates on the device).
    LowerIndex,
}

impl From<TieOrderArg> for TieOrder {
    fn from(arg: TieOrderArg) -> Self {
        match arg {
            TieOrderArg::Auto => TieOrder::Auto,
            TieOrderArg::TorchCpu => TieOrder::TorchCpu,
            TieOrderArg::LowerIndex => TieOrder::LowerIndex,
        }
    }
}
