//! Building blocks written from primitive Candle ops, so that every parameter gets a gradient.
//!
//! Candle's fused `layer_norm`, `softmax_last_dim` and `sdpa` have no backward pass (see
//! `docs/candle-notes.md`); the fused ops here ([`softmax_last_dim`], [`LayerNorm`]) launch the
//! same kernels but define their own backward, and each keeps its primitive-op formulation
//! behind a switch as the reference it is tested against. Every layer computes in the dtype of its
//! input (weights are cast on the fly, a no-op for f32), while LayerNorm statistics and
//! attention softmax always run in f32.

mod activation;
#[cfg(feature = "cuda")]
pub(crate) mod add_norm_cuda;
mod attention;
mod attention_op;
#[cfg(feature = "cuda")]
pub(crate) mod attention_probs_cuda;
#[cfg(feature = "cuda")]
pub(crate) mod bias_activation_cuda;
mod closed_form;
#[cfg(feature = "cuda")]
pub(crate) mod column_sum_cuda;
mod dropout;
#[cfg(feature = "cuda")]
pub(crate) mod dropout_cuda;
mod dropout_rng;
mod dropout_seed;
#[cfg(feature = "cuda")]
pub(crate) mod gelu_cuda;
mod grad_mode;
#[cfg(feature = "cuda")]
pub(crate) mod heads_cuda;
mod layer_norm;
#[cfg(feature = "cuda")]
pub(crate) mod layer_norm_cuda;
mod layer_norm_op;
mod linear;
mod linear_op;
mod pack;
#[cfg(feature = "cuda")]
pub(crate) mod pack_cuda;
mod softmax;
mod token_nll;

pub use activation::{apply_activation, apply_activation_with};
pub use attention::{attend, attend_heads, merge_heads, split_heads, AttendOptions};
pub use dropout::{apply_keep_mask, dropout};
#[cfg(feature = "cuda")]
pub(crate) use dropout_rng::next_dropout_seed;
pub use dropout_rng::{dropout_mask_from_seed, dropout_uniform};
// The training kernels themselves, for `device check-kernels` and benchmarks.
#[cfg(feature = "cuda")]
pub use add_norm_cuda::dropout_add_layer_norm as cuda_dropout_add_layer_norm;
#[cfg(feature = "cuda")]
pub use attention_probs_cuda::{
    probabilities as cuda_attention_probabilities,
    probabilities_backward as cuda_attention_probabilities_backward,
};
#[cfg(feature = "cuda")]
pub use bias_activation_cuda::{
    bias_activation_dropout as cuda_bias_activation_dropout,
    dropout_relu_backward as cuda_dropout_relu_backward,
};
#[cfg(feature = "cuda")]
pub use column_sum_cuda::column_sum as cuda_column_sum;
#[cfg(feature = "cuda")]
pub use dropout_cuda::dropout as cuda_dropout;
pub use dropout_seed::{
    dropout_seed_stream, seeded_dropout, DropoutSeedStreamGuard, SeededDropoutGuard,
};
#[cfg(feature = "cuda")]
pub use gelu_cuda::gelu_backward as cuda_gelu_backward;
pub use grad_mode::{gradients_enabled, no_grad, param, NoGradGuard};
#[cfg(feature = "cuda")]
pub use heads_cuda::{merge_heads as cuda_merge_heads, split_heads as cuda_split_heads};
pub use layer_norm::LayerNorm;
pub use layer_norm_op::layer_norm_grads_ops;
#[cfg(feature = "cuda")]
pub use layer_norm_op::{layer_norm_grads_cuda, layer_norm_grads_fused_cuda};
pub use linear::Linear;
pub(crate) use pack::{pack, unpack, Packing};
#[cfg(feature = "cuda")]
pub use pack_cuda::pack as cuda_pack;
pub use softmax::softmax_last_dim;
pub use token_nll::{token_mean, token_nll};

use candle_core::{DType, Tensor};

/// The closed-form ops' math as plain functions, for the explicit backward pass.
pub(crate) mod closed_form_math {
    pub(crate) use super::activation::{activation_grad, plain as plain_activation};
    pub(crate) use super::attention_op::{
        attention_grads, attention_value, probabilities, AttentionSaved, Scaling,
    };
    pub(crate) use super::closed_form::GradWants;
    pub(crate) use super::dropout::keep_mask;
    pub(crate) use super::layer_norm::fused_layer_norm;
    pub(crate) use super::layer_norm_op::layer_norm_grads;
    pub(crate) use super::linear_op::{linear_grads_in, linear_grads_typed, linear_value};
    pub(crate) use super::token_nll::{token_nll_grad, token_nll_value};
}

/// `t` in `dtype`, without a copy when it already is.
pub(crate) fn cast(t: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if t.dtype() == dtype {
        Ok(t.clone())
    } else {
        t.to_dtype(dtype)
    }
}
