//! The self-attention cache of incremental decoding, reordered by the beam and grown by one
//! position per step.

use candle_core::Tensor;

use crate::Result;

/// Self-attention keys and values of the positions decoded so far, `[rows, heads, t, d]`.
///
/// [`reorder`](Self::reorder) records which old row each new row continues; the next
/// [`append`](Self::append) applies it together with the new position. On a CUDA device that
/// is one kernel (`kernels/kv_cache_append.cu`) writing the grown cache once, instead of an
/// `index_select` and a `cat` that copy it twice (`C2N_CUDA_DECODE_KERNELS=0` keeps the
/// tensor ops). `keys` and `values` are in the old row order while a reorder is pending.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub keys: Tensor,
    pub values: Tensor,
    /// Old row of every new row (u32, on the cache's device), applied by the next append.
    pending_origin: Option<Tensor>,
}

impl KvCache {
    /// A cache holding `keys`/`values` `[rows, heads, t, d]` in row order.
    pub fn new(keys: Tensor, values: Tensor) -> Self {
        Self {
            keys,
            values,
            pending_origin: None,
        }
    }

    /// New row `i` continues old row `origin[i]` (u32 `[rows']`; each index must be below the
    /// cached rows). Composes with a reorder already pending.
    pub fn reorder(&mut self, origin: &Tensor) -> Result<()> {
        self.pending_origin = Some(match self.pending_origin.take() {
            Some(pending) => pending.index_select(origin, 0)?,
            None => origin.clone(),
        });
        Ok(())
    }

    /// The cache with any pending reorder applied and `keys`/`values` `[rows', heads, 1, d]`
    /// appended as the newest position.
    pub fn append(self, keys: &Tensor, values: &Tensor) -> Result<Self> {
        Ok(Self::new(
            reorder_append(&self.keys, self.pending_origin.as_ref(), keys)?,
            reorder_append(&self.values, self.pending_origin.as_ref(), values)?,
        ))
    }
}

/// `cat([cache.index_select(origin, 0), fresh], 2)`.
fn reorder_append(cache: &Tensor, origin: Option<&Tensor>, fresh: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(origin) = origin {
        if cache.device().is_cuda() && crate::cuda_decode_kernels_enabled() {
            if let Some(grown) = super::kv_append_cuda::reorder_append(cache, origin, fresh)? {
                return Ok(grown);
            }
        }
    }
    let cache = match origin {
        Some(origin) => cache.index_select(origin, 0)?,
        None => cache.clone(),
    };
    Ok(Tensor::cat(&[&cache, fresh], 2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn arange(shape: (usize, usize, usize, usize), start: f32) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::arange(start, start + n as f32, &Device::Cpu)
            .unwrap()
            .reshape(shape)
            .unwrap()
    }

    #[test]
    fn pending_reorders_compose_and_apply_with_the_append() {
        let keys = arange((3, 2, 4, 5), 0.0);
        let values = arange((3, 2, 4, 5), 1000.0);
        let mut cache = KvCache::new(keys.clone(), values.clone());
        let first = Tensor::new(&[2u32, 2, 0, 1], &Device::Cpu).unwrap();
        let second = Tensor::new(&[3u32, 0], &Device::Cpu).unwrap();
        cache.reorder(&first).unwrap();
        cache.reorder(&second).unwrap();
        let (new_k, new_v) = (arange((2, 2, 1, 5), -50.0), arange((2, 2, 1, 5), -90.0));
        let grown = cache.append(&new_k, &new_v).unwrap();
        // Row 0 continues old row first[3] = 1, row 1 continues first[0] = 2.
        let rows = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        let want_k = Tensor::cat(&[&keys.index_select(&rows, 0).unwrap(), &new_k], 2).unwrap();
        let want_v = Tensor::cat(&[&values.index_select(&rows, 0).unwrap(), &new_v], 2).unwrap();
        assert_eq!(grown.keys.dims(), &[2, 2, 5, 5]);
        let same = |a: &Tensor, b: &Tensor| {
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert!(same(&grown.keys, &want_k));
        assert!(same(&grown.values, &want_v));
        // No reorder pending: a plain append.
        let again = grown.clone().append(&new_k, &new_v).unwrap();
        assert!(same(
            &again.keys,
            &Tensor::cat(&[&grown.keys, &new_k], 2).unwrap()
        ));
    }
}
