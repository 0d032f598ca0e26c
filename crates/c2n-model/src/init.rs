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
//! Fresh values come from a host generator keyed by `ModelConfig::init_seed` and the
//! parameter's name, so a fresh model is identical on every run ([`seeded_values`]).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Uniform};

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
        {
            let mut data = self
                .varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("the VarMap lock is poisoned".into()))?;
            if !data.contains_key(&full) {
                let values = seeded_values(self.cfg.init_seed, &full, shape, init);
                let var = Var::from_tensor(&Tensor::from_vec(values, shape, self.device)?)?;
                data.insert(full.clone(), var);
            }
        }
        // Checks the shape of an existing Var.
        self.varmap.get(shape, &full, init, DType::F32, self.device)
    }
}

/// The values of a fresh parameter, from a generator keyed by `seed` and the parameter's name
/// (so they do not depend on the order parameters are created in, nor on the device).
pub fn seeded_values(seed: u64, name: &str, shape: &[usize], init: Init) -> Vec<f32> {
    let n: usize = shape.iter().product();
    // FNV-1a of the name, mixed with the seed.
    let key = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut rng = StdRng::seed_from_u64(seed ^ key);
    match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => {
            let dist = Uniform::new(lo as f32, up as f32);
            match dist {
                Ok(d) => (0..n).map(|_| d.sample(&mut rng)).collect(),
                Err(_) => vec![lo as f32; n], // empty range: lo == up
            }
        }
        Init::Randn { mean, stdev } => match Normal::new(mean as f32, stdev as f32) {
            Ok(d) => (0..n).map(|_| d.sample(&mut rng)).collect(),
            Err(_) => vec![mean as f32; n],
        },
        Init::Kaiming { .. } => {
            // Not used by the reference init; fall back to PyTorch's default Linear bound.
            let fan_in = shape.last().copied().unwrap_or(1).max(1) as f32;
            let bound = 1.0 / fan_in.sqrt();
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seq2Seq;

    fn flat(model: &Seq2Seq) -> Vec<(String, Vec<f32>)> {
        let data = model.varmap().data().lock().unwrap();
        let mut all: Vec<(String, Vec<f32>)> = data
            .iter()
            .map(|(k, v)| {
                let values = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                (k.clone(), values)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    #[test]
    fn fresh_models_are_the_same_for_a_seed_and_differ_across_seeds() {
        let cfg = ModelConfig::small();
        let a = flat(&Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu).unwrap());
        let b = flat(&Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu).unwrap());
        assert_eq!(a, b);
        let other = ModelConfig {
            init_seed: 7,
            ..cfg
        };
        let c = flat(&Seq2Seq::new(&other, &VarMap::new(), &Device::Cpu).unwrap());
        let differing = a.iter().zip(&c).filter(|(x, y)| x.1 != y.1).count();
        // Constant inits (biases, norms) agree; every random one differs.
        assert!(differing > 10, "{differing} parameters differ");
    }

    #[test]
    fn seeded_values_follow_the_init() {
        let u = seeded_values(1, "w", &[1000], Init::Uniform { lo: -0.5, up: 0.5 });
        assert!(u.iter().all(|v| (-0.5..0.5).contains(v)));
        let n = seeded_values(
            1,
            "w",
            &[10_000],
            Init::Randn {
                mean: 0.0,
                stdev: 0.2,
            },
        );
        let mean = n.iter().sum::<f32>() / n.len() as f32;
        let var = n.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n.len() as f32;
        assert!(
            mean.abs() < 0.01 && (var.sqrt() - 0.2).abs() < 0.01,
            "{mean} {var}"
        );
        assert_eq!(seeded_values(1, "b", &[3], Init::Const(0.5)), vec![0.5; 3]);
        assert_ne!(
            seeded_values(
                1,
                "w",
                &[8],
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0
                }
            ),
            seeded_values(
                1,
                "v",
                &[8],
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0
                }
            )
        );
    }
}
