//! Loading a code2nl checkpoint (run.py's `pytorch_model.bin` or our `model.safetensors`).

use std::path::{Path, PathBuf};

use candle_core::Device;
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
    WEIGHTS_FILES
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("no {} found", WEIGHTS_FILES.join(" or ")),
        })
}

/// Load a checkpoint folder (`config.json` + `model.safetensors` or `pytorch_model.bin`) or
/// a weights file with a `config.json` beside it.
pub fn load_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<Seq2Seq> {
    let path = path.as_ref();
    let dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    let cfg = ModelConfig::load(dir.join("config.json"))?;
    let weights = find_weights_file(path)?;
    let model = Seq2Seq::new(&cfg, &VarMap::new(), device)?;
    load_state_dict(&model, &weights)?;
    Ok(model)
}

/// Copy a code2nl state dict from `path` into `model`'s Vars.
///
/// Strict like the reference's `load_state_dict`: every parameter key must be present with its
/// shape, and unknown keys are errors. Tolerated (§4.6): a `module.` prefix on every key,
/// `encoder.embeddings.position_ids` (ignored), `bias` present (shape checked) or absent,
/// `lm_head.weight` present (must equal the word embeddings) or absent (tied).
pub fn load_state_dict(model: &Seq2Seq, path: &Path) -> Result<()> {
    let mut tensors = read_tensors(path)?;
    if !tensors.is_empty() && tensors.keys().all(|k| k.starts_with("module.")) {
        tensors = tensors
            .into_iter()
            .map(|(k, v)| (k["module.".len()..].to_string(), v))
            .collect();
    }
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
        let same = lm_head.dims() == word.dims()
            && (lm_head.to_dtype(candle_core::DType::F32)? - &word)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?
                == 0.0;
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
