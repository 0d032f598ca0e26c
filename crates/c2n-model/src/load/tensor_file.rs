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
/// corrupted `torch.save` files, so that panic is caught and reported as the file's error
/// (without the panic message and backtrace the default hook would print first; see
/// `catch_quietly`).
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let format = detect_format(path)?;
    catch_quietly(|| read_format(path, format)).unwrap_or_else(|panic| {
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

thread_local! {
    /// Whether this thread is inside [`catch_quietly`].
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work`, catching a panic without letting the panic hook print it: the caller turns
/// it into an error message of its own. The first call wraps the process's panic hook once
/// (the hook in place then still handles every other panic, on every thread).
fn catch_quietly<T>(work: impl FnOnce() -> T) -> std::thread::Result<T> {
    static WRAP_HOOK: std::sync::Once = std::sync::Once::new();
    WRAP_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was_quiet = QUIET_PANICS.with(|quiet| quiet.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    QUIET_PANICS.with(|quiet| quiet.set(was_quiet));
    result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quietly_caught_panic_comes_back_as_its_payload_and_the_flag_is_restored() {
        let caught = catch_quietly(|| -> u32 { panic!("damaged storage") });
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"damaged storage"));
        assert!(!QUIET_PANICS.with(std::cell::Cell::get));
        assert_eq!(catch_quietly(|| 7).unwrap(), 7);
    }
}
