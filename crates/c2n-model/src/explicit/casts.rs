//! Weights in the compute dtype, cast once per training pass.
//!
//! In bf16 every linear layer needs its f32 weight as bf16 twice (forward and backward). Like
//! the weight cache of PyTorch's autocast, the pass casts each weight on first use and both
//! directions read that copy: one cast kernel per weight and step instead of two. In f32 it
//! holds nothing (a detached view is the weight).

use std::collections::HashMap;

use candle_core::{DType, Tensor, TensorId};

/// Detached weights in the compute dtype, by parameter.
pub(crate) struct WeightCasts {
    dtype: DType,
    by_param: HashMap<TensorId, Tensor>,
}

impl WeightCasts {
    pub(crate) fn new(dtype: DType) -> Self {
        Self {
            dtype,
            by_param: HashMap::new(),
        }
    }

    /// `param` detached and in the compute dtype (cast once, then reused).
    pub(crate) fn get(&mut self, param: &Tensor) -> candle_core::Result<Tensor> {
        if param.dtype() == self.dtype {
            return Ok(param.detach());
        }
        if let Some(cast) = self.by_param.get(&param.id()) {
            return Ok(cast.clone());
        }
        let cast = param.detach().to_dtype(self.dtype)?;
        self.by_param.insert(param.id(), cast.clone());
        Ok(cast)
    }

    /// Weights cast so far (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_param.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn casts_once_per_weight_and_passes_matching_dtypes_through() {
        let w = Var::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
        let mut bf16 = WeightCasts::new(DType::BF16);
        let a = bf16.get(w.as_tensor()).unwrap();
        let b = bf16.get(w.as_tensor()).unwrap();
        assert_eq!(
            (a.dtype(), a.id()),
            (DType::BF16, b.id()),
            "the same copy twice"
        );
        assert!(!a.track_op());
        assert_eq!(bf16.len(), 1);
        let mut f32s = WeightCasts::new(DType::F32);
        let c = f32s.get(w.as_tensor()).unwrap();
        assert_eq!(
            (c.dtype(), f32s.len()),
            (DType::F32, 0),
            "nothing cached in f32"
        );
        assert!(!c.track_op());
    }
}
