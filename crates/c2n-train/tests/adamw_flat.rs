//! The chunked (multi-tensor) AdamW against the per-tensor algorithm it replaced, kept here
//! as the oracle: parameters, moments and step counts must agree bit for bit through skipped
//! gradients, a parameter joining late, mixed dtypes, both weight-decay groups and a
//! save/load round trip, in either direction between the two implementations.

use crate::adamw_reference;

use adamw_reference::Oracle;
use c2n_train::optim::{AdamW, AdamWConfig, Gradients, NamedParams, ParamGroup};
use candle_core::{DType, Device, Tensor, Var};
use std::path::Path;

/// Name, shape, dtype, and the steps (1-based) at which the parameter gets a gradient.
struct Spec {
    name: &'static str,
    shape: &'static [usize],
    dtype: DType,
    steps: &'static [usize],
}

const ALL: &[usize] = &[1, 2, 3, 4, 5, 6, 7];
const STEPS: usize = 7;
const SPECS: &[Spec] = &[
    Spec {
        name: "a.dense.weight",
        shape: &[3, 4],
        dtype: DType::F32,
        steps: ALL,
    },
    Spec {
        name: "a.dense.bias",
        shape: &[4],
        dtype: DType::F32,
        steps: ALL,
    },
    Spec {
        name: "b.LayerNorm.weight",
        shape: &[5],
        dtype: DType::F32,
        steps: ALL,
    },
    Spec {
        name: "b.out.weight",
        shape: &[2, 3, 2],
        dtype: DType::F32,
        steps: ALL,
    },
    // Misses steps 2 and 5: its step count falls behind the rest of its group.
    Spec {
        name: "c.skipped.weight",
        shape: &[7],
        dtype: DType::F32,
        steps: &[1, 3, 4, 6, 7],
    },
    // First gradient at step 3: joins with fresh state while others have some.
    Spec {
        name: "d.late.bias",
        shape: &[6],
        dtype: DType::F32,
        steps: &[3, 4, 5, 6, 7],
    },
    Spec {
        name: "e.half.weight",
        shape: &[3, 3],
        dtype: DType::BF16,
        steps: ALL,
    },
    Spec {
        name: "f.norm1.weight",
        shape: &[1],
        dtype: DType::F32,
        steps: ALL,
    },
    Spec {
        name: "pooler.dense.weight",
        shape: &[2, 2],
        dtype: DType::F32,
        steps: &[],
    },
];

/// Deterministic values with both signs, exact zeros and negative zeros.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|k| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match k % 11 {
                3 => 0.0,
                7 => -0.0,
                _ => ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0,
            }
        })
        .collect()
}

fn make_params() -> NamedParams {
    let dev = Device::Cpu;
    NamedParams::new(SPECS.iter().enumerate().map(|(k, s)| {
        let n = s.shape.iter().product();
        let t = Tensor::from_vec(values(k as u64 + 1, n), s.shape, &dev)
            .unwrap()
            .to_dtype(s.dtype)
            .unwrap();
        (s.name.to_string(), Var::from_tensor(&t).unwrap())
    }))
    .unwrap()
}

/// The gradients of step `step`; the 2-D one is a transposed (non-contiguous) view.
fn grads_at(step: usize) -> Gradients {
    let dev = Device::Cpu;
    let mut g = Gradients::new();
    for (k, s) in SPECS.iter().enumerate() {
        if !s.steps.contains(&step) {
            continue;
        }
        let n: usize = s.shape.iter().product();
        let v = values(1000 * step as u64 + k as u64, n);
        let t = if let [r, c] = s.shape {
            Tensor::from_vec(v, (*c, *r), &dev).unwrap().t().unwrap()
        } else {
            Tensor::from_vec(v, s.shape, &dev).unwrap()
        };
        g.insert(s.name, t);
    }
    g
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn assert_same(step: usize, got_params: &NamedParams, got: &AdamW, want: &Oracle) {
    for slot in &want.slots {
        let name = &slot.name;
        let var = got_params.get(name).unwrap();
        assert_eq!(var.dtype(), slot.var.dtype(), "step {step} {name}");
        assert_eq!(
            bits(var.as_tensor()),
            bits(slot.var.as_tensor()),
            "step {step}: parameter {name}"
        );
        match (&slot.moments, got.moments(name)) {
            (None, None) => assert_eq!(got.step_count(name), 0, "step {step} {name}"),
            (Some((s, m, v)), Some((gm, gv))) => {
                assert_eq!(got.step_count(name), *s, "step {step}: count {name}");
                assert_eq!(gm.dims(), m.dims(), "step {step}: exp_avg shape {name}");
                assert_eq!(bits(&gm), bits(m), "step {step}: exp_avg {name}");
                assert_eq!(bits(&gv), bits(v), "step {step}: exp_avg_sq {name}");
            }
            (want, got) => panic!(
                "step {step} {name}: state {} vs {}",
                got.is_some(),
                want.is_some()
            ),
        }
    }
}

fn config() -> AdamWConfig {
    AdamWConfig {
        weight_decay: 0.05,
        ..Default::default()
    }
}

/// Variant B's first update has lr 0; the rest vary.
fn lr_at(step: usize) -> f64 {
    [0.0, 1e-2, 3e-3, 5e-2, 2e-3, 1e-3, 7e-4][step - 1]
}

/// Runs all steps, switching to a fresh optimizer loaded from the state saved after
/// `resume_after` (saved by the new code, or by the oracle when `oracle_writes`).
fn run(max_chunk_elems: Option<usize>, resume_after: usize, oracle_writes: bool) {
    let params = make_params();
    let oracle_params = make_params();
    let new_opt = |p: &NamedParams| {
        let opt = AdamW::new(p, config());
        match max_chunk_elems {
            Some(n) => opt.with_max_chunk_elems(n),
            None => opt,
        }
    };
    let mut opt = new_opt(&params);
    let mut oracle = Oracle::new(&oracle_params, config());
    assert_eq!(opt.group("a.dense.bias"), Some(ParamGroup::NoDecay));
    assert_eq!(opt.group("f.norm1.weight"), Some(ParamGroup::Decay));
    for step in 1..=STEPS {
        let grads = grads_at(step);
        let updated = opt.step(&grads, lr_at(step)).unwrap();
        oracle.step(&grads, lr_at(step));
        assert_eq!(updated, grads.len());
        assert_same(step, &params, &opt, &oracle);
        if step == resume_after {
            let dir = tempfile::tempdir().unwrap();
            if oracle_writes {
                oracle.save_state(dir.path());
            } else {
                opt.save_state(dir.path()).unwrap();
                // The files are the per-parameter format the oracle writes.
                let odir = tempfile::tempdir().unwrap();
                oracle.save_state(odir.path());
                let mine = candle_core::safetensors::load(
                    dir.path().join("optimizer.safetensors"),
                    &Device::Cpu,
                )
                .unwrap();
                let theirs = candle_core::safetensors::load(
                    odir.path().join("optimizer.safetensors"),
                    &Device::Cpu,
                )
                .unwrap();
                assert_eq!(
                    mine.keys().collect::<std::collections::BTreeSet<_>>(),
                    theirs.keys().collect()
                );
                for (key, t) in &theirs {
                    assert_eq!(mine[key].dims(), t.dims(), "{key}");
                    assert_eq!(mine[key].dtype(), t.dtype(), "{key}");
                    assert_eq!(bits(&mine[key]), bits(t), "{key}");
                }
                let json = |d: &Path| -> serde_json::Value {
                    serde_json::from_str(
                        &std::fs::read_to_string(d.join("optimizer.json")).unwrap(),
                    )
                    .unwrap()
                };
                assert_eq!(json(dir.path()), json(odir.path()));
            }
            // A fresh optimizer resumes from the files, replacing stale state of its own
            // (the stale step's parameter changes are undone).
            let mut resumed = new_opt(&params);
            let snapshot: Vec<Tensor> = params
                .iter()
                .map(|(_, v)| v.as_tensor().copy().unwrap())
                .collect();
            resumed.step(&grads_at(2), 0.5).unwrap();
            for ((_, var), saved) in params.iter().zip(&snapshot) {
                var.set(saved).unwrap();
            }
            resumed.load_state(dir.path(), &Device::Cpu).unwrap();
            opt = resumed;
            assert_same(step, &params, &opt, &oracle);
        }
    }
    // The parameter that never had a gradient is untouched and has no state.
    assert!(opt.moments("pooler.dense.weight").is_none());
    assert_eq!(
        bits(params.get("pooler.dense.weight").unwrap().as_tensor()),
        bits(
            make_params()
                .get("pooler.dense.weight")
                .unwrap()
                .as_tensor()
        )
    );
}

#[test]
fn one_chunk_per_key_matches_the_per_tensor_update_bitwise() {
    run(None, 3, false);
}

#[test]
fn small_chunks_match_the_per_tensor_update_bitwise() {
    // 5 elements per chunk: most parameters alone, some packed, a few larger than the bound.
    run(Some(5), 4, false);
    run(Some(16), 2, false);
}

#[test]
fn resumes_exactly_from_state_written_by_the_per_tensor_code() {
    run(None, 3, true);
    run(Some(8), 5, true);
}

#[test]
fn bad_gradients_are_errors_and_change_nothing() {
    let params = make_params();
    let mut opt = AdamW::new(&params, config());
    opt.step(&grads_at(1), 1e-2).unwrap();
    let before: Vec<Vec<u32>> = params.iter().map(|(_, v)| bits(v.as_tensor())).collect();
    let mut unknown = grads_at(2);
    unknown.insert("nope", Tensor::new(&[1f32], &Device::Cpu).unwrap());
    assert!(opt.step(&unknown, 1e-2).is_err());
    let mut wrong_shape = grads_at(2);
    wrong_shape.insert(
        "b.out.weight",
        Tensor::zeros(12, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = opt.step(&wrong_shape, 1e-2).unwrap_err().to_string();
    assert!(err.contains("b.out.weight"), "{err}");
    let after: Vec<Vec<u32>> = params.iter().map(|(_, v)| bits(v.as_tensor())).collect();
    assert_eq!(before, after);
    assert_eq!(opt.step_count("a.dense.weight"), 1);
}
