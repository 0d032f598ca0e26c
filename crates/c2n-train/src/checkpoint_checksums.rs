//! SHA-256 digests of a checkpoint's files, written with the checkpoint and checked before it
//! is resumed or evaluated.
//!
//! The atomic write ([`crate::checkpoint_dir`]) keeps a crash from leaving half a checkpoint,
//! but not a file damaged afterwards (a disk error, a bad copy between machines, a truncated
//! transfer): safetensors would still parse a flipped bit, and a resumed run would go on from
//! wrong weights or moments without a word. So every checkpoint folder gets
//! `checksums.json` (each file's size and SHA-256), written last into the hidden partial
//! folder, and [`verify`] compares them before use. A folder without `checksums.json` (written
//! by the PyTorch scripts or by an older version) is used as it is: there is nothing to check
//! against, and [`Verified::NotRecorded`] says so.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// The digest file's name inside a checkpoint folder.
pub const CHECKSUMS_FILE: &str = "checksums.json";

/// Size and digest of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// The content of `checksums.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    /// Always `sha256`; a reader refuses any other.
    pub algorithm: String,
    /// File name (flat: checkpoints have no subfolders) → digest.
    pub files: BTreeMap<String, FileDigest>,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Every checked file has its recorded size and digest (the number checked).
    Intact(usize),
    /// The folder has no `checksums.json`.
    NotRecorded,
}

fn digest_file(path: &Path) -> Result<FileDigest> {
    let (bytes, sha256) = c2n_data::cache::sha256_file(path)?;
    Ok(FileDigest { bytes, sha256 })
}

/// Writes `dir/checksums.json` for every regular file of `dir` (the files in parallel).
pub fn write(dir: &Path) -> Result<Checksums> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let entry = entry.map_err(|e| TrainError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && name != CHECKSUMS_FILE {
            names.push(name);
        }
    }
    let files = names
        .into_par_iter()
        .map(|name| Ok((name.clone(), digest_file(&dir.join(&name))?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let checksums = Checksums {
        algorithm: "sha256".into(),
        files,
    };
    let path = dir.join(CHECKSUMS_FILE);
    let text = serde_json::to_string_pretty(&checksums).map_err(|e| TrainError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fs::write(&path, text + "\n").map_err(|e| TrainError::io(&path, e))?;
    Ok(checksums)
}

/// Checks the files of `dir` that `check(name)` selects against `checksums.json`: each must
/// exist with its recorded size and SHA-256. An error names the first damaged file.
pub fn verify(dir: &Path, check: impl Fn(&str) -> bool) -> Result<Verified> {
    let path = dir.join(CHECKSUMS_FILE);
    if !path.is_file() {
        return Ok(Verified::NotRecorded);
    }
    let text = fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let recorded: Checksums = serde_json::from_str(&text).map_err(|e| TrainError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if recorded.algorithm != "sha256" {
        return Err(TrainError::Parse {
            path,
            message: format!(
                "unknown checksum algorithm `{}` (this version writes sha256)",
                recorded.algorithm
            ),
        });
    }
    let selected: Vec<(&String, &FileDigest)> = recorded
        .files
        .iter()
        .filter(|(name, _)| check(name))
        .collect();
    // Per file: Ok(None) intact, Ok(Some(why)) damaged, Err an I/O error (not damage).
    let checked = selected
        .par_iter()
        .map(|&(name, want)| -> Result<Option<String>> {
            let file = dir.join(name);
            let size = match fs::metadata(&file) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Some(format!("{name} is missing")))
                }
                Err(e) => return Err(TrainError::io(&file, e)),
            };
            if size != want.bytes {
                return Ok(Some(format!(
                    "{name} has {size} bytes, {} were written",
                    want.bytes
                )));
            }
            let have = digest_file(&file)?;
            Ok((have.sha256 != want.sha256).then(|| {
                format!(
                    "{name} has sha256 {}…, not the {}… that was written",
                    short(&have.sha256),
                    short(&want.sha256)
                )
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    match checked.into_iter().flatten().next() {
        Some(message) => Err(TrainError::DamagedCheckpoint {
            dir: dir.to_path_buf(),
            message,
        }),
        None => Ok(Verified::Intact(selected.len())),
    }
}

/// The first 12 characters of a digest, for messages (a damaged record may hold anything).
fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

/// The files a resume checks: all but `train_config.json`, which only serves to compare the
/// saved settings with the new ones (a changed one is refused by name anyway) and whose paths
/// a user may edit to move a run to another machine.
pub fn is_run_state_file(name: &str) -> bool {
    name != crate::config::TRAIN_CONFIG_FILE
}

/// The files a model load reads (`c2n_model::load_checkpoint`): weights and model config.
pub fn is_model_file(name: &str) -> bool {
    matches!(name, "model.safetensors" | "config.json")
}

/// `c2n_model::load_checkpoint` after checking the weights and model config against the
/// folder's `checksums.json` (when it has one). `dir` may also be the weights file itself.
pub fn load_model(dir: &Path, device: &candle_core::Device) -> Result<c2n_model::Seq2Seq> {
    crate::checkpoint_dir::check_present(dir)?;
    let folder = crate::checkpoint_dir::folder_of(dir);
    if folder == dir {
        verify(dir, is_model_file)?;
    } else {
        // A weights file: it and the model config beside it.
        let file = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        verify(folder, |name| name == file || name == "config.json")?;
    }
    Ok(c2n_model::load_checkpoint(dir, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("model.safetensors"), vec![7u8; 3000]).unwrap();
        fs::write(tmp.path().join("config.json"), "{}").unwrap();
        fs::write(tmp.path().join("moments.safetensors"), vec![1u8; 500]).unwrap();
        tmp
    }

    #[test]
    fn an_untouched_folder_verifies() {
        let tmp = folder();
        let written = write(tmp.path()).unwrap();
        assert_eq!(written.files.len(), 3);
        assert_eq!(written.files["config.json"].bytes, 2);
        // sha256("{}")
        assert_eq!(
            written.files["config.json"].sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(verify(tmp.path(), |_| true).unwrap(), Verified::Intact(3));
        assert_eq!(
            verify(tmp.path(), is_model_file).unwrap(),
            Verified::Intact(2)
        );
    }

    #[test]
    fn a_flipped_byte_a_short_file_and_a_missing_file_are_named() {
        let tmp = folder();
        write(tmp.path()).unwrap();
        let model = tmp.path().join("model.safetensors");
        let mut bytes = fs::read(&model).unwrap();
        bytes[1234] ^= 0x10;
        fs::write(&model, &bytes).unwrap();
        let err = verify(tmp.path(), |_| true).unwrap_err().to_string();
        assert!(err.contains("model.safetensors has sha256"), "{err}");
        // A check that skips the damaged file passes.
        assert_eq!(
            verify(tmp.path(), |n| n != "model.safetensors").unwrap(),
            Verified::Intact(2)
        );
        fs::write(tmp.path().join("moments.safetensors"), vec![1u8; 499]).unwrap();
        let err = verify(tmp.path(), |n| n == "moments.safetensors")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 499 bytes, 500 were written"), "{err}");
        fs::remove_file(tmp.path().join("config.json")).unwrap();
        let err = verify(tmp.path(), is_model_file).unwrap_err().to_string();
        assert!(err.contains("config.json is missing"), "{err}");
    }

    #[test]
    fn a_weights_file_given_for_its_folder_is_checked_too() {
        let tmp = folder();
        write(tmp.path()).unwrap();
        let model = tmp.path().join("model.safetensors");
        let mut bytes = fs::read(&model).unwrap();
        bytes[7] ^= 0x01;
        fs::write(&model, &bytes).unwrap();
        let err = load_model(&model, &candle_core::Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.safetensors has sha256"), "{err}");
    }

    #[test]
    fn a_folder_without_checksums_is_not_recorded() {
        let tmp = folder();
        assert_eq!(verify(tmp.path(), |_| true).unwrap(), Verified::NotRecorded);
    }
}
