//! Stage records: each finished stage writes `OUTPUT/stages/<name>.json`; a rerun finds it
//! and skips the stage (saying so) instead of redoing the work.

use crate::output_file::write_text_aside;
use crate::{Result, TrainError};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};

/// The stages of a pipeline run, in order.
pub const STAGES: [&str; 4] = ["prepare", "train", "evaluate-dev", "evaluate-test"];

/// `OUTPUT/stages/<name>.json`.
pub fn stage_file(output_dir: &Path, name: &str) -> PathBuf {
    output_dir.join("stages").join(format!("{name}.json"))
}

/// The record of a finished stage, if there is a readable one.
pub fn load_stage<T: DeserializeOwned>(output_dir: &Path, name: &str) -> Option<T> {
    let text = std::fs::read_to_string(stage_file(output_dir, name)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Marks a stage as done with its record (written atomically: a half-written record would
/// make a rerun skip unfinished work).
pub fn save_stage<T: Serialize>(output_dir: &Path, name: &str, record: &T) -> Result<()> {
    let path = stage_file(output_dir, name);
    if let Some(dir) = path.parent() {
        crate::output_dir::create(dir)?;
    }
    let text = serde_json::to_string_pretty(record).map_err(|e| TrainError::parse(&path, e))?;
    write_text_aside(&path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_stage_is_found_and_a_corrupt_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_stage::<u32>(dir.path(), "train"), None);
        save_stage(dir.path(), "train", &7u32).unwrap();
        assert_eq!(load_stage::<u32>(dir.path(), "train"), Some(7));
        std::fs::write(stage_file(dir.path(), "train"), "{").unwrap();
        assert_eq!(load_stage::<u32>(dir.path(), "train"), None);
    }
}
