//! Whether an output folder holds the same run: the same configuration (up to the keys that
//! only touch evaluation) and the same source files. A pipeline rerun refuses anything else,
//! since its stage records would describe another run; a sweep asks before it skips a point.

use super::config::PipelineConfig;
use super::splits::source_files;
use super::stages::{load_stage, save_stage};
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The run's configuration as first saved, in its output folder.
pub const RUN_CONFIG: &str = "pipeline_config.json";

/// The record of the source files' digests, beside the stage records.
const INPUTS: &str = "inputs";

/// What a run read: each source split file's size and SHA-256, kept in
/// `OUTPUT/stages/inputs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InputDigest {
    split: String,
    path: PathBuf,
    bytes: u64,
    sha256: String,
}

/// `key: earlier X, now Y` for each differing key (`train.lr` for the `[train]` table).
pub fn config_differences(earlier: &PipelineConfig, now: &PipelineConfig) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                let null = serde_json::Value::Null;
                for key in keys {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(
                        &path,
                        a.get(key).unwrap_or(&null),
                        b.get(key).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{prefix}: earlier {a}, now {b}")),
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (serde_json::to_value(earlier), serde_json::to_value(now)) else {
        return vec!["(cannot compare)".into()];
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

/// Refuses a folder holding a run with another configuration, except for the keys that
/// only touch the evaluation stages or the display (`dev_limit`, `test_limit`,
/// `progress`): those are taken over (the stage records know their limit, so only the
/// evaluation whose limit changed runs again) and said in the log. `cfg` has its preset
/// resolved.
pub fn check_same_run(cfg: &PipelineConfig, log: &mut dyn FnMut(&str)) -> Result<()> {
    let path = cfg.output_dir.join(RUN_CONFIG);
    if !path.is_file() {
        return cfg.save_json(&path);
    }
    let earlier = PipelineConfig::load(&path)?;
    if &earlier == cfg {
        return Ok(());
    }
    let with_evaluation_keys_of_now = PipelineConfig {
        dev_limit: cfg.dev_limit,
        test_limit: cfg.test_limit,
        progress: cfg.progress,
        ..earlier.clone()
    };
    if &with_evaluation_keys_of_now != cfg {
        return Err(TrainError::Config(format!(
            "{} holds a run with a different configuration ({}: {}); choose another output folder or delete it",
            cfg.output_dir.display(),
            path.display(),
            config_differences(&earlier, cfg).join("; ")
        )));
    }
    log(&format!(
        "same run, evaluation settings changed ({}): prepare and train carry over",
        config_differences(&earlier, cfg).join("; ")
    ));
    cfg.save_json(&path)
}

/// The digests of the run's source files as they are now.
fn current_digests(cfg: &PipelineConfig) -> Result<Vec<InputDigest>> {
    source_files(cfg)?
        .into_iter()
        .map(|(split, path)| {
            let (bytes, sha256) = c2n_data::cache::sha256_file(&path)?;
            Ok(InputDigest {
                split,
                path,
                bytes,
                sha256,
            })
        })
        .collect()
}

/// The first source file whose content differs from the recorded one, described.
fn data_change(output_dir: &Path, earlier: &[InputDigest], now: &[InputDigest]) -> Option<String> {
    now.iter().find_map(|input| {
        let then = earlier.iter().find(|e| e.split == input.split)?;
        (then.sha256 != input.sha256).then(|| {
            format!(
                "{} changed since the run in {} began ({} bytes, sha256 {}… then; {} bytes, {}… now)",
                input.path.display(),
                output_dir.display(),
                then.bytes,
                &then.sha256[..12.min(then.sha256.len())],
                input.bytes,
                &input.sha256[..12.min(input.sha256.len())]
            )
        })
    })
}

/// Refuses to go on when a source file changed since the run in this folder began: its
/// stage records (and held-out split files) describe the old data, so a rerun would report
/// them as if they were the new data's. The first run records the digests.
pub fn check_same_data(cfg: &PipelineConfig, log: &mut dyn FnMut(&str)) -> Result<()> {
    let now = current_digests(cfg)?;
    let Some(earlier) = load_stage::<Vec<InputDigest>>(&cfg.output_dir, INPUTS) else {
        return save_stage(&cfg.output_dir, INPUTS, &now);
    };
    if let Some(change) = data_change(&cfg.output_dir, &earlier, &now) {
        return Err(TrainError::Config(format!(
            "{change}: its finished stages describe the old data; choose another output folder or delete it"
        )));
    }
    log("data: the source files are those of the earlier run");
    Ok(())
}

/// Why the run recorded in `cfg.output_dir` no longer answers `cfg` (another configuration,
/// or changed source files), or `None` when it does or there is no record to compare. A
/// preset left to the device (`None`) takes the recorded one.
pub fn stale_run_reason(cfg: &PipelineConfig) -> Option<String> {
    let path = cfg.output_dir.join(RUN_CONFIG);
    if path.is_file() {
        let earlier = match PipelineConfig::load(&path) {
            Ok(earlier) => earlier,
            Err(e) => return Some(e.to_string()),
        };
        let now = PipelineConfig {
            preset: cfg.preset.or(earlier.preset),
            ..cfg.clone()
        };
        if earlier != now {
            return Some(format!(
                "its configuration differs ({})",
                config_differences(&earlier, &now).join("; ")
            ));
        }
    }
    let earlier = load_stage::<Vec<InputDigest>>(&cfg.output_dir, INPUTS)?;
    match current_digests(cfg) {
        Ok(now) => data_change(&cfg.output_dir, &earlier, &now),
        Err(e) => Some(e.to_string()),
    }
}
