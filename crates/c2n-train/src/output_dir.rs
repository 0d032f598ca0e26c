//! Creating the folders a run writes into, with a clear error where a file stands in the way.

use crate::{Result, TrainError};
use std::io;
use std::path::Path;

/// Creates `dir` and its parents. Where `dir` or one of its parents is a file, the error says
/// so and names that file, instead of the OS's "File exists" or "Not a directory".
pub fn create(dir: &Path) -> Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => {
            let file = dir.ancestors().find(|p| p.is_file()).map(Path::to_path_buf);
            match file {
                Some(file) => Err(TrainError::io(
                    file,
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "is a file, not a folder: choose another output folder, or move the file",
                    ),
                )),
                None => Err(TrainError::io(dir, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_on_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for target in [file.clone(), file.join("sub/run")] {
            let text = create(&target).unwrap_err().to_string();
            assert!(
                text.starts_with(&file.display().to_string())
                    && text.contains("is a file, not a folder"),
                "{text}"
            );
        }
        create(&dir.path().join("a/b")).unwrap();
        assert!(dir.path().join("a/b").is_dir());
    }
}
