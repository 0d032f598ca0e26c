//! Decoder layers (`nn.TransformerDecoderLayer`, post-norm): forward with saved tensors,
//! explicit backward.
//!
//! The packed `in_proj` of each attention block runs as one GEMM per input: `[q k v]` of the
//! self-attention from `x`, `[k v]` of the cross-attention from the memory (and `q` from `x`),
//! and their weight gradients come back as one GEMM each.

use candle_core::{Tensor, D};

use super::attention::{merge_parts, projection_heads, Attention, AttentionSpec};
use super::blocks::{linear_back, packed_linear_back, packed_rows, Keep};
use super::casts::WeightCasts;
use super::encoder::need;
use super::feed_forward::{activation_dropout_back, linear_activation_dropout};
use super::param_grads::ParamGrads;
use super::residual::{add_norm_back, linear_dropout_add_norm, Upstream};
use crate::decoder::{DecoderLayer, MultiheadAttention};
use crate::layers::closed_form_math::Scaling;
use crate::Result;

/// What one decoder layer's backward needs.
pub(super) struct DecoderLayerTape {
    x: Tensor,
    self_attention: Attention,
    self_context: Tensor,
    self_keep: Keep,
    self_sum: Tensor,
    x1: Tensor,
    cross_attention: Attention,
    cross_context: Tensor,
    cross_keep: Keep,
    cross_sum: Tensor,
    x2: Tensor,
    pre_activation: Tensor,
    mid_keep: Keep,
    mid: Tensor,
    out_keep: Keep,
    out_sum: Tensor,
}

fn spec(block: &MultiheadAttention, train: bool) -> AttentionSpec {
    AttentionSpec {
        scaling: Scaling::new(Some(block.scale), None),
        dropout_p: block.dropout_p,
        train,
    }
}

/// One decoder layer (as `DecoderLayer::forward`): `x [n, T, H]`, `memory [n, S, H]`.
pub(super) fn decoder_layer_forward(
    layer: &DecoderLayer,
    x: &Tensor,
    memory: &Tensor,
    causal: &Tensor,
    memory_mask: &Tensor,
    train: bool,
    casts: &mut WeightCasts,
) -> Result<(Tensor, DecoderLayerTape)> {
    let h = x.dim(D::Minus1)?;
    let sa = &layer.self_attn;
    let (w, b) = packed_rows(&sa.in_proj_weight, &sa.in_proj_bias, (0, 3 * h), casts)?;
    let [q, k, v] = projection_heads::<3>(x, &w, Some(&b), sa.heads)?;
    let (self_context, self_attention) =
        Attention::forward_heads(q, k, v, Some(causal), spec(sa, train))?;
    let (self_sum, x1, self_keep) = linear_dropout_add_norm(
        &sa.out,
        &self_context,
        x,
        layer.dropout_p,
        train,
        &layer.norm1,
        casts,
    )?;

    let ca = &layer.cross_attn;
    let (wq, bq) = packed_rows(&ca.in_proj_weight, &ca.in_proj_bias, (0, h), casts)?;
    let (wkv, bkv) = packed_rows(&ca.in_proj_weight, &ca.in_proj_bias, (h, 2 * h), casts)?;
    let [q] = projection_heads::<1>(&x1, &wq, Some(&bq), ca.heads)?;
    let [k, v] = projection_heads::<2>(memory, &wkv, Some(&bkv), ca.heads)?;
    let (cross_context, cross_attention) =
        Attention::forward_heads(q, k, v, Some(memory_mask), spec(ca, train))?;
    let (cross_sum, x2, cross_keep) = linear_dropout_add_norm(
        &ca.out,
        &cross_context,
        &x1,
        layer.dropout_p,
        train,
        &layer.norm2,
        casts,
    )?;

    let (pre_activation, mid, mid_keep) = linear_activation_dropout(
        &layer.linear1,
        &x2,
        layer.act,
        layer.dropout_p,
        train,
        casts,
    )?;
    let (out_sum, y, out_keep) = linear_dropout_add_norm(
        &layer.linear2,
        &mid,
        &x2,
        layer.dropout_p,
        train,
        &layer.norm3,
        casts,
    )?;
    let tape = DecoderLayerTape {
        x: x.clone(),
        self_attention,
        self_context,
        self_keep,
        self_sum,
        x1,
        cross_attention,
        cross_context,
        cross_keep,
        cross_sum,
        x2,
        pre_activation,
        mid_keep,
        mid,
        out_keep,
        out_sum,
    };
    Ok((y, tape))
}

/// Backward of [`decoder_layer_forward`]: the layer's parameter gradients into `grads`;
/// returns `(dx, d_memory)` (`dx` a sum not yet added).
pub(super) fn decoder_layer_backward(
    layer: &DecoderLayer,
    tape: &DecoderLayerTape,
    memory: &Tensor,
    grad: Upstream,
    casts: &mut WeightCasts,
    grads: &mut ParamGrads,
) -> Result<(Upstream, Tensor)> {
    let h = tape.x.dim(D::Minus1)?;
    // Feed-forward block.
    let (d_out_sum, d_out) =
        add_norm_back(&layer.norm3, &tape.out_sum, grad, &tape.out_keep, grads)?;
    let d_mid = need(linear_back(
        &layer.linear2,
        &tape.mid,
        &d_out,
        true,
        casts,
        grads,
    )?)?;
    let d_pre = activation_dropout_back(&tape.pre_activation, layer.act, d_mid, &tape.mid_keep)?;
    let d_x2 = need(linear_back(
        &layer.linear1,
        &tape.x2,
        &d_pre,
        true,
        casts,
        grads,
    )?)?;

    // Cross-attention block.
    let ca = &layer.cross_attn;
    let (d_cross_sum, d_ca) = add_norm_back(
        &layer.norm2,
        &tape.cross_sum,
        Upstream::sum(d_x2, d_out_sum),
        &tape.cross_keep,
        grads,
    )?;
    let d_cross_context = need(linear_back(
        &ca.out,
        &tape.cross_context,
        &d_ca,
        true,
        casts,
        grads,
    )?)?;
    let (dq, dk, dv) = tape.cross_attention.backward(&d_cross_context)?;
    let dq = merge_parts(&[&dq])?;
    let (d_x1_q, dw_q, db_q) =
        packed_linear_back(&ca.in_proj_weight, (0, h), &tape.x1, &dq, casts)?;
    let d_kv = merge_parts(&[&dk, &dv])?;
    let (d_memory, dw_kv, db_kv) =
        packed_linear_back(&ca.in_proj_weight, (h, 2 * h), memory, &d_kv, casts)?;
    grads.add_only(&ca.in_proj_weight, Tensor::cat(&[&dw_q, &dw_kv], 0)?)?;
    grads.add(&ca.in_proj_bias, Tensor::cat(&[&db_q, &db_kv], 0)?)?;

    // Self-attention block.
    let sa = &layer.self_attn;
    let (d_self_sum, d_sa) = add_norm_back(
        &layer.norm1,
        &tape.self_sum,
        Upstream::sum(d_cross_sum, d_x1_q),
        &tape.self_keep,
        grads,
    )?;
    let d_self_context = need(linear_back(
        &sa.out,
        &tape.self_context,
        &d_sa,
        true,
        casts,
        grads,
    )?)?;
    let (dq, dk, dv) = tape.self_attention.backward(&d_self_context)?;
    let d_qkv = merge_parts(&[&dq, &dk, &dv])?;
    let (d_x_qkv, dw, db) =
        packed_linear_back(&sa.in_proj_weight, (0, 3 * h), &tape.x, &d_qkv, casts)?;
    grads.add_only(&sa.in_proj_weight, dw)?;
    grads.add(&sa.in_proj_bias, db)?;
    Ok((Upstream::sum(d_self_sum, d_x_qkv), d_memory))
}
