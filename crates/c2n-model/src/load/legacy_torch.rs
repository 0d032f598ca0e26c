//! Reading the legacy (torch < 1.6, non-zip) `torch.save` format, which torch 1.4 — the
//! reference's version — writes (§4.6), and which pretrained files from that era may use.
//!
//! Layout: five pickles back to back — the magic number, the protocol version, a `sys_info`
//! dict, the object (a state dict whose tensors name their storages by key), and the list of
//! storage keys — followed by each storage in that order as an `int64` element count and the
//! raw little-endian data. Candle's pickle machine parses the pickles; the magic-number pickle
//! (an 80-bit integer Candle cannot hold) is checked byte for byte instead.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{Device, Tensor};

use crate::{ModelError, Result};

/// `\x80\x02` (PROTO 2), `\x8a\x0a` (LONG1, 10 bytes), the magic number, `.` (STOP).
const MAGIC_PICKLE: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
];

/// True when `head` starts like a legacy torch file.
pub(crate) fn is_legacy_torch(head: &[u8]) -> bool {
    head.len() >= 4 && head[..4] == MAGIC_PICKLE[..4]
}

fn err(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("legacy torch file: {message}"),
    }
}

fn next_pickle(cursor: &mut Cursor<&[u8]>, path: &Path, what: &str) -> Result<Object> {
    let mut stack = Stack::empty();
    stack
        .read_loop(cursor)
        .map_err(|e| err(path, format!("cannot parse the {what} pickle: {e}")))?;
    stack
        .finalize()
        .map_err(|e| err(path, format!("cannot parse the {what} pickle: {e}")))
}

/// Read every tensor of a legacy `torch.save` state dict onto the CPU.
pub(crate) fn read_legacy_torch(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    if !bytes.starts_with(&MAGIC_PICKLE) {
        return Err(err(path, "bad magic number"));
    }
    let mut cursor = Cursor::new(&bytes[..]);
    cursor.set_position(MAGIC_PICKLE.len() as u64);
    next_pickle(&mut cursor, path, "protocol version")?;
    next_pickle(&mut cursor, path, "sys_info")?;
    let state = next_pickle(&mut cursor, path, "state dict")?;
    let keys = next_pickle(&mut cursor, path, "storage keys")?;

    let keys: Vec<String> = match keys {
        Object::List(items) => items
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|o| err(path, format!("storage key {o:?}")))
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(err(
                path,
                format!("expected a list of storage keys, got {other:?}"),
            ))
        }
    };
    let entries = match state {
        Object::Dict(entries) => entries,
        _ => return Err(err(path, "the saved object is not a state dict")),
    };
    let mut infos = Vec::new();
    for (name, value) in entries {
        let info = value
            .into_tensor_info(name, Path::new(""))
            .map_err(|e| err(path, e))?;
        infos.extend(info);
    }
    // Each storage's element size comes from the tensors that view it.
    let storage_key = |info: &TensorInfo| info.path.trim_start_matches('/').to_string();
    let mut elem_size: HashMap<String, usize> = HashMap::new();
    for info in &infos {
        elem_size.insert(storage_key(info), info.dtype.size_in_bytes());
    }
    // Storages follow the pickles in the order of `keys`: int64 element count, then the data.
    let mut pos = cursor.position() as usize;
    let mut storages: HashMap<String, (usize, usize)> = HashMap::new(); // key → byte range
    for key in keys {
        let truncated = || err(path, format!("storage `{key}` is truncated"));
        let count_bytes = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| err(path, format!("truncated before storage `{key}`")))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(count_bytes);
        let size = elem_size
            .get(&key)
            .ok_or_else(|| err(path, format!("storage `{key}` is used by no tensor")))?;
        let start = pos + 8;
        // The count comes from the file: a damaged one must not overflow the arithmetic.
        let len = usize::try_from(u64::from_le_bytes(count))
            .ok()
            .and_then(|count| count.checked_mul(*size))
            .ok_or_else(truncated)?;
        let end = start.checked_add(len).ok_or_else(truncated)?;
        if end > bytes.len() {
            return Err(truncated());
        }
        storages.insert(key, (start, len));
        pos = end;
    }
    let mut out = HashMap::new();
    for info in infos {
        let key = storage_key(&info);
        let &(start, len) = storages.get(&key).ok_or_else(|| {
            err(
                path,
                format!("tensor `{}` uses unknown storage `{key}`", info.name),
            )
        })?;
        let tensor = tensor_from_storage(&bytes[start..start + len], &info)
            .map_err(|e| err(path, format!("tensor `{}`: {e}", info.name)))?;
        out.insert(info.name.clone(), tensor);
    }
    Ok(out)
}

/// The tensor `info` describes inside `storage` (contiguous or Fortran-contiguous views only,
/// like Candle's zip reader).
fn tensor_from_storage(storage: &[u8], info: &TensorInfo) -> candle_core::Result<Tensor> {
    let layout = &info.layout;
    let dims = layout.dims().to_vec();
    let size = info.dtype.size_in_bytes();
    let start = layout.start_offset();
    let exceeds = || candle_core::Error::Msg("view exceeds its storage".into());
    let end = layout
        .shape()
        .elem_count()
        .checked_mul(size)
        .and_then(|len| start.checked_add(len))
        .ok_or_else(exceeds)?;
    let data = storage.get(start..end).ok_or_else(exceeds)?;
    let rank = dims.len();
    if layout.is_contiguous() {
        Tensor::from_raw_buffer(data, info.dtype, &dims, &Device::Cpu)
    } else if layout.is_fortran_contiguous() {
        let reversed: Vec<usize> = dims.iter().rev().copied().collect();
        let t = Tensor::from_raw_buffer(data, info.dtype, &reversed, &Device::Cpu)?;
        t.permute((0..rank).rev().collect::<Vec<_>>())?.contiguous()
    } else {
        Err(candle_core::Error::Msg(format!(
            "non-contiguous view {layout:?} is not supported"
        )))
    }
}
