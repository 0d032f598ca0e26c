//! The state-dict key layout of a code2nl checkpoint (spec §4.6), in PyTorch's order.
//!
//! These names are the `VarMap` names of [`Seq2Seq`](crate::Seq2Seq), so training code can
//! read and write parameters by the same names a `pytorch_model.bin` uses.

use crate::config::ModelConfig;

/// The causal-mask buffer (`[2048, 2048]` lower-triangular ones); not a parameter.
pub const CAUSAL_BUFFER_KEY: &str = "bias";
/// Side length of the causal buffer.
pub const CAUSAL_BUFFER_SIZE: usize = 2048;
/// The LM head weight: tied to [`WORD_EMBEDDINGS_KEY`], stored again in checkpoints.
pub const LM_HEAD_KEY: &str = "lm_head.weight";
/// The word-embedding matrix (shared by encoder input, decoder input and LM head).
pub const WORD_EMBEDDINGS_KEY: &str = "encoder.embeddings.word_embeddings.weight";
/// A buffer some transformers versions save; ignored when loading.
pub const POSITION_IDS_KEY: &str = "encoder.embeddings.position_ids";
/// Prefix of the RoBERTa encoder inside a code2nl checkpoint.
pub const ENCODER_PREFIX: &str = "encoder.";
/// Prefix of the pooler parameters (never receive a gradient, §4.5).
pub const POOLER_PREFIX: &str = "encoder.pooler.";

/// One parameter: its key and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

fn push(out: &mut Vec<ParamSpec>, name: String, shape: &[usize]) {
    out.push(ParamSpec {
        name,
        shape: shape.to_vec(),
    });
}

/// Parameters of the RoBERTa encoder (with pooler), keys relative to the encoder (no
/// `encoder.` prefix: the Hugging Face layout).
pub fn encoder_param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut out = Vec::new();
    push(
        &mut out,
        "embeddings.word_embeddings.weight".into(),
        &[cfg.vocab_size, h],
    );
    push(
        &mut out,
        "embeddings.position_embeddings.weight".into(),
        &[cfg.max_position_embeddings, h],
    );
    push(
        &mut out,
        "embeddings.token_type_embeddings.weight".into(),
        &[cfg.type_vocab_size, h],
    );
    push(&mut out, "embeddings.LayerNorm.weight".into(), &[h]);
    push(&mut out, "embeddings.LayerNorm.bias".into(), &[h]);
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        for m in ["query", "key", "value"] {
            push(&mut out, format!("{p}attention.self.{m}.weight"), &[h, h]);
            push(&mut out, format!("{p}attention.self.{m}.bias"), &[h]);
        }
        push(
            &mut out,
            format!("{p}attention.output.dense.weight"),
            &[h, h],
        );
        push(&mut out, format!("{p}attention.output.dense.bias"), &[h]);
        push(
            &mut out,
            format!("{p}attention.output.LayerNorm.weight"),
            &[h],
        );
        push(
            &mut out,
            format!("{p}attention.output.LayerNorm.bias"),
            &[h],
        );
        push(&mut out, format!("{p}intermediate.dense.weight"), &[i, h]);
        push(&mut out, format!("{p}intermediate.dense.bias"), &[i]);
        push(&mut out, format!("{p}output.dense.weight"), &[h, i]);
        push(&mut out, format!("{p}output.dense.bias"), &[h]);
        push(&mut out, format!("{p}output.LayerNorm.weight"), &[h]);
        push(&mut out, format!("{p}output.LayerNorm.bias"), &[h]);
    }
    push(&mut out, "pooler.dense.weight".into(), &[h, h]);
    push(&mut out, "pooler.dense.bias".into(), &[h]);
    out
}

/// Parameters of one decoder layer, keys relative to `decoder.layers.N.`.
pub fn decoder_layer_param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let (h, f) = (cfg.hidden_size, cfg.decoder_ffn_dim);
    let mut out = Vec::new();
    for m in ["self_attn", "multihead_attn"] {
        push(&mut out, format!("{m}.in_proj_weight"), &[3 * h, h]);
        push(&mut out, format!("{m}.in_proj_bias"), &[3 * h]);
        push(&mut out, format!("{m}.out_proj.weight"), &[h, h]);
        push(&mut out, format!("{m}.out_proj.bias"), &[h]);
    }
    push(&mut out, "linear1.weight".into(), &[f, h]);
    push(&mut out, "linear1.bias".into(), &[f]);
    push(&mut out, "linear2.weight".into(), &[h, f]);
    push(&mut out, "linear2.bias".into(), &[h]);
    for n in ["norm1", "norm2", "norm3"] {
        push(&mut out, format!("{n}.weight"), &[h]);
        push(&mut out, format!("{n}.bias"), &[h]);
    }
    out
}

/// The trainable parameters in state-dict order: no `bias` buffer, the tied matrix once
/// (309 entries for the reference model).
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let mut out: Vec<ParamSpec> = encoder_param_specs(cfg)
        .into_iter()
        .map(|p| ParamSpec {
            name: format!("{ENCODER_PREFIX}{}", p.name),
            shape: p.shape,
        })
        .collect();
    let layer = decoder_layer_param_specs(cfg);
    for l in 0..cfg.decoder_layers {
        for p in &layer {
            push(&mut out, format!("decoder.layers.{l}.{}", p.name), &p.shape);
        }
    }
    let h = cfg.hidden_size;
    push(&mut out, "dense.weight".into(), &[h, h]);
    push(&mut out, "dense.bias".into(), &[h]);
    out
}

/// Every key of a checkpoint as PyTorch writes it: `bias`, the parameters, `lm_head.weight`
/// (311 keys for the reference model).
pub fn state_dict_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let mut out = vec![ParamSpec {
        name: CAUSAL_BUFFER_KEY.into(),
        shape: vec![CAUSAL_BUFFER_SIZE, CAUSAL_BUFFER_SIZE],
    }];
    out.extend(param_specs(cfg));
    push(
        &mut out,
        LM_HEAD_KEY.into(),
        &[cfg.vocab_size, cfg.hidden_size],
    );
    out
}
