//! Writing checkpoints PyTorch can load strictly: the 311-key run.py layout as safetensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::keys::{self, CAUSAL_BUFFER_KEY, CAUSAL_BUFFER_SIZE, LM_HEAD_KEY, WORD_EMBEDDINGS_KEY};
use crate::{ModelError, Result, Seq2Seq};

/// The f32 `[2048, 2048]` lower-triangular ones buffer (`bias`).
pub fn causal_buffer() -> Result<Tensor> {
    let n = CAUSAL_BUFFER_SIZE;
    let data: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j <= i { 1.0 } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (n, n), &Device::Cpu)?)
}

/// Every state-dict tensor on the CPU, by key: the parameters, `bias` and a copy of the word
/// embeddings as `lm_head.weight` (safetensors forbids aliasing).
pub fn state_dict(model: &Seq2Seq) -> Result<HashMap<String, Tensor>> {
    let data = model
        .varmap()
        .data()
        .lock()
        .map_err(|_| ModelError::InvalidInput("VarMap lock poisoned".into()))?;
    let mut out = HashMap::new();
    for spec in keys::param_specs(model.config()) {
        let var = data.get(&spec.name).ok_or_else(|| {
            ModelError::InvalidInput(format!("model has no parameter `{}`", spec.name))
        })?;
        let t = var
            .as_tensor()
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?
            .copy()?;
        out.insert(spec.name, t);
    }
    let lm_head = out
        .get(WORD_EMBEDDINGS_KEY)
        .ok_or_else(|| ModelError::InvalidInput(format!("model has no `{WORD_EMBEDDINGS_KEY}`")))?
        .copy()?;
    out.insert(LM_HEAD_KEY.to_string(), lm_head);
    out.insert(CAUSAL_BUFFER_KEY.to_string(), causal_buffer()?);
    Ok(out)
}

/// Write `model.safetensors` + `config.json` into `dir` (created if needed). The weights hold
/// all state-dict keys of §4.6, so `Seq2Seq.load_state_dict(strict=True)` accepts them.
pub fn save_checkpoint(model: &Seq2Seq, dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        error: source,
    })?;
    model.config().save(dir.join("config.json"))?;
    save_weights(model, dir.join("model.safetensors"))
}

/// Write only the safetensors weights file.
pub fn save_weights(model: &Seq2Seq, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = state_dict(model)?;
    write_safetensors(&tensors, path)
}

/// Writes `tensors` as a safetensors file with the permissions any new file of this process
/// gets (the umask's). Candle's writer goes through the safetensors crate, which creates an
/// owner-only temporary file and renames it, so weights would be unreadable to the group and
/// others where `config.json` beside them is not. Errors name `path`.
pub fn write_safetensors<K: AsRef<str> + Ord + std::fmt::Display>(
    tensors: &HashMap<K, Tensor>,
    path: &Path,
) -> Result<()> {
    let cannot_write = |e: &dyn std::fmt::Display| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    };
    candle_core::safetensors::save(tensors, path).map_err(|e| cannot_write(&e))?;
    let usual = new_file_permissions(path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| cannot_write(&e))?;
    std::fs::set_permissions(path, usual).map_err(|e| cannot_write(&e))
}

/// The permissions a file created in `dir` by this process gets (probed: the umask cannot
/// be read without changing it).
fn new_file_permissions(dir: &Path) -> std::io::Result<std::fs::Permissions> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let probe = dir.join(format!(".permissions-probe-{}", std::process::id()));
    let created = std::fs::File::create(&probe).and_then(|f| f.metadata());
    let _ = std::fs::remove_file(&probe);
    Ok(created?.permissions())
}
