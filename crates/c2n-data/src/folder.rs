//! Creating the folders this workspace writes into (caches, run outputs), with a clear error
//! where a file stands in the way.

use crate::{DataError, Result};
use std::io;
use std::path::Path;

/// Creates `dir` and its parents. Where `dir` or one of its parents is a file, the error
/// names that file ("is a file, not a folder: choose another {what}") instead of the OS's
/// "File exists" or "Not a directory".
pub fn create(dir: &Path, what: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| file_in_the_way(dir, what).unwrap_or_else(|| DataError::io(dir, e)))
}

/// The error [`create`] would give where a file stands at `dir` or one of its parents, found
/// without creating anything (to fail before long work rather than after it).
pub fn check_no_file_in_the_way(dir: &Path, what: &str) -> Result<()> {
    file_in_the_way(dir, what).map_or(Ok(()), Err)
}

fn file_in_the_way(dir: &Path, what: &str) -> Option<DataError> {
    let file = dir.ancestors().find(|p| p.is_file())?;
    Some(DataError::io(
        file,
        io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("is a file, not a folder: choose another {what}, or move the file"),
        ),
    ))
}
