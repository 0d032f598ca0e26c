//! Reading a whole tensor file: safetensors or a zip-format `torch.save` state dict.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{ModelError, Result};

/// What a weights file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorFileFormat {
    /// `*.safetensors`.
    Safetensors,
    /// A `torch.save` file in the zip format of torch ≥ 1.6.
    TorchZip,
}

/// The hint for users with a torch < 1.6 checkpoint.
pub const LEGACY_TORCH_HINT: &str = "this is a legacy (pre-1.6, non-zip) torch.save file, which \
    cannot be read; convert it once with PyTorch: \
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
        source,
    })?;
    let read = file.read(&mut head).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let head = &head[..read];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(TensorFileFormat::TorchZip);
    }
    // safetensors: u64 little-endian header length, then a JSON object.
    if head.len() == 9 && head[8] == b'{' {
        return Ok(TensorFileFormat::Safetensors);
    }
    // A legacy torch.save file is a bare pickle: PROTO opcode 0x80, then the protocol number.
    if head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        return Err(checkpoint_error(path, LEGACY_TORCH_HINT));
    }
    Err(checkpoint_error(
        path,
        "unknown weights format (expected safetensors or a zip-format torch.save file)",
    ))
}

/// Read every tensor of `path` onto the CPU, by name.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let wrap = |e: candle_core::Error| checkpoint_error(path, e.to_string());
    match detect_format(path)? {
        TensorFileFormat::Safetensors => {
            candle_core::safetensors::load(path, &Device::Cpu).map_err(wrap)
        }
        TensorFileFormat::TorchZip => Ok(candle_core::pickle::read_all(path)
            .map_err(wrap)?
            .into_iter()
            .collect()),
    }
}
