//! The per-tensor AdamW update that the chunked `AdamW` replaced, kept as the oracle of the
//! bitwise comparisons and as the "before" of the op count.
// Each test binary including this module uses a different part of it.
#![allow(dead_code)]

use c2n_train::optim::{AdamWConfig, Gradients, NamedParams};
use candle_core::{Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The per-tensor update as `AdamW::step` computed it before the chunked layout (same ops,
/// same order, same scalars), with the same state file format.
pub struct Oracle {
    pub config: AdamWConfig,
    pub slots: Vec<OracleSlot>,
}

pub struct OracleSlot {
    pub name: String,
    pub var: Var,
    pub decay: bool,
    pub moments: Option<(u64, Tensor, Tensor)>,
}

impl Oracle {
    pub fn new(params: &NamedParams, config: AdamWConfig) -> Self {
        let slots = params
            .iter()
            .map(|(name, var)| OracleSlot {
                name: name.to_string(),
                var: var.clone(),
                decay: !config.no_decay.iter().any(|p| name.contains(p.as_str())),
                moments: None,
            })
            .collect();
        Self { config, slots }
    }

    pub fn step(&mut self, grads: &Gradients, lr: f64) {
        let c = &self.config;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(&slot.name) else {
                continue;
            };
            let param = slot.var.as_tensor();
            let grad = grad.to_dtype(param.dtype()).unwrap();
            let (step, m, v) = match slot.moments.take() {
                Some(s) => s,
                None => (0, param.zeros_like().unwrap(), param.zeros_like().unwrap()),
            };
            let step = step + 1;
            let exp_avg = (m.affine(c.beta1, 0.0).unwrap()
                + grad.affine(1.0 - c.beta1, 0.0).unwrap())
            .unwrap();
            let exp_avg_sq = (v.affine(c.beta2, 0.0).unwrap()
                + grad.sqr().unwrap().affine(1.0 - c.beta2, 0.0).unwrap())
            .unwrap();
            let denom = exp_avg_sq.sqrt().unwrap().affine(1.0, c.eps).unwrap();
            let mut step_size = lr;
            if c.correct_bias {
                let bc1 = 1.0 - c.beta1.powf(step as f64);
                let bc2 = 1.0 - c.beta2.powf(step as f64);
                step_size = step_size * bc2.sqrt() / bc1;
            }
            let mut new_param = (param
                + exp_avg
                    .div(&denom)
                    .unwrap()
                    .affine(-step_size, 0.0)
                    .unwrap())
            .unwrap();
            if slot.decay && c.weight_decay > 0.0 {
                new_param =
                    (&new_param + new_param.affine(-lr * c.weight_decay, 0.0).unwrap()).unwrap();
            }
            slot.var.set(&new_param).unwrap();
            slot.moments = Some((step, exp_avg, exp_avg_sq));
        }
    }

    /// `optimizer.safetensors` + `optimizer.json` exactly as the per-tensor code wrote them.
    pub fn save_state(&self, dir: &Path) {
        let mut tensors = HashMap::new();
        let mut steps = BTreeMap::new();
        for slot in &self.slots {
            if let Some((step, m, v)) = &slot.moments {
                tensors.insert(format!("{}.exp_avg", slot.name), m.clone());
                tensors.insert(format!("{}.exp_avg_sq", slot.name), v.clone());
                steps.insert(slot.name.clone(), *step);
            }
        }
        candle_core::safetensors::save(&tensors, dir.join("optimizer.safetensors")).unwrap();
        let index = serde_json::json!({ "config": self.config, "steps": steps });
        std::fs::write(dir.join("optimizer.json"), index.to_string()).unwrap();
    }
}
