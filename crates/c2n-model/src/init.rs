//! Reference initialisation of fresh parameters (spec §4.5) and the `VarMap` accessor.
//!
//! - Encoder (normally overwritten by a pretrained checkpoint): weights and embeddings
//!   N(0, `initializer_range`) (0.02 by default), biases 0, LayerNorm 1/0 — the Hugging Face
//!   BERT init.
//! - Decoder: `in_proj_weight` xavier-uniform, `in_proj_bias` and `out_proj.bias` 0, other
//!   Linear weights and biases PyTorch's default (kaiming-uniform with a = √5, i.e.
//!   U(±1/√fan_in)), LayerNorm 1/0. All layers are then made copies of layer 0.
//! - `dense`: PyTorch's default Linear init.
//!
//! Matching PyTorch's random numbers is not a goal (§4.5); parity tests load exported states.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarMap};

use crate::config::ModelConfig;

/// The initialiser the reference uses for parameter `name` (full code2nl key).
pub fn reference_init(cfg: &ModelConfig, name: &str, shape: &[usize]) -> Init {
    let is_norm_weight = name.ends_with("LayerNorm.weight")
        || ["norm1.weight", "norm2.weight", "norm3.weight"]
            .iter()
            .any(|n| name.ends_with(n));
    let is_norm_bias = name.ends_with("LayerNorm.bias")
        || ["norm1.bias", "norm2.bias", "norm3.bias"]
            .iter()
            .any(|n| name.ends_with(n));
    let uniform = |fan_in: usize| {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        Init::Uniform {
            lo: -bound,
            up: bound,
        }
    };
    if is_norm_weight {
        Init::Const(1.0)
    } else if is_norm_bias {
        Init::Const(0.0)
    } else if name.starts_with("encoder.") {
        if name.ends_with(".bias") {
            Init::Const(0.0)
        } else {
            Init::Randn {
                mean: 0.0,
                stdev: cfg.initializer_range,
            }
        }
    } else if name.ends_with("in_proj_weight") {
        let bound = (6.0 / (shape.iter().take(2).sum::<usize>().max(1) as f64)).sqrt();
        Init::Uniform {
            lo: -bound,
            up: bound,
        }
    } else if name.ends_with("in_proj_bias") || name.ends_with("out_proj.bias") {
        Init::Const(0.0)
    } else if name.ends_with("linear2.bias") || name.ends_with("linear2.weight") {
        uniform(cfg.decoder_ffn_dim)
    } else {
        // out_proj.weight, linear1.*, dense.*: fan_in = hidden size.
        uniform(cfg.hidden_size)
    }
}

/// Creates (or fetches) the model's Vars under their code2nl names.
#[derive(Clone)]
pub(crate) struct Params<'a> {
    pub cfg: &'a ModelConfig,
    pub varmap: &'a VarMap,
    pub device: &'a Device,
    pub prefix: String,
}

impl<'a> Params<'a> {
    pub fn new(cfg: &'a ModelConfig, varmap: &'a VarMap, device: &'a Device) -> Self {
        Self {
            cfg,
            varmap,
            device,
            prefix: String::new(),
        }
    }

    /// A view whose names are prefixed by `sub.`.
    pub fn pp(&self, sub: impl std::fmt::Display) -> Self {
        Self {
            prefix: format!("{}{sub}.", self.prefix),
            ..self.clone()
        }
    }

    /// The f32 Var `prefix + name`, created with the reference init if absent.
    pub fn get(&self, name: &str, shape: &[usize]) -> candle_core::Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let init = reference_init(self.cfg, &full, shape);
        self.varmap.get(shape, &full, init, DType::F32, self.device)
    }
}
