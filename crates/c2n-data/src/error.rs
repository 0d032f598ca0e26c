//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, tokenizing, caching or batching data.
///
/// Errors about input files name the file and, where it makes sense, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error on a file or directory.
    // The OS error is part of the message and deliberately not `source()`: a report that
    // prints the chain (anyhow) would say it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// One bad line of a jsonl file (strict mode).
    #[error("{path}:{line}: {reason}: {detail}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Which kind of problem.
        reason: crate::reader::BadLineReason,
        /// Details (parser message, field name, ...).
        detail: String,
    },
    /// A line that parsed but could not be turned into a feature (tokenizer, id range).
    #[error("{path}:{line}: {message}")]
    InLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// A file that contains no line at all.
    #[error("{path}: empty file (no records)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The tokenizer files could not be found, read or parsed.
    #[error("tokenizer {location}: {message}")]
    Tokenizer {
        /// Folder, file or hub id.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// A token id does not fit the cache's 16-bit storage.
    #[error("token id {id} does not fit in u16 (vocabulary too large for the feature cache)")]
    IdOutOfRange {
        /// The offending id.
        id: u32,
    },
    /// A cache shard or manifest is unusable (corrupt, truncated, wrong version).
    #[error("cache {path}: {message}")]
    Cache {
        /// The shard or manifest.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An invalid setting (lengths, batch sizes, ranks, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A Hugging Face dataset could not be found, downloaded or converted.
    #[error("hub {location}: {message}")]
    Hub {
        /// Dataset id, file or row.
        location: String,
        /// What went wrong.
        message: String,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
