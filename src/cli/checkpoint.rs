//! Flags shared by the programs that load a trained checkpoint (`evaluate`, `predict`).

use clap::Args;
use std::path::PathBuf;

/// Which trained model to load, and its tokenizer.
#[derive(Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// Checkpoint directory (config.json + model.safetensors or pytorch_model.bin), or the
    /// weights file in it.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Tokenizer directory (vocab.json + merges.txt / tokenizer.json) or hub id (default:
    /// the one the checkpoint was trained with, from its train_config.json, else
    /// microsoft/codebert-base).
    #[arg(long)]
    pub tokenizer: Option<String>,
}

/// The tokenizer when neither the flag nor a training settings file names one.
pub const DEFAULT_TOKENIZER: &str = "microsoft/codebert-base";

impl CheckpointArgs {
    /// `--tokenizer`, else the tokenizer the checkpoint was trained with (its
    /// `train_config.json`), else [`DEFAULT_TOKENIZER`]; with a note when the file gave it.
    pub fn tokenizer_spec(&self) -> crate::train::Result<(String, Option<String>)> {
        use crate::train::config::{TrainConfig, TRAIN_CONFIG_FILE};
        // A mistyped checkpoint, or a folder without weights, is the error, not the default
        // tokenizer's download after it.
        crate::train::checkpoint_dir::check_present(&self.checkpoint)?;
        crate::model::load::find_weights_file(&self.checkpoint)?;
        let path =
            crate::train::checkpoint_dir::folder_of(&self.checkpoint).join(TRAIN_CONFIG_FILE);
        if let Some(spec) = &self.tokenizer {
            return Ok((spec.clone(), other_tokenizer_warning(spec, &path)));
        }
        if !path.is_file() {
            return Ok((DEFAULT_TOKENIZER.to_string(), None));
        }
        let fallback = |why: String| {
            let note = format!("note: {why}; tokenizer {DEFAULT_TOKENIZER} (pass --tokenizer)");
            Ok((DEFAULT_TOKENIZER.to_string(), Some(note)))
        };
        let saved = match TrainConfig::load(&path) {
            Ok(saved) => saved,
            Err(e) => return fallback(format!("unreadable training settings: {e}")),
        };
        let Ok(spec) = saved.tokenizer_spec() else {
            return Ok((DEFAULT_TOKENIZER.to_string(), None));
        };
        // A path saved relative to where training ran may not be there from here.
        let local = std::path::Path::new(&spec);
        if (local.is_absolute() || spec.starts_with('.')) && !local.exists() {
            return fallback(format!(
                "the checkpoint was trained with tokenizer {spec} ({}), not found from here",
                path.display()
            ));
        }
        let note = format!(
            "note: tokenizer {spec} as the checkpoint was trained ({}); --tokenizer overrides it",
            path.display()
        );
        Ok((spec, Some(note)))
    }
}

/// A warning when `--tokenizer` names local files whose vocabulary differs from that of the
/// tokenizer the checkpoint was trained with (its `train_config.json`, when that names local
/// files): the ids would mean other tokens, and the outputs garbage. Quiet when either side
/// cannot be read here (a hub id is not downloaded for this) or both are the same files.
fn other_tokenizer_warning(given: &str, train_config: &std::path::Path) -> Option<String> {
    use crate::data::RobertaTokenizer;
    let saved = crate::train::config::TrainConfig::load(train_config)
        .ok()?
        .tokenizer_spec()
        .ok()?;
    let local = |spec: &str| std::path::Path::new(spec).canonicalize().ok();
    let (given_path, saved_path) = (local(given)?, local(&saved)?);
    if given_path == saved_path {
        return None;
    }
    let (a, b) = (
        RobertaTokenizer::load(given).ok()?,
        RobertaTokenizer::load(&saved).ok()?,
    );
    let same = a.vocab_size() == b.vocab_size()
        && (0..a.vocab_size() as u32).all(|id| a.id_to_token(id) == b.id_to_token(id));
    (!same).then(|| {
        format!(
            "warning: --tokenizer {given} has another vocabulary than {saved}, the tokenizer \
             the checkpoint was trained with ({}): its token ids mean other tokens, so the \
             outputs will be wrong",
            train_config.display()
        )
    })
}

/// Beam size and lengths for decoding with a trained checkpoint. A flag given wins; else the
/// value the checkpoint was trained with (the `train_config.json` that `train` saves beside
/// the weights), else the README recipe's (10, 256, 128). run.py's checkpoints carry no
/// such file: give their lengths as flags, as run.py's `--do_test` needs them.
#[derive(Args, Debug, Clone, Default)]
pub struct DecodingArgs {
    /// Beam size (default: the checkpoint's train_config.json, else 10).
    #[arg(long, value_parser = super::at_least_one)]
    pub beam_size: Option<usize>,
    /// Source truncation length in BPE tokens, specials included (default: the checkpoint's
    /// train_config.json, else 256).
    #[arg(long)]
    pub max_source_len: Option<usize>,
    /// Target truncation length, also the beam's maximum length (default: the checkpoint's
    /// train_config.json, else 128).
    #[arg(long)]
    pub max_target_len: Option<usize>,
}

/// [`DecodingArgs`] with every value decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoding {
    pub beam_size: usize,
    pub max_source_len: usize,
    pub max_target_len: usize,
    /// The training settings file that filled in values no flag gave, if any did.
    pub from_file: Option<PathBuf>,
    /// Those values, as `--flag value`.
    pub taken: Vec<String>,
}

impl DecodingArgs {
    /// Fills in what no flag gave from `checkpoint/train_config.json` (when there is one),
    /// else from the defaults. A file that is there but unreadable is an error.
    pub fn resolve(&self, checkpoint: &std::path::Path) -> crate::train::Result<Decoding> {
        use crate::train::config::{TrainConfig, TRAIN_CONFIG_FILE};
        crate::train::checkpoint_dir::check_present(checkpoint)?;
        let path = crate::train::checkpoint_dir::folder_of(checkpoint).join(TRAIN_CONFIG_FILE);
        let complete = self.beam_size.is_some()
            && self.max_source_len.is_some()
            && self.max_target_len.is_some();
        let saved = if !complete && path.is_file() {
            Some(TrainConfig::load(&path)?)
        } else {
            None
        };
        let base = saved.clone().unwrap_or_default();
        // The model's 514 position rows: beyond 512 a step would fail midway.
        for (flag, value) in [
            (
                "--max-source-len",
                self.max_source_len.unwrap_or(base.max_source_len),
            ),
            (
                "--max-target-len",
                self.max_target_len.unwrap_or(base.max_target_len),
            ),
        ] {
            if !(2..=512).contains(&value) {
                return Err(crate::train::TrainError::InvalidInput(format!(
                    "{flag} {value}: must be between 2 and 512"
                )));
            }
        }
        let mut taken = Vec::new();
        if saved.is_some() {
            for (flag, given, value) in [
                ("--beam-size", self.beam_size, base.beam_size),
                ("--max-source-len", self.max_source_len, base.max_source_len),
                ("--max-target-len", self.max_target_len, base.max_target_len),
            ] {
                if given.is_none() {
                    taken.push(format!("{flag} {value}"));
                }
            }
        }
        Ok(Decoding {
            beam_size: self.beam_size.unwrap_or(base.beam_size),
            max_source_len: self.max_source_len.unwrap_or(base.max_source_len),
            max_target_len: self.max_target_len.unwrap_or(base.max_target_len),
            from_file: saved.map(|_| path),
            taken,
        })
    }
}

impl Decoding {
    /// The line a program prints when a value came from the checkpoint's settings.
    pub fn note(&self) -> Option<String> {
        self.from_file.as_ref().map(|file| {
            format!(
                "note: {} as the checkpoint was trained ({}); flags override them",
                self.taken.join(", "),
                file.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::config::{TrainConfig, TRAIN_CONFIG_FILE};

    #[test]
    fn flags_win_then_the_checkpoints_settings_then_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        // A run.py checkpoint: no settings file, the defaults.
        let none = DecodingArgs::default().resolve(dir.path()).unwrap();
        assert_eq!(
            (
                none.beam_size,
                none.max_source_len,
                none.max_target_len,
                none.from_file
            ),
            (10, 256, 128, None)
        );
        let trained = TrainConfig {
            beam_size: 4,
            max_source_len: 64,
            max_target_len: 32,
            ..TrainConfig::default()
        };
        trained
            .save_json(&dir.path().join(TRAIN_CONFIG_FILE))
            .unwrap();
        let given = DecodingArgs {
            max_target_len: Some(16),
            ..Default::default()
        };
        let mixed = given.resolve(dir.path()).unwrap();
        assert_eq!(
            (mixed.beam_size, mixed.max_source_len, mixed.max_target_len),
            (4, 64, 16)
        );
        let note = mixed.note().unwrap();
        assert!(
            note.contains("--beam-size 4, --max-source-len 64 as the checkpoint was trained")
                && note.contains(TRAIN_CONFIG_FILE),
            "{note}"
        );
        // Every flag given: the file is not even read.
        std::fs::write(dir.path().join(TRAIN_CONFIG_FILE), "garbled").unwrap();
        let all = DecodingArgs {
            beam_size: Some(2),
            max_source_len: Some(100),
            max_target_len: Some(20),
        };
        assert_eq!(all.resolve(dir.path()).unwrap().from_file, None);
        assert!(given.resolve(dir.path()).is_err());
        // Lengths the model cannot hold are refused under their flag's name.
        let too_long = DecodingArgs {
            max_target_len: Some(600),
            ..all.clone()
        };
        let err = too_long.resolve(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("--max-target-len 600: must be between 2 and 512"),
            "{err}"
        );
        // Given the weights file instead of its folder: the folder's settings.
        let weights = dir.path().join("model.safetensors");
        std::fs::write(&weights, b"weights").unwrap();
        trained
            .save_json(&dir.path().join(TRAIN_CONFIG_FILE))
            .unwrap();
        let from_file = DecodingArgs::default().resolve(&weights).unwrap();
        assert_eq!(
            (from_file.beam_size, from_file.max_source_len),
            (4, 64),
            "the settings beside the weights file"
        );
        std::fs::remove_file(&weights).unwrap();
        // The tokenizer the checkpoint was trained with, unless the flag names one.
        trained_with_tokenizer(dir.path());
    }

    #[test]
    fn a_tokenizer_with_another_vocabulary_than_the_checkpoints_is_warned_about() {
        let root = tempfile::tempdir().unwrap();
        let tokenizer = |name: &str, vocab: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("vocab.json"), vocab).unwrap();
            std::fs::write(dir.join("merges.txt"), "#version: 0.2\na b\n").unwrap();
            dir.display().to_string()
        };
        let base = r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4"#;
        let trained = tokenizer("trained", &format!(r#"{base}, "a": 5, "b": 6, "ab": 7}}"#));
        let copy = tokenizer("copy", &format!(r#"{base}, "a": 5, "b": 6, "ab": 7}}"#));
        let swapped = tokenizer("swapped", &format!(r#"{base}, "b": 5, "a": 6, "ab": 7}}"#));
        let checkpoint = root.path().join("checkpoint");
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join("model.safetensors"), b"weights").unwrap();
        TrainConfig {
            init: "small".into(),
            tokenizer: Some(trained.clone()),
            ..TrainConfig::default()
        }
        .save_json(&checkpoint.join(TRAIN_CONFIG_FILE))
        .unwrap();
        let note = |given: &str| {
            CheckpointArgs {
                checkpoint: checkpoint.clone(),
                tokenizer: Some(given.to_string()),
            }
            .tokenizer_spec()
            .unwrap()
            .1
        };
        assert_eq!(note(&trained), None);
        assert_eq!(note(&copy), None, "the same vocabulary elsewhere");
        let warning = note(&swapped).expect("a warning");
        assert!(
            warning.contains("has another vocabulary than") && warning.contains(&trained),
            "{warning}"
        );
        // A hub id is not downloaded to compare.
        assert_eq!(note("someone/some-tokenizer"), None);
    }

    fn trained_with_tokenizer(dir: &std::path::Path) {
        let trained = TrainConfig {
            init: "small".into(),
            tokenizer: Some("some/tokenizer".into()),
            ..TrainConfig::default()
        };
        trained.save_json(&dir.join(TRAIN_CONFIG_FILE)).unwrap();
        let args = |tokenizer: Option<&str>| CheckpointArgs {
            checkpoint: dir.to_path_buf(),
            tokenizer: tokenizer.map(str::to_string),
        };
        // A folder without weights is the error (not the tokenizer's download after it).
        let err = args(None).tokenizer_spec().unwrap_err().to_string();
        assert!(
            err.contains("no model.safetensors or pytorch_model.bin"),
            "{err}"
        );
        let weights = dir.join("model.safetensors");
        std::fs::write(&weights, b"weights").unwrap();
        let (spec, note) = args(None).tokenizer_spec().unwrap();
        assert_eq!(spec, "some/tokenizer");
        assert!(note.unwrap().contains("as the checkpoint was trained"));
        // The weights file given instead of its folder: the folder's settings still apply.
        let file = CheckpointArgs {
            checkpoint: weights.clone(),
            tokenizer: None,
        };
        assert_eq!(file.tokenizer_spec().unwrap().0, "some/tokenizer");
        assert_eq!(
            args(Some("x/y")).tokenizer_spec().unwrap(),
            ("x/y".to_string(), None)
        );
        // Saved relative to another working folder, or unreadable: the default, with a note.
        TrainConfig {
            tokenizer: Some("../no/such/roberta-base".into()),
            ..trained.clone()
        }
        .save_json(&dir.join(TRAIN_CONFIG_FILE))
        .unwrap();
        let (spec, note) = args(None).tokenizer_spec().unwrap();
        assert_eq!(spec, DEFAULT_TOKENIZER);
        assert!(note.unwrap().contains("not found from here"));
        std::fs::write(dir.join(TRAIN_CONFIG_FILE), "garbled").unwrap();
        let (spec, note) = args(None).tokenizer_spec().unwrap();
        assert_eq!(spec, DEFAULT_TOKENIZER);
        assert!(note.unwrap().contains("unreadable"));
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("pytorch_model.bin"), b"weights").unwrap();
        let run_py = CheckpointArgs {
            checkpoint: elsewhere.path().to_path_buf(),
            tokenizer: None,
        };
        assert_eq!(run_py.tokenizer_spec().unwrap().0, DEFAULT_TOKENIZER);
        let mistyped = CheckpointArgs {
            checkpoint: elsewhere.path().join("checkpoint-lsat"),
            tokenizer: None,
        };
        let err = mistyped.tokenizer_spec().unwrap_err().to_string();
        assert!(err.contains("checkpoint-lsat"), "{err}");
    }
}
