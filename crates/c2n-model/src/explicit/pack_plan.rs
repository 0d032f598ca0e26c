//! Which weights the training pass packs into one buffer per step, and in what order.
//!
//! In bf16 every weight and bias of a linear layer (and the word embeddings, for the tied LM
//! head) is needed in bf16: all of them, model order. In f32 only the encoder's query, key and
//! value weights and biases need a copy (stacked for the one packed GEMM). Either way each
//! encoder layer's query, key and value weights come side by side, then their biases, so the
//! stacked group is a view of the buffer.

use candle_core::{DType, Tensor};

use crate::layers::Packing;
use crate::Seq2Seq;

/// Whether the pass packs its weights, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackPolicy {
    /// The CUDA pack kernel where it applies; otherwise per-weight casts as needed.
    Auto,
    /// Pack with this, whatever the device (tests compare the paths on the CPU).
    #[cfg_attr(not(test), allow(dead_code))]
    Force(Packing),
}

impl PackPolicy {
    /// How `parts` are packed into `dtype`, or `None` for no packing.
    pub(crate) fn resolve(self, parts: &[&Tensor], dtype: DType) -> Option<Packing> {
        match self {
            PackPolicy::Auto => {
                (Packing::for_parts(parts, dtype) == Packing::Kernel).then_some(Packing::Kernel)
            }
            PackPolicy::Force(how) => Some(how),
        }
    }
}

/// The parameters to pack for a pass in `dtype`, in buffer order.
pub(crate) fn weights_to_pack(model: &Seq2Seq, dtype: DType) -> Vec<&Tensor> {
    let all = model.embeddings().word_embeddings().dtype() != dtype;
    let mut out = Vec::new();
    for layer in &model.encoder.layers {
        let qkv = [&layer.query, &layer.key, &layer.value];
        out.extend(qkv.iter().map(|l| l.weight()));
        out.extend(qkv.iter().filter_map(|l| l.bias()));
        if all {
            for linear in [&layer.attn_out, &layer.intermediate, &layer.output] {
                out.push(linear.weight());
                out.extend(linear.bias());
            }
        }
    }
    if !all {
        return out;
    }
    for layer in &model.decoder {
        for attention in [&layer.self_attn, &layer.cross_attn] {
            out.push(&attention.in_proj_weight);
            out.push(&attention.in_proj_bias);
            out.push(attention.out.weight());
            out.extend(attention.out.bias());
        }
        for linear in [&layer.linear1, &layer.linear2] {
            out.push(linear.weight());
            out.extend(linear.bias());
        }
    }
    out.push(model.dense.weight());
    out.extend(model.dense.bias());
    out.push(model.embeddings().word_embeddings());
    out
}
