//! Copying checkpoint tensors into the model's Vars, with shape checks and clear errors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use candle_nn::VarMap;

use crate::{ModelError, Result};

/// Set Var `var_name` of `varmap` from `value` (converted to f32), checking the shape against
/// the Var; errors name `key` as it appears in `path`.
pub(crate) fn assign(
    varmap: &VarMap,
    var_name: &str,
    key: &str,
    value: &Tensor,
    path: &Path,
) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::InvalidInput("VarMap lock poisoned".into()))?;
    let var = data.get(var_name).ok_or_else(|| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("model has no parameter `{var_name}` for key `{key}`"),
    })?;
    if var.dims() != value.dims() {
        return Err(ModelError::ShapeMismatch {
            path: path.to_path_buf(),
            key: key.to_string(),
            expected: var.dims().to_vec(),
            found: value.dims().to_vec(),
        });
    }
    if !value.dtype().is_float() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "key `{key}` has dtype {:?}, expected a float type",
                value.dtype()
            ),
        });
    }
    let value = value
        .to_dtype(DType::F32)?
        .to_device(var.device())?
        .contiguous()?;
    var.set(&value)?;
    Ok(())
}

/// Take `key` out of `tensors` or fail with [`ModelError::MissingKey`].
pub(crate) fn take(
    tensors: &mut HashMap<String, Tensor>,
    key: &str,
    path: &Path,
) -> Result<Tensor> {
    tensors.remove(key).ok_or_else(|| ModelError::MissingKey {
        path: path.to_path_buf(),
        key: key.to_string(),
    })
}
