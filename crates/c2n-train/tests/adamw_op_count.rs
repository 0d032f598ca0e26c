//! How many tensors one optimizer step creates (Candle's `TensorId` is a global counter): the
//! chunked `AdamW` against the per-tensor update it replaced, on ~200 parameter tensors of a
//! CodeBERT-like naming (both weight-decay groups). On a GPU each created tensor is roughly one
//! dispatched op, so this is the count the chunked layout exists to cut. One test per binary:
//! other threads creating tensors would disturb the counter.

mod adamw_reference;

use adamw_reference::Oracle;
use c2n_train::optim::{AdamW, AdamWConfig, Gradients, NamedParams};
use candle_core::{DType, Device, Tensor, Var};

/// The next tensor id minus one: the number of tensors created so far (this call's included).
fn tensors_created() -> u64 {
    let probe = Tensor::zeros(1, DType::U8, &Device::Cpu).unwrap();
    let id = format!("{:?}", probe.id());
    id.trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse()
        .unwrap()
}

/// 13 layers of 16 tensors (weights 2-D, biases and LayerNorm weights 1-D) minus two: 206.
fn params() -> NamedParams {
    let dev = Device::Cpu;
    let mut entries = Vec::new();
    for layer in 0..13 {
        for (k, part) in ["query", "key", "value", "attn_out", "inter", "out"]
            .iter()
            .enumerate()
        {
            let w = Tensor::ones((4, 3 + k), DType::F32, &dev).unwrap();
            let b = Tensor::ones(4, DType::F32, &dev).unwrap();
            entries.push((format!("l{layer}.{part}.weight"), w));
            entries.push((format!("l{layer}.{part}.bias"), b));
        }
        for norm in ["attn", "out"] {
            let t = Tensor::ones(4, DType::F32, &dev).unwrap();
            entries.push((format!("l{layer}.{norm}.LayerNorm.weight"), t.clone()));
            entries.push((format!("l{layer}.{norm}.LayerNorm.bias"), t));
        }
    }
    entries.truncate(206);
    NamedParams::new(
        entries
            .into_iter()
            .map(|(n, t)| (n, Var::from_tensor(&t).unwrap())),
    )
    .unwrap()
}

fn grads(params: &NamedParams) -> Gradients {
    let mut g = Gradients::new();
    for (name, var) in params.iter() {
        g.insert(name, var.as_tensor().affine(0.5, 0.1).unwrap());
    }
    g
}

#[test]
fn a_step_creates_a_few_tensors_per_parameter_and_never_repacks_in_steady_state() {
    let config = AdamWConfig {
        weight_decay: 0.01,
        ..Default::default()
    };
    let old_params = params();
    let new_params = params();
    let n = new_params.len() as u64;
    assert_eq!(n, 206);
    let (old_grads, new_grads) = (grads(&old_params), grads(&new_params));
    let mut oracle = Oracle::new(&old_params, config.clone());
    let mut opt = AdamW::new(&new_params, config);
    let mut old_counts = Vec::new();
    let mut new_counts = Vec::new();
    for _ in 0..3 {
        let t0 = tensors_created();
        oracle.step(&old_grads, 1e-3);
        let t1 = tensors_created();
        opt.step(&new_grads, 1e-3).unwrap();
        let t2 = tensors_created();
        old_counts.push(t1 - t0 - 1);
        new_counts.push(t2 - t1 - 1);
    }
    eprintln!(
        "tensors per step for {n} parameters: per-tensor {old_counts:?}, chunked {new_counts:?}"
    );
    // Steady state: later steps reuse the chunks (a repack would create more tensors).
    assert_eq!(new_counts[1], new_counts[2]);
    assert!(
        new_counts[0] > new_counts[1],
        "the first step builds the chunks"
    );
    // Two chunks here (decay, no decay): ~20 ops each, plus views only per parameter
    // (flattened gradient and parameter, narrowed and reshaped update).
    assert!(new_counts[1] <= 4 * n + 2 * 24, "{new_counts:?}");
    assert!(old_counts[1] >= 12 * n, "{old_counts:?}");
    assert!(
        3 * new_counts[1] < old_counts[1],
        "{new_counts:?} vs {old_counts:?}"
    );
}
