//! The thin Candle adapter: tensors ↔ flat f32 buffers, bucketed gradient sync on a `GradStore`, and the
//! initial weight broadcast.
//!
//! Buckets are built as 1-D tensors on the gradients' own device and reduced with
//! [`Communicator::all_reduce_tensor`], so a GPU backend never copies gradients to the host, while host
//! backends take the default round trip.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use super::{BucketPlan, CommError, CommResult, Communicator, ReduceOp, WIRE_DTYPE};

/// Copies a tensor of any shape and dtype into a flat f32 vector (row-major).
pub fn tensor_to_vec(t: &Tensor) -> CommResult<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(WIRE_DTYPE)?.to_vec1::<f32>()?)
}

/// Builds a tensor with `like`'s shape, dtype and device from a flat f32 vector.
pub fn vec_to_tensor(values: Vec<f32>, like: &Tensor) -> CommResult<Tensor> {
    if values.len() != like.elem_count() {
        return Err(CommError::InvalidInput(format!(
            "{} values for a tensor of shape {:?}",
            values.len(),
            like.dims()
        )));
    }
    Ok(Tensor::from_vec(values, like.shape(), like.device())?.to_dtype(like.dtype())?)
}

/// Scales the named gradients by `scale`, SUM-all-reduces them bucket by bucket on their device, and
/// replaces each map entry with the reduced gradient (same shape, dtype, device).
///
/// The map must hold exactly the plan's names with the planned element counts.
pub fn sync_tensor_grads(
    comm: &(impl Communicator + ?Sized),
    plan: &BucketPlan,
    grads: &mut BTreeMap<String, Tensor>,
    scale: f32,
) -> CommResult<()> {
    let missing: Vec<&String> = plan
        .names()
        .iter()
        .filter(|n| !grads.contains_key(*n))
        .collect();
    if !missing.is_empty() || grads.len() != plan.names().len() {
        let unknown: Vec<&String> = grads.keys().filter(|k| !plan.names().contains(k)).collect();
        return Err(CommError::InvalidInput(format!(
            "gradient names differ from the plan: missing {missing:?}, unknown {unknown:?}"
        )));
    }
    let originals: Vec<Tensor> = plan.names().iter().map(|n| grads[n].clone()).collect();
    for (i, t) in originals.iter().enumerate() {
        if t.elem_count() != plan.lens()[i] {
            return Err(CommError::InvalidInput(format!(
                "gradient `{}` has {} elements, the plan says {}",
                plan.names()[i],
                t.elem_count(),
                plan.lens()[i]
            )));
        }
    }
    if comm.world_size() == 1 && scale == 1.0 {
        return Ok(());
    }
    let mut pending: Vec<Vec<Tensor>> = vec![Vec::new(); originals.len()];
    for b in 0..plan.num_buckets() {
        let segments = plan.segments(b);
        let pieces = segments
            .iter()
            .map(|s| {
                let flat = originals[s.param].flatten_all()?.to_dtype(WIRE_DTYPE)?;
                flat.narrow(0, s.in_param.start, s.in_param.len())
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let bucket = Tensor::cat(&pieces, 0)?;
        // An empty shard contributes zeros, even if its gradient is 0/0 = NaN.
        let bucket = if scale == 0.0 {
            bucket.zeros_like()?
        } else if scale == 1.0 {
            bucket
        } else {
            bucket.affine(f64::from(scale), 0.0)?
        };
        let reduced = comm.all_reduce_tensor(&bucket, ReduceOp::Sum)?;
        for s in &segments {
            pending[s.param].push(reduced.narrow(0, s.in_bucket.start, s.in_bucket.len())?);
            if s.in_param.end == plan.lens()[s.param] {
                let parts = std::mem::take(&mut pending[s.param]);
                let flat = if parts.len() == 1 {
                    parts.into_iter().next().unwrap_or_else(|| unreachable!())
                } else {
                    Tensor::cat(&parts, 0)?
                };
                let original = &originals[s.param];
                let restored = flat.reshape(original.shape())?.to_dtype(original.dtype())?;
                grads.insert(plan.names()[s.param].clone(), restored);
            }
        }
    }
    Ok(())
}

/// Synchronizes the gradients of `vars` held in `store`: a variable without a gradient on this rank
/// counts as zeros (it may still get one from other ranks), and every variable has a gradient afterwards.
///
/// Typical use after `let mut store = loss.backward()?`:
/// `sync_grad_store(comm, &plan, &vars, &mut store, stats.grad_scale)?`, then clip and step.
pub fn sync_grad_store<'a>(
    comm: &(impl Communicator + ?Sized),
    plan: &BucketPlan,
    vars: impl IntoIterator<Item = (&'a str, &'a Var)>,
    store: &mut GradStore,
    scale: f32,
) -> CommResult<()> {
    let vars: Vec<(&str, &Var)> = vars.into_iter().collect();
    let mut grads = BTreeMap::new();
    for (name, var) in &vars {
        let grad = match store.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        if grads.insert(name.to_string(), grad).is_some() {
            return Err(CommError::InvalidInput(format!(
                "variable `{name}` given twice"
            )));
        }
    }
    sync_tensor_grads(comm, plan, &mut grads, scale)?;
    for (name, var) in vars {
        if let Some(grad) = grads.remove(name) {
            store.insert(var.as_tensor(), grad);
        }
    }
    Ok(())
}

/// A gradient store with no variable gradients, for a rank whose shard is empty this step
/// (`GradStore::new` is private in Candle; the backward of a constant yields an equivalent store).
pub fn empty_grad_store(device: &candle_core::Device) -> CommResult<GradStore> {
    Ok(Tensor::new(0f32, device)?.backward()?)
}

/// Overwrites every variable with rank 0's value, in sorted-name order, so that all replicas start
/// from identical weights.
pub fn broadcast_vars<'a>(
    comm: &(impl Communicator + ?Sized),
    vars: impl IntoIterator<Item = (&'a str, &'a Var)>,
) -> CommResult<()> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    let mut vars: Vec<(&str, &Var)> = vars.into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(b.0));
    for (_, var) in vars {
        let value = comm.broadcast_tensor(var.as_tensor())?;
        if comm.rank() != 0 {
            var.set(&value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::SingleComm;
    use candle_core::{DType, Device};

    #[test]
    fn round_trip_keeps_shape_dtype_and_values() {
        let t = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let v = tensor_to_vec(&t).unwrap();
        assert_eq!(v, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let back = vec_to_tensor(v, &t).unwrap();
        assert_eq!((back.dims(), back.dtype()), (t.dims(), DType::F64));
        assert!(vec_to_tensor(vec![1.0], &t).is_err());
    }

    #[test]
    fn tensor_sync_scales_across_bucket_boundaries() {
        // 6 + 4 elements in buckets of 3: "a" spans two buckets, "b" spans two.
        let dev = Device::Cpu;
        let plan = BucketPlan::new([("a", 6), ("b", 4)], 12).unwrap();
        let a = Tensor::arange(0f32, 6.0, &dev)
            .unwrap()
            .reshape((3, 2))
            .unwrap();
        let b = Tensor::ones(4, DType::F32, &dev).unwrap();
        let mut grads = BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]);
        sync_tensor_grads(&SingleComm, &plan, &mut grads, 2.0).unwrap();
        assert_eq!(grads["a"].dims(), &[3, 2]);
        assert_eq!(
            grads["a"].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(grads["b"].to_vec1::<f32>().unwrap(), vec![2.0; 4]);
    }
}
