//! The reference training loops as a pure state machine (spec §7.4, §7.5).
//!
//! [`LoopDriver::next_step`] says, for every micro-batch in order, which batch of which data
//! pass to train on, whether an optimizer update follows its backward pass, and whether a
//! dev evaluation follows that. It performs no tensor work, so the quirky rules are unit
//! tested in isolation and the trainer simply obeys:
//!
//! * **Variant A** (`--train_steps`): the first pass's batch order is replayed forever
//!   (`itertools.cycle`); evaluation when `(global_step + 1) % eval_steps == 0` and an update
//!   happened since the last evaluation; the final update is never evaluated when
//!   `train_steps` is a multiple of `eval_steps`.
//! * **Variant B** (`--num_train_epochs`): a fresh permutation per epoch; evaluation after
//!   every epoch.
//! * **Accumulation** ([`AccumulationMode`]): by default ([`AccumulationMode::Fixed`]) an
//!   update follows every GA-th batch, counted over the whole run: evaluations and epoch ends
//!   do not move the phase. The reference's rule ([`AccumulationMode::Reference`], on request:
//!   `--accumulation reference`, for parity with run.py when GA > 1) updates when
//!   `(nb_tr_steps + 1) % GA == 0` after the increment — so the first update comes after
//!   GA − 1 batches (one for GA = 2), later ones every GA — and resets `nb_tr_steps` at every
//!   evaluation (spec §11.7).
//! * **The first evaluation (A)**: `run.py` sets `eval_flag = True` before its loop, so with
//!   `eval_steps` 1 (`--eval_steps -1`) and a first batch that does not update (GA ≥ 2, or GA ≥ 3
//!   with the reference rule) the untrained model is evaluated after that batch
//!   ([`LoopCounters::at_start`]); with the reference rule that also resets its phase.
//!
//! ```
//! use c2n_train::loop_plan::{LoopDriver, LoopPlan, LoopKind, AccumulationMode};
//! let plan = LoopPlan {
//!     kind: LoopKind::Steps { train_steps: 4, eval_steps: Some(2) },
//!     batches_per_pass: 3, grad_accum: 1, accumulation: AccumulationMode::Reference, stop_after: None,
//! };
//! let steps: Vec<_> = LoopDriver::new(plan).unwrap().collect();
//! assert_eq!(steps.iter().map(|s| s.batch_index).collect::<Vec<_>>(), vec![0, 1, 2, 0]);
//! // Evaluations after updates 1 and 3 (global_step + 1 = 2, 4); update 4 is not evaluated.
//! assert_eq!(steps.iter().map(|s| s.evaluate).collect::<Vec<_>>(), vec![true, false, true, false]);
//! ```

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};

/// When gradient accumulation triggers an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccumulationMode {
    /// The reference's off-by-one rule `(nb_tr_steps + 1) % GA == 0`, with `nb_tr_steps`
    /// reset at every evaluation: what run.py does (spec §11.7), on request.
    Reference,
    /// Every GA batches over the whole run (the default): each update sums exactly GA
    /// micro-batches. With GA = 1 both modes are the same.
    #[default]
    Fixed,
}

/// Step-based (A) or epoch-based (B) loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoopKind {
    /// Variant A: `train_steps` micro-batches over the cycled first pass; evaluation every
    /// `eval_steps` updates (`None`: no evaluation during the loop).
    Steps {
        train_steps: u64,
        eval_steps: Option<u64>,
    },
    /// Variant B: `epochs` passes, each freshly shuffled; evaluation after each epoch when
    /// `evaluate` is set.
    Epochs { epochs: u64, evaluate: bool },
}

/// Everything that fixes the sequence of micro-steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopPlan {
    pub kind: LoopKind,
    /// Batches in one pass over the training data (`len(train_dataloader)`).
    pub batches_per_pass: u64,
    /// `--gradient_accumulation_steps`.
    pub grad_accum: u64,
    pub accumulation: AccumulationMode,
    /// End the loop once this many updates are done (the schedule still spans the full run).
    pub stop_after: Option<u64>,
}

/// The counters of the reference loop (part of the resumable train state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoopCounters {
    /// Micro-batches done in total (variant A's `step`).
    pub batches_done: u64,
    /// Variant B: the current epoch; variant A: always 0 (one cycled pass).
    pub epoch: u64,
    /// Position inside the current pass (B) — A derives it from `batches_done`.
    pub batch_in_epoch: u64,
    /// run.py's `nb_tr_steps`: batches since the last evaluation under
    /// [`AccumulationMode::Reference`]; batches since the start under the default
    /// [`AccumulationMode::Fixed`], whose phase evaluations do not reset.
    pub nb_tr_steps: u64,
    /// Optimizer updates done (`global_step`) = scheduler steps taken.
    pub global_step: u64,
    /// Variant A: an update happened since the last evaluation (or none has: the start).
    pub eval_flag: bool,
}

impl LoopCounters {
    /// The counters before the first micro-batch: all zero, and `eval_flag` set, as `run.py`
    /// sets it before its loop (it only shows when the first batch does not update).
    pub fn at_start() -> Self {
        Self {
            eval_flag: true,
            ..Self::default()
        }
    }
}

/// What to do with one micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroStep {
    /// Micro-batches done before this one in the whole run: the step's position, which seeds
    /// its dropout masks (so a resumed run draws the masks the uninterrupted run drew).
    pub micro_batch: u64,
    /// Which data permutation the batch comes from: the epoch in B, 0 in A (cycled).
    pub data_epoch: u64,
    /// Index of the batch inside that pass.
    pub batch_index: u64,
    /// Updates done before this micro-step: the learning rate of an update here is
    /// `schedule.lr_at(updates_before)`.
    pub updates_before: u64,
    /// Run `optimizer.step`, `zero_grad`, `scheduler.step` after the backward pass.
    pub update: bool,
    /// Run a dev evaluation (and checkpointing) after that.
    pub evaluate: bool,
    /// Last batch of an epoch (B) or of a pass (A).
    pub pass_end: bool,
}

/// Iterates the micro-steps of a plan, from the start or from saved counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDriver {
    plan: LoopPlan,
    counters: LoopCounters,
}

impl LoopDriver {
    /// A driver at the start of training.
    pub fn new(plan: LoopPlan) -> Result<Self> {
        Self::resume(plan, LoopCounters::at_start())
    }

    /// A driver continuing from saved counters.
    pub fn resume(plan: LoopPlan, counters: LoopCounters) -> Result<Self> {
        if plan.batches_per_pass == 0 {
            return Err(TrainError::Config(
                "the training set yields no batch".into(),
            ));
        }
        if plan.grad_accum == 0 {
            return Err(TrainError::Config("grad_accum must be at least 1".into()));
        }
        if let LoopKind::Steps {
            eval_steps: Some(0),
            ..
        } = plan.kind
        {
            return Err(TrainError::Config("eval_steps must be at least 1".into()));
        }
        Ok(Self { plan, counters })
    }

    pub fn plan(&self) -> &LoopPlan {
        &self.plan
    }

    /// The counters after the last returned micro-step (save these to resume).
    pub fn counters(&self) -> LoopCounters {
        self.counters
    }

    /// Whether the loop has ended (schedule exhausted or `stop_after` reached).
    pub fn is_finished(&self) -> bool {
        let c = &self.counters;
        if self.plan.stop_after.is_some_and(|s| c.global_step >= s) {
            return true;
        }
        match self.plan.kind {
            LoopKind::Steps { train_steps, .. } => c.batches_done >= train_steps,
            LoopKind::Epochs { epochs, .. } => c.epoch >= epochs,
        }
    }

    /// Total optimizer updates the full plan performs (ignoring `stop_after`).
    pub fn total_updates(&self) -> u64 {
        let mut probe = Self {
            plan: LoopPlan {
                stop_after: None,
                ..self.plan
            },
            counters: LoopCounters::at_start(),
        };
        while probe.next_step().is_some() {}
        probe.counters.global_step
    }

    /// The accumulation rule, on `nb_tr_steps` after its increment.
    fn update_due(&self, nb_tr_steps: u64) -> bool {
        match self.plan.accumulation {
            AccumulationMode::Reference => (nb_tr_steps + 1).is_multiple_of(self.plan.grad_accum),
            AccumulationMode::Fixed => nb_tr_steps.is_multiple_of(self.plan.grad_accum),
        }
    }

    /// The next micro-step, or `None` when the loop is over.
    pub fn next_step(&mut self) -> Option<MicroStep> {
        if self.is_finished() {
            return None;
        }
        let per_pass = self.plan.batches_per_pass;
        let updates_before = self.counters.global_step;
        let nb_tr_steps = self.counters.nb_tr_steps + 1;
        let update = self.update_due(nb_tr_steps);
        let c = &mut self.counters;
        c.nb_tr_steps = nb_tr_steps;
        match self.plan.kind {
            LoopKind::Steps { eval_steps, .. } => {
                let micro_batch = c.batches_done;
                let batch_index = c.batches_done % per_pass;
                if update {
                    c.global_step += 1;
                    c.eval_flag = true;
                }
                let evaluate = c.eval_flag
                    && eval_steps.is_some_and(|e| (c.global_step + 1).is_multiple_of(e));
                if evaluate {
                    c.nb_tr_steps = phase_after_evaluation(self.plan.accumulation, c.nb_tr_steps);
                    c.eval_flag = false;
                }
                c.batches_done += 1;
                Some(MicroStep {
                    micro_batch,
                    data_epoch: 0,
                    batch_index,
                    updates_before,
                    update,
                    evaluate,
                    pass_end: batch_index + 1 == per_pass,
                })
            }
            LoopKind::Epochs { evaluate, .. } => {
                let (epoch, batch_index) = (c.epoch, c.batch_in_epoch);
                let micro_batch = c.batches_done;
                if update {
                    c.global_step += 1;
                }
                c.batches_done += 1;
                c.batch_in_epoch += 1;
                let pass_end = c.batch_in_epoch == per_pass;
                if pass_end {
                    if evaluate {
                        c.nb_tr_steps =
                            phase_after_evaluation(self.plan.accumulation, c.nb_tr_steps);
                    }
                    c.epoch += 1;
                    c.batch_in_epoch = 0;
                }
                Some(MicroStep {
                    micro_batch,
                    data_epoch: epoch,
                    batch_index,
                    updates_before,
                    update,
                    evaluate: pass_end && evaluate,
                    pass_end,
                })
            }
        }
    }
}

/// `nb_tr_steps` after an evaluation: run.py zeroes it (which moves its accumulation
/// phase); the fixed rule keeps counting.
fn phase_after_evaluation(mode: AccumulationMode, nb_tr_steps: u64) -> u64 {
    match mode {
        AccumulationMode::Reference => 0,
        AccumulationMode::Fixed => nb_tr_steps,
    }
}

impl Iterator for LoopDriver {
    type Item = MicroStep;

    fn next(&mut self) -> Option<MicroStep> {
        self.next_step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps_plan(train_steps: u64, eval_steps: Option<u64>, per_pass: u64, ga: u64) -> LoopPlan {
        LoopPlan {
            kind: LoopKind::Steps {
                train_steps,
                eval_steps,
            },
            batches_per_pass: per_pass,
            grad_accum: ga,
            accumulation: AccumulationMode::Reference,
            stop_after: None,
        }
    }

    fn flags(plan: LoopPlan) -> (Vec<bool>, Vec<bool>) {
        let steps: Vec<_> = LoopDriver::new(plan).unwrap().collect();
        (
            steps.iter().map(|s| s.update).collect(),
            steps.iter().map(|s| s.evaluate).collect(),
        )
    }

    #[test]
    fn variant_a_ga1_updates_every_batch_and_never_evaluates_the_last_update() {
        let (updates, evals) = flags(steps_plan(6, Some(3), 4, 1));
        assert!(updates.iter().all(|&u| u));
        // global_step + 1 ≡ 0 (mod 3) after updates 2 and 5; update 6 is never evaluated.
        assert_eq!(evals, vec![false, true, false, false, true, false]);
    }

    #[test]
    fn variant_a_cycles_the_first_pass() {
        let order: Vec<u64> = LoopDriver::new(steps_plan(7, None, 3, 1))
            .unwrap()
            .map(|s| s.batch_index)
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2, 0]);
        let positions: Vec<u64> = LoopDriver::new(steps_plan(7, None, 3, 1))
            .unwrap()
            .map(|s| s.micro_batch)
            .collect();
        assert_eq!(
            positions,
            (0..7).collect::<Vec<_>>(),
            "one position per step"
        );
        assert!(LoopDriver::new(steps_plan(7, None, 3, 1))
            .unwrap()
            .all(|s| s.data_epoch == 0));
    }

    #[test]
    fn variant_a_ga2_first_update_after_one_batch_and_phase_resets_at_evaluation() {
        // Trace of the reference rule by hand (spec §7.4 step 3.6–3.7), GA = 2, eval_steps = 2:
        // b1: nb=1, (1+1)%2==0 → update (gs=1), (1+1)%2==0 → eval, nb=0
        // b2: nb=1 → update (gs=2), (2+1)%2 != 0
        // b3: nb=2 → no update
        // b4: nb=3 → update (gs=3), (3+1)%2==0 → eval, nb=0
        // b5: nb=1 → update (gs=4)
        // b6: nb=2 → no
        let (updates, evals) = flags(steps_plan(6, Some(2), 10, 2));
        assert_eq!(updates, vec![true, true, false, true, true, false]);
        assert_eq!(evals, vec![true, false, false, true, false, false]);
    }

    #[test]
    fn variant_a_evaluates_the_untrained_model_when_the_first_batch_does_not_update() {
        // run.py starts with eval_flag = True. GA = 3, eval_steps = 1 (`--eval_steps -1`):
        // b1: nb=1, (1+1)%3 != 0 → no update; (0+1)%1 == 0 and the flag → eval, nb=0
        // b2: nb=1 → no; b3: nb=2 → update (gs=1) → eval, nb=0; and so on every 2 batches.
        let (updates, evals) = flags(steps_plan(7, Some(1), 10, 3));
        assert_eq!(
            updates,
            vec![false, false, true, false, true, false, true],
            "the phase follows the reset of the first evaluation"
        );
        assert_eq!(evals, vec![true, false, true, false, true, false, true]);
        let driver = LoopDriver::new(steps_plan(7, Some(1), 10, 3)).unwrap();
        assert_eq!(driver.total_updates(), 3, "the probe starts the same way");
        // Without that first evaluation the updates would fall on b2, b5: another run.
        // GA = 3 with eval_steps 2: nothing to evaluate before the first update.
        let (_, evals) = flags(steps_plan(6, Some(2), 10, 3));
        assert!(!evals[0]);
    }

    #[test]
    fn fixed_accumulation_updates_every_ga_batches() {
        let mut plan = steps_plan(6, None, 10, 3);
        plan.accumulation = AccumulationMode::Fixed;
        let (updates, _) = flags(plan);
        assert_eq!(updates, vec![false, false, true, false, false, true]);
        assert_eq!(AccumulationMode::default(), AccumulationMode::Fixed);
    }

    #[test]
    fn fixed_accumulation_keeps_its_phase_through_evaluations() {
        // GA 2, eval_steps 1: the untrained evaluation after b1 (run.py's eval_flag) and the
        // evaluations after each update leave the phase alone: updates after b2, b4, b6.
        let mut plan = steps_plan(6, Some(1), 10, 2);
        plan.accumulation = AccumulationMode::Fixed;
        let (updates, evals) = flags(plan);
        assert_eq!(updates, vec![false, true, false, true, false, true]);
        assert_eq!(evals, vec![true, true, false, true, false, true]);
        // Variant B with evaluation, 3 batches an epoch: the phase runs across epoch ends.
        let plan = LoopPlan {
            kind: LoopKind::Epochs {
                epochs: 2,
                evaluate: true,
            },
            batches_per_pass: 3,
            grad_accum: 2,
            accumulation: AccumulationMode::Fixed,
            stop_after: None,
        };
        let (updates, _) = flags(plan);
        assert_eq!(updates, vec![false, true, false, true, false, true]);
    }

    #[test]
    fn variant_b_evaluates_per_epoch_and_reshuffles() {
        let plan = LoopPlan {
            kind: LoopKind::Epochs {
                epochs: 3,
                evaluate: true,
            },
            batches_per_pass: 2,
            grad_accum: 1,
            accumulation: AccumulationMode::Reference,
            stop_after: None,
        };
        let steps: Vec<_> = LoopDriver::new(plan).unwrap().collect();
        assert_eq!(
            steps.iter().map(|s| s.data_epoch).collect::<Vec<_>>(),
            vec![0, 0, 1, 1, 2, 2]
        );
        assert_eq!(
            steps.iter().map(|s| s.evaluate).collect::<Vec<_>>(),
            vec![false, true, false, true, false, true]
        );
        assert_eq!(
            steps.iter().map(|s| s.updates_before).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            steps.iter().map(|s| s.micro_batch).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn variant_b_ga_carries_the_phase_only_without_evaluation() {
        let plan = |evaluate| LoopPlan {
            kind: LoopKind::Epochs {
                epochs: 2,
                evaluate,
            },
            batches_per_pass: 3,
            grad_accum: 2,
            accumulation: AccumulationMode::Reference,
            stop_after: None,
        };
        // With evaluation nb resets at the epoch end: each epoch updates after batches 1 and 3.
        let (u, _) = flags(plan(true));
        assert_eq!(u, vec![true, false, true, true, false, true]);
        // Without, nb keeps counting: nb = 1..6 → updates at nb = 1, 3, 5.
        let (u, _) = flags(plan(false));
        assert_eq!(u, vec![true, false, true, false, true, false]);
    }

    #[test]
    fn stop_after_and_resume_replay_the_same_sequence() {
        let full: Vec<_> = LoopDriver::new(steps_plan(9, Some(4), 4, 2))
            .unwrap()
            .collect();
        let mut plan = steps_plan(9, Some(4), 4, 2);
        plan.stop_after = Some(3);
        let mut first = LoopDriver::new(plan).unwrap();
        let head: Vec<_> = first.by_ref().collect();
        assert_eq!(head.last().unwrap().updates_before + 1, 3);
        assert!(head.last().unwrap().update);
        let tail: Vec<_> = LoopDriver::resume(steps_plan(9, Some(4), 4, 2), first.counters())
            .unwrap()
            .collect();
        assert_eq!([head, tail].concat(), full);
        assert_eq!(
            LoopDriver::new(steps_plan(9, Some(4), 4, 2))
                .unwrap()
                .total_updates(),
            5
        );
    }

    #[test]
    fn degenerate_plans_are_errors() {
        assert!(LoopDriver::new(steps_plan(3, None, 0, 1)).is_err());
        assert!(LoopDriver::new(steps_plan(3, None, 2, 0)).is_err());
        assert!(LoopDriver::new(steps_plan(3, Some(0), 2, 1)).is_err());
    }
}
