//! The sweep file: a base pipeline config, a grid (Cartesian product) and/or an explicit
//! list of points, expanded into named runs.
//!
//! ```toml
//! [base]                     # any PipelineConfig key; [base.train] any TrainConfig key
//! lang = "ruby"
//! data_dir = "../shared/data/codesearchnet"
//! train_split = "valid"
//! preset = "small"
//! [base.train]
//! train_steps = 200
//!
//! [grid]                     # every combination
//! lr = [1e-3, 5e-4]
//! batch_size = [16, 32]
//!
//! [[points]]                 # and/or explicit runs
//! lr = 2e-3
//! beam_size = 5
//! ```
//! A key that is a [`PipelineConfig`] field (other than `train`) sets that field; any other
//! key is a training-config key.

use crate::pipeline::PipelineConfig;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The parsed sweep file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepFile {
    pub base: PipelineConfig,
    /// Key → values; every combination becomes a run (keys in sorted order).
    pub grid: BTreeMap<String, Vec<Value>>,
    /// Explicit runs, after the grid's.
    pub points: Vec<Map<String, Value>>,
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// Folder name: index and the overridden values.
    pub name: String,
    /// The overrides that make this run.
    pub overrides: Map<String, Value>,
    /// The full config (output folder not yet set).
    pub config: PipelineConfig,
}

impl SweepFile {
    /// Reads a TOML sweep file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| TrainError::parse(path, e))?;
        // An empty file would run one pipeline with every default (a full hub download).
        if table.is_empty() {
            return Err(TrainError::Config(format!(
                "{} holds no [base], [grid] or [[points]]: nothing to sweep",
                path.display()
            )));
        }
        // Parsed again as the struct: its errors keep their line and column.
        toml::from_str(&text).map_err(|e| TrainError::parse(path, e))
    }

    /// The grid's combinations followed by the explicit points, each as a full config.
    pub fn expand(&self) -> Result<Vec<SweepPoint>> {
        let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
        for (key, values) in &self.grid {
            if values.is_empty() {
                return Err(TrainError::Config(format!("grid key `{key}` has no value")));
            }
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut next = c.clone();
                        next.insert(key.clone(), v.clone());
                        next
                    })
                })
                .collect();
        }
        if self.grid.is_empty() && !self.points.is_empty() {
            combos.clear();
        }
        combos.extend(self.points.iter().cloned());
        // The same overrides twice would train the same run twice, in two folders.
        for (i, combo) in combos.iter().enumerate() {
            if let Some(j) = combos[..i].iter().position(|earlier| earlier == combo) {
                return Err(TrainError::Config(format!(
                    "points {} and {} are the same run ({})",
                    point_name(j, combo),
                    point_name(i, combo),
                    serde_json::Value::Object(combo.clone())
                )));
            }
        }
        combos
            .into_iter()
            .enumerate()
            .map(|(i, overrides)| {
                Ok(SweepPoint {
                    name: point_name(i, &overrides),
                    config: apply_point(&self.base, &overrides)?,
                    overrides,
                })
            })
            .collect()
    }
}

/// `03-lr=0.001-batch_size=16`, with characters unsafe in file names replaced by `_`.
pub fn point_name(index: usize, overrides: &Map<String, Value>) -> String {
    let mut name = format!("{index:02}");
    for (k, v) in overrides {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        name.push_str(&format!("-{k}={v}"));
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `base` with one point's overrides.
pub fn apply_point(
    base: &PipelineConfig,
    overrides: &Map<String, Value>,
) -> Result<PipelineConfig> {
    let mut value =
        serde_json::to_value(base).map_err(|e| TrainError::Config(format!("sweep base: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(TrainError::Config("sweep base is not a table".into()));
    };
    for (key, v) in overrides {
        if key != "train" && object.contains_key(key) {
            object.insert(key.clone(), v.clone());
        } else if let Some(Value::Object(train)) = object.get_mut("train") {
            train.insert(key.clone(), v.clone());
        }
    }
    serde_json::from_value(value).map_err(|e| TrainError::Config(format!("sweep point: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_the_cartesian_product_then_the_points() {
        let file: SweepFile = toml::from_str(
            "[base]\nlang = \"ruby\"\n[base.train]\ntrain_steps = 5\n\
             [grid]\nlr = [0.001, 0.002]\nbatch_size = [8, 16]\n\
             [[points]]\nbeam_size = 3\npreset = \"small\"\n",
        )
        .unwrap();
        let points = file.expand().unwrap();
        assert_eq!(points.len(), 5);
        assert_eq!(points[0].name, "00-batch_size=8-lr=0.001");
        assert_eq!(points[3].name, "03-batch_size=16-lr=0.002");
        assert_eq!(points[3].config.train["lr"], serde_json::json!(0.002));
        assert_eq!(points[3].config.train["train_steps"], serde_json::json!(5));
        assert_eq!(
            points[4].config.preset,
            Some(crate::pipeline::Preset::Small)
        );
        assert_eq!(points[4].config.train["beam_size"], serde_json::json!(3));
        assert!(!points[4].config.train.contains_key("preset"));
    }

    #[test]
    fn points_alone_and_empty_values() {
        let file: SweepFile = toml::from_str("[[points]]\nlr = 0.1\n").unwrap();
        assert_eq!(file.expand().unwrap().len(), 1);
        let file: SweepFile = toml::from_str("[grid]\nlr = []\n").unwrap();
        assert!(file.expand().is_err());
        assert!(toml::from_str::<SweepFile>("[grids]\n").is_err());
    }

    #[test]
    fn the_same_run_twice_is_refused() {
        let file: SweepFile =
            toml::from_str("[grid]\nlr = [0.1, 0.2]\n[[points]]\nlr = 0.2\n").unwrap();
        let err = file.expand().unwrap_err().to_string();
        assert!(err.contains("01-lr=0.2 and 02-lr=0.2"), "{err}");
        let file: SweepFile =
            toml::from_str("[grid]\nlr = [0.1, 0.2]\n[[points]]\nlr = 0.3\n").unwrap();
        assert_eq!(file.expand().unwrap().len(), 3);
    }

    #[test]
    fn an_empty_file_is_refused_and_a_bad_one_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        let err = SweepFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("nothing to sweep"), "{err}");
        std::fs::write(&path, "[grids]\n").unwrap();
        let err = SweepFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("sweep.toml") && err.contains("grids"), "{err}");
        assert!(err.contains("line 1"), "the position is kept: {err}");
        std::fs::write(&path, "[grid]\nlr = [0.1, 0.2]\n").unwrap();
        assert_eq!(SweepFile::load(&path).unwrap().expand().unwrap().len(), 2);
    }
}
