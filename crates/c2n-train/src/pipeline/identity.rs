//! Whether an output folder holds the same run: the same configuration (up to the keys that
//! only touch evaluation) and the same source files. A pipeline rerun refuses anything else,
//! since its stage records would describe another run; a sweep asks before it skips a point.

use super::config::PipelineConfig;
use super::splits::{local_source_files, source_files};
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
fn config_differences(earlier: &PipelineConfig, now: &PipelineConfig) -> Vec<String> {
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
            _ if a != b => {
                // An absent [train] key is the preset's value; other absent keys are unset.
                let unset = if prefix.starts_with("train.") {
                    "unset (the preset's value)"
                } else {
                    "unset"
                };
                let shown = |v: &serde_json::Value| match v {
                    serde_json::Value::Null => unset.to_string(),
                    v => v.to_string(),
                };
                out.push(format!("{prefix}: earlier {}, now {}", shown(a), shown(b)))
            }
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

/// How the run recorded in an output folder relates to a config for that folder.
#[derive(Debug, Clone, PartialEq)]
pub enum RunMatch {
    /// No record, or the same run: finished stages stand.
    Same,
    /// The same run with other evaluation settings (`dev_limit`, `test_limit`, `progress`):
    /// prepare and train stand, the evaluation whose limit changed runs again. The keys.
    EvaluationChanged(Vec<String>),
    /// Another run (configuration or source files): why.
    Different(String),
}

/// Compares configs of one folder: the folder itself (`output_dir`, however spelled) is not
/// part of the identity, and a preset left to the device (`None`) takes the recorded one.
fn compare_configs(earlier: &PipelineConfig, now: &PipelineConfig) -> RunMatch {
    let now = PipelineConfig {
        output_dir: earlier.output_dir.clone(),
        preset: now.preset.or(earlier.preset),
        ..now.clone()
    };
    if *earlier == now {
        return RunMatch::Same;
    }
    let differences = config_differences(earlier, &now);
    let with_evaluation_keys_of_now = PipelineConfig {
        dev_limit: now.dev_limit,
        test_limit: now.test_limit,
        progress: now.progress,
        ..earlier.clone()
    };
    if with_evaluation_keys_of_now == now {
        RunMatch::EvaluationChanged(differences)
    } else {
        RunMatch::Different(format!(
            "its configuration differs ({})",
            differences.join("; ")
        ))
    }
}

/// Whether the run in `output_dir` got anywhere: a finished stage, a training that started
/// (its checkpoints or metrics), or a report. Before that the recorded configuration and data
/// bind nothing: a run that failed at once (a wrong tokenizer, a bad line) is simply
/// replaced by its corrected rerun.
pub fn run_has_work(output_dir: &Path) -> bool {
    let train = output_dir.join("train");
    super::stages::STAGES
        .iter()
        .any(|stage| super::stages::stage_file(output_dir, stage).is_file())
        || train.join(crate::checkpoint_policy::LAST).exists()
        || train.join("metrics.jsonl").exists()
        || output_dir.join("report.json").exists()
}

/// A run that failed before any work ([`run_has_work`] is false) binds nothing, but it may
/// have left files that a rerun would reuse without a check: the held-out split copies and
/// hub downloads under `OUTPUT/data`, the small preset's `OUTPUT/init-small`, the recorded
/// digests. When the rerun's configuration or (local) source files differ from the failed
/// attempt's, they are removed first, so nothing of the old data or model shape carries over.
pub fn discard_leftovers_of_a_failed_start(
    cfg: &PipelineConfig,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let out = &cfg.output_dir;
    let recorded = out.join(RUN_CONFIG);
    if run_has_work(out) || !recorded.is_file() {
        return Ok(());
    }
    let config_changed = match PipelineConfig::load(&recorded) {
        Ok(earlier) => compare_configs(&earlier, cfg) != RunMatch::Same,
        Err(_) => true,
    };
    let data_changed = match (
        load_stage::<Vec<InputDigest>>(out, INPUTS),
        local_source_files(cfg),
    ) {
        (Some(earlier), Some(files)) => {
            let now: Result<Vec<InputDigest>> = files
                .into_iter()
                .map(|(split, path)| digest(split, path))
                .collect();
            now.map_or(true, |now| data_change(out, &earlier, &now).is_some())
        }
        _ => false,
    };
    if !config_changed && !data_changed {
        return Ok(());
    }
    for leftover in [
        out.join("data"),
        out.join("init-small"),
        super::stages::stage_file(out, INPUTS),
    ] {
        let removed = if leftover.is_dir() {
            std::fs::remove_dir_all(&leftover)
        } else {
            std::fs::remove_file(&leftover)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(TrainError::io(&leftover, e))
            }
            _ => {}
        }
    }
    log(&format!(
        "an earlier attempt in {} failed before any work, with other {}: its data copies and \
         initial model are discarded",
        out.display(),
        if config_changed { "settings" } else { "data" }
    ));
    Ok(())
}

/// Whether the folder's training ran with other binding settings than `cfg`'s preset and
/// `[train]` keys give in this version. The recorded configuration names a preset, not its
/// recipe, so a preset whose recipe changed (the small preset went from 250 to 600 updates)
/// would pass [`recorded_config_match`]; the pipeline itself refuses such a folder when it
/// resolves the training config, this says so before (a sweep skipping a finished point).
fn training_recipe_change(cfg: &PipelineConfig) -> Result<Option<String>> {
    let saved_path = cfg
        .output_dir
        .join(super::run::TRAIN_FOLDER)
        .join(crate::config::TRAIN_CONFIG_FILE);
    let recorded = cfg.output_dir.join(RUN_CONFIG);
    if !saved_path.is_file() || !recorded.is_file() {
        return Ok(None);
    }
    let Some(preset) = cfg.preset.or(PipelineConfig::load(&recorded)?.preset) else {
        return Ok(None);
    };
    let recipe = super::preset::apply_train_overrides(
        &super::preset::preset_train_config(preset, &cfg.lang),
        &cfg.train,
    )?;
    let conflicts = recipe.resume_conflicts(&crate::config::TrainConfig::load(&saved_path)?);
    Ok((!conflicts.is_empty()).then(|| {
        format!(
            "its training ran with other settings than preset `{preset}` gives now ({}): the \
             preset's recipe may have changed since that run",
            conflicts.join("; ")
        )
    }))
}

/// The recorded configuration of the run in `cfg.output_dir`, compared with `cfg`.
fn recorded_config_match(cfg: &PipelineConfig) -> Result<RunMatch> {
    let path = cfg.output_dir.join(RUN_CONFIG);
    if !path.is_file() || !run_has_work(&cfg.output_dir) {
        return Ok(RunMatch::Same);
    }
    Ok(compare_configs(&PipelineConfig::load(&path)?, cfg))
}

/// Refuses a folder holding a run with another configuration, except for the keys that
/// only touch the evaluation stages or the display (`dev_limit`, `test_limit`,
/// `progress`): those are taken over (the stage records know their limit, so only the
/// evaluation whose limit changed runs again) and said in the log. Saves nothing: the
/// caller saves the config ([`save_run_config`]) once the data check passed too.
pub fn check_same_run(cfg: &PipelineConfig, log: &mut dyn FnMut(&str)) -> Result<()> {
    match recorded_config_match(cfg)? {
        RunMatch::Same => Ok(()),
        RunMatch::EvaluationChanged(keys) => {
            log(&format!(
                "same run, evaluation settings changed ({}): prepare and train carry over",
                keys.join("; ")
            ));
            Ok(())
        }
        RunMatch::Different(why) => Err(TrainError::OtherRun(format!(
            "{} holds another run: {why}",
            cfg.output_dir.display()
        ))),
    }
}

/// Records `cfg` as the folder's run configuration.
pub fn save_run_config(cfg: &PipelineConfig) -> Result<()> {
    cfg.save_json(&cfg.output_dir.join(RUN_CONFIG))
}

/// The digests of the run's source files as they are now.
fn current_digests(cfg: &PipelineConfig) -> Result<Vec<InputDigest>> {
    source_files(cfg)?
        .into_iter()
        .map(|(split, path)| digest(split, path))
        .collect()
}

fn digest(split: String, path: PathBuf) -> Result<InputDigest> {
    let (bytes, sha256) = c2n_data::cache::sha256_file(&path)?;
    Ok(InputDigest {
        split,
        path,
        bytes,
        sha256,
    })
}

/// The first source file whose content differs from the recorded one, described.
fn data_change(output_dir: &Path, earlier: &[InputDigest], now: &[InputDigest]) -> Option<String> {
    now.iter().find_map(|input| {
        let then = earlier.iter().find(|e| e.split == input.split)?;
        if then.path != input.path && then.sha256 != input.sha256 {
            // E.g. a `.jsonl` unpacked beside the `.jsonl.gz` the run read.
            return Some(format!(
                "split `{}` now reads {} instead of {}",
                input.split,
                input.path.display(),
                then.path.display()
            ));
        }
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
    let earlier = load_stage::<Vec<InputDigest>>(&cfg.output_dir, INPUTS)
        .filter(|_| run_has_work(&cfg.output_dir));
    let Some(earlier) = earlier else {
        return save_stage(&cfg.output_dir, INPUTS, &now);
    };
    if let Some(change) = data_change(&cfg.output_dir, &earlier, &now) {
        return Err(TrainError::OtherRun(format!(
            "{change}: its finished stages describe the old data"
        )));
    }
    log("data: the source files are those of the earlier run");
    Ok(())
}

/// How the finished run recorded in `cfg.output_dir` relates to `cfg` (a sweep asks before
/// it skips a point): its configuration, then, when the source files are local and still
/// there, their digests. Nothing is downloaded: hub splits and missing files are not
/// checked (the pipeline checks them when it runs).
pub fn earlier_run_match(cfg: &PipelineConfig) -> RunMatch {
    let by_config = match recorded_config_match(cfg) {
        Ok(m) => m,
        Err(e) => return RunMatch::Different(e.to_string()),
    };
    if let RunMatch::Different(_) = by_config {
        return by_config;
    }
    match training_recipe_change(cfg) {
        Ok(None) => {}
        Ok(Some(change)) => return RunMatch::Different(change),
        Err(e) => return RunMatch::Different(e.to_string()),
    }
    let earlier = load_stage::<Vec<InputDigest>>(&cfg.output_dir, INPUTS)
        .filter(|_| run_has_work(&cfg.output_dir));
    let Some(earlier) = earlier else {
        return by_config;
    };
    let Some(files) = local_source_files(cfg) else {
        return by_config;
    };
    let now: Result<Vec<InputDigest>> = files
        .into_iter()
        .map(|(split, path)| digest(split, path))
        .collect();
    match now.map(|now| data_change(&cfg.output_dir, &earlier, &now)) {
        Ok(Some(change)) => RunMatch::Different(change),
        Ok(None) => by_config,
        Err(e) => RunMatch::Different(e.to_string()),
    }
}
