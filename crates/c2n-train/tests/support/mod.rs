//! Shared helpers of the training integration tests: the tiny reference fixture of
//! `tools/reference/train_reference.py train-steps`, and the real data in `../shared`.

#![allow(dead_code)]

use c2n_data::{Feature, Padding};
use c2n_model::Seq2Seq;
use c2n_train::config::TrainConfig;
use c2n_train::model_setup::with_dropout;
use candle_core::Device;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/train_steps")
}

pub fn expected() -> Value {
    let path = fixture_dir().join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The reference-exported tiny model with dropout off.
pub fn tiny_model() -> Seq2Seq {
    let model = c2n_model::load_checkpoint(fixture_dir().join("init"), &Device::Cpu).unwrap();
    with_dropout(model, Some(0.0), &Device::Cpu).unwrap()
}

pub fn features(fx: &Value) -> Vec<Feature> {
    fx["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let ids = |k: &str| -> Vec<u16> { serde_json::from_value(f[k].clone()).unwrap() };
            let (source_ids, target_ids) = (ids("source_ids"), ids("target_ids"));
            Feature {
                idx: f["idx"].as_u64().unwrap(),
                source_bpe_len: source_ids.len() as u32 - 2,
                target_bpe_len: target_ids.len() as u32 - 2,
                source_ids,
                target_ids,
            }
        })
        .collect()
}

/// The fixture's settings as a variant-A config writing into `output_dir`.
pub fn tiny_config(fx: &Value, output_dir: PathBuf) -> TrainConfig {
    TrainConfig {
        init: "unused: the model is passed in".into(),
        output_dir,
        max_source_len: fx["max_source_len"].as_u64().unwrap() as usize,
        max_target_len: fx["max_target_len"].as_u64().unwrap() as usize,
        lr: fx["lr"].as_f64().unwrap(),
        warmup_steps: fx["warmup_steps"].as_u64().unwrap(),
        weight_decay: fx["weight_decay"].as_f64().unwrap(),
        shuffle: false,
        padding: Padding::Reference,
        eval_steps: None,
        eval_bleu: false,
        progress: false,
        device: "cpu".into(),
        ..TrainConfig::default()
    }
}

pub fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `../shared` (or `$C2N_SHARED`) when the RoBERTa BPE and the named ruby files
/// (`data/codesearchnet/ruby/<name>`) are there; `None`, with the reason printed, otherwise.
pub fn shared_data(ruby_files: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let ruby = dir.join("data/codesearchnet/ruby");
    if dir.join("data/roberta-base/vocab.json").is_file()
        && ruby_files.iter().all(|name| ruby.join(name).is_file())
    {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: no ruby data ({}) / tokenizer under {} (set C2N_SHARED)",
            ruby_files.join(", "),
            dir.display()
        );
        None
    }
}

/// Writes the first `n` lines of `src` to `dst`, creating `dst`'s folder.
pub fn head_lines(src: &Path, n: usize, dst: &Path) {
    let text = std::fs::read_to_string(src).unwrap();
    let head: String = text.split_inclusive('\n').take(n).collect();
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::write(dst, head).unwrap();
}
