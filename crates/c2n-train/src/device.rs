//! Picking the compute device from a config string, with a clear error when it is missing.

use crate::config::Precision;
use crate::{Result, TrainError};
use candle_core::{DType, Device};

/// `auto` (CUDA 0 when this build has CUDA and a GPU answers, else CPU), `cpu`, `cuda`
/// or `cuda:N`.
pub fn select_device(spec: &str) -> Result<Device> {
    let unavailable = |reason: String| TrainError::Device {
        requested: spec.to_string(),
        reason,
    };
    match spec.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0).or(Ok(Device::Cpu))
            } else {
                Ok(Device::Cpu)
            }
        }
        other => {
            let ordinal = match other.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| unavailable("expected auto, cpu, cuda or cuda:N".into()))?,
                None => return Err(unavailable("expected auto, cpu, cuda or cuda:N".into())),
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(unavailable(
                    "this build has no CUDA support (rebuild with `--features cuda`)".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| unavailable(e.to_string()))
        }
    }
}

/// Applies `precision` to the process (TF32 GEMMs on CUDA) and returns the activation dtype.
pub fn apply_precision(precision: Precision, device: &Device) -> DType {
    if device.is_cuda() {
        candle_core::cuda::set_gemm_reduced_precision_f32(precision == Precision::Tf32);
    }
    match precision {
        Precision::F32 | Precision::Tf32 => DType::F32,
        Precision::Bf16 => DType::BF16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_works_and_bad_specs_name_themselves() {
        assert!(select_device("cpu").unwrap().is_cpu());
        assert!(select_device("auto").is_ok());
        let err = select_device("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu"), "{err}");
        if !candle_core::utils::cuda_is_available() {
            let err = select_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
