//! `tanh(dense(x))`, the tied LM head at the active positions and the token-mean loss:
//! forward with saved tensors, explicit backward.

use candle_core::{DType, Tensor};

use super::blocks::{in_dtype, linear, linear_back};
use super::casts::WeightCasts;
use super::encoder::need;
use super::param_grads::ParamGrads;
use crate::layers::closed_form_math::{
    linear_grads_in, linear_value, token_nll_grad, token_nll_value, GradWants,
};
use crate::seq2seq::ActivePositions;
use crate::{LossOutput, Result, Seq2Seq};

/// What the head's backward needs.
pub(super) struct HeadTape {
    hidden: Tensor,
    activated: Tensor,
    active: Tensor,
    logits: Tensor,
    positions: ActivePositions,
}

/// The §5 loss from the decoder output `hidden [n, T, H]`.
pub(super) fn head_forward(
    model: &Seq2Seq,
    hidden: &Tensor,
    positions: ActivePositions,
    casts: &mut WeightCasts,
) -> Result<(LossOutput, HeadTape)> {
    let (n, t, h) = hidden.dims3()?;
    let activated = linear(&model.dense, hidden, casts)?.tanh()?;
    let active = activated
        .reshape((n * t, h))?
        .index_select(&positions.rows, 0)?;
    let word = model.embeddings().word_embeddings();
    let logits = in_dtype(&linear_value(&active, &casts.get(word)?, None)?, DType::F32)?;
    let nll = token_nll_value(&logits, &positions.gold)?;
    let loss = crate::layers::token_mean(&nll.sum_all()?, positions.count)?;
    let loss_sum = (&loss * positions.count as f64)?;
    let output = LossOutput {
        loss,
        loss_sum,
        n_active: positions.count,
    };
    let tape = HeadTape {
        hidden: hidden.clone(),
        activated,
        active,
        logits,
        positions,
    };
    Ok((output, tape))
}

/// Backward of [`head_forward`] for `d_loss = ∂objective/∂loss`: dense and tied-embedding
/// gradients into `grads`; returns the gradient of the decoder output.
pub(super) fn head_backward(
    model: &Seq2Seq,
    tape: &HeadTape,
    d_loss: f64,
    casts: &mut WeightCasts,
    grads: &mut ParamGrads,
) -> Result<Tensor> {
    let (n, t, h) = tape.hidden.dims3()?;
    let count = tape.positions.count;
    // loss = Σ nll / N: every row's nll gets d_loss / N, the one f32 division the graph's
    // `div` backward computes (IEEE division is the same on host and device).
    let d_nll = Tensor::full(
        d_loss as f32 / count as f32,
        (count, 1),
        tape.logits.device(),
    )?;
    let d_logits = token_nll_grad(&tape.logits, &tape.positions.gold, &d_nll)?;
    let d_logits = in_dtype(&d_logits, tape.active.dtype())?;
    let word = model.embeddings().word_embeddings();
    let wants = GradWants {
        input: true,
        weight: true,
        bias: false,
    };
    let (d_active, d_word, _) = linear_grads_in(
        &tape.active,
        &casts.get(word)?,
        &d_logits,
        wants,
        word.dtype(),
    )?;
    grads.add(word, need(d_word)?)?;
    let d_activated = tape
        .activated
        .reshape((n * t, h))?
        .zeros_like()?
        .index_add(&tape.positions.rows, &need(d_active)?, 0)?
        .reshape((n, t, h))?;
    // tanh′ = 1 − tanh².
    let d_dense = (d_activated * tape.activated.sqr()?.affine(-1.0, 1.0)?)?;
    need(linear_back(
        &model.dense,
        &tape.hidden,
        &d_dense,
        true,
        casts,
        grads,
    )?)
}
