//! AdamW exactly as transformers 2.5.0 computes it (spec §7.2).
//!
//! Differences from `torch.optim.AdamW` / `candle_nn::AdamW`, all deliberate:
//! * `eps` is added to `sqrt(v)` of the *uncorrected* second moment;
//! * bias correction is folded into the step size, computed on the host in f64;
//! * weight decay is decoupled and applied *after* the Adam update, with the scheduled lr;
//! * a parameter without a gradient is skipped entirely: no state, no step count.
//!
//! Parameter groups follow the reference: names containing `bias` or `LayerNorm.weight` get
//! no weight decay; everything else (including the decoder's `norm*.weight`) does.

use super::{Gradients, NamedParams};
use crate::{Result, TrainError};
use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Hyper-parameters of [`AdamW`]. Defaults are the reference's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    /// Added to `sqrt(v)` (not to the bias-corrected root).
    pub eps: f64,
    /// Decoupled weight decay of the decay group.
    pub weight_decay: f64,
    /// Fold `sqrt(1 - β2^t) / (1 - β1^t)` into the step size.
    pub correct_bias: bool,
    /// A parameter whose name contains one of these substrings gets no weight decay.
    pub no_decay: Vec<String>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            correct_bias: true,
            no_decay: vec!["bias".into(), "LayerNorm.weight".into()],
        }
    }
}

/// Which weight-decay group a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamGroup {
    Decay,
    NoDecay,
}

struct Moments {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

struct Slot {
    name: String,
    var: Var,
    group: ParamGroup,
    moments: Option<Moments>,
}

/// The optimizer over a fixed, name-sorted set of parameters.
pub struct AdamW {
    config: AdamWConfig,
    slots: Vec<Slot>,
}

#[derive(Serialize, Deserialize)]
struct StateIndex {
    config: AdamWConfig,
    /// Per-parameter step counters; parameters never stepped are absent.
    steps: BTreeMap<String, u64>,
}

const MOMENTS_FILE: &str = "optimizer.safetensors";
const INDEX_FILE: &str = "optimizer.json";

impl AdamW {
    /// Creates the optimizer; no state exists until a parameter first gets a gradient.
    pub fn new(params: &NamedParams, config: AdamWConfig) -> Self {
        let slots = params
            .iter()
            .map(|(name, var)| Slot {
                name: name.to_string(),
                var: var.clone(),
                group: group_of(name, &config.no_decay),
                moments: None,
            })
            .collect();
        Self { config, slots }
    }

    /// The configuration in use.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The weight-decay group of `name`, if it is one of this optimizer's parameters.
    pub fn group(&self, name: &str) -> Option<ParamGroup> {
        self.slots.iter().find(|s| s.name == name).map(|s| s.group)
    }

    /// The step counter of `name` (0 when it never had a gradient).
    pub fn step_count(&self, name: &str) -> u64 {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.moments.as_ref())
            .map_or(0, |m| m.step)
    }

    /// The first and second moments of `name`, if it has state.
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.moments.as_ref())
            .map(|m| (&m.exp_avg, &m.exp_avg_sq))
    }

    /// One update with learning rate `lr` (already scheduled). Returns how many parameters
    /// were updated. Gradients for unknown names are an error, missing ones mean "skip".
    pub fn step(&mut self, grads: &Gradients, lr: f64) -> Result<usize> {
        if let Some((name, _)) = grads
            .iter()
            .find(|(n, _)| !self.slots.iter().any(|s| s.name == *n))
        {
            return Err(TrainError::InvalidInput(format!(
                "gradient for unknown parameter `{name}`"
            )));
        }
        let c = &self.config;
        let mut updated = 0;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(&slot.name) else {
                continue;
            };
            let param = slot.var.as_tensor();
            if grad.shape() != param.shape() {
                return Err(TrainError::InvalidInput(format!(
                    "gradient of `{}` has shape {:?}, parameter {:?}",
                    slot.name,
                    grad.dims(),
                    param.dims()
                )));
            }
            let grad = grad.to_dtype(param.dtype())?;
            let moments = match slot.moments.take() {
                Some(m) => m,
                None => Moments {
                    step: 0,
                    exp_avg: param.zeros_like()?,
                    exp_avg_sq: param.zeros_like()?,
                },
            };
            let step = moments.step + 1;
            let exp_avg =
                (moments.exp_avg.affine(c.beta1, 0.0)? + grad.affine(1.0 - c.beta1, 0.0)?)?;
            let exp_avg_sq = (moments.exp_avg_sq.affine(c.beta2, 0.0)?
                + grad.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
            let denom = exp_avg_sq.sqrt()?.affine(1.0, c.eps)?;
            let mut step_size = lr;
            if c.correct_bias {
                let bc1 = 1.0 - c.beta1.powf(step as f64);
                let bc2 = 1.0 - c.beta2.powf(step as f64);
                step_size = step_size * bc2.sqrt() / bc1;
            }
            let mut new_param = (param + exp_avg.div(&denom)?.affine(-step_size, 0.0)?)?;
            if slot.group == ParamGroup::Decay && c.weight_decay > 0.0 {
                new_param = (&new_param + new_param.affine(-lr * c.weight_decay, 0.0)?)?;
            }
            slot.var.set(&new_param)?;
            slot.moments = Some(Moments {
                step,
                exp_avg,
                exp_avg_sq,
            });
            updated += 1;
        }
        Ok(updated)
    }

    /// Writes `optimizer.safetensors` (moments) and `optimizer.json` (config, step counters)
    /// into `dir`.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut steps = BTreeMap::new();
        for slot in &self.slots {
            if let Some(m) = &slot.moments {
                tensors.insert(format!("{}.exp_avg", slot.name), m.exp_avg.clone());
                tensors.insert(format!("{}.exp_avg_sq", slot.name), m.exp_avg_sq.clone());
                steps.insert(slot.name.clone(), m.step);
            }
        }
        let path = dir.join(MOMENTS_FILE);
        candle_core::safetensors::save(&tensors, &path)?;
        let index = StateIndex {
            config: self.config.clone(),
            steps,
        };
        let json = serde_json::to_string_pretty(&index)
            .map_err(|e| TrainError::parse(dir.join(INDEX_FILE), e))?;
        std::fs::write(dir.join(INDEX_FILE), json)
            .map_err(|e| TrainError::io(dir.join(INDEX_FILE), e))
    }

    /// Restores state written by [`AdamW::save_state`]; every stored parameter must exist
    /// with the same shape. The stored config replaces the current one.
    pub fn load_state(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let index_path = dir.join(INDEX_FILE);
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| TrainError::io(&index_path, e))?;
        let index: StateIndex =
            serde_json::from_str(&text).map_err(|e| TrainError::parse(&index_path, e))?;
        let moments_path = dir.join(MOMENTS_FILE);
        let mut tensors = candle_core::safetensors::load(&moments_path, device)?;
        let resume_err = |message: String| TrainError::Resume {
            path: moments_path.clone(),
            message,
        };
        for name in index.steps.keys() {
            if !self.slots.iter().any(|s| &s.name == name) {
                return Err(resume_err(format!("state for unknown parameter `{name}`")));
            }
        }
        for slot in &mut self.slots {
            slot.moments = None;
            let Some(&step) = index.steps.get(&slot.name) else {
                continue;
            };
            let mut take = |suffix: &str| {
                let key = format!("{}.{suffix}", slot.name);
                let t = tensors
                    .remove(&key)
                    .ok_or_else(|| resume_err(format!("missing tensor `{key}`")))?;
                if t.shape() != slot.var.shape() {
                    return Err(resume_err(format!(
                        "`{key}` has shape {:?}, parameter {:?}",
                        t.dims(),
                        slot.var.dims()
                    )));
                }
                Ok(t.to_dtype(slot.var.dtype())?)
            };
            let exp_avg = take("exp_avg")?;
            let exp_avg_sq = take("exp_avg_sq")?;
            slot.moments = Some(Moments {
                step,
                exp_avg,
                exp_avg_sq,
            });
        }
        self.config = index.config;
        Ok(())
    }
}

fn group_of(name: &str, no_decay: &[String]) -> ParamGroup {
    if no_decay
        .iter()
        .any(|pattern| name.contains(pattern.as_str()))
    {
        ParamGroup::NoDecay
    } else {
        ParamGroup::Decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_reference_name_rule() {
        let c = AdamWConfig::default();
        assert_eq!(
            group_of(
                "encoder.encoder.layer.0.output.LayerNorm.weight",
                &c.no_decay
            ),
            ParamGroup::NoDecay
        );
        assert_eq!(group_of("dense.bias", &c.no_decay), ParamGroup::NoDecay);
        assert_eq!(
            group_of("decoder.layers.0.self_attn.in_proj_bias", &c.no_decay),
            ParamGroup::NoDecay
        );
        // The decoder's norms do not contain `LayerNorm.weight`: decay group (spec §11.13).
        assert_eq!(
            group_of("decoder.layers.0.norm1.weight", &c.no_decay),
            ParamGroup::Decay
        );
        assert_eq!(group_of("dense.weight", &c.no_decay), ParamGroup::Decay);
    }

    #[test]
    fn single_step_matches_the_hand_computed_formula() -> Result<()> {
        let dev = Device::Cpu;
        let var = Var::new(&[1.0f32], &dev)?;
        let params = NamedParams::new([("w".to_string(), var.clone())])?;
        let mut opt = AdamW::new(
            &params,
            AdamWConfig {
                weight_decay: 0.5,
                ..Default::default()
            },
        );
        let mut g = Gradients::new();
        g.insert("w", Tensor::new(&[2.0f32], &dev)?);
        opt.step(&g, 0.1)?;
        // m = 0.2, v = 0.004, denom = sqrt(0.004) + 1e-8, alpha = 0.1*sqrt(0.001)/0.1
        let m = 0.2f64;
        let denom = 0.004f64.sqrt() + 1e-8;
        let alpha = 0.1 * 0.001f64.sqrt() / (1.0 - 0.9);
        let p = 1.0 - alpha * m / denom;
        let p = p - 0.1 * 0.5 * p;
        let got = f64::from(var.as_tensor().to_vec1::<f32>()?[0]);
        assert!((got - p).abs() < 1e-6, "{got} vs {p}");
        assert_eq!(opt.step_count("w"), 1);
        Ok(())
    }
}
