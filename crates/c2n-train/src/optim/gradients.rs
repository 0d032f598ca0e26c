//! Gradients by parameter name: accumulation over micro-batches, scaling, clipping.

use super::NamedParams;
use crate::{Result, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// Gradients keyed by parameter name. A parameter that took no part in the loss has no
/// entry (PyTorch's `grad is None`), which the optimizer treats as "skip entirely".
#[derive(Debug, Clone, Default)]
pub struct Gradients {
    by_name: BTreeMap<String, Tensor>,
}

impl Gradients {
    /// An empty set (after `zero_grad`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks the gradients of `params` out of a Candle `GradStore`.
    pub fn from_grad_store(params: &NamedParams, store: &GradStore) -> Self {
        let by_name = params
            .iter()
            .filter_map(|(name, var)| {
                store
                    .get(var.as_tensor())
                    .map(|g| (name.to_string(), g.detach()))
            })
            .collect();
        Self { by_name }
    }

    /// Inserts or replaces one gradient.
    pub fn insert(&mut self, name: impl Into<String>, grad: Tensor) {
        self.by_name.insert(name.into(), grad);
    }

    /// The gradient of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.by_name.get(name)
    }

    /// Names and gradients in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.by_name.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no parameter has a gradient (nothing accumulated yet).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Adds another micro-batch's gradients (PyTorch accumulates `.grad` the same way).
    pub fn accumulate(&mut self, other: Gradients) -> Result<()> {
        for (name, grad) in other.by_name {
            let merged = match self.by_name.remove(&name) {
                Some(old) => old.add(&grad)?,
                None => grad,
            };
            self.by_name.insert(name, merged);
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for grad in self.by_name.values_mut() {
            *grad = grad.affine(factor, 0.0)?;
        }
        Ok(())
    }

    /// Sets the given rows of a 2-D gradient to zero, e.g. row 1 of the position table,
    /// which `padding_idx = 1` keeps at zero gradient in PyTorch (spec §4.5).
    /// Do not use this for the tied word embedding: its row 1 legitimately receives the
    /// LM head's gradient; the model must stop the pad-row gradient at the lookup instead.
    pub fn zero_rows(&mut self, name: &str, rows: &[usize]) -> Result<()> {
        let Some(grad) = self.by_name.get(name) else {
            return Ok(());
        };
        let (n_rows, _) = grad.dims2()?;
        if let Some(bad) = rows.iter().find(|&&r| r >= n_rows) {
            return Err(TrainError::InvalidInput(format!(
                "row {bad} out of range for `{name}` with {n_rows} rows"
            )));
        }
        let mut keep = vec![1f32; n_rows];
        for &r in rows {
            keep[r] = 0.0;
        }
        let keep = Tensor::from_vec(keep, (n_rows, 1), grad.device())?.to_dtype(grad.dtype())?;
        let zeroed = grad.broadcast_mul(&keep)?;
        self.by_name.insert(name.to_string(), zeroed);
        Ok(())
    }

    /// The global L2 norm over all gradients, accumulated in f64.
    pub fn global_norm(&self) -> Result<f64> {
        let mut sum = 0f64;
        for grad in self.by_name.values() {
            let sq = grad
                .to_dtype(DType::F32)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f32>()?;
            sum += f64::from(sq);
        }
        Ok(sum.sqrt())
    }

    /// `torch.nn.utils.clip_grad_norm_`: when the global norm exceeds `max_norm`, scale all
    /// gradients by `max_norm / (norm + 1e-6)`. Returns the norm before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            self.scale(coef)?;
        }
        Ok(norm)
    }

    /// Drops all gradients (`zero_grad`).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    /// Moves the gradients out as a name → tensor map (for saving pending accumulation).
    pub fn into_map(self) -> BTreeMap<String, Tensor> {
        self.by_name
    }

    /// Builds from a name → tensor map.
    pub fn from_map(by_name: BTreeMap<String, Tensor>) -> Self {
        Self { by_name }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn grad_store_without_a_parameter_gives_no_entry() -> Result<()> {
        let dev = Device::Cpu;
        let used = Var::new(&[1f32, 2.0], &dev)?;
        let unused = Var::new(&[3f32], &dev)?;
        let params = NamedParams::new([("a".into(), used.clone()), ("pooler".into(), unused)])?;
        let loss = used.as_tensor().sqr()?.sum_all()?;
        let grads = Gradients::from_grad_store(&params, &loss.backward()?);
        assert_eq!(grads.len(), 1);
        assert!(grads.get("pooler").is_none());
        assert_eq!(grads.get("a").unwrap().to_vec1::<f32>()?, vec![2.0, 4.0]);
        Ok(())
    }

    #[test]
    fn accumulate_zero_rows_and_clip() -> Result<()> {
        let dev = Device::Cpu;
        let mut g = Gradients::new();
        g.insert("w", Tensor::new(&[[1f32, 1.0], [2.0, 2.0]], &dev)?);
        let mut other = Gradients::new();
        other.insert("w", Tensor::new(&[[1f32, 1.0], [1.0, 1.0]], &dev)?);
        g.accumulate(other)?;
        g.zero_rows("w", &[0])?;
        assert_eq!(
            g.get("w").unwrap().to_vec2::<f32>()?,
            vec![vec![0.0, 0.0], vec![3.0, 3.0]]
        );
        let norm = g.clip_global_norm(1.0)?;
        assert!((norm - 18f64.sqrt()).abs() < 1e-6);
        assert!((g.global_norm()? - 1.0).abs() < 1e-5);
        assert!(g.zero_rows("w", &[2]).is_err());
        Ok(())
    }
}
