//! Feed-forward activations.

use candle_core::Tensor;

use crate::config::Activation;

/// Apply `act` elementwise. GELU is the exact erf form (not the tanh approximation).
pub fn apply_activation(x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    match act {
        Activation::Gelu => x.gelu_erf(),
        Activation::Relu => x.relu(),
    }
}
