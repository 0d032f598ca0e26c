//! Dropout that is active only in training mode.

use candle_core::Tensor;

/// Inverted dropout with probability `p` when `train`, identity otherwise.
pub fn dropout(x: &Tensor, p: f32, train: bool) -> candle_core::Result<Tensor> {
    if train && p > 0.0 {
        candle_nn::ops::dropout(x, p)
    } else {
        Ok(x.clone())
    }
}
