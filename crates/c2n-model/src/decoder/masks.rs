//! The two decoder masks: −10000 causal (§4.4) and −inf memory key padding (§4.3).

use candle_core::{DType, Device, Tensor};

use crate::Result;

/// `[1, 1, L, L]` f32: 0 for `j ≤ i`, −10000 for `j > i`.
pub fn causal_mask(len: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { -10000.0 } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (1, 1, len, len), device)?)
}

/// `[n, 1, 1, S]` f32 from `source_mask [n, S]`: 0 for a real token, −inf for a pad.
pub fn memory_key_padding_mask(source_mask: &Tensor) -> Result<Tensor> {
    let (n, s) = source_mask.dims2()?;
    let is_pad = source_mask.to_dtype(DType::F32)?.eq(0f64)?;
    let neg_inf = Tensor::full(f32::NEG_INFINITY, (n, s), source_mask.device())?;
    let zeros = Tensor::zeros((n, s), DType::F32, source_mask.device())?;
    Ok(is_pad.where_cond(&neg_inf, &zeros)?.reshape((n, 1, 1, s))?)
}
