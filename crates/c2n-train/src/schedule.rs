//! Linear warmup then linear decay, as `get_linear_schedule_with_warmup` (spec §7.3).
//!
//! The multiplier after `s` scheduler steps is
//! `s / max(1, W)` while `s < W`, then `max(0, (N - s) / max(1, N - W))`.
//! The scheduler steps once after every optimizer update, so the k-th update (1-based)
//! uses `f(k - 1)`: pass the number of updates already done to [`LinearSchedule::lr_at`].

use serde::{Deserialize, Serialize};

/// A linear warmup/decay schedule over `total_steps` optimizer updates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearSchedule {
    /// The peak learning rate (`--learning_rate`).
    pub base_lr: f64,
    /// `W`: updates of linear warmup from 0.
    pub warmup_steps: u64,
    /// `N`: the update count at which the learning rate reaches 0.
    pub total_steps: u64,
}

impl LinearSchedule {
    /// Variant A (step-based): `W = --warmup_steps`, `N = --train_steps`.
    pub fn variant_a(base_lr: f64, warmup_steps: u64, train_steps: u64) -> Self {
        Self {
            base_lr,
            warmup_steps,
            total_steps: train_steps,
        }
    }

    /// Variant B (epoch-based): `t_total = (batches_per_epoch // GA) * epochs`,
    /// `W = int(0.1 * t_total)` (a float product, as the reference computes it).
    pub fn variant_b(base_lr: f64, batches_per_epoch: u64, grad_accum: u64, epochs: u64) -> Self {
        let total = (batches_per_epoch / grad_accum.max(1)).saturating_mul(epochs);
        let warmup = (total as f64 * 0.1).floor() as u64;
        Self {
            base_lr,
            warmup_steps: warmup,
            total_steps: total,
        }
    }

    /// The multiplier `f(s)` after `s` scheduler steps.
    pub fn multiplier(&self, steps_done: u64) -> f64 {
        let s = steps_done as i128;
        let w = self.warmup_steps as i128;
        let n = self.total_steps as i128;
        if s < w {
            s as f64 / w.max(1) as f64
        } else {
            ((n - s) as f64 / (n - w).max(1) as f64).max(0.0)
        }
    }

    /// The learning rate of the update that follows `updates_done` earlier updates.
    pub fn lr_at(&self, updates_done: u64) -> f64 {
        self.base_lr * self.multiplier(updates_done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_a_without_warmup_starts_at_full_lr_and_ends_at_lr_over_n() {
        let s = LinearSchedule::variant_a(5e-5, 0, 4);
        assert_eq!(s.lr_at(0), 5e-5);
        assert_eq!(s.lr_at(3), 5e-5 * 0.25);
        assert_eq!(s.lr_at(4), 0.0);
        assert_eq!(s.lr_at(10), 0.0);
    }

    #[test]
    fn variant_b_ruby_numbers_of_the_spec() {
        // Spec §7.3: 779 batches, GA 1, 10 epochs → t_total 7790, W 779.
        let s = LinearSchedule::variant_b(5e-5, 779, 1, 10);
        assert_eq!((s.total_steps, s.warmup_steps), (7790, 779));
        assert_eq!(s.lr_at(0), 0.0);
        assert_eq!(s.lr_at(1), 5e-5 / 779.0);
    }

    #[test]
    fn guards_avoid_division_by_zero() {
        let s = LinearSchedule::variant_a(1.0, 0, 0);
        assert_eq!(s.multiplier(0), 0.0);
        let s = LinearSchedule::variant_a(1.0, 3, 3);
        assert_eq!(s.multiplier(3), 0.0);
        assert!((s.multiplier(2) - 2.0 / 3.0).abs() < 1e-15);
    }
}
