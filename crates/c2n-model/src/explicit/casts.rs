//! Weights in the compute dtype, cast once per training pass.
//!
//! In bf16 every linear layer needs its f32 weight as bf16 twice (forward and backward). Like
//! the weight cache of PyTorch's autocast, the pass casts each weight on first use and both
//! directions read that copy: one cast kernel per weight and step instead of two. In f32 it
//! holds nothing (a detached view is the weight), except stacked layer groups.
//!
//! With [`WeightCasts::prepack`] (the CUDA pack kernel, on unless `C2N_CUDA_FEWER_LAUNCHES=0`) the pass
//! instead casts every weight it will use into one buffer with one launch, in an order that
//! puts each group's weights side by side, so [`WeightCasts::get`] and
//! [`WeightCasts::grouped`] hand out views of it: no cast or copy per weight at all.

use std::collections::HashMap;

use candle_core::{DType, Tensor, TensorId};

use crate::layers::{cast, pack, Linear, Packing};

/// Detached weights in the compute dtype, by parameter.
pub(crate) struct WeightCasts {
    dtype: DType,
    by_param: HashMap<TensorId, Tensor>,
    /// Packed weights and biases of layer groups, by the group's first weight.
    grouped: HashMap<TensorId, (Tensor, Option<Tensor>)>,
    /// The buffer of [`prepack`](Self::prepack) and where each of its parameters starts.
    prepacked: Option<(Tensor, HashMap<TensorId, usize>)>,
}

impl WeightCasts {
    pub(crate) fn new(dtype: DType) -> Self {
        Self {
            dtype,
            by_param: HashMap::new(),
            grouped: HashMap::new(),
            prepacked: None,
        }
    }

    /// Casts (or copies, in f32) `params` into one buffer in the compute dtype, back to back
    /// in this order, `how` says with what; later requests for them are views of it.
    pub(crate) fn prepack(&mut self, params: &[&Tensor], how: Packing) -> candle_core::Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        let detached: Vec<Tensor> = params.iter().map(|p| p.detach()).collect();
        let refs: Vec<&Tensor> = detached.iter().collect();
        let buffer = match pack(&refs, self.dtype, how) {
            Ok(buffer) => buffer,
            // The pack kernel failed: cast on demand, as without it.
            Err(e) if how == Packing::Kernel => {
                crate::cuda_fewer_launches_failed("pack", &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut starts = HashMap::with_capacity(params.len());
        let mut offset = 0;
        for p in params {
            starts.insert(p.id(), offset);
            offset += p.elem_count();
        }
        self.prepacked = Some((buffer, starts));
        Ok(())
    }

    /// The view of the prepacked buffer holding `params` back to back, if it does.
    fn prepacked_run(&self, params: &[&Tensor]) -> candle_core::Result<Option<Tensor>> {
        let Some((buffer, starts)) = &self.prepacked else {
            return Ok(None);
        };
        let Some(&first) = params.first().and_then(|p| starts.get(&p.id())) else {
            return Ok(None);
        };
        let mut end = first;
        for p in params {
            if starts.get(&p.id()) != Some(&end) {
                return Ok(None);
            }
            end += p.elem_count();
        }
        Ok(Some(buffer.narrow(0, first, end - first)?))
    }

    /// The weights `[Σ out, in]` and biases `[Σ out]` of `layers` (same input width; all with
    /// a bias or none), stacked in order, detached and in the compute dtype: made once per pass
    /// (a view of the prepacked buffer, or concatenated in the master dtype and cast once),
    /// then reused by both directions.
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
        let weights: Vec<&Tensor> = layers.iter().map(|l| l.weight()).collect();
        let rows = weights
            .iter()
            .map(|w| w.dim(0))
            .sum::<candle_core::Result<usize>>()?;
        let width = first.weight().dim(1)?;
        let weight = self.stacked(&weights)?.reshape((rows, width))?;
        let bias = if with_bias == 0 {
            None
        } else {
            let biases: Vec<&Tensor> = layers.iter().filter_map(|l| l.bias()).collect();
            Some(self.stacked(&biases)?)
        };
        let done = (weight, bias);
        self.grouped.insert(first.weight().id(), done.clone());
        Ok(done)
    }

    /// `params` flattened and concatenated, in the compute dtype.
    fn stacked(&self, params: &[&Tensor]) -> candle_core::Result<Tensor> {
        if let Some(view) = self.prepacked_run(params)? {
            return Ok(view);
        }
        let flat = params
            .iter()
            .map(|p| p.detach().flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        cast(&Tensor::cat(&flat, 0)?, self.dtype)
    }

    /// `param` detached and in the compute dtype (cast once, then reused).
    pub(crate) fn get(&mut self, param: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(cast) = self.by_param.get(&param.id()) {
            return Ok(cast.clone());
        }
        let cast = match self.prepacked_run(&[param])? {
            Some(view) => view.reshape(param.shape())?,
            None if param.dtype() == self.dtype => return Ok(param.detach()),
            None => param.detach().to_dtype(self.dtype)?,
        };
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

    #[test]
    fn prepacked_weights_are_served_as_views_with_the_same_values() {
        let dev = Device::Cpu;
        let layer = |salt: f32| {
            let w = Tensor::arange(0f32, 6.0, &dev)
                .unwrap()
                .affine(0.37, salt as f64)
                .unwrap()
                .reshape((2, 3))
                .unwrap();
            let b = Tensor::new(&[salt, -salt / 3.0], &dev).unwrap();
            Linear::new(w, Some(b))
        };
        let (a, b, c) = (layer(0.1), layer(0.2), layer(0.3));
        let values = |t: &Tensor| {
            t.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let mut plain = WeightCasts::new(DType::BF16);
        let mut packed = WeightCasts::new(DType::BF16);
        // a and b side by side (weights, then biases), c's weight apart.
        let order = [
            a.weight(),
            b.weight(),
            a.bias().unwrap(),
            b.bias().unwrap(),
            c.weight(),
        ];
        packed.prepack(&order, Packing::TensorOps).unwrap();
        let (pw, pb) = packed.grouped(&[&a, &b]).unwrap();
        let (w, bias) = plain.grouped(&[&a, &b]).unwrap();
        assert_eq!(pw.dims(), w.dims());
        assert_eq!(values(&pw), values(&w));
        assert_eq!(values(&pb.unwrap()), values(&bias.unwrap()));
        let got = packed.get(c.weight()).unwrap();
        assert_eq!((got.dims(), got.dtype()), (c.weight().dims(), DType::BF16));
        assert_eq!(values(&got), values(&plain.get(c.weight()).unwrap()));
        // Not adjacent in the buffer (b before a): stacked by cat, same values.
        let (ba, _) = packed.grouped(&[&b, &a]).unwrap();
        let (want, _) = plain.grouped(&[&b, &a]).unwrap();
        assert_eq!(values(&ba), values(&want));
        // Not prepacked at all: cast on demand.
        let d = layer(0.4);
        assert_eq!(
            values(&packed.get(d.bias().unwrap()).unwrap()),
            values(&plain.get(d.bias().unwrap()).unwrap())
        );
    }
}
