//! Reading a whole tensor file: safetensors or a zip-format `torch.save` state dict.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::legacy_torch::{is_legacy_torch, read_legacy_torch};
use crate::{ModelError, Result};

/// What a weights file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorFileFormat {
    /// `*.safetensors`.
    Safetensors,
    /// A `torch.save` file in the zip format of torch ≥ 1.6.
    TorchZip,
    /// A `torch.save` file in the legacy format of torch < 1.6 (what torch 1.4 writes).
    TorchLegacy,
}

/// The hint given when a legacy (torch < 1.6) file cannot be read.
pub const LEGACY_TORCH_HINT: &str = "if this legacy (pre-1.6, non-zip) torch.save file cannot be \
    read here, convert it once with PyTorch: \
    python -c \"import torch,sys; torch.save(torch.load(sys.argv[1], map_location='cpu'), sys.argv[2])\" OLD NEW";

fn checkpoint_error(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Sniff the format from the first bytes of `path`.
pub fn detect_format(path: &Path) -> Result<TensorFileFormat> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    let read = file.read(&mut head).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    let head = &head[..read];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(TensorFileFormat::TorchZip);
    }
    // safetensors: u64 little-endian header length, then a JSON object.
    if head.len() == 9 && head[8] == b'{' {
        return Ok(TensorFileFormat::Safetensors);
    }
    if is_legacy_torch(head) {
        return Ok(TensorFileFormat::TorchLegacy);
    }
    Err(checkpoint_error(
        path,
        "unknown weights format (expected safetensors or a zip-format torch.save file)",
    ))
}

/// Read every tensor of `path` onto the CPU, by name.
///
/// A damaged file is an error, never a panic: Candle's pickle reader can panic on some
/// corrupted `torch.save` files, so that panic is caught and reported as the file's error.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let format = detect_format(path)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_format(path, format)))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the reader failed".to_string());
            Err(checkpoint_error(
                path,
                format!("cannot read this {format:?} file (damaged?): {why}"),
            ))
        })
}

fn read_format(path: &Path, format: TensorFileFormat) -> Result<HashMap<String, Tensor>> {
    let wrap = |e: candle_core::Error| checkpoint_error(path, e.to_string());
    match format {
        TensorFileFormat::Safetensors => {
            candle_core::safetensors::load(path, &Device::Cpu).map_err(wrap)
        }
        TensorFileFormat::TorchZip => Ok(candle_core::pickle::read_all(path)
            .map_err(wrap)?
            .into_iter()
            .collect()),
        TensorFileFormat::TorchLegacy => read_legacy_torch(path).map_err(|e| match e {
            ModelError::Checkpoint { path, message } => ModelError::Checkpoint {
                path,
                message: format!("{message}; {LEGACY_TORCH_HINT}"),
            },
            other => other,
        }),
    }
}
