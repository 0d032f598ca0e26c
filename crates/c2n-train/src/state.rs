//! The resumable train state: everything besides the weights that a stopped run needs to
//! continue exactly as if it had never stopped.
//!
//! A checkpoint directory holds, next to `model.safetensors` and `config.json`:
//! * `train_state.json`: loop counters, schedule, best scores, patience, running loss,
//!   data-order seed, throughput counters;
//! * `optimizer.safetensors` + `optimizer.json`: AdamW moments and per-parameter steps;
//! * `pending_grads.safetensors`: gradients accumulated since the last update, when any
//!   (variant B can carry them across an epoch end);
//! * `train_config.json`: the resolved training configuration.
//!
//! Data order needs no saved permutation: batches of epoch `e` are a pure function of
//! `(seed, e)` and the bucket window. Dropout masks are a pure function of `seed`, the
//! micro-batch and the rank ([`crate::dropout_seeds`]), so a resumed run is bit-exact with
//! dropout on too.

use crate::checkpoint_policy::CheckpointPolicy;
use crate::early_stopping::EarlyStopping;
use crate::loop_plan::{LoopCounters, LoopKind, LoopPlan};
use crate::optim::Gradients;
use crate::schedule::LinearSchedule;
use crate::{Result, TrainError};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// File name of the JSON train state inside a checkpoint directory.
pub const TRAIN_STATE_FILE: &str = "train_state.json";
/// File name of gradients accumulated but not yet applied.
pub const PENDING_GRADS_FILE: &str = "pending_grads.safetensors";
const FORMAT_VERSION: u32 = 1;

/// Sum and count of the training losses since the last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RunningLoss {
    /// Sum of unscaled micro-batch losses.
    pub sum: f64,
    pub batches: u64,
}

impl RunningLoss {
    pub fn add(&mut self, loss: f64) {
        self.sum += loss;
        self.batches += 1;
    }

    /// Mean since the last reset (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.sum / self.batches as f64
        }
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The JSON part of the train state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format_version: u32,
    pub plan: LoopPlan,
    pub counters: LoopCounters,
    pub schedule: LinearSchedule,
    pub policy: CheckpointPolicy,
    pub early_stopping: EarlyStopping,
    pub running_loss: RunningLoss,
    /// Seed of the data order (batches of epoch `e` depend on `(seed, e)` only).
    pub data_seed: u64,
    /// The length-bucketing window of the data order (absent in states written before it
    /// existed: none).
    #[serde(default)]
    pub bucket_window: Option<usize>,
    /// [`c2n_data::features_fingerprint`] of the training features (absent in states written
    /// before it existed: not checked).
    #[serde(default)]
    pub data_fingerprint: Option<String>,
    pub examples_seen: u64,
    pub target_tokens_seen: u64,
    /// Dev evaluations done, over every resume (absent in states written before it existed:
    /// counted from 0 at the resume).
    #[serde(default)]
    pub evaluations: u64,
    /// Ranks the run last trained on (absent in states written before it existed, or by a
    /// run built without [`crate::trainer::Trainer::from_config_on`]).
    #[serde(default)]
    pub world_size: Option<usize>,
    /// Wall seconds of `run` up to this state, over every resume: what a killed process did
    /// after its last checkpoint is redone, so it is not counted (absent in states written
    /// before it existed: counted from 0 at the resume).
    #[serde(default)]
    pub train_seconds: f64,
    /// Whether `pending_grads.safetensors` belongs to this state.
    pub has_pending_grads: bool,
}

impl TrainState {
    /// A fresh state at the start of training.
    pub fn new(
        plan: LoopPlan,
        schedule: LinearSchedule,
        early_stopping: EarlyStopping,
        data_seed: u64,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            plan,
            counters: LoopCounters::at_start(),
            schedule,
            policy: CheckpointPolicy::default(),
            early_stopping,
            running_loss: RunningLoss::default(),
            data_seed,
            bucket_window: None,
            data_fingerprint: None,
            examples_seen: 0,
            target_tokens_seen: 0,
            evaluations: 0,
            world_size: None,
            train_seconds: 0.0,
            has_pending_grads: false,
        }
    }

    /// Writes `train_state.json` and, when `pending` is not empty, `pending_grads.safetensors`.
    pub fn save(&self, dir: &Path, pending: &Gradients) -> Result<()> {
        let mut state = self.clone();
        state.has_pending_grads = !pending.is_empty();
        let pending_path = dir.join(PENDING_GRADS_FILE);
        if state.has_pending_grads {
            let map: HashMap<String, candle_core::Tensor> = pending
                .iter()
                .map(|(n, g)| (n.to_string(), g.clone()))
                .collect();
            c2n_model::save::write_safetensors(&map, &pending_path)?;
        } else if pending_path.exists() {
            std::fs::remove_file(&pending_path).map_err(|e| TrainError::io(&pending_path, e))?;
        }
        let path = dir.join(TRAIN_STATE_FILE);
        let text = serde_json::to_string_pretty(&state).map_err(|e| TrainError::parse(&path, e))?;
        std::fs::write(&path, text).map_err(|e| TrainError::io(&path, e))
    }

    /// Reads the state of a checkpoint directory and its pending gradients.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, Gradients)> {
        let path = dir.join(TRAIN_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let state: Self = serde_json::from_str(&text).map_err(|e| TrainError::parse(&path, e))?;
        if state.format_version != FORMAT_VERSION {
            return Err(TrainError::Resume {
                path,
                message: format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    state.format_version
                ),
            });
        }
        let mut pending = Gradients::new();
        if state.has_pending_grads {
            let pending_path = dir.join(PENDING_GRADS_FILE);
            let grads = candle_core::safetensors::load(&pending_path, device).map_err(|e| {
                TrainError::Resume {
                    path: pending_path.clone(),
                    message: format!("cannot read the pending gradients: {e}"),
                }
            })?;
            for (name, grad) in grads {
                pending.insert(name, grad);
            }
        }
        Ok((state, pending))
    }

    /// Refuses to resume into a run whose loop differs in anything but `stop_after`, naming
    /// each difference.
    pub fn check_resumable(&self, plan: &LoopPlan, dir: &Path) -> Result<()> {
        let (saved, now) = (&self.plan, plan);
        let mut differences = Vec::new();
        if saved.kind != now.kind {
            // Dev data given to one run and not the other: the settings agree, the loop not.
            let dev_hint = match (saved.kind, now.kind) {
                (
                    LoopKind::Steps {
                        eval_steps: Some(_),
                        ..
                    },
                    LoopKind::Steps {
                        eval_steps: None, ..
                    },
                )
                | (
                    LoopKind::Epochs { evaluate: true, .. },
                    LoopKind::Epochs {
                        evaluate: false, ..
                    },
                ) => {
                    " (this run has no dev data: the saved run's evaluations are part of its \
                     loop, so resume it with its dev data)"
                }
                (
                    LoopKind::Steps {
                        eval_steps: None, ..
                    },
                    LoopKind::Steps {
                        eval_steps: Some(_),
                        ..
                    },
                )
                | (
                    LoopKind::Epochs {
                        evaluate: false, ..
                    },
                    LoopKind::Epochs { evaluate: true, .. },
                ) => " (the saved run had no dev data: resume it without one)",
                _ => "",
            };
            differences.push(format!(
                "schedule: saved {}, now {}{dev_hint}",
                describe(saved.kind),
                describe(now.kind)
            ));
        }
        if saved.batches_per_pass != now.batches_per_pass {
            differences.push(format!(
                "batches per pass over the training data: saved {}, now {} (other data or \
                 batch size)",
                saved.batches_per_pass, now.batches_per_pass
            ));
        }
        // With GA 1 the two accumulation rules are the same loop.
        let rule_differs = now.grad_accum > 1 && saved.accumulation != now.accumulation;
        if saved.grad_accum != now.grad_accum || rule_differs {
            differences.push(format!(
                "gradient accumulation: saved {} ({:?}), now {} ({:?})",
                saved.grad_accum, saved.accumulation, now.grad_accum, now.accumulation
            ));
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(TrainError::Resume {
                path: dir.to_path_buf(),
                message: format!("the loop differs: {}", differences.join("; ")),
            })
        }
    }
}

fn describe(kind: LoopKind) -> String {
    match kind {
        LoopKind::Steps {
            train_steps,
            eval_steps,
        } => match eval_steps {
            Some(e) => format!("{train_steps} steps, evaluating every {e}"),
            None => format!("{train_steps} steps, no evaluation"),
        },
        LoopKind::Epochs { epochs, evaluate } => format!(
            "{epochs} epochs{}",
            if evaluate { ", evaluating each" } else { "" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::early_stopping::StopMetric;
    use crate::loop_plan::{AccumulationMode, LoopKind};
    use candle_core::Tensor;

    fn plan() -> LoopPlan {
        LoopPlan {
            kind: LoopKind::Epochs {
                epochs: 2,
                evaluate: true,
            },
            batches_per_pass: 5,
            grad_accum: 2,
            accumulation: AccumulationMode::Reference,
            stop_after: Some(3),
        }
    }

    #[test]
    fn round_trip_with_pending_gradients_and_plan_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = TrainState::new(
            plan(),
            LinearSchedule::variant_b(1e-3, 5, 2, 2),
            EarlyStopping::new(Some(3), StopMetric::Loss),
            7,
        );
        state.counters.global_step = 3;
        state.running_loss.add(2.5);
        let mut pending = Gradients::new();
        pending.insert("w", Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap());
        state.save(dir.path(), &pending).unwrap();
        let (back, grads) = TrainState::load(dir.path(), &Device::Cpu).unwrap();
        assert!(back.has_pending_grads);
        assert_eq!(back.counters, state.counters);
        assert_eq!(back.running_loss, state.running_loss);
        assert_eq!(
            grads.get("w").unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0, 2.0]
        );

        let mut other = plan();
        other.stop_after = None;
        assert!(back.check_resumable(&other, dir.path()).is_ok());
        other.batches_per_pass = 6;
        assert!(back.check_resumable(&other, dir.path()).is_err());

        // Saving without pending gradients removes the stale file.
        state.save(dir.path(), &Gradients::new()).unwrap();
        assert!(!dir.path().join(PENDING_GRADS_FILE).exists());
        assert!(TrainState::load(dir.path(), &Device::Cpu)
            .unwrap()
            .1
            .is_empty());
    }
}
