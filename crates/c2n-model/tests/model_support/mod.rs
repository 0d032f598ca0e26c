//! Shared helpers for the c2n-model parity tests: the committed small-model fixture.
#![allow(dead_code)]

use std::path::PathBuf;

use c2n_model::{load_checkpoint, LossOutput, Seq2Seq, TrainingPass};
use candle_core::{Device, Tensor};
use serde_json::Value;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn small_dir() -> PathBuf {
    data_dir().join("small")
}

pub fn fixture() -> Value {
    let path = data_dir().join("model_fixture.json");
    let text = std::fs::read_to_string(&path).expect("model_fixture.json");
    serde_json::from_str(&text).expect("valid fixture json")
}

pub fn small_model() -> Seq2Seq {
    load_checkpoint(small_dir(), &Device::Cpu).expect("load small fixture model")
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// `[n, L]` u32 tensor from `examples[*][field]`.
pub fn batch(fx: &Value, field: &str) -> Tensor {
    let rows: Vec<Vec<u32>> = fx["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| u32s(&e[field]))
        .collect();
    let (n, l) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (n, l), &Device::Cpu).unwrap()
}

/// Largest `|a − b| / max(1, |b|)`.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Multiply row `row` of the word embeddings by `scale` (the fixture's `eos_row_scale`).
pub fn scale_word_row(model: &Seq2Seq, row: usize, scale: f64) {
    let data = model.varmap().data().lock().unwrap();
    let var = data
        .get("encoder.embeddings.word_embeddings.weight")
        .unwrap();
    let mut w = var.as_tensor().to_vec2::<f32>().unwrap();
    for x in w[row].iter_mut() {
        *x = (*x as f64 * scale) as f32;
    }
    let (v, h) = (w.len(), w[0].len());
    var.set(&Tensor::from_vec(w.concat(), (v, h), &Device::Cpu).unwrap())
        .unwrap();
}

/// The explicit training pass of `model` on the fixture's examples.
pub fn fixture_pass<'m>(model: &'m Seq2Seq, fx: &Value, train: bool) -> TrainingPass<'m> {
    model
        .training_pass(
            &batch(fx, "source_ids"),
            &batch(fx, "source_mask"),
            &batch(fx, "target_ids"),
            &batch(fx, "target_mask"),
            train,
        )
        .expect("training_pass on the fixture")
}

/// All values of `t` as f32, flattened.
pub fn flat_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .expect("readable tensor")
}

/// The §5 loss of `model` on the fixture's examples.
#[allow(dead_code)]
pub fn fixture_loss(model: &Seq2Seq, fx: &Value, train: bool) -> LossOutput {
    model
        .forward_loss(
            &batch(fx, "source_ids"),
            &batch(fx, "source_mask"),
            &batch(fx, "target_ids"),
            &batch(fx, "target_mask"),
            train,
        )
        .expect("forward_loss on the fixture")
}
