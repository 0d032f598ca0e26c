//! Parameter gradients accumulated by the explicit backward pass.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId};

use crate::layers::{pack, unpack, Packing};

/// Gradients by parameter: the first contribution is moved in, later ones are added (no
/// zero tensor is allocated to start an accumulation).
#[derive(Default)]
pub(crate) struct ParamGrads {
    by_param: HashMap<TensorId, (Tensor, Tensor)>,
    /// Weight gradients still in the compute dtype (bf16), in arrival order, cast to their
    /// parameters' dtype together by [`into_grad_store`](Self::into_grad_store).
    deferred: Vec<(Tensor, Tensor)>,
    /// How the deferred casts run: `None` one cast each, else all in one [`pack`].
    packing: Option<Packing>,
}

impl ParamGrads {
    /// Gradients whose deferred casts run as `packing` says (`None`: one cast each).
    pub(crate) fn new(packing: Option<Packing>) -> Self {
        Self {
            packing,
            ..Self::default()
        }
    }

    /// Add `grad` to the gradient of `param` (a Var's tensor; shapes must agree).
    pub(crate) fn add(&mut self, param: &Tensor, grad: Tensor) -> candle_core::Result<()> {
        check_shape(param, &grad)?;
        match self.by_param.get_mut(&param.id()) {
            Some((_, sum)) => *sum = (&*sum + &grad)?,
            None => {
                self.by_param.insert(param.id(), (param.clone(), grad));
            }
        }
        Ok(())
    }

    /// The only contribution to `param`'s gradient, possibly in another dtype than `param`:
    /// then its cast waits for [`into_grad_store`](Self::into_grad_store), which casts all such
    /// gradients at once. For parameters that get no other contribution (linear weights).
    pub(crate) fn add_only(&mut self, param: &Tensor, grad: Tensor) -> candle_core::Result<()> {
        if grad.dtype() == param.dtype() {
            return self.add(param, grad);
        }
        check_shape(param, &grad)?;
        self.deferred.push((param.clone(), grad));
        Ok(())
    }

    /// A Candle gradient store holding these gradients (what `loss.backward()` returns).
    pub(crate) fn into_grad_store(mut self) -> candle_core::Result<GradStore> {
        let deferred = std::mem::take(&mut self.deferred);
        if let Some((first, _)) = deferred.first() {
            let dtype = first.dtype();
            let same_dtype = deferred.iter().all(|(p, _)| p.dtype() == dtype);
            let packed = match self.packing {
                Some(how) if same_dtype && usable(how) => {
                    // The pack kernel reads contiguous ranges (a no-op for GEMM outputs).
                    let grads = deferred
                        .iter()
                        .map(|(_, g)| g.contiguous())
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    let grads: Vec<&Tensor> = grads.iter().collect();
                    match pack(&grads, dtype, how) {
                        Ok(packed) => Some(packed),
                        Err(e) if how == Packing::Kernel => {
                            crate::cuda_fewer_launches_failed("pack", &e);
                            None
                        }
                        Err(e) => return Err(e),
                    }
                }
                _ => None,
            };
            match packed {
                Some(packed) => {
                    let shapes: Vec<_> = deferred.iter().map(|(p, _)| p.shape()).collect();
                    let views = unpack(&packed, &shapes)?;
                    for ((param, _), grad) in deferred.iter().zip(views) {
                        self.add(param, grad)?;
                    }
                }
                None => {
                    for (param, grad) in &deferred {
                        self.add(param, grad.to_dtype(param.dtype())?)?;
                    }
                }
            }
        }
        let mut store = GradStore::default();
        for (param, grad) in self.by_param.into_values() {
            store.insert(&param, grad);
        }
        Ok(store)
    }
}

fn check_shape(param: &Tensor, grad: &Tensor) -> candle_core::Result<()> {
    if grad.dims() != param.dims() {
        return Err(candle_core::Error::Msg(format!(
            "explicit backward: gradient {:?} for a parameter of shape {:?}",
            grad.dims(),
            param.dims()
        )));
    }
    Ok(())
}

/// Whether packing `how` may run: the kernel only while it has not failed in this process.
fn usable(how: Packing) -> bool {
    how != Packing::Kernel || crate::cuda_fewer_launches_for("pack")
}
