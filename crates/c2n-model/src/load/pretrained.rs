//! Starting a fine-tune from a Hugging Face RoBERTa encoder (`microsoft/codebert-base`,
//! `roberta-base`, or a local folder with the same files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::assign::{assign, take};
use super::tensor_file::read_tensors;
use crate::config::ModelConfig;
use crate::keys::{self, ENCODER_PREFIX};
use crate::{ModelError, Result, Seq2Seq};

/// The two files of a pretrained encoder.
#[derive(Debug, Clone)]
pub struct PretrainedFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
}

const PRETRAINED_WEIGHTS: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Find `config.json` and the weights of `source`: a local folder, or a Hugging Face hub id
/// resolved through the hf-hub cache (downloaded once, then used offline).
pub fn resolve_pretrained(source: &str) -> Result<PretrainedFiles> {
    let dir = Path::new(source);
    if dir.is_dir() {
        let weights = PRETRAINED_WEIGHTS
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| ModelError::Checkpoint {
                path: dir.to_path_buf(),
                message: format!("no {} found", PRETRAINED_WEIGHTS.join(" or ")),
            })?;
        return Ok(PretrainedFiles {
            config: dir.join("config.json"),
            weights,
        });
    }
    // A hub id is `owner/name` (or a bare name); anything else is a local path that is missing.
    let looks_like_path = dir.is_absolute()
        || source.starts_with('.')
        || source.split('/').count() > 2
        || dir.exists();
    if looks_like_path {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            message: "no such folder (and not a hub id of the form owner/name)".into(),
        });
    }
    resolve_hub(source)
}

#[cfg(not(feature = "hub"))]
fn resolve_hub(model_id: &str) -> Result<PretrainedFiles> {
    Err(ModelError::Checkpoint {
        path: PathBuf::from(model_id),
        message: "not a local folder, and this build of c2n-model has no hub access \
                  (feature `hub`)"
            .into(),
    })
}

#[cfg(feature = "hub")]
fn resolve_hub(model_id: &str) -> Result<PretrainedFiles> {
    let hub_error = |message: String| ModelError::Checkpoint {
        path: PathBuf::from(model_id),
        message,
    };
    let cache = hf_hub::Cache::from_env().model(model_id.to_string());
    let cached = |f: &str| cache.get(f);
    if let Some(config) = cached("config.json") {
        if let Some(weights) = PRETRAINED_WEIGHTS.iter().find_map(|f| cached(f)) {
            return Ok(PretrainedFiles { config, weights });
        }
    }
    // As huggingface_hub reads it (c2n-data's `hub_offline`; this crate does not depend on it).
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "on" | "yes"
        )
    });
    if offline {
        return Err(hub_error(format!(
            "not a local folder, and not in the Hugging Face cache ({}) while HF_HUB_OFFLINE is set",
            hf_hub::Cache::from_env().path().display()
        )));
    }
    // Progress bars on: the CodeBERT weights are 500 MB.
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .build()
        .map_err(|e| hub_error(format!("not a folder, and the hub is unavailable: {e}")))?;
    let repo = api.model(model_id.to_string());
    let config = repo
        .get("config.json")
        .map_err(|e| hub_error(format!("cannot fetch config.json: {e}")))?;
    let mut last_error = String::new();
    for f in PRETRAINED_WEIGHTS {
        match repo.get(f) {
            Ok(weights) => return Ok(PretrainedFiles { config, weights }),
            Err(e) => last_error = format!("{f}: {e}"),
        }
    }
    Err(hub_error(format!("cannot fetch weights ({last_error})")))
}

/// Build a fresh model whose encoder (and tied LM head) comes from a pretrained RoBERTa, with
/// the decoder and `dense` initialised as the reference does (§4.5). `configure` may change
/// the configuration read from `config.json` (e.g. decoder fields) before the model is built.
pub fn load_pretrained_encoder(
    source: &str,
    device: &Device,
    configure: impl FnOnce(&mut ModelConfig),
) -> Result<Seq2Seq> {
    let files = resolve_pretrained(source)?;
    let mut cfg = ModelConfig::load(&files.config)?;
    configure(&mut cfg);
    let model = Seq2Seq::new(&cfg, &VarMap::new(), device)?;
    load_encoder_weights(&model, &files.weights)?;
    Ok(model)
}

/// Copy RoBERTa encoder weights from a Hugging Face file into `model`. Keys may carry a
/// `roberta.` prefix (`RobertaForMaskedLM`) or none (`RobertaModel`); old `gamma`/`beta`
/// LayerNorm names are accepted; other keys (MLM head, `position_ids`) are ignored. A missing
/// pooler keeps its initial values (its output is never used).
pub fn load_encoder_weights(model: &Seq2Seq, path: &Path) -> Result<()> {
    let raw = read_tensors(path)?;
    let prefixed = raw.keys().any(|k| k.starts_with("roberta."));
    let mut tensors: HashMap<String, Tensor> = raw
        .into_iter()
        .filter_map(|(k, v)| {
            let k = if prefixed {
                k.strip_prefix("roberta.")?.to_string()
            } else {
                k
            };
            let k = match k.strip_suffix(".gamma") {
                Some(stem) => format!("{stem}.weight"),
                None => match k.strip_suffix(".beta") {
                    Some(stem) => format!("{stem}.bias"),
                    None => k,
                },
            };
            Some((k, v))
        })
        .collect();
    let has_pooler = tensors.contains_key("pooler.dense.weight");
    for spec in keys::encoder_param_specs(model.config()) {
        if spec.name.starts_with("pooler.") && !has_pooler {
            continue;
        }
        let value = take(&mut tensors, &spec.name, path)?;
        let var_name = format!("{ENCODER_PREFIX}{}", spec.name);
        assign(model.varmap(), &var_name, &spec.name, &value, path)?;
    }
    Ok(())
}
