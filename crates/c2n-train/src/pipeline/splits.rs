//! Finding the three split files of a run: from a folder in the reference layout or from the
//! Hugging Face dataset, with a dev set held out of the training file when both are the
//! same split (offline training on `valid`).

use super::config::PipelineConfig;
use crate::output_file::write_aside;
use crate::{Result, TrainError};
use c2n_data::reader::{parse_line, JsonlLines, LineReadError, RawLine};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The jsonl files a run trains, selects and tests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitFiles {
    pub train: PathBuf,
    pub dev: PathBuf,
    pub test: PathBuf,
    /// Whether `dev` is the tail of the training split (held out, not trained on).
    pub dev_held_out: bool,
    /// Where the original files came from (a folder or `hub:<dataset>`).
    pub source: String,
}

/// `{dir}/{lang}/{split}.jsonl`, or the `.jsonl.gz` next to it.
pub fn reference_layout_file(dir: &Path, lang: &str, split: &str) -> Result<PathBuf> {
    let plain = dir.join(lang).join(format!("{split}.jsonl"));
    let gz = dir.join(lang).join(format!("{split}.jsonl.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        // Say what is wrong with the folder, not only which file is missing.
        let why = if !dir.exists() {
            format!("{}: no such folder", dir.display())
        } else if !dir.is_dir() {
            format!("{}: a file, not a folder", dir.display())
        } else if dir.file_name().is_some_and(|name| name == lang)
            && (dir.join(format!("{split}.jsonl")).is_file()
                || dir.join(format!("{split}.jsonl.gz")).is_file())
        {
            format!(
                "{} holds the split files itself: give its parent folder as --data-dir",
                dir.display()
            )
        } else {
            format!("{} not found (nor .gz)", plain.display())
        };
        Err(TrainError::InvalidInput(format!(
            "{why}; --data-dir must hold {lang}/{{train,valid,test}}.jsonl (--lang {lang})"
        )))
    }
}

fn source_file(cfg: &PipelineConfig, split: &str) -> Result<PathBuf> {
    match &cfg.data_dir {
        Some(dir) => reference_layout_file(dir, &cfg.lang, split),
        None => hub_split(cfg, split),
    }
}

#[cfg(feature = "hub")]
fn hub_split(cfg: &PipelineConfig, split: &str) -> Result<PathBuf> {
    Ok(c2n_data::hub::split_jsonl(
        &cfg.hub_dataset,
        &cfg.lang,
        split,
        &cfg.output_dir.join("data").join("hub"),
    )?)
}

#[cfg(not(feature = "hub"))]
fn hub_split(cfg: &PipelineConfig, _split: &str) -> Result<PathBuf> {
    Err(TrainError::Config(format!(
        "no data folder given, and this build has no hub access to {} (c2n-train's feature \
         `hub`): give a data folder in the reference layout",
        cfg.hub_dataset
    )))
}

/// The original files a run reads, one per distinct split (`train`, `dev`, `test` names of
/// the config; a held-out dev set comes from the training split's file).
pub fn source_files(cfg: &PipelineConfig) -> Result<Vec<(String, PathBuf)>> {
    let mut splits = vec![cfg.train_split.clone()];
    for split in [&cfg.dev_split, &cfg.test_split] {
        if !splits.contains(split) {
            splits.push(split.clone());
        }
    }
    splits
        .into_iter()
        .map(|split| source_file(cfg, &split).map(|path| (split, path)))
        .collect()
}

/// [`source_files`] when they are local files that exist now (a `data_dir` run); `None` for
/// hub splits (resolving them may download) or when one is missing.
pub fn local_source_files(cfg: &PipelineConfig) -> Option<Vec<(String, PathBuf)>> {
    cfg.data_dir.as_ref()?;
    source_files(cfg).ok()
}

/// A bad line of the pipeline's data, with why it stops the run and how to see them all.
pub(crate) fn strict_read_error(bad_line: c2n_data::DataError) -> TrainError {
    // run.py stops at a bad line too; say so, and where to see them all.
    TrainError::InvalidInput(format!(
        "{bad_line} (the pipeline reads its data strictly, as run.py does: fix or remove the \
         line; `prepare --data FILE` counts every bad line of a file by reason)"
    ))
}

/// Every line of a jsonl (or gzipped jsonl) file, without the newline, with its number.
fn read_lines(path: &Path) -> Result<Vec<RawLine>> {
    let mut reader = JsonlLines::open(path)?;
    let mut lines = Vec::new();
    loop {
        match reader.next_line() {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => return Ok(lines),
            Err(LineReadError::CorruptGzip { index, detail }) => {
                return Err(TrainError::InvalidInput(format!(
                    "{}: line {}: corrupt gzip: {detail}",
                    path.display(),
                    index + 1
                )))
            }
            Err(LineReadError::Io(e)) => return Err(e.into()),
        }
    }
}

/// Written aside and renamed ([`write_aside`]): a copy that exists is whole, which is what
/// lets [`resolve_splits`] reuse the copies it finds.
fn write_lines(path: &Path, lines: &[Vec<u8>]) -> Result<()> {
    write_aside(path, |out| {
        lines
            .iter()
            .try_for_each(|line| out.write_all(line).and_then(|()| out.write_all(b"\n")))
    })
}

/// Splits `source` into `train_out` (all but the last `holdout` non-empty lines) and
/// `dev_out` (those last lines). Returns `(train, dev)` example counts. A line the strict
/// read would refuse later is refused here, by its line in `source`.
pub fn hold_out_tail(
    source: &Path,
    holdout: usize,
    train_out: &Path,
    dev_out: &Path,
) -> Result<(usize, usize)> {
    let lines: Vec<Vec<u8>> = read_lines(source)?
        .into_iter()
        .filter(|l| !l.bytes.iter().all(u8::is_ascii_whitespace))
        .map(|l| match parse_line(&l.bytes) {
            Ok(_) => Ok(l.bytes),
            // Named here, in the user's file: the copies' line numbers would mislead.
            Err(problem) => Err(strict_read_error(problem.into_error(source, l.index))),
        })
        .collect::<Result<_>>()?;
    if lines.len() <= holdout {
        return Err(TrainError::InvalidInput(format!(
            "{}: {} examples, cannot hold out {holdout} for dev and still train",
            source.display(),
            lines.len()
        )));
    }
    let cut = lines.len() - holdout;
    write_lines(train_out, &lines[..cut])?;
    write_lines(dev_out, &lines[cut..])?;
    Ok((cut, holdout))
}

/// Whether held-out copies from an earlier run can be reused: both there, each ending with a
/// whole line, the dev copy with `holdout` examples. Copies are written aside now, but an
/// earlier version wrote them in place, and a kill then left them cut short.
fn copies_look_whole(train: &Path, dev: &Path, holdout: usize) -> bool {
    let dev_whole = std::fs::read(dev).is_ok_and(|bytes| {
        let examples = bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count();
        bytes.ends_with(b"\n") && examples == holdout
    });
    dev_whole && ends_with_newline(train)
}

/// Whether the file's last byte is a newline (read from its end: the train copy is large).
fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    std::fs::File::open(path).is_ok_and(|mut file| {
        file.seek(SeekFrom::End(-1)).is_ok() && file.read_exact(&mut last).is_ok() && last == *b"\n"
    })
}

/// Resolves (downloading or holding out as needed) the split files of a run. Files already
/// written by an earlier run are reused.
pub fn resolve_splits(cfg: &PipelineConfig) -> Result<SplitFiles> {
    let source = match &cfg.data_dir {
        Some(dir) => dir.display().to_string(),
        None => format!("hub:{}", cfg.hub_dataset),
    };
    let test = source_file(cfg, &cfg.test_split)?;
    let train_source = source_file(cfg, &cfg.train_split)?;
    if cfg.train_split != cfg.dev_split {
        return Ok(SplitFiles {
            train: train_source,
            dev: source_file(cfg, &cfg.dev_split)?,
            test,
            dev_held_out: false,
            source,
        });
    }
    let dir = cfg.output_dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let train = dir.join(format!("{}-train.jsonl", cfg.train_split));
    let dev = dir.join(format!("{}-heldout-dev.jsonl", cfg.dev_split));
    if !copies_look_whole(&train, &dev, cfg.holdout) {
        hold_out_tail(&train_source, cfg.holdout, &train, &dev)?;
    }
    Ok(SplitFiles {
        train,
        dev,
        test,
        dev_held_out: true,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_held_out_and_blank_lines_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("valid.jsonl");
        let line = |n: usize| format!(r#"{{"code_tokens":["f{n}"],"docstring_tokens":["d"]}}"#);
        let text = format!("{}\n{}\n\n{}\n{}\n", line(1), line(2), line(3), line(4));
        std::fs::write(&src, text).unwrap();
        let (t, d) = (dir.path().join("t.jsonl"), dir.path().join("d.jsonl"));
        assert_eq!(hold_out_tail(&src, 1, &t, &d).unwrap(), (3, 1));
        assert_eq!(
            std::fs::read_to_string(&d).unwrap(),
            format!("{}\n", line(4))
        );
        assert_eq!(
            std::fs::read_to_string(&t).unwrap(),
            format!("{}\n{}\n{}\n", line(1), line(2), line(3))
        );
        assert!(hold_out_tail(&src, 4, &t, &d).is_err());
    }

    #[test]
    fn a_bad_line_is_named_in_the_source_file_not_in_the_copies() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("valid.jsonl");
        let good = r#"{"code_tokens":["a"],"docstring_tokens":["b"]}"#;
        // Line 4 of the source (after a blank line) would be line 3 of the copy.
        std::fs::write(&src, format!("{good}\n\n{good}\n{{bad\n{good}\n")).unwrap();
        let (t, d) = (dir.path().join("t.jsonl"), dir.path().join("d.jsonl"));
        let err = hold_out_tail(&src, 1, &t, &d).unwrap_err().to_string();
        assert!(
            err.contains("valid.jsonl:4") && err.contains("reads its data strictly"),
            "{err}"
        );
        assert!(!t.exists() && !d.exists(), "no copies of a file that fails");
    }

    #[test]
    fn a_copy_that_fails_midway_is_not_left_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("valid.jsonl");
        let good = r#"{"code_tokens":["a"],"docstring_tokens":["b"]}"#;
        std::fs::write(&src, format!("{good}\n{good}\n{good}\n")).unwrap();
        let (t, d) = (dir.path().join("t.jsonl"), dir.path().join("d.jsonl"));
        // Where the dev copy is written aside, something that cannot be a file: the write
        // fails as a full disk or a kill would stop it.
        let blocker = dir.path().join(".d.jsonl.partial");
        std::fs::create_dir(&blocker).unwrap();
        assert!(hold_out_tail(&src, 1, &t, &d).is_err());
        // No dev copy: a rerun (resolve_splits reuses copies only when both exist) writes
        // both again rather than reading a short dev set.
        assert!(!d.exists());
        std::fs::remove_dir(&blocker).unwrap();
        assert_eq!(hold_out_tail(&src, 1, &t, &d).unwrap(), (2, 1));
        assert_eq!(std::fs::read_to_string(&d).unwrap(), format!("{good}\n"));
        assert!(!blocker.exists());
    }

    #[test]
    fn copies_cut_short_by_an_earlier_version_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("valid.jsonl");
        let good = r#"{"code_tokens":["a"],"docstring_tokens":["b"]}"#;
        std::fs::write(&src, format!("{good}\n{good}\n{good}\n{good}\n")).unwrap();
        let (t, d) = (dir.path().join("t.jsonl"), dir.path().join("d.jsonl"));
        hold_out_tail(&src, 2, &t, &d).unwrap();
        assert!(copies_look_whole(&t, &d, 2));
        assert!(!copies_look_whole(&t, &d, 3), "another holdout");
        // A dev copy cut after its first example, and one cut inside a line.
        std::fs::write(&d, format!("{good}\n")).unwrap();
        assert!(!copies_look_whole(&t, &d, 2));
        std::fs::write(&d, format!("{good}\n{}", &good[..10])).unwrap();
        assert!(!copies_look_whole(&t, &d, 2));
        // A train copy cut inside a line.
        hold_out_tail(&src, 2, &t, &d).unwrap();
        std::fs::write(&t, format!("{good}\n{}", &good[..10])).unwrap();
        assert!(!copies_look_whole(&t, &d, 2));
        std::fs::remove_file(&t).unwrap();
        assert!(!copies_look_whole(&t, &d, 2));
    }

    #[test]
    fn missing_split_names_the_expected_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = reference_layout_file(dir.path(), "ruby", "train")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ruby") && err.contains("train.jsonl"), "{err}");
        // One level too deep: the split files are in the folder itself.
        let lang_dir = dir.path().join("ruby");
        std::fs::create_dir_all(&lang_dir).unwrap();
        std::fs::write(lang_dir.join("train.jsonl"), "{}\n").unwrap();
        let err = reference_layout_file(&lang_dir, "ruby", "train")
            .unwrap_err()
            .to_string();
        assert!(err.contains("give its parent folder"), "{err}");
        let err = reference_layout_file(&dir.path().join("nope"), "ruby", "train")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such folder"), "{err}");
        assert!(reference_layout_file(dir.path(), "ruby", "train").is_ok());
    }
}
