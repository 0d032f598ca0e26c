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
        crate::output_dir::create(dir)?;
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
                let mut note = String::new();
                let _ = file.read_to_string(&mut note);
                return Err(TrainError::InUse {
                    dir: dir.to_path_buf(),
                    holder: describe_holder(note.trim()),
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

/// Who holds a lock, from its note: "another process (training run, process 2981)", or,
/// when the note names this very process, what in it may hold the folder (a lock conflicts
/// between two opens in one process too).
fn describe_holder(note: &str) -> String {
    let own = format!("process {}", std::process::id());
    if note.ends_with(&own) {
        format!(
            "this process ({note}): another trainer, pipeline or sweep in this program still \
             holds it; drop it first, and build the ranks of one multi-rank run with \
             Trainer::from_config_on"
        )
    } else if note.is_empty() {
        "another process (holder not yet known)".into()
    } else {
        format!("another process ({note})")
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
                && text.contains(&format!(
                    "by this process (training run, process {}",
                    std::process::id()
                )),
            "{text}"
        );
        drop(first);
        let again = RunLock::acquire(&out, "pipeline").unwrap();
        let note = fs::read_to_string(again.path()).unwrap();
        assert_eq!(note, format!("pipeline, process {}", std::process::id()));
    }

    #[test]
    fn another_process_is_named_as_such() {
        assert_eq!(
            describe_holder("training run, process 1"),
            "another process (training run, process 1)"
        );
        assert_eq!(
            describe_holder(""),
            "another process (holder not yet known)"
        );
    }

    #[test]
    fn a_file_in_place_of_the_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run");
        fs::write(&file, "not a folder").unwrap();
        let text = RunLock::acquire(&file, "training run")
            .unwrap_err()
            .to_string();
        assert!(text.contains("is a file, not a folder"), "{text}");
    }
}
