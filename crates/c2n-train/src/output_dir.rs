//! Creating the folders a run writes into, with a clear error where a file stands in the way.

use crate::Result;
use std::path::Path;

/// Creates `dir` and its parents ([`c2n_data::folder::create`]): where `dir` or one of its
/// parents is a file, the error says so and names that file.
pub fn create(dir: &Path) -> Result<()> {
    Ok(c2n_data::folder::create(dir, "output folder")?)
}

/// The error [`create`] would give for a file in the way of `dir`, creating nothing.
pub fn check_no_file_in_the_way(dir: &Path) -> Result<()> {
    Ok(c2n_data::folder::check_no_file_in_the_way(
        dir,
        "output folder",
    )?)
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
        let text = check_no_file_in_the_way(&file.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("is a file, not a folder"), "{text}");
        assert!(!file.join("sub").exists());
        check_no_file_in_the_way(&dir.path().join("a/b")).unwrap();
        assert!(!dir.path().join("a").exists(), "checking creates nothing");
        create(&dir.path().join("a/b")).unwrap();
        assert!(dir.path().join("a/b").is_dir());
    }
}
