//! The one error type of `c2n-train`.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, running, saving or resuming training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed inside Candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    // The OS error is part of the message and deliberately not `source()`: a report that
    // prints the chain (anyhow) would say it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A JSON or TOML file could not be parsed.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A configuration value is invalid or two settings contradict each other.
    #[error("invalid training config: {0}")]
    Config(String),
    /// A saved training state does not fit the run it should resume.
    #[error("cannot resume from {path}: {message}")]
    Resume { path: PathBuf, message: String },
    /// Another process holds the output folder's lock ([`crate::run_lock`]).
    #[error("{dir} is in use by {holder}; wait for it to end, or choose another output folder")]
    InUse { dir: PathBuf, holder: String },
    /// A run was asked to stop (Ctrl-C) and did, leaving what resumes it.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// The training loss stopped being a number.
    #[error(
        "training diverged: {0}; a lower learning rate (lr), a warmup or gradient clipping \
         (max_grad_norm) may help"
    )]
    Diverged(String),
    /// The run needs more memory than the machine or the device has ([`crate::train_memory`]).
    #[error("out of memory: {what}. {advice}")]
    OutOfMemory { what: String, advice: String },
    /// A checkpoint file differs from what was written ([`crate::checkpoint_checksums`]).
    #[error(
        "checkpoint {dir} is damaged: {message}; use another checkpoint (checkpoint-best-*, \
         earlier-run-N) or copy this one again (or, if a training run was replacing this \
         checkpoint just then, try again)"
    )]
    DamagedCheckpoint { dir: PathBuf, message: String },
    /// The output folder holds a run of other settings or data, which this one would mix with.
    #[error("{0}; choose another output folder or delete it")]
    OtherRun(String),
    /// A caller passed inconsistent inputs (parameter names, shapes, sizes).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The requested compute device is not available in this build or on this machine.
    #[error("device `{requested}` is not available: {reason}")]
    Device { requested: String, reason: String },
    /// The model crate reported an error.
    #[error(transparent)]
    Model(#[from] c2n_model::ModelError),
    /// The data crate reported an error (reading, tokenizing, batching).
    #[error(transparent)]
    Data(#[from] c2n_data::DataError),
    /// The BLEU crate reported an error.
    #[error(transparent)]
    Eval(#[from] c2n_eval::EvalError),
    /// A collective of the data-parallel communicator failed (or another rank did).
    #[error(transparent)]
    Comm(#[from] crate::comm::CommError),
}

impl TrainError {
    /// Wraps an I/O error together with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }

    /// Wraps a parse failure together with the path it concerns.
    pub fn parse(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Parse {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
