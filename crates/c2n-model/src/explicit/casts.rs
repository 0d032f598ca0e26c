//! Weights in the compute dtype, cast once per training pass.
//!
//! In bf16 every linear layer needs its f32 weight as bf16 twice (forward and backward). Like
//! the weight cache of PyTorch's autocast, the pass casts each weight on first use and both
//! directions read that copy: one cast kernel per weight and step instead of two. In f32 it
//! holds nothing (a detached view is the weight).

use std::collections::HashMap;

use candle_core::{DType, Tensor, TensorId};

use crate::layers::{cast, Linear};

/// Detached weights in the compute dtype, by parameter.
pub(crate) struct WeightCasts {
    dtype: DType,
    by_param: HashMap<TensorId, Tensor>,
    /// Packed weights and biases of layer groups, by the group's first weight.
    grouped: HashMap<TensorId, (Tensor, Option<Tensor>)>,
}

impl WeightCasts {
    pub(crate) fn new(dtype: DType) -> Self {
        Self {
            dtype,
            by_param: HashMap::new(),
            grouped: HashMap::new(),
        }
    }

    /// The weights `[Σ out, in]` and biases `[Σ out]` of `layers` (same input width; all with
    /// a bias or none), stacked in order, detached and in the compute dtype: made once per pass
    /// (concatenated in the master dtype, then cast once), then reused by both directions.
    pub(crate) fn grouped(
        &mut self,
        layers: &[&Linear],
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let first = layers
            .first()
            .ok_or_else(|| candle_core::Error::Msg("an empty layer group".into()))?;
        if let Some(done) = self.grouped.get(&first.weight().id()) {
            return Ok(done.clone());
        }
        let with_bias = layers.iter().filter(|l| l.bias().is_some()).count();
        if with_bias != 0 && with_bias != layers.len() {
            return Err(candle_core::Error::Msg(
                "a layer group mixes layers with and without a bias".into(),
            ));
        }
        let weights: Vec<Tensor> = layers.iter().map(|l| l.weight().detach()).collect();
        let weight = cast(&Tensor::cat(&weights, 0)?, self.dtype)?;
        let bias = if with_bias == 0 {
            None
        } else {
            let biases: Vec<Tensor> = layers
                .iter()
                .filter_map(|l| l.bias().map(Tensor::detach))
                .collect();
            Some(cast(&Tensor::cat(&biases, 0)?, self.dtype)?)
        };
        let done = (weight, bias);
        self.grouped.insert(first.weight().id(), done.clone());
        Ok(done)
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

    #[test]
    fn groups_stack_weights_and_biases_once_per_pass() {
        let dev = Device::Cpu;
        let layer = |v: f32| {
            Linear::new(
                Tensor::full(v, (2, 3), &dev).unwrap(),
                Some(Tensor::full(v, 2, &dev).unwrap()),
            )
        };
        let (a, b) = (layer(1.0), layer(2.0));
        let mut casts = WeightCasts::new(DType::BF16);
        let (w, bias) = casts.grouped(&[&a, &b]).unwrap();
        assert_eq!((w.dims(), w.dtype()), (&[4, 3][..], DType::BF16));
        let rows: Vec<f32> = w
            .to_dtype(DType::F32)
            .unwrap()
            .sum(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(rows, [3.0, 3.0, 6.0, 6.0], "a's rows, then b's");
        let bias = bias.expect("both layers have a bias");
        assert_eq!(
            bias.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 1.0, 2.0, 2.0]
        );
        let (again, _) = casts.grouped(&[&a, &b]).unwrap();
        assert_eq!(again.id(), w.id(), "made once, then reused");

        let no_bias = Linear::new(Tensor::ones((2, 3), DType::F32, &dev).unwrap(), None);
        let err = casts.grouped(&[&no_bias, &a]).unwrap_err();
        assert!(err.to_string().contains("with and without a bias"), "{err}");
        assert!(casts.grouped(&[]).is_err());
    }
}
