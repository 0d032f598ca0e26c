//! Replacing a checkpoint directory without ever leaving a half-written one in its place.
//!
//! A checkpoint is written into the hidden sibling `.{name}.partial` first, its files and the
//! folder are flushed to disk, and only then does it take the checkpoint's name: the old
//! folder steps aside to `.{name}.old`, the new one moves in, the old one is deleted. A crash
//! while writing leaves the previous checkpoint intact, so `--resume` never mixes new weights
//! with an old optimizer state. A crash between the two renames leaves the previous
//! checkpoint as `.{name}.old`; [`recover`] (run before every write and before a resume)
//! moves it back and removes a stale `.partial`. Only rank 0 writes checkpoints, so the
//! names need no process id.

use crate::{Result, TrainError};
use std::fs;
use std::path::{Path, PathBuf};

/// Hidden sibling of `dir` named `.{name}.{tag}`.
fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy());
    dir.with_file_name(format!(".{name}.{tag}"))
}

/// Removes a folder if it is there (also when another process removes it first).
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(path, e)),
        _ => Ok(()),
    }
}

/// Puts back a checkpoint that a crash left aside (`.{name}.old` while `dir` is missing) and
/// removes a partial one that never took its name. Safe to run from several ranks at once:
/// whoever renames first wins, the others find `dir` in place.
pub fn recover(dir: &Path) -> Result<()> {
    let old = sibling(dir, "old");
    if !dir.exists() && old.is_dir() {
        if let Err(e) = fs::rename(&old, dir) {
            if !dir.exists() {
                return Err(TrainError::io(dir, e));
            }
        }
    }
    remove_if_present(&sibling(dir, "partial"))
}

/// Fails, naming `dir`, when it is not there; when a crash between the renames of a write
/// left it aside as `.{name}.old`, the error says so and what puts it back. Readers call this
/// instead of [`recover`]: moving the folder back could break a training run that is
/// replacing it at this moment.
pub fn check_present(dir: &Path) -> Result<()> {
    let Err(e) = fs::metadata(dir) else {
        return Ok(());
    };
    let old = sibling(dir, "old");
    if e.kind() == std::io::ErrorKind::NotFound && old.is_dir() {
        return Err(TrainError::InvalidInput(format!(
            "{} is missing, but {} holds it: a training run was replacing it (wait for it to \
             finish saving) or stopped while doing so (its `train --resume`, or a rerun of \
             the pipeline, puts it back; or read {} as it is)",
            dir.display(),
            old.display(),
            old.display()
        )));
    }
    Err(TrainError::io(dir, e))
}

/// The folder of a checkpoint given as a folder or as its weights file (run.py users pass
/// `…/checkpoint-best-bleu/pytorch_model.bin`): where its `train_config.json`, `config.json`
/// and `checksums.json` are.
pub fn folder_of(checkpoint: &Path) -> &Path {
    if checkpoint.is_file() {
        checkpoint.parent().unwrap_or(Path::new("."))
    } else {
        checkpoint
    }
}

/// [`recover`] for every checkpoint of a run's output folder (last, best-ppl, best-bleu).
pub fn recover_run(output_dir: &Path) -> Result<()> {
    use crate::checkpoint_policy::{BEST_BLEU, BEST_PPL, LAST};
    for name in [LAST, BEST_PPL, BEST_BLEU] {
        recover(&output_dir.join(name))?;
    }
    Ok(())
}

/// What a training run writes into its output folder (besides the hidden siblings above).
const RUN_FILES: [&str; 7] = [
    "metrics.jsonl",
    "dev.output",
    "dev.gold",
    crate::config::TRAIN_CONFIG_FILE,
    // What `evaluate --output-dir` writes by default (docs/training.md evaluates into the
    // training folder): another model's outputs must not stay beside the new run's.
    "test.output",
    "test.gold",
    crate::evaluate::NBEST_FILE,
];

/// Where [`set_aside_earlier_run`] put an earlier run, and how much it holds (said to the
/// user: every fresh run in the same folder keeps one more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierRun {
    pub dir: PathBuf,
    pub bytes: u64,
}

/// Bytes of the files below `path` (a file: its size).
fn tree_bytes(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| tree_bytes(&e.path()))
                    .sum()
            })
            .unwrap_or(0),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

/// Moves what an earlier run left in `output_dir` (its checkpoints, metrics, dev outputs and
/// config) into a new `output_dir/earlier-run-N/`, so that a fresh run there neither loses it
/// nor leaves its best checkpoints lying next to the new ones, where an evaluation would pick
/// up a model of another run. Returns that folder and its size, or `None` when there was
/// nothing to move.
pub fn set_aside_earlier_run(output_dir: &Path) -> Result<Option<EarlierRun>> {
    use crate::checkpoint_policy::{BEST_BLEU, BEST_PPL, LAST};
    if !output_dir.is_dir() {
        return Ok(None);
    }
    recover_run(output_dir)?;
    let present: Vec<&str> = [LAST, BEST_PPL, BEST_BLEU]
        .into_iter()
        .chain(RUN_FILES)
        .filter(|name| output_dir.join(name).exists())
        .collect();
    if present.is_empty() {
        return Ok(None);
    }
    let aside = (1..)
        .map(|n| output_dir.join(format!("earlier-run-{n}")))
        .find(|dir| !dir.exists())
        .unwrap_or_else(|| output_dir.join("earlier-run"));
    fs::create_dir_all(&aside).map_err(|e| TrainError::io(&aside, e))?;
    for name in present {
        let from = output_dir.join(name);
        fs::rename(&from, aside.join(name)).map_err(|e| TrainError::io(&from, e))?;
    }
    let bytes = tree_bytes(&aside);
    Ok(Some(EarlierRun { dir: aside, bytes }))
}

/// Flushes every file of `dir` (not recursive: checkpoints are flat) and the folder itself.
fn sync_folder(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let path = entry.map_err(|e| TrainError::io(dir, e))?.path();
        if path.is_file() {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| TrainError::io(&path, e))?;
        }
    }
    sync_dir_entry(dir)
}

/// Flushes a folder's entries (the renames in it). Not every platform can open a folder.
fn sync_dir_entry(dir: &Path) -> Result<()> {
    match fs::File::open(dir) {
        Ok(f) => f.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

/// Writes a directory with `write` (given an empty folder) and then puts it at `dir`,
/// replacing what was there. On error `dir` is unchanged and the partial folder removed.
pub fn write_replacing(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    recover(dir)?;
    let partial = sibling(dir, "partial");
    fs::create_dir_all(&partial).map_err(|e| TrainError::io(&partial, e))?;
    if let Err(e) = write(&partial).and_then(|()| sync_folder(&partial)) {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    let old = sibling(dir, "old");
    remove_if_present(&old)?;
    if dir.exists() {
        fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
    }
    fs::rename(&partial, dir).map_err(|e| TrainError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir_entry(parent)?;
    }
    remove_if_present(&old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_run_is_moved_aside_whole_and_numbered() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        assert_eq!(set_aside_earlier_run(&out).unwrap(), None);
        fs::create_dir_all(&out).unwrap();
        assert_eq!(set_aside_earlier_run(&out).unwrap(), None);
        for name in ["checkpoint-last", "checkpoint-best-bleu"] {
            fs::create_dir_all(out.join(name)).unwrap();
            fs::write(out.join(name).join("model.safetensors"), name).unwrap();
        }
        fs::write(out.join("dev.output"), "0\tx\n").unwrap();
        fs::write(out.join("test.output"), "").unwrap();
        fs::write(out.join("nbest.jsonl"), "").unwrap();
        fs::write(out.join("notes.txt"), "the user's").unwrap();
        let earlier = set_aside_earlier_run(&out).unwrap().unwrap();
        let aside = earlier.dir;
        assert_eq!(aside, out.join("earlier-run-1"));
        // Two model files named after their folders and the dev output's 4 bytes.
        assert_eq!(earlier.bytes, 15 + 20 + 4);
        assert_eq!(
            names(&aside),
            [
                "checkpoint-best-bleu",
                "checkpoint-last",
                "dev.output",
                "nbest.jsonl",
                "test.output"
            ]
        );
        assert_eq!(names(&out), ["earlier-run-1", "notes.txt"]);
        fs::create_dir_all(out.join("checkpoint-last")).unwrap();
        let second = set_aside_earlier_run(&out).unwrap().unwrap().dir;
        assert_eq!(second, out.join("earlier-run-2"));
        assert_eq!(names(&second), ["checkpoint-last"]);
    }

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

    #[test]
    fn a_crash_between_the_renames_is_recovered() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("checkpoint-last");
        // The state a crash after the first rename leaves: the old checkpoint aside, the new
        // one still partial.
        let old = root.path().join(".checkpoint-last.old");
        let partial = root.path().join(".checkpoint-last.partial");
        fs::create_dir_all(&old).unwrap();
        fs::write(old.join("a"), "previous").unwrap();
        fs::create_dir_all(&partial).unwrap();
        fs::write(partial.join("a"), "half").unwrap();
        // A reader is told where the checkpoint is and moves nothing.
        let err = check_present(&dir).unwrap_err().to_string();
        assert!(
            err.contains(".checkpoint-last.old holds it") && err.contains("--resume"),
            "{err}"
        );
        assert!(old.is_dir() && !dir.exists());
        let err = check_present(&root.path().join("checkpoint-best-ppl")).unwrap_err();
        assert!(matches!(err, TrainError::Io { .. }), "{err}");
        recover(&dir).unwrap();
        check_present(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "previous");
        assert_eq!(names(root.path()), ["checkpoint-last"]);
        // With the checkpoint in place, recover changes nothing.
        recover(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "previous");
    }
}
