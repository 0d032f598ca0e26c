//! Embeddings and encoder layers: forward with saved tensors, explicit backward.

use candle_core::{DType, Tensor};

use super::attention::{merge_parts, projection_heads, Attention, AttentionSpec};
use super::blocks::{
    activation_back, dropout, dropout_back, grouped_linear_back, in_dtype, linear_back, norm,
    norm_back, Keep,
};
use super::casts::WeightCasts;
use super::feed_forward::linear_activation_dropout;
use super::param_grads::ParamGrads;
use super::residual::{add_norm_back, linear_dropout_add_norm, Upstream};
use crate::encoder::{EmbeddingInputs, Embeddings, EncoderLayer};
use crate::layers::closed_form_math::Scaling;
use crate::layers::Linear;
use crate::Result;

/// What the embeddings' backward needs.
pub(super) struct EmbeddingsTape {
    inputs: EmbeddingInputs,
    /// LayerNorm input `[n·L, H]` (f32).
    summed: Tensor,
    keep: Keep,
}

/// `dropout(LayerNorm(word[id] + pos[position] + type[0]))` in `dtype`: `[n, L, H]`.
pub(super) fn embeddings_forward(
    emb: &Embeddings,
    inputs: EmbeddingInputs,
    dtype: DType,
    train: bool,
) -> Result<(Tensor, EmbeddingsTape)> {
    let (n, l) = inputs.dims;
    let h = emb.word.dim(1)?;
    let word = emb.word.detach().index_select(&inputs.ids, 0)?;
    let pos = emb.position.detach().index_select(&inputs.positions, 0)?;
    // (word + pos) + type, in this order (§4.2).
    let summed = (word + pos)?.broadcast_add(&emb.token_type.detach().narrow(0, 0, 1)?)?;
    let normed = norm(&emb.norm, &summed)?.reshape((n, l, h))?;
    let (dropped, keep) = dropout(&normed, emb.dropout_p, train)?;
    let tape = EmbeddingsTape {
        inputs,
        summed,
        keep,
    };
    Ok((in_dtype(&dropped, dtype)?, tape))
}

/// Backward of [`embeddings_forward`]: table, LayerNorm gradients into `grads`. Lookups of the
/// pad id give their rows no gradient (`nn.Embedding(padding_idx)`, §4.5).
pub(super) fn embeddings_backward(
    emb: &Embeddings,
    tape: &EmbeddingsTape,
    grad: &Tensor,
    grads: &mut ParamGrads,
) -> Result<()> {
    let (n, l) = tape.inputs.dims;
    let h = emb.word.dim(1)?;
    let g = dropout_back(in_dtype(grad, DType::F32)?, &tape.keep)?.reshape((n * l, h))?;
    let d_summed = norm_back(&emb.norm, &tape.summed, &g, grads)?;
    grads.add(
        &emb.word,
        table_grad(&emb.word, &tape.inputs.ids, &d_summed, emb.pad_id)?,
    )?;
    grads.add(
        &emb.position,
        table_grad(&emb.position, &tape.inputs.positions, &d_summed, emb.pad_id)?,
    )?;
    let type_rows = emb.token_type.dim(0)?;
    let first = d_summed.sum_keepdim(0)?;
    let d_type = if type_rows == 1 {
        first
    } else {
        Tensor::cat(
            &[&first, &first.zeros_like()?.repeat((type_rows - 1, 1))?],
            0,
        )?
    };
    grads.add(&emb.token_type, d_type)?;
    Ok(())
}

/// The gradient of a lookup table: rows of `grad` summed at `index`, pad lookups excluded.
fn table_grad(table: &Tensor, index: &Tensor, grad: &Tensor, pad_id: u32) -> Result<Tensor> {
    let not_pad = index.ne(pad_id)?.to_dtype(grad.dtype())?.unsqueeze(1)?;
    let kept = grad.broadcast_mul(&not_pad)?;
    Ok(table.zeros_like()?.index_add(index, &kept, 0)?)
}

/// What one encoder layer's backward needs.
pub(super) struct EncoderLayerTape {
    x: Tensor,
    attention: Attention,
    context: Tensor,
    attn_keep: Keep,
    attn_sum: Tensor,
    attn_normed: Tensor,
    pre_activation: Tensor,
    activated: Tensor,
    out_keep: Keep,
    out_sum: Tensor,
}

/// One post-LN encoder layer (as `EncoderLayer::forward`) on `x [n, S, H]`.
pub(super) fn encoder_layer_forward(
    layer: &EncoderLayer,
    x: &Tensor,
    mask_term: &Tensor,
    train: bool,
    casts: &mut WeightCasts,
) -> Result<(Tensor, EncoderLayerTape)> {
    let head_dim = (x.dim(2)? / layer.heads) as f64;
    let spec = AttentionSpec {
        scaling: Scaling::new(None, Some(head_dim.sqrt())),
        dropout_p: layer.attn_dropout,
        train,
    };
    let (weight, bias) = casts.grouped(&qkv_layers(layer))?;
    let [q, k, v] = projection_heads::<3>(x, &weight, bias.as_ref(), layer.heads)?;
    let (context, attention) = Attention::forward_heads(q, k, v, Some(mask_term), spec)?;
    let (attn_sum, attn_normed, attn_keep) = linear_dropout_add_norm(
        &layer.attn_out,
        &context,
        x,
        layer.hidden_dropout,
        train,
        &layer.attn_norm,
        casts,
    )?;
    let (pre_activation, activated, _) = linear_activation_dropout(
        &layer.intermediate,
        &attn_normed,
        layer.act,
        0.0,
        false,
        casts,
    )?;
    let (out_sum, y, out_keep) = linear_dropout_add_norm(
        &layer.output,
        &activated,
        &attn_normed,
        layer.hidden_dropout,
        train,
        &layer.out_norm,
        casts,
    )?;
    let tape = EncoderLayerTape {
        x: x.clone(),
        attention,
        context,
        attn_keep,
        attn_sum,
        attn_normed,
        pre_activation,
        activated,
        out_keep,
        out_sum,
    };
    Ok((y, tape))
}

/// Backward of [`encoder_layer_forward`]: the layer's parameter gradients into `grads`, the
/// input's gradient returned (a sum not yet added).
pub(super) fn encoder_layer_backward(
    layer: &EncoderLayer,
    tape: &EncoderLayerTape,
    grad: Upstream,
    casts: &mut WeightCasts,
    grads: &mut ParamGrads,
) -> Result<Upstream> {
    let (d_out_sum, d_out) =
        add_norm_back(&layer.out_norm, &tape.out_sum, grad, &tape.out_keep, grads)?;
    let d_activated = need(linear_back(
        &layer.output,
        &tape.activated,
        &d_out,
        true,
        casts,
        grads,
    )?)?;
    let d_pre = activation_back(&tape.pre_activation, layer.act, &d_activated)?;
    let d_normed = need(linear_back(
        &layer.intermediate,
        &tape.attn_normed,
        &d_pre,
        true,
        casts,
        grads,
    )?)?;
    let (d_attn_sum, d_attn) = add_norm_back(
        &layer.attn_norm,
        &tape.attn_sum,
        Upstream::sum(d_normed, d_out_sum),
        &tape.attn_keep,
        grads,
    )?;
    let d_context = need(linear_back(
        &layer.attn_out,
        &tape.context,
        &d_attn,
        true,
        casts,
        grads,
    )?)?;
    let (dq, dk, dv) = tape.attention.backward(&d_context)?;
    let d_qkv = merge_parts(&[&dq, &dk, &dv])?;
    drop((dq, dk, dv));
    let dx_qkv = grouped_linear_back(&qkv_layers(layer), &tape.x, &d_qkv, casts, grads)?;
    Ok(Upstream::sum(d_attn_sum, dx_qkv))
}

/// The query, key and value projections, run as one packed projection.
fn qkv_layers(layer: &EncoderLayer) -> [&Linear; 3] {
    [&layer.query, &layer.key, &layer.value]
}

pub(super) fn need(t: Option<Tensor>) -> Result<Tensor> {
    t.ok_or_else(|| {
        crate::ModelError::InvalidInput("explicit backward: an input gradient is missing".into())
    })
}
