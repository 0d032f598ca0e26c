//! bf16 activations with f32 master weights: the loop runs, parameters and Adam state stay
//! f32, and the losses stay close to the f32 run.

use crate::support;

use c2n_train::trainer::Trainer;
use candle_core::DType;
use support::*;

fn losses(dtype: DType) -> (Vec<f64>, Trainer) {
    let fx = expected();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(&fx, dir.path().to_path_buf());
    config.batch_size = 2;
    config.train_steps = Some(3);
    let model = tiny_model().with_compute_dtype(dtype);
    let mut trainer = Trainer::new(config, model, features(&fx), None, None).unwrap();
    let mut out = Vec::new();
    while let Some(report) = trainer.advance().unwrap() {
        out.push(report.loss);
    }
    (out, trainer)
}

#[test]
fn bf16_compute_keeps_f32_state_and_close_losses() {
    let (f32_losses, _) = losses(DType::F32);
    let (bf16_losses, trainer) = losses(DType::BF16);
    // bf16 really ran (rounding shows in the losses) ...
    assert_ne!(f32_losses, bf16_losses);
    // ... and stays close.
    for (a, b) in f32_losses.iter().zip(&bf16_losses) {
        assert!((a - b).abs() < 0.05 * a.abs(), "f32 {a} vs bf16 {b}");
    }
    for (name, var) in trainer.params().iter() {
        assert_eq!(var.dtype(), DType::F32, "{name}");
        if let Some((m, v)) = trainer.optimizer().moments(name) {
            assert_eq!((m.dtype(), v.dtype()), (DType::F32, DType::F32), "{name}");
        }
    }
}
