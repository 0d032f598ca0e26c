//! # c2n-model
//!
//! The CodeBERT `code2nl` network on Candle: a RoBERTa encoder, a 6-layer Transformer decoder,
//! `tanh(dense)` and an LM head tied to the word embeddings, with the reference's loss,
//! checkpoints in the run.py key layout, and decoding sessions that beam search drives.
//! Numerics follow the project's specification `reference-semantics.md` §4–§6 (outside the
//! repository; `docs/parity.md` says what each § covers in the original scripts) and
//! are checked against a PyTorch reference written from that spec
//! (`tools/reference/c2n_reference`).
//!
//! ## Model
//!
//! [`Seq2Seq`] keeps every parameter in a [`candle_nn::VarMap`] under its code2nl key
//! (`encoder.embeddings.word_embeddings.weight`, `decoder.layers.N.self_attn.in_proj_weight`,
//! `dense.weight`, …; see [`keys`]), so training reads and writes Vars by the names a
//! `pytorch_model.bin` uses. Every layer is differentiable ([`layers`]): every parameter
//! except the (unused) pooler receives a gradient. In training, linear layers, the attention
//! core, activations, dropout and the token NLL are closed-form ops (one graph node each,
//! gradients in closed form) and softmax/LayerNorm fused ops; `ModelConfig::fused_kernels =
//! false` selects the primitive-op formulations they are tested against, and
//! [`layers::no_grad`] turns the closed-form ops into plain ops for inference.
//!
//! - [`Seq2Seq::encode`]: RoBERTa last hidden state `[n, S, H]` (§4.2: padding-aware
//!   positions, `(word + pos) + type`, −10000 key mask, post-LN, erf GELU).
//! - [`Seq2Seq::logits`]: teacher-forced logits `[n, T, V]` (§4.4: decoder inputs through the
//!   encoder's embeddings, −10000 causal mask, −inf memory key padding, post-norm relu
//!   layers, no final norm, `tanh(dense)`, tied head).
//! - [`Seq2Seq::forward_loss`]: `(loss, loss × N_act, N_act)` of §5, the token mean over the
//!   active target positions of the whole batch; `loss.backward()` differentiates Candle's op
//!   graph.
//! - [`Seq2Seq::training_pass`]: the same loss without an op graph, and
//!   [`TrainingPass::backward`]: its gradients written out (fewer ops and less memory per
//!   training step; what `c2n-train` uses by default).
//! - Dropout only when `train` is true; [`Seq2Seq::with_compute_dtype`] runs activations in
//!   bf16/f16 with f32 Vars (LayerNorm statistics, softmax, loss and log-probs in f32).
//!
//! This crate re-exports the Candle it is built on ([`candle_core`], [`candle_nn`]): use those
//! paths rather than depending on Candle yourself, whose version would have to match.
//!
//! ```
//! use c2n_model::candle_core::{Device, Tensor};
//! use c2n_model::candle_nn::VarMap;
//! use c2n_model::{ModelConfig, Seq2Seq};
//!
//! let mut cfg = ModelConfig::small();
//! cfg.vocab_size = 100; // keep the doc test tiny
//! let model = Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu)?;
//! assert_eq!(model.trainable_var_names().len(), 77); // 79 state-dict keys − bias − lm_head
//!
//! let source = Tensor::new(&[[0u32, 7, 8, 2, 1]], &Device::Cpu)?;
//! let source_mask = Tensor::new(&[[1u32, 1, 1, 1, 0]], &Device::Cpu)?;
//! let target = Tensor::new(&[[0u32, 9, 2, 1]], &Device::Cpu)?;
//! let target_mask = Tensor::new(&[[1u32, 1, 1, 0]], &Device::Cpu)?;
//! let out = model.forward_loss(&source, &source_mask, &target, &target_mask, false)?;
//! assert_eq!(out.n_active, 2); // "9" and "</s>"
//! let grads = out.loss.backward()?;
//! # let _ = grads;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Checkpoints
//!
//! - [`load_pretrained_encoder`]: a Hugging Face RoBERTa folder or hub id
//!   (`microsoft/codebert-base`, through the hf-hub cache), `model.safetensors` or
//!   `pytorch_model.bin`, with or without the `roberta.` prefix; the decoder and `dense` are
//!   initialised as the reference does ([`init`]).
//! - [`load_checkpoint`]: a run.py or our own checkpoint folder (`model.safetensors` or
//!   `pytorch_model.bin`, with `config.json`, or without it as run.py writes them: the
//!   architecture then comes from the weight shapes, [`load::config_from_weights`]);
//!   `encoder.embeddings.position_ids`, a `module.` prefix, a missing `bias` and a missing
//!   tied `lm_head.weight` are tolerated.
//! - [`save_checkpoint`]: `config.json` + `model.safetensors` with every state-dict key,
//!   `bias` and `lm_head.weight` included, so PyTorch loads it strictly.
//!
//! `pytorch_model.bin` may use either `torch.save` format: zip (torch ≥ 1.6) or legacy
//! (torch < 1.6, as the reference's torch 1.4 writes). Errors ([`ModelError`]) name the file
//! and key.
//!
//! ## Features
//!
//! - `hub` (default): [`load_pretrained_encoder`] also takes Hugging Face model ids
//!   (`microsoft/codebert-base`), through `hf-hub`; without it, local folders only.
//! - `cuda`: Candle's CUDA backend and this crate's own CUDA kernels (layer-norm backward,
//!   dropout, attention probabilities, GELU backward, bias-gradient sums, candidate ranking,
//!   the decoding cache, the kernels that cut a training step's launches: on by default,
//!   each can be switched off; a cross-attention kernel: opt-in; `docs/gpu.md`; c2n-train
//!   adds its AdamW kernel); needs a CUDA toolkit at build time. Without it
//!   everything runs on the CPU, and the `cuda_*_enabled` switches report `false`.
//!
//! ## Decoding sessions
//!
//! Beam search drives a [`NextTokenLogProbs`] session ([`step`]). [`KvCacheSession`] encodes
//! once, computes cross-attention keys/values once per example and caches self-attention
//! keys/values, reordering them by `origin` each step (or, in the slotted [`CacheLayout`],
//! keeping them in place and reordering a table of slots); [`FullPrefixSession`] recomputes the
//! whole prefix every step exactly as §6.1 and serves as oracle and baseline. Both apply the
//! padding-aware position rule to generated `<pad>` tokens (§6.8).
//!
//! [`Seq2Seq::generate`] does both in one call: a session laid out for the configuration's
//! beam size, then [`beam::beam_search`].
//!
//! ```
//! use c2n_model::candle_core::{Device, Tensor};
//! use c2n_model::candle_nn::VarMap;
//! use c2n_model::generation::{GenerationConfig, GenerationOverrides};
//! use c2n_model::{ModelConfig, Seq2Seq};
//!
//! let mut cfg = ModelConfig::small();
//! cfg.vocab_size = 100;
//! let model = Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu)?;
//! let source = Tensor::new(&[[0u32, 7, 8, 2], [0, 9, 2, 1]], &Device::Cpu)?;
//! let source_mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &Device::Cpu)?;
//! // The reference settings (beam 10, max length 128) with a per-call override.
//! let config = GenerationConfig::default().with_overrides(&GenerationOverrides {
//!     beam_size: Some(3),
//!     max_length: Some(5),
//!     ..Default::default()
//! });
//! let outputs = model.generate(&source, &source_mask, &config)?;
//! assert_eq!(outputs.len(), 2); // one per source row
//! assert_eq!(outputs[0].hypotheses.len(), 3); // the n-best list, best first
//! assert!(outputs[0].prediction().len() <= 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod beam;
pub mod config;
mod cuda_kernels;
#[cfg(feature = "cuda")]
mod cuda_op;
pub mod decoder;
pub mod encoder;
mod error;
mod explicit;
mod generate;
pub mod generation;
pub mod init;
pub mod kernel_launch;
pub mod keys;
pub mod layers;
pub mod load;
pub mod save;
mod seq2seq;
pub mod session;
pub mod step;

/// The Candle crates this one is built on, re-exported so that a user's tensors and
/// `VarMap`s come from the same versions.
pub use candle_core;
pub use candle_nn;
pub use config::{Activation, ModelConfig};
#[cfg(feature = "cuda")]
pub use cuda_kernels::cuda_sync_check;
pub use cuda_kernels::{
    cuda_cross_attention_kernel_enabled, cuda_decode_kernels_enabled, cuda_fewer_launch_failures,
    cuda_fewer_launch_selection, cuda_fewer_launches_enabled, cuda_fewer_launches_failed,
    cuda_fewer_launches_for, cuda_layer_norm_kernels_enabled, cuda_slotted_cache_enabled,
    cuda_sync_check_enabled, cuda_training_kernels_enabled, FEWER_LAUNCH_KERNELS,
};
pub use decoder::CacheLayout;
pub use error::{ModelError, Result};
pub use explicit::TrainingPass;
pub use load::{load_checkpoint, load_pretrained_encoder};
pub use save::save_checkpoint;
pub use seq2seq::{HostBatch, LossInputs, LossOutput, Seq2Seq};
pub use session::{
    device_row_top_k, logits_row_top_k, CandidateRanking, FullPrefixSession, KvCacheSession,
};
pub use step::{row_top_k_host, NextTokenLogProbs, RowTopK};
