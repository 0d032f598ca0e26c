//! Which order exactly equal candidates take: the one choice the reference leaves open.
//!
//! The reference ranks a beam's `K × V` candidates with `torch.topk`, whose order on exact
//! ties is whatever its algorithm leaves (reference-semantics §11 item 17). Ties are rare
//! with a trained model but common with small or random ones, where sums of f32 scores
//! often land on the same float; a different pick there changes the n-best list.
//!
//! - [`TieOrder::TorchCpu`]: the order `torch.topk` returns on the CPU (its algorithm
//!   replayed in [`torch_order`](super::torch_order)), so decoding on the CPU reproduces a
//!   CPU run of the original scripts even on ties. It needs every row's candidates, so a GPU
//!   session copies all log-probabilities to the host instead of ranking on the device.
//! - [`TieOrder::LowerIndex`]: the lower flat index `k·V + w` first, the rule of
//!   [`select`](super::select) and `tools/reference/beam.py`. On CUDA, torch's own tie order
//!   is unspecified, so no choice reproduces it; this one lets the GPU rank on the device.
//! - [`TieOrder::Auto`] (default): `TorchCpu` when the session ranks candidates on the host
//!   (CPU decoding), `LowerIndex` when it ranks them on the device (GPU decoding).

use serde::{Deserialize, Serialize};

/// How exactly equal candidates are ordered; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TieOrder {
    /// `TorchCpu` for sessions that rank on the host, `LowerIndex` for those that rank on a
    /// device.
    #[default]
    Auto,
    /// As `torch.topk` on the CPU.
    TorchCpu,
    /// Lower flat index first.
    LowerIndex,
}

impl TieOrder {
    /// The concrete order for a session that ranks candidates on a device (or not).
    pub fn resolve(self, ranks_on_device: bool) -> Self {
        match self {
            Self::Auto if ranks_on_device => Self::LowerIndex,
            Self::Auto => Self::TorchCpu,
            order => order,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_where_candidates_are_ranked() {
        assert_eq!(TieOrder::Auto.resolve(false), TieOrder::TorchCpu);
        assert_eq!(TieOrder::Auto.resolve(true), TieOrder::LowerIndex);
        assert_eq!(TieOrder::TorchCpu.resolve(true), TieOrder::TorchCpu);
        assert_eq!(TieOrder::LowerIndex.resolve(false), TieOrder::LowerIndex);
        let parsed: TieOrder = serde_json::from_str("\"torch-cpu\"").unwrap();
        assert_eq!(parsed, TieOrder::TorchCpu);
    }
}
