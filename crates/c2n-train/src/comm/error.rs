//! The error type of the communicator layer.
//!
//! Kept separate from [`crate::TrainError`] because the communicator is used before a trainer exists
//! (launch, rendezvous) and by tools that never train; the trainer wraps it with `#[from]`.

use std::time::Duration;

/// Everything that can go wrong while ranks talk to each other.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// A launcher variable is missing, unparsable or inconsistent with the others.
    #[error("launcher environment: {0}")]
    Env(String),
    /// A collective did not complete in time: some rank never arrived.
    #[error(
        "rank {rank}: `{op}` timed out after {waited:?} ({arrived} of {world_size} ranks arrived)"
    )]
    Timeout {
        rank: usize,
        op: &'static str,
        waited: Duration,
        arrived: usize,
        world_size: usize,
    },
    /// Another rank failed or left, so this collective can never complete.
    #[error("rank {rank}: `{op}` aborted: {reason}")]
    PeerFailed {
        rank: usize,
        op: &'static str,
        reason: String,
    },
    /// Ranks called different collectives, or the same one with different buffer sizes.
    #[error("collective mismatch: {0}")]
    Mismatch(String),
    /// A collective returned a wrong value (self-check of a deployment).
    #[error("wrong collective result: {0}")]
    WrongResult(String),
    /// A rank's thread panicked.
    #[error("rank {rank} panicked: {message}")]
    RankPanicked { rank: usize, message: String },
    /// The TCP rendezvous failed (bind, connect, protocol or timeout).
    #[error("rendezvous at {addr}: {message}")]
    Rendezvous { addr: String, message: String },
    /// The caller asked for something the backend or build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A caller passed inconsistent inputs (names, sizes, world size).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The MPI or NCCL library reported an error.
    #[error("{backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    /// A tensor operation in the Candle adapter failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for the communicator layer.
pub type CommResult<T> = std::result::Result<T, CommError>;
