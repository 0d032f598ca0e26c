//! The one error type of `c2n-model`.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading, saving or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
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
    /// A configuration file or value is invalid.
    #[error("invalid config{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Config {
        path: Option<PathBuf>,
        message: String,
    },
    /// A checkpoint lacks a required tensor.
    #[error("{path}: missing key `{key}`")]
    MissingKey { path: PathBuf, key: String },
    /// A checkpoint tensor has the wrong shape.
    #[error("{path}: key `{key}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A checkpoint file cannot be read (format, legacy torch pickle, ...).
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// A caller passed inconsistent inputs (shapes, lengths, ids out of range).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Result alias for this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
