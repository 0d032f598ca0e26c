//! The training step's backward pass written out: no op graph, no autograd.
//!
//! [`Seq2Seq::training_pass`] runs the forward pass of [`Seq2Seq::forward_loss`] on detached
//! tensors and keeps, per block, only what its backward needs (a layer's inputs, attention
//! probabilities, dropout masks, pre-activations, layer-norm inputs). [`TrainingPass::backward`]
//! then walks the model in reverse with the closed-form gradients of `layers` (the same math
//! as the graph path's closed-form ops) and returns a Candle [`GradStore`], as
//! `loss.backward()` would.
//!
//! Why: Candle's backward pass allocates a zero tensor and runs an add for every edge of the
//! graph, copies each closed-form op's output once in the forward pass, and keeps the graph's
//! bookkeeping per node. Here there is none of that: each parameter gradient is moved into
//! place by its first contribution, the decoder's packed `in_proj` runs as one GEMM per input
//! (`[q k v]` from the same tensor), the encoder's query, key and value projections run as one
//! packed GEMM too (their weights stacked once per pass), packed projections split into heads
//! with one copy, and a training step dispatches far fewer kernels — what a GPU pays for per
//! op, whatever its size.
//!
//! The graph path stays: `forward_loss` + `backward()` is what tests compare this pass against
//! (values and every parameter gradient, dropout included through [`crate::layers::seeded_dropout`]).
//!
//! ```
//! use c2n_model::{ModelConfig, Seq2Seq};
//! use candle_core::{Device, Tensor};
//! use candle_nn::VarMap;
//!
//! let cfg = ModelConfig::small(); // hidden 16, two layers each side
//! let model = Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu)?;
//! let source = Tensor::new(&[[0u32, 5, 6, 2]], &Device::Cpu)?;
//! let target = Tensor::new(&[[0u32, 7, 2]], &Device::Cpu)?;
//! let mask = |t: &Tensor| t.ones_like();
//! let pass = model.training_pass(&source, &mask(&source)?, &target, &mask(&target)?, true)?;
//! let loss = pass.output().loss.to_scalar::<f32>()?;
//! let grads = pass.backward(1.0)?; // as `loss.backward()`
//! assert!(loss > 0.0);
//! assert!(grads.get(model.embeddings().word_embeddings()).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blocks;
mod casts;
mod decoder;
mod encoder;
mod head;
mod param_grads;

use candle_core::backprop::GradStore;
use candle_core::Tensor;

use casts::WeightCasts;
use decoder::{decoder_layer_backward, decoder_layer_forward, DecoderLayerTape};
use encoder::{
    embeddings_backward, embeddings_forward, encoder_layer_backward, encoder_layer_forward,
    EmbeddingsTape, EncoderLayerTape,
};
use head::{head_backward, head_forward, HeadTape};
use param_grads::ParamGrads;

use crate::decoder::{causal_mask, memory_key_padding_mask};
use crate::encoder::mask_term;
use crate::seq2seq::{check_mask_dims, LossInputs};
use crate::{LossOutput, ModelError, Result, Seq2Seq};

/// A forward pass that can run its own backward pass once.
pub struct TrainingPass<'m> {
    model: &'m Seq2Seq,
    output: LossOutput,
    source: EmbeddingsTape,
    encoder: Vec<EncoderLayerTape>,
    memory: Tensor,
    target: EmbeddingsTape,
    decoder: Vec<DecoderLayerTape>,
    head: HeadTape,
    casts: WeightCasts,
}

impl Seq2Seq {
    /// [`forward_loss`](Self::forward_loss) keeping what [`TrainingPass::backward`] needs
    /// (same inputs, same checks, same loss).
    pub fn training_pass(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        target_ids: &Tensor,
        target_mask: &Tensor,
        train: bool,
    ) -> Result<TrainingPass<'_>> {
        let inputs = self.loss_inputs(source_ids, source_mask, target_ids, target_mask)?;
        self.training_pass_with(inputs, source_mask, train)
    }

    /// [`training_pass`](Self::training_pass) from prepared [`LossInputs`] (e.g.
    /// [`Seq2Seq::loss_inputs_from_host`]) and the `[n, S]` source mask.
    pub fn training_pass_with(
        &self,
        inputs: LossInputs,
        source_mask: &Tensor,
        train: bool,
    ) -> Result<TrainingPass<'_>> {
        let LossInputs {
            positions,
            source: source_inputs,
            target: target_inputs,
        } = inputs;
        check_mask_dims(source_mask, source_inputs.dims)?;
        // The masks before any work is queued, so the host never waits mid-step.
        let embeddings = self.embeddings();
        let causal = causal_mask(target_inputs.dims.1, self.device())?;
        let key_mask = mask_term(source_mask)?;
        let memory_mask = memory_key_padding_mask(source_mask)?;
        let dtype = self.compute_dtype();
        let mut casts = WeightCasts::new(dtype);

        let (mut x, source) = embeddings_forward(embeddings, source_inputs, dtype, train)?;
        let mut encoder = Vec::with_capacity(self.encoder.layers.len());
        for layer in &self.encoder.layers {
            let (y, tape) = encoder_layer_forward(layer, &x, &key_mask, train, &mut casts)?;
            encoder.push(tape);
            x = y;
        }
        let memory = x;

        let (mut x, target) = embeddings_forward(embeddings, target_inputs, dtype, train)?;
        let mut decoder = Vec::with_capacity(self.decoder.len());
        for layer in &self.decoder {
            let (y, tape) = decoder_layer_forward(
                layer,
                &x,
                &memory,
                &causal,
                &memory_mask,
                train,
                &mut casts,
            )?;
            decoder.push(tape);
            x = y;
        }
        let (output, head) = head_forward(self, &x, positions, &mut casts)?;
        Ok(TrainingPass {
            model: self,
            output,
            source,
            encoder,
            memory,
            target,
            decoder,
            head,
            casts,
        })
    }
}

impl TrainingPass<'_> {
    /// The loss of this pass (the same as [`Seq2Seq::forward_loss`]'s).
    pub fn output(&self) -> &LossOutput {
        &self.output
    }

    /// The gradients of `d_loss × loss` with respect to every parameter that has one (what
    /// `(loss * d_loss).backward()` returns for the graph path), consuming the pass: each
    /// block's saved tensors are freed as soon as its backward has run.
    pub fn backward(self, d_loss: f64) -> Result<GradStore> {
        let TrainingPass {
            model,
            output,
            source,
            encoder,
            memory,
            target,
            decoder,
            head,
            mut casts,
        } = self;
        drop(output);
        let mut grads = ParamGrads::default();
        let mut g = head_backward(model, &head, d_loss, &mut casts, &mut grads)?;
        drop(head);
        let mut d_memory: Option<Tensor> = None;
        for (layer, tape) in model.decoder.iter().zip(decoder).rev() {
            let (dx, dm) =
                decoder_layer_backward(layer, &tape, &memory, &g, &mut casts, &mut grads)?;
            d_memory = Some(match d_memory {
                Some(sum) => (sum + dm)?,
                None => dm,
            });
            g = dx;
        }
        embeddings_backward(model.embeddings(), &target, &g, &mut grads)?;
        drop(target);
        let mut g = d_memory.ok_or_else(|| {
            ModelError::InvalidInput("explicit backward: the model has no decoder layer".into())
        })?;
        for (layer, tape) in model.encoder.layers.iter().zip(encoder).rev() {
            g = encoder_layer_backward(layer, &tape, &g, &mut casts, &mut grads)?;
        }
        embeddings_backward(model.embeddings(), &source, &g, &mut grads)?;
        Ok(grads.into_grad_store())
    }
}
