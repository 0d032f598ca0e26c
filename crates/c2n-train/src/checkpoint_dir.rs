//! Replacing a checkpoint directory without ever leaving a half-written one in its place.
//!
//! A checkpoint is written into a hidden sibling folder first; only when every file is
//! complete does it take the checkpoint's name (two renames: the old folder steps aside,
//! the new one moves in, the old one is deleted). A crash while writing therefore leaves
//! the previous checkpoint intact, so `--resume` never mixes new weights with an old
//! optimizer state. Should a crash fall between the two renames, the previous checkpoint
//! is still on disk under its hidden `.old` name.

use crate::{Result, TrainError};
use std::fs;
use std::path::{Path, PathBuf};

/// Hidden sibling of `dir` named `.{name}.{tag}-{pid}`.
fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy());
    dir.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

fn remove_if_present(path: &Path) -> Result<()> {
    if path.exists() {
        fs::remove_dir_all(path).map_err(|e| TrainError::io(path, e))?;
    }
    Ok(())
}

/// Writes a directory with `write` (given an empty folder) and then puts it at `dir`,
/// replacing what was there. On error `dir` is unchanged and the partial folder removed.
pub fn write_replacing(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let partial = sibling(dir, "partial");
    remove_if_present(&partial)?;
    fs::create_dir_all(&partial).map_err(|e| TrainError::io(&partial, e))?;
    if let Err(e) = write(&partial) {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    let old = sibling(dir, "old");
    remove_if_present(&old)?;
    if dir.exists() {
        fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
    }
    fs::rename(&partial, dir).map_err(|e| TrainError::io(dir, e))?;
    remove_if_present(&old)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_write_keeps_the_previous_directory_and_a_complete_one_replaces_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("checkpoint-last");
        write_replacing(&dir, |d| {
            fs::write(d.join("a"), "1").map_err(|e| TrainError::io(d, e))?;
            fs::write(d.join("stale"), "x").map_err(|e| TrainError::io(d, e))
        })
        .unwrap();
        assert_eq!(names(&dir), ["a", "stale"]);

        let err = write_replacing(&dir, |d| {
            fs::write(d.join("a"), "2").map_err(|e| TrainError::io(d, e))?;
            Err(TrainError::InvalidInput("disk full".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(
            names(root.path()),
            ["checkpoint-last"],
            "partial folder removed"
        );

        write_replacing(&dir, |d| {
            fs::write(d.join("a"), "3").map_err(|e| TrainError::io(d, e))
        })
        .unwrap();
        assert_eq!(
            names(&dir),
            ["a"],
            "files of the old checkpoint do not linger"
        );
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert_eq!(names(root.path()), ["checkpoint-last"]);
    }
}
