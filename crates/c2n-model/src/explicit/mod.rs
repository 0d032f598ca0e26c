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

mod attention;
mod blocks;
mod casts;
mod decoder;
mod encoder;
mod feed_forward;
mod head;
mod pack_plan;
mod param_grads;
mod residual;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

use casts::WeightCasts;
use decoder::{decoder_layer_backward, decoder_layer_forward, DecoderLayerTape};
use encoder::{
    embeddings_backward, embeddings_forward, encoder_layer_backward, encoder_layer_forward,
    EmbeddingsTape, EncoderLayerTape,
};
use head::{head_backward, head_forward, HeadTape};
use pack_plan::{weights_to_pack, PackPolicy};
use param_grads::ParamGrads;
use residual::Upstream;

use crate::layers::Packing;

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
    /// How the backward pass casts its bf16 weight gradients (`None`: one cast each).
    grad_packing: Option<Packing>,
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
        self.training_pass_packed(inputs, source_mask, train, PackPolicy::Auto)
    }

    /// [`training_pass_with`](Self::training_pass_with) packing weights (and weight
    /// gradients) as `policy` says.
    pub(crate) fn training_pass_packed(
        &self,
        inputs: LossInputs,
        source_mask: &Tensor,
        train: bool,
        policy: PackPolicy,
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
        let to_pack = weights_to_pack(self, dtype);
        let weight_packing = policy.resolve(&to_pack, dtype);
        if let Some(how) = weight_packing {
            casts.prepack(&to_pack, how)?;
        }
        // The bf16 weight gradients are packed into f32 the same way.
        let grad_packing = weight_packing.filter(|_| dtype != DType::F32);

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
            grad_packing,
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
            grad_packing,
        } = self;
        drop(output);
        let mut grads = ParamGrads::new(grad_packing);
        let head_grad = head_backward(model, &head, d_loss, &mut casts, &mut grads)?;
        let mut g = Upstream::one(head_grad);
        drop(head);
        let mut d_memory: Option<Tensor> = None;
        for (layer, tape) in model.decoder.iter().zip(decoder).rev() {
            let (dx, dm) =
                decoder_layer_backward(layer, &tape, &memory, g, &mut casts, &mut grads)?;
            d_memory = Some(match d_memory {
                Some(sum) => (sum + dm)?,
                None => dm,
            });
            g = dx;
        }
        embeddings_backward(model.embeddings(), &target, &g.into_tensor()?, &mut grads)?;
        drop(target);
        let mut g = Upstream::one(d_memory.ok_or_else(|| {
            ModelError::InvalidInput("explicit backward: the model has no decoder layer".into())
        })?);
        for (layer, tape) in model.encoder.layers.iter().zip(encoder).rev() {
            g = encoder_layer_backward(layer, &tape, g, &mut casts, &mut grads)?;
        }
        embeddings_backward(model.embeddings(), &source, &g.into_tensor()?, &mut grads)?;
        Ok(grads.into_grad_store()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;
    use candle_core::Device;
    use candle_nn::VarMap;

    /// Packing the weights (and, in bf16, the weight gradients) into one buffer changes no
    /// value: same loss, every gradient bit for bit, in f32 and bf16, with dropout.
    #[test]
    fn packed_weights_give_the_same_loss_and_gradients() {
        let dev = Device::Cpu;
        let cfg = ModelConfig {
            init_seed: 5,
            ..ModelConfig::small()
        };
        let source = Tensor::new(&[[0u32, 41, 52, 9, 2], [0, 13, 2, 1, 1]], &dev).unwrap();
        let source_mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &dev).unwrap();
        let target = Tensor::new(&[[0u32, 31, 6, 2], [0, 95, 2, 1]], &dev).unwrap();
        let target_mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &dev).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let vars = VarMap::new();
            let model = Seq2Seq::new(&cfg, &vars, &dev)
                .unwrap()
                .with_compute_dtype(dtype);
            let run = |policy: PackPolicy| {
                let _seed = crate::layers::seeded_dropout(3);
                let inputs = model
                    .loss_inputs(&source, &source_mask, &target, &target_mask)
                    .unwrap();
                let pass = model
                    .training_pass_packed(inputs, &source_mask, true, policy)
                    .unwrap();
                let loss = pass.output().loss.to_scalar::<f32>().unwrap();
                (loss, pass.backward(1.0).unwrap())
            };
            let (plain_loss, plain) = run(PackPolicy::Auto);
            let (packed_loss, packed) = run(PackPolicy::Force(Packing::TensorOps));
            assert_eq!(plain_loss, packed_loss, "{dtype:?}");
            let mut compared = 0;
            for var in vars.all_vars() {
                let (a, b) = (plain.get(var.as_tensor()), packed.get(var.as_tensor()));
                let (Some(a), Some(b)) = (a, b) else {
                    assert!(
                        a.is_none() && b.is_none(),
                        "{dtype:?}: gradient on one path only"
                    );
                    continue;
                };
                assert_eq!(a.dtype(), b.dtype());
                let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(values(a), values(b), "{dtype:?}: {:?}", var.shape());
                compared += 1;
            }
            assert!(compared > 40, "{dtype:?}: only {compared} gradients");
        }
    }
}
