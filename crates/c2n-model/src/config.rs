//! Model configuration: a Hugging Face RoBERTa `config.json` plus the decoder fields.
//!
//! The encoder fields keep their Hugging Face names, so a `config.json` from
//! `microsoft/codebert-base` or `roberta-base` loads as is (unknown fields are ignored). The
//! decoder is not part of a RoBERTa config: its fields default to the reference
//! (`nn.TransformerDecoderLayer` defaults, 6 layers, spec §4.3) and are written back only when
//! they differ from those defaults, so a saved config stays a valid RoBERTa config.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// Activation functions the model supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact erf GELU `x·½·(1 + erf(x/√2))` (RoBERTa's `"gelu"`).
    Gelu,
    /// `max(x, 0)` (the decoder default).
    Relu,
}

/// The full model configuration (encoder, decoder, special token ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(serialize_with = "shortest_f32")]
    pub hidden_dropout_prob: f32,
    #[serde(serialize_with = "shortest_f32")]
    pub attention_probs_dropout_prob: f32,
    pub pad_token_id: u32,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    /// Standard deviation of the N(0, σ) init of fresh encoder weights and embeddings (the
    /// Hugging Face `initializer_range`, 0.02). Used only when parameters are created fresh,
    /// never for loaded weights. Small models trained from scratch need a larger value: with
    /// 0.02 the tied word embeddings are so small that the decoder gets almost no gradient
    /// through the LM head and training stalls at the unigram distribution.
    #[serde(skip_serializing_if = "is_default_initializer_range")]
    pub initializer_range: f64,
    /// Seed of the random init of fresh parameters (the reference's `--seed` default, 42).
    /// Each parameter draws from its own generator keyed by this seed and its name, so a fresh
    /// model is the same on every run and device (Candle cannot seed its CPU generator).
    #[serde(skip_serializing_if = "is_default_init_seed")]
    pub init_seed: u64,
    /// Number of decoder layers (reference: 6).
    #[serde(skip_serializing_if = "is_default_decoder_layers")]
    pub decoder_layers: usize,
    /// Decoder attention heads; `None` means "as many as the encoder".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder_attention_heads: Option<usize>,
    /// Decoder feed-forward width (reference: 2048).
    #[serde(skip_serializing_if = "is_default_decoder_ffn_dim")]
    pub decoder_ffn_dim: usize,
    /// Dropout inside the decoder layers (reference: 0.1).
    #[serde(
        skip_serializing_if = "is_default_dropout",
        serialize_with = "shortest_f32"
    )]
    pub decoder_dropout: f32,
    /// Decoder feed-forward activation (reference: relu).
    #[serde(skip_serializing_if = "is_relu")]
    pub decoder_activation: Activation,
    /// Decoder LayerNorm epsilon (reference: 1e-5).
    #[serde(skip_serializing_if = "is_default_eps")]
    pub decoder_layer_norm_eps: f64,
    /// Run attention softmax and LayerNorm as fused ops with their own backward pass (the
    /// default). `false` selects the primitive-op formulations: the same function within f32
    /// round-off, but more kernels and more memory kept for the backward pass. A kernel choice,
    /// not a model property: kept for A/B measurements and never written when `true`.
    #[serde(skip_serializing_if = "is_true")]
    pub fused_kernels: bool,
}

const DEFAULT_DECODER_LAYERS: usize = 6;
const DEFAULT_DECODER_FFN_DIM: usize = 2048;
const DEFAULT_DROPOUT: f32 = 0.1;
const DEFAULT_EPS: f64 = 1e-5;
const DEFAULT_INITIALIZER_RANGE: f64 = 0.02;

fn is_default_initializer_range(v: &f64) -> bool {
    *v == DEFAULT_INITIALIZER_RANGE
}

/// The reference's default seed.
const DEFAULT_INIT_SEED: u64 = 42;

fn is_default_init_seed(v: &u64) -> bool {
    *v == DEFAULT_INIT_SEED
}

fn is_default_decoder_layers(v: &usize) -> bool {
    *v == DEFAULT_DECODER_LAYERS
}
fn is_default_decoder_ffn_dim(v: &usize) -> bool {
    *v == DEFAULT_DECODER_FFN_DIM
}
/// An f32 written as the shortest decimal that reads back as it (`0.1`, not the f64 widening
/// `0.10000000149011612`), so that `config.json` says what a Python config says.
fn shortest_f32<S: serde::Serializer>(
    v: &f32,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match v.to_string().parse::<f64>() {
        Ok(decimal) if v.is_finite() => serializer.serialize_f64(decimal),
        _ => serializer.serialize_f32(*v),
    }
}

fn is_default_dropout(v: &f32) -> bool {
    *v == DEFAULT_DROPOUT
}
fn is_relu(v: &Activation) -> bool {
    *v == Activation::Relu
}
fn is_true(v: &bool) -> bool {
    *v
}
fn is_default_eps(v: &f64) -> bool {
    *v == DEFAULT_EPS
}

impl Default for ModelConfig {
    /// CodeBERT (roberta-base) with the reference decoder.
    fn default() -> Self {
        Self {
            vocab_size: 50265,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: Activation::Gelu,
            max_position_embeddings: 514,
            type_vocab_size: 1,
            layer_norm_eps: DEFAULT_EPS,
            hidden_dropout_prob: DEFAULT_DROPOUT,
            attention_probs_dropout_prob: DEFAULT_DROPOUT,
            pad_token_id: 1,
            bos_token_id: 0,
            eos_token_id: 2,
            initializer_range: DEFAULT_INITIALIZER_RANGE,
            init_seed: DEFAULT_INIT_SEED,
            decoder_layers: DEFAULT_DECODER_LAYERS,
            decoder_attention_heads: None,
            decoder_ffn_dim: DEFAULT_DECODER_FFN_DIM,
            decoder_dropout: DEFAULT_DROPOUT,
            decoder_activation: Activation::Relu,
            decoder_layer_norm_eps: DEFAULT_EPS,
            fused_kernels: true,
        }
    }
}

impl ModelConfig {
    /// The reference model: CodeBERT encoder + 6-layer decoder (same as `default()`).
    pub fn codebert() -> Self {
        Self::default()
    }

    /// A tiny model with the real vocabulary, for tests and CPU experiments: hidden 16,
    /// 2 heads, 2 encoder and 2 decoder layers, feed-forward 32. The parity fixtures use it.
    pub fn small() -> Self {
        Self {
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            decoder_layers: 2,
            decoder_ffn_dim: 32,
            ..Self::default()
        }
    }

    /// The longest token sequence the position table embeds: RoBERTa numbers positions from
    /// `pad_token_id + 1` (512 for CodeBERT's 514 rows). Sources and decoded prefixes
    /// (`<s>` included) longer than this have no position embedding.
    pub fn max_sequence_len(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.pad_token_id as usize + 1)
    }

    /// Decoder heads after applying the "same as encoder" default.
    pub fn decoder_heads(&self) -> usize {
        self.decoder_attention_heads
            .unwrap_or(self.num_attention_heads)
    }

    /// Check the values the model relies on (divisibility, non-zero sizes, special ids).
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(ModelError::Config {
                path: None,
                message,
            })
        };
        if self.hidden_size == 0 || self.vocab_size == 0 {
            return fail("hidden_size and vocab_size must be positive".into());
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return fail(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let dh = self.decoder_heads();
        if dh == 0 || !self.hidden_size.is_multiple_of(dh) {
            return fail(format!(
                "hidden_size {} is not divisible by decoder_attention_heads {dh}",
                self.hidden_size
            ));
        }
        if self.type_vocab_size == 0 {
            return fail("type_vocab_size must be at least 1".into());
        }
        for (name, id) in [
            ("pad_token_id", self.pad_token_id),
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if id as usize >= self.vocab_size {
                return fail(format!("{name} {id} >= vocab_size {}", self.vocab_size));
            }
        }
        if (self.pad_token_id as usize) >= self.max_position_embeddings {
            return fail("max_position_embeddings must exceed pad_token_id".into());
        }
        Ok(())
    }

    /// Parse a `config.json` (Hugging Face RoBERTa fields, optional decoder fields).
    pub fn from_json_str(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| ModelError::Config {
            path: None,
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Load and validate a `config.json`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            error: source,
        })?;
        Self::from_json_str(&text).map_err(|e| match e {
            ModelError::Config { message, .. } => ModelError::Config {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    /// The JSON text [`save`](Self::save) writes (with `model_type: "roberta"`).
    pub fn to_json_string(&self) -> Result<String> {
        let mut value = serde_json::to_value(self).map_err(|e| ModelError::Config {
            path: None,
            message: e.to_string(),
        })?;
        if let Some(map) = value.as_object_mut() {
            map.insert("model_type".into(), "roberta".into());
            map.insert("architectures".into(), serde_json::json!(["RobertaModel"]));
        }
        serde_json::to_string_pretty(&value).map_err(|e| ModelError::Config {
            path: None,
            message: e.to_string(),
        })
    }

    /// Write `config.json`; decoder fields appear only when they differ from the reference.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = self.to_json_string()? + "\n";
        std::fs::write(path, text).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            error: source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_probabilities_are_written_as_python_writes_them() {
        let mut cfg = ModelConfig::codebert();
        cfg.decoder_dropout = 0.3;
        let text = cfg.to_json_string().unwrap();
        assert!(text.contains("\"hidden_dropout_prob\": 0.1,"), "{text}");
        assert!(
            text.contains("\"attention_probs_dropout_prob\": 0.1,"),
            "{text}"
        );
        assert!(text.contains("\"decoder_dropout\": 0.3"), "{text}");
        let back = ModelConfig::from_json_str(&text).unwrap();
        assert_eq!(back.hidden_dropout_prob, 0.1f32);
        assert_eq!(back.decoder_dropout, 0.3f32);
    }

    #[test]
    fn small_preset_matches_the_config_written_by_the_python_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/small/config.json");
        let from_python = ModelConfig::load(path).unwrap();
        assert_eq!(from_python, ModelConfig::small());
        // Same keys as the Python writer: decoder fields only where they differ.
        let ours: serde_json::Value =
            serde_json::from_str(&ModelConfig::small().to_json_string().unwrap()).unwrap();
        let theirs: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ours), keys(&theirs));
    }

    #[test]
    fn reference_decoder_fields_are_not_written_and_round_trip() {
        let text = ModelConfig::codebert().to_json_string().unwrap();
        assert!(!text.contains("decoder_"), "{text}");
        let mut cfg = ModelConfig::codebert();
        cfg.decoder_attention_heads = Some(4);
        cfg.decoder_activation = Activation::Gelu;
        let back = ModelConfig::from_json_str(&cfg.to_json_string().unwrap()).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.decoder_heads(), 4);
    }

    #[test]
    fn invalid_values_are_config_errors() {
        let err = ModelConfig::from_json_str(r#"{"hidden_size": 10, "num_attention_heads": 3}"#)
            .unwrap_err();
        assert!(err.to_string().contains("not divisible"), "{err}");
        let err = ModelConfig::from_json_str(r#"{"hidden_act": "swish"}"#).unwrap_err();
        assert!(matches!(err, ModelError::Config { .. }), "{err}");
    }
}
