//! Many tensors flattened, converted and laid back to back in one new 1-D tensor.
//!
//! The explicit training pass needs, every step, a bf16 copy of each weight, the encoder's
//! query, key and value weights stacked, and each bf16 weight gradient in f32. As tensor ops
//! that is one cast or copy per tensor — about 400 launches and allocations per step at
//! CodeBERT size, each of which costs a GPU a fixed dispatch time. [`pack`] does them all in
//! one: the CUDA kernel (`kernels/pack.cu`, on unless `C2N_CUDA_FEWER_LAUNCHES=0`) where it
//! applies, per-part casts and one `cat` elsewhere (same values: the conversions round to
//! nearest even either way).

use candle_core::{DType, Tensor};

/// How [`pack`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// One launch of the CUDA pack kernel.
    Kernel,
    /// Per-part casts and one `cat` (any device).
    TensorOps,
}

impl Packing {
    /// The kernel where it applies to `parts` (CUDA, switch on), else tensor ops.
    pub(crate) fn for_parts(parts: &[&Tensor], dtype: DType) -> Self {
        #[cfg(feature = "cuda")]
        if super::pack_cuda::usable(parts, dtype) {
            return Self::Kernel;
        }
        let _ = (parts, dtype);
        Self::TensorOps
    }
}

/// `parts` flattened, converted to `dtype` and laid back to back: `[Σ elements]`.
pub(crate) fn pack(parts: &[&Tensor], dtype: DType, how: Packing) -> candle_core::Result<Tensor> {
    match how {
        #[cfg(feature = "cuda")]
        Packing::Kernel => super::pack_cuda::pack(parts, dtype),
        #[cfg(not(feature = "cuda"))]
        Packing::Kernel => Err(candle_core::Error::Msg(
            "the pack kernel needs the `cuda` feature".into(),
        )),
        Packing::TensorOps => {
            let flat = parts
                .iter()
                .map(|p| super::cast(&p.flatten_all()?, dtype))
                .collect::<candle_core::Result<Vec<_>>>()?;
            if flat.is_empty() {
                return Err(candle_core::Error::Msg("pack: no parts".into()));
            }
            Tensor::cat(&flat, 0)
        }
    }
}

/// Views of `packed` (as [`pack`] made it from parts of these shapes), one per part.
pub(crate) fn unpack(
    packed: &Tensor,
    shapes: &[&candle_core::Shape],
) -> candle_core::Result<Vec<Tensor>> {
    let mut offset = 0;
    shapes
        .iter()
        .map(|shape| {
            let n = shape.elem_count();
            let view = packed.narrow(0, offset, n)?.reshape(*shape)?;
            offset += n;
            Ok(view)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn packs_parts_in_order_and_unpacks_them_as_views() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1.0f32, 2.5], [3.0, 1.0 / 3.0]], &dev).unwrap();
        let b = Tensor::new(&[7.0f32, -0.1, 1e-3], &dev).unwrap();
        let packed = pack(&[&a, &b], DType::BF16, Packing::TensorOps).unwrap();
        assert_eq!((packed.dims(), packed.dtype()), (&[7][..], DType::BF16));
        let want: Vec<f32> = [a.flatten_all().unwrap(), b.clone()]
            .iter()
            .flat_map(|t| {
                t.to_dtype(DType::BF16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect();
        let got = packed
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, want, "each part cast as to_dtype casts it");
        let views = unpack(&packed, &[a.shape(), b.shape()]).unwrap();
        assert_eq!(views[0].dims(), a.dims());
        assert_eq!(views[1].dims(), b.dims());
        assert_eq!(
            views[1]
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            want[4..]
        );
        assert_eq!(
            Packing::for_parts(&[&a, &b], DType::BF16),
            Packing::TensorOps
        );
    }
}
