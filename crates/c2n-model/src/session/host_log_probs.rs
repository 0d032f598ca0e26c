//! A step's next-token log-probabilities as one host vector, for beam search on the host.
//!
//! On the CPU Candle runs `log_softmax` (max, subtract, exp, sum, log, subtract) on one
//! thread, and over `rows × V` it takes longer than the LM head's matmul (mid-size model, 320
//! rows: ≈ 200 of a 420 ms step). Rows are independent, so chunks of rows run the very same
//! ops on rayon's threads and are copied straight into their part of the result: every row
//! sees the same values in the same order as in one call, so the result is bit-identical.

use candle_core::{DType, Tensor, D};
use rayon::prelude::*;

use crate::Result;

/// `log_softmax(logits)` over the last dimension of `logits [rows, V]`, row-major on the host.
pub(crate) fn log_probs_to_host(logits: &Tensor) -> Result<Vec<f32>> {
    let (rows, vocab) = logits.dims2()?;
    let parallel = logits.device().is_cpu() && logits.dtype() == DType::F32 && rows > 1;
    if !parallel || vocab == 0 {
        let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        return Ok(log_probs.flatten_all()?.to_vec1::<f32>()?);
    }
    // A few chunks per thread, so an uneven chunk does not hold the others up.
    let chunk_rows = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
    let mut out = vec![0f32; rows * vocab];
    out.par_chunks_mut(chunk_rows * vocab)
        .enumerate()
        .try_for_each(|(i, dst)| -> Result<()> {
            let chunk = logits.narrow(0, i * chunk_rows, dst.len() / vocab)?;
            let log_probs = candle_nn::ops::log_softmax(&chunk, D::Minus1)?;
            dst.copy_from_slice(&log_probs.flatten_all()?.to_vec1::<f32>()?);
            Ok(())
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn chunked_rows_equal_one_call_bit_for_bit() {
        for (rows, vocab) in [(1, 7), (37, 1001), (160, 333)] {
            let logits = Tensor::randn(0f32, 3.0, (rows, vocab), &Device::Cpu).unwrap();
            let whole: Vec<u32> = candle_nn::ops::log_softmax(&logits, D::Minus1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let chunked: Vec<u32> = log_probs_to_host(&logits)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(chunked, whole, "{rows} rows of {vocab}");
        }
    }
}
