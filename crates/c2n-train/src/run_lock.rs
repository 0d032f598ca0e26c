//! One process at a time in a run's output folder.
//!
//! Two trainings (or two pipelines) started in the same folder would write the same
//! checkpoints and metrics, and a fresh one would move the running one's files aside
//! mid-run. So rank 0 holds an exclusive advisory lock on `OUTPUT/.run.lock` for as long as
//! its [`crate::trainer::Trainer`] (or pipeline) lives, and a second one is refused at
//! once, with the holder's process id, instead of waiting: a run can last days. The OS drops
//! the lock when the process ends, however it ends, so a killed run never blocks its resume.
//! On a file system without locks the run goes on unlocked.

use crate::{Result, TrainError};
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the output folder.
pub const RUN_LOCK_FILE: &str = ".run.lock";

/// A held lock on an output folder, released when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: Option<fs::File>,
}

impl RunLock {
    /// Creates `dir` if needed and takes its lock for `what` (e.g. "training run", written
    /// into the lock file for a refused process to name); refuses with [`TrainError::InUse`] while another holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join(RUN_LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(TrainError::InUse {
                    dir: dir.to_path_buf(),
                    holder: match holder.trim() {
                        "" => "holder not yet known".to_string(),
                        note => note.to_string(),
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                return Ok(Self { path, _file: None });
            }
            Err(fs::TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
        }
        // Who holds it, for the refusal a second process prints.
        let note = format!("{what}, process {}", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()))
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self {
            path,
            _file: Some(file),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let first = RunLock::acquire(&out, "training run").unwrap();
        assert!(first.path().is_file());
        // A second open of the file conflicts even inside one process.
        let err = RunLock::acquire(&out, "training run").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TrainError::InUse { .. }), "{text}");
        assert!(
            text.contains(&out.display().to_string())
                && text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        drop(first);
        let again = RunLock::acquire(&out, "pipeline").unwrap();
        let note = fs::read_to_string(again.path()).unwrap();
        assert_eq!(note, format!("pipeline, process {}", std::process::id()));
    }
}
