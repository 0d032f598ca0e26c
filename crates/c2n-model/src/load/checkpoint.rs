//! Loading a code2nl checkpoint (run.py's `pytorch_model.bin` or our `model.safetensors`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::assign::{assign, take};
use super::tensor_file::read_tensors;
use crate::config::ModelConfig;
use crate::keys::{self, CAUSAL_BUFFER_KEY, LM_HEAD_KEY, POSITION_IDS_KEY, WORD_EMBEDDINGS_KEY};
use crate::{ModelError, Result, Seq2Seq};

/// The weights file names looked for in a checkpoint folder, in order of preference.
pub const WEIGHTS_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// The weights file inside a checkpoint folder (or `path` itself when it is a file).
pub fn find_weights_file(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: "no such file or folder".into(),
        });
    }
    WEIGHTS_FILES
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            // A training run's folder holds its checkpoints one level down (a pipeline's
            // folder two, under `train`).
            let inside: Vec<String> = ["", "train"]
                .iter()
                .flat_map(|sub| {
                    [
                        "checkpoint-best-bleu",
                        "checkpoint-best-ppl",
                        "checkpoint-last",
                    ]
                    .map(|name| path.join(sub).join(name))
                })
                .filter(|dir| dir.is_dir())
                .map(|dir| dir.display().to_string())
                .collect();
            let hint = if inside.is_empty() {
                String::new()
            } else {
                format!("; it holds the checkpoints {}", inside.join(", "))
            };
            ModelError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("no {} found{hint}", WEIGHTS_FILES.join(" or ")),
            }
        })
}

/// Load a checkpoint folder (`config.json` + `model.safetensors` or `pytorch_model.bin`) or
/// a weights file with a `config.json` beside it.
///
/// run.py saves only `pytorch_model.bin` in its `checkpoint-*` folders. Without a
/// `config.json` the architecture is read from the weight shapes
/// ([`config_from_weights`]), so such a folder loads as it is.
pub fn load_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<Seq2Seq> {
    let path = path.as_ref();
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let weights = find_weights_file(path)?;
    let config_path = dir.join("config.json");
    let tensors = without_module_prefix(read_tensors(&weights)?);
    let cfg = if config_path.is_file() {
        with_decoder_shape_from_weights(ModelConfig::load(&config_path)?, &config_path, &tensors)?
    } else {
        config_from_weights(&tensors, &weights)?
    };
    let model = Seq2Seq::new(&cfg, &VarMap::new(), device)?;
    assign_state_dict(&model, tensors, &weights)?;
    Ok(model)
}

/// The architecture of a code2nl state dict without a `config.json`: sizes and layer counts
/// come from the weight shapes, everything else from [`ModelConfig::codebert`]. No shape
/// shows the number of attention heads, so only the RoBERTa widths are accepted, with their
/// heads: hidden 768 → 12 (base, CodeBERT), 1024 → 16 (large). Any other model needs its
/// `config.json`, rather than a guess that would load without error and compute nonsense.
pub fn config_from_weights(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<ModelConfig> {
    let fail = |message: String| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("{message} (there is no config.json beside the weights)"),
    };
    let dims = |key: &str| -> Result<(usize, usize)> {
        match tensors.get(key).map(|t| t.dims()) {
            Some(&[rows, cols]) => Ok((rows, cols)),
            Some(other) => Err(fail(format!("`{key}` has shape {other:?}, not 2-D"))),
            None => Err(fail(format!("no `{key}`: not a code2nl checkpoint"))),
        }
    };
    let count = |prefix: &str| {
        (0..)
            .take_while(|i| {
                tensors
                    .keys()
                    .any(|k| k.starts_with(&format!("{prefix}{i}.")))
            })
            .count()
    };
    let (vocab_size, hidden_size) = dims(WORD_EMBEDDINGS_KEY)?;
    let num_attention_heads = match hidden_size {
        768 => 12,
        1024 => 16,
        _ => {
            return Err(fail(format!(
                "hidden size {hidden_size} is not RoBERTa base's (768) or large's (1024), so \
                 the number of attention heads is unknown"
            )))
        }
    };
    let encoder_layer = "encoder.encoder.layer.";
    let decoder_layer = "decoder.layers.";
    let cfg = ModelConfig {
        vocab_size,
        hidden_size,
        num_hidden_layers: count(encoder_layer),
        num_attention_heads,
        intermediate_size: dims(&format!("{encoder_layer}0.intermediate.dense.weight"))?.0,
        max_position_embeddings: dims("encoder.embeddings.position_embeddings.weight")?.0,
        type_vocab_size: dims("encoder.embeddings.token_type_embeddings.weight")?.0,
        decoder_layers: count(decoder_layer),
        decoder_ffn_dim: dims(&format!("{decoder_layer}0.linear1.weight"))?.0,
        ..ModelConfig::codebert()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// A plain Hugging Face `config.json` (as run.py's users copy next to its weights) says
/// nothing of the decoder, so its defaults (6 layers, feed-forward 2048) would be taken for
/// weights of another decoder and the load would fail on a missing or misshapen key. Where
/// the file does not name `decoder_layers` or `decoder_ffn_dim`, they come from the weights.
fn with_decoder_shape_from_weights(
    mut cfg: ModelConfig,
    config_path: &Path,
    tensors: &HashMap<String, Tensor>,
) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(config_path).map_err(|error| ModelError::Io {
        path: config_path.to_path_buf(),
        error,
    })?;
    let named = |key: &str| text.contains(&format!("\"{key}\""));
    let layers = (0..)
        .take_while(|i| {
            tensors
                .keys()
                .any(|k| k.starts_with(&format!("decoder.layers.{i}.")))
        })
        .count();
    if !named("decoder_layers") && layers > 0 {
        cfg.decoder_layers = layers;
    }
    if !named("decoder_ffn_dim") {
        if let Some(&[ffn, _]) = tensors
            .get("decoder.layers.0.linear1.weight")
            .map(|t| t.dims())
        {
            cfg.decoder_ffn_dim = ffn;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Copy a code2nl state dict from `path` into `model`'s Vars.
///
/// Strict like the reference's `load_state_dict`: every parameter key must be present with its
/// shape, and unknown keys are errors. Tolerated (§4.6): a `module.` prefix on every key,
/// `encoder.embeddings.position_ids` (ignored), `bias` present (shape checked) or absent,
/// `lm_head.weight` present (must equal the word embeddings) or absent (tied).
pub fn load_state_dict(model: &Seq2Seq, path: &Path) -> Result<()> {
    assign_state_dict(model, without_module_prefix(read_tensors(path)?), path)
}

/// Drops the `module.` prefix that `DataParallel` puts on every key.
fn without_module_prefix(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with("module.")) {
        tensors
            .into_iter()
            .map(|(k, v)| (k["module.".len()..].to_string(), v))
            .collect()
    } else {
        tensors
    }
}

/// [`load_state_dict`] of tensors already read from `path` (named in errors).
fn assign_state_dict(
    model: &Seq2Seq,
    mut tensors: HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let cfg = model.config();
    for spec in keys::param_specs(cfg) {
        let value = take(&mut tensors, &spec.name, path)?;
        assign(model.varmap(), &spec.name, &spec.name, &value, path)?;
    }
    tensors.remove(POSITION_IDS_KEY);
    if let Some(bias) = tensors.remove(CAUSAL_BUFFER_KEY) {
        let expected = vec![keys::CAUSAL_BUFFER_SIZE, keys::CAUSAL_BUFFER_SIZE];
        if bias.dims() != expected.as_slice() {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                key: CAUSAL_BUFFER_KEY.into(),
                expected,
                found: bias.dims().to_vec(),
            });
        }
    }
    if let Some(lm_head) = tensors.remove(LM_HEAD_KEY) {
        let word = model
            .embeddings()
            .word_embeddings()
            .to_device(&Device::Cpu)?;
        let lm_head = lm_head.to_dtype(candle_core::DType::F32)?;
        // NaN ≠ NaN: a diverged run's weights would read as "untied" below.
        for (key, t) in [(WORD_EMBEDDINGS_KEY, &word), (LM_HEAD_KEY, &lm_head)] {
            if !t.abs()?.sum_all()?.to_scalar::<f32>()?.is_finite() {
                return Err(ModelError::Checkpoint {
                    path: path.to_path_buf(),
                    message: format!(
                        "`{key}` holds NaN or infinite values (the weights of a diverged run?)"
                    ),
                });
            }
        }
        let same = lm_head.dims() == word.dims()
            && (&lm_head - &word)?.abs()?.max_all()?.to_scalar::<f32>()? == 0.0;
        if !same {
            return Err(ModelError::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "`{LM_HEAD_KEY}` differs from `{WORD_EMBEDDINGS_KEY}`; the model ties them"
                ),
            });
        }
    }
    if let Some(extra) = sorted_keys(&tensors).first() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "unexpected key `{extra}` ({} unexpected in all); is this a code2nl checkpoint \
                 with this config.json?",
                tensors.len()
            ),
        });
    }
    Ok(())
}

pub(crate) fn sorted_keys<V>(map: &std::collections::HashMap<String, V>) -> Vec<String> {
    let mut k: Vec<String> = map.keys().cloned().collect();
    k.sort();
    k
}
