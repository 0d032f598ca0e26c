//! Parameter gradients accumulated by the explicit backward pass.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId};

/// Gradients by parameter: the first contribution is moved in, later ones are added (no
/// zero tensor is allocated to start an accumulation).
#[derive(Default)]
pub(crate) struct ParamGrads {
    by_param: HashMap<TensorId, (Tensor, Tensor)>,
}

impl ParamGrads {
    /// Add `grad` to the gradient of `param` (a Var's tensor; shapes must agree).
    pub(crate) fn add(&mut self, param: &Tensor, grad: Tensor) -> candle_core::Result<()> {
        if grad.dims() != param.dims() {
            return Err(candle_core::Error::Msg(format!(
                "explicit backward: gradient {:?} for a parameter of shape {:?}",
                grad.dims(),
                param.dims()
            )));
        }
        match self.by_param.get_mut(&param.id()) {
            Some((_, sum)) => *sum = (&*sum + &grad)?,
            None => {
                self.by_param.insert(param.id(), (param.clone(), grad));
            }
        }
        Ok(())
    }

    /// A Candle gradient store holding these gradients (what `loss.backward()` returns).
    pub(crate) fn into_grad_store(self) -> GradStore {
        let mut store = GradStore::default();
        for (param, grad) in self.by_param.into_values() {
            store.insert(&param, grad);
        }
        store
    }
}
