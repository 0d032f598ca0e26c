//! The pipeline's serde configuration: where the data comes from, which preset, where the
//! run goes, and any [`TrainConfig`](crate::config::TrainConfig) key to override.

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The Hugging Face dataset with the cleaned CodeXGLUE code-to-text splits.
pub const HUB_DATASET: &str = "google/code_x_glue_ct_code_to_text";

/// Which model a run starts from and which recipe it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// `microsoft/codebert-base` with the CodeBERT README recipe for the language (GPU).
    Codebert,
    /// `roberta-base` with the same recipe (the paper's RoBERTa baseline row).
    Roberta,
    /// A randomly initialised small model and a short recipe that trains on CPU in minutes.
    Small,
}

impl Preset {
    /// The lowercase name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Codebert => "codebert",
            Preset::Roberta => "roberta",
            Preset::Small => "small",
        }
    }
}

impl FromStr for Preset {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "codebert" => Ok(Preset::Codebert),
            "roberta" => Ok(Preset::Roberta),
            "small" => Ok(Preset::Small),
            other => Err(TrainError::Config(format!(
                "unknown preset `{other}`: expected codebert, roberta or small"
            ))),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Size of the `small` preset's randomly initialised model (real RoBERTa vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmallModel {
    pub hidden_size: usize,
    pub heads: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    /// Feed-forward width of encoder and decoder layers.
    pub ffn_dim: usize,
}

impl Default for SmallModel {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            heads: 4,
            encoder_layers: 2,
            decoder_layers: 2,
            ffn_dim: 256,
        }
    }
}

/// Everything one pipeline run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// CodeSearchNet language (`ruby`, `javascript`, `go`, `python`, `java`, `php`).
    pub lang: String,
    /// Folder in the reference layout `{lang}/{split}.jsonl[.gz]`; `None`: download the
    /// splits from the Hugging Face dataset [`hub_dataset`](Self::hub_dataset) (cached).
    pub data_dir: Option<PathBuf>,
    /// Hub dataset id used when `data_dir` is `None`.
    pub hub_dataset: String,
    pub train_split: String,
    pub dev_split: String,
    pub test_split: String,
    /// When `train_split == dev_split` (e.g. training on `valid` offline), the last this many
    /// examples of that file are held out as the dev set and not trained on.
    pub holdout: usize,
    /// `None`: `codebert` on a GPU, `small` on CPU.
    pub preset: Option<Preset>,
    /// Tokenizer folder or hub id; `None`: the preset's model id, or for `small` a
    /// `roberta-base` folder next to the data folder when there is one.
    pub tokenizer: Option<String>,
    pub output_dir: PathBuf,
    /// Feature cache root; `None`: `OUTPUT/cache`.
    pub cache_dir: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Evaluate only the first N dev examples (after any holdout).
    pub dev_limit: Option<usize>,
    /// Evaluate only the first N test examples.
    pub test_limit: Option<usize>,
    pub small_model: SmallModel,
    /// Overrides of any [`TrainConfig`](crate::config::TrainConfig) key, applied on top of
    /// the preset (`[train]` table in TOML).
    pub train: serde_json::Map<String, serde_json::Value>,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            lang: "ruby".into(),
            data_dir: None,
            hub_dataset: HUB_DATASET.into(),
            train_split: "train".into(),
            dev_split: "valid".into(),
            test_split: "test".into(),
            holdout: 200,
            preset: None,
            tokenizer: None,
            output_dir: PathBuf::from("runs/pipeline"),
            cache_dir: None,
            device: "auto".into(),
            dev_limit: None,
            test_limit: None,
            small_model: SmallModel::default(),
            train: serde_json::Map::new(),
            progress: true,
        }
    }
}

impl PipelineConfig {
    /// Parses TOML text, as [`PipelineConfig::load`] reads a `.toml` file.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| TrainError::Config(format!("TOML text: {e}")))
    }

    /// Reads a `.json` file, or anything else as TOML.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::from_str(&text).map_err(|e| TrainError::parse(path, e))
        } else {
            toml::from_str(&text).map_err(|e| TrainError::parse(path, e))
        }
    }

    /// Writes the config as pretty JSON (aside, then renamed into place: a rerun never
    /// finds half a file).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| TrainError::parse(path, e))?;
        crate::output_file::write_text_aside(path, &text)
    }

    /// The feature cache root.
    pub fn cache_root(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.output_dir.join("cache"))
    }

    /// Checks what would otherwise fail late.
    pub fn validate(&self) -> Result<()> {
        if self.lang.trim().is_empty() {
            return Err(TrainError::Config("lang is empty".into()));
        }
        // Local data may hold any language in the reference layout; the hub has six.
        if self.data_dir.is_none() && !LANGUAGES.contains(&self.lang.as_str()) {
            return Err(TrainError::Config(format!(
                "lang `{}` is not a CodeSearchNet language ({}); other languages need --data-dir",
                self.lang,
                LANGUAGES.join(", ")
            )));
        }
        if self.test_split == self.train_split {
            return Err(TrainError::Config(format!(
                "test_split and train_split are both `{}`: the test BLEU would be measured on training data",
                self.test_split
            )));
        }
        if self.train_split == self.dev_split && self.holdout == 0 {
            return Err(TrainError::Config(
                "train_split == dev_split needs holdout > 0 (dev examples held out of training)"
                    .into(),
            ));
        }
        for (name, limit) in [
            ("dev_limit", self.dev_limit),
            ("test_limit", self.test_limit),
        ] {
            if limit == Some(0) {
                return Err(TrainError::Config(format!(
                    "{name} is 0: nothing would be evaluated (leave it out for the whole split)"
                )));
            }
        }
        // The pipeline sets these training keys itself; an override would be ignored.
        for (key, instead) in PIPELINE_OWNED_TRAIN_KEYS {
            if self.train.contains_key(key) {
                return Err(TrainError::Config(format!(
                    "[train] {key} is set by the pipeline: use {instead}"
                )));
            }
        }
        // Unknown or mistyped [train] keys fail here, before any work (a sweep checks every
        // point before it starts one).
        serde_json::from_value::<crate::config::TrainConfig>(serde_json::Value::Object(
            self.train.clone(),
        ))
        .map_err(|e| TrainError::Config(format!("[train] overrides: {e}")))?;
        // Values out of range too: a sweep's `lr = -1` fails before any point starts. A
        // preset left to the device is the one that device gets (`auto`: both).
        let presets = match (self.preset, self.device.as_str()) {
            (Some(preset), _) => vec![preset],
            (None, "cpu") => vec![Preset::Small],
            (None, device) if device.starts_with("cuda") => vec![Preset::Codebert],
            (None, _) => vec![Preset::Small, Preset::Codebert],
        };
        for preset in presets {
            let base = super::preset::preset_train_config(preset, &self.lang);
            super::preset::apply_train_overrides(&base, &self.train)?
                .validate_settings()
                .map_err(|e| {
                    let why = match e {
                        TrainError::Config(message) => message,
                        other => other.to_string(),
                    };
                    TrainError::Config(format!("[train] with preset {preset}: {why}"))
                })?;
        }
        let m = &self.small_model;
        if m.heads == 0 || !m.hidden_size.is_multiple_of(m.heads) {
            return Err(TrainError::Config(format!(
                "small_model.hidden_size {} is not divisible by heads {}",
                m.hidden_size, m.heads
            )));
        }
        Ok(())
    }
}

/// Training-config keys the pipeline derives from its own keys (named beside each).
const PIPELINE_OWNED_TRAIN_KEYS: [(&str, &str); 8] = [
    ("init", "preset (and small_model)"),
    ("train_data", "data_dir with train_split"),
    ("dev_data", "data_dir with dev_split (or holdout)"),
    ("tokenizer", "the pipeline's tokenizer key"),
    (
        "output_dir",
        "the pipeline's output_dir (training goes to OUTPUT/train)",
    ),
    ("cache_dir", "the pipeline's cache_dir"),
    ("device", "the pipeline's device"),
    ("progress", "the pipeline's progress (--quiet)"),
];

/// The six CodeSearchNet languages.
pub const LANGUAGES: [&str; 6] = ["ruby", "javascript", "go", "python", "java", "php"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_train_overrides_round_trips_through_json() {
        let cfg: PipelineConfig = toml::from_str(
            "lang = \"go\"\npreset = \"small\"\n[train]\nlr = 0.001\ntrain_steps = 10\n",
        )
        .unwrap();
        assert_eq!(cfg.preset, Some(Preset::Small));
        assert_eq!(cfg.train["lr"], serde_json::json!(0.001));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        cfg.save_json(&path).unwrap();
        assert_eq!(PipelineConfig::load(&path).unwrap(), cfg);
        assert!("gpt".parse::<Preset>().is_err());
        assert_eq!("Small".parse::<Preset>().unwrap(), Preset::Small);
    }

    #[test]
    fn zero_limits_and_pipeline_owned_train_keys_are_refused() {
        let zero = PipelineConfig {
            test_limit: Some(0),
            ..PipelineConfig::default()
        };
        let err = zero.validate().unwrap_err().to_string();
        assert!(err.contains("test_limit is 0"), "{err}");
        let mut owned = PipelineConfig::default();
        owned
            .train
            .insert("train_data".into(), serde_json::json!("/etc/passwd"));
        let err = owned.validate().unwrap_err().to_string();
        assert!(
            err.contains("[train] train_data is set by the pipeline"),
            "{err}"
        );
        owned.train.clear();
        owned.train.insert("lr".into(), serde_json::json!(1e-4));
        assert!(owned.validate().is_ok());
    }

    #[test]
    fn an_unknown_language_lists_the_known_ones() {
        let cfg = PipelineConfig {
            lang: "cobol".into(),
            data_dir: None,
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("cobol") && err.contains("ruby, javascript"),
            "{err}"
        );
        // A local folder may hold any language.
        let local = PipelineConfig {
            data_dir: Some("data".into()),
            ..cfg
        };
        assert!(local.validate().is_ok());
    }

    #[test]
    fn unknown_train_keys_are_refused_by_validate() {
        let mut cfg = PipelineConfig::default();
        cfg.train.insert("foo".into(), serde_json::json!(1));
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("foo"), "{err}");
        cfg.train.clear();
        cfg.train.insert("lr".into(), serde_json::json!("fast"));
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn test_split_equal_to_train_split_is_refused() {
        let cfg = PipelineConfig {
            train_split: "test".into(),
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("test"));
        let cfg = PipelineConfig {
            train_split: "valid".into(),
            holdout: 0,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }
}
