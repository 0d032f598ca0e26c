//! Parity with fixtures produced by `tools/reference/train_reference.py fixtures`
//! (AdamW steps, schedule lr sequences) and by CPython (`random.sample`).

use c2n_train::optim::{AdamW, AdamWConfig, Gradients, NamedParams};
use c2n_train::pyrandom::dev_bleu_subset;
use c2n_train::schedule::LinearSchedule;
use candle_core::{Device, Tensor, Var};
use serde_json::Value;
use std::collections::BTreeMap;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
    let values: Vec<f32> = serde_json::from_value(v["values"].clone()).unwrap();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor, rel: f32) {
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let tol = rel * w.abs().max(1e-3);
        assert!((g - w).abs() <= tol, "{name}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn adamw_matches_the_transformers_2_5_formula_over_five_steps() {
    let fx = fixture("adamw_steps.json");
    let mut vars = BTreeMap::new();
    for (name, t) in fx["initial"].as_object().unwrap() {
        vars.insert(name.clone(), Var::from_tensor(&tensor(t)).unwrap());
    }
    let params = NamedParams::new(vars.iter().map(|(n, v)| (n.clone(), v.clone()))).unwrap();
    let config = AdamWConfig {
        weight_decay: fx["weight_decay"].as_f64().unwrap(),
        eps: fx["eps"].as_f64().unwrap(),
        ..Default::default()
    };
    let mut opt = AdamW::new(&params, config);
    for (k, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let mut grads = Gradients::new();
        for (name, g) in step["grads"].as_object().unwrap() {
            grads.insert(name.clone(), tensor(g));
        }
        opt.step(&grads, step["lr"].as_f64().unwrap()).unwrap();
        for (name, want) in step["params_after"].as_object().unwrap() {
            assert_close(
                &format!("step {k} {name}"),
                vars[name].as_tensor(),
                &tensor(want),
                1e-5,
            );
        }
    }
    // The pooler never had a gradient: untouched (checked above) and without state.
    assert!(opt.moments("encoder.pooler.dense.weight").is_none());
    assert_eq!(opt.step_count("encoder.pooler.dense.weight"), 0);
    for (name, st) in fx["final_state"].as_object().unwrap() {
        assert_eq!(opt.step_count(name), st["step"].as_u64().unwrap(), "{name}");
        let (m, v) = opt.moments(name).unwrap();
        assert_close(name, &m, &tensor(&st["exp_avg"]), 1e-5);
        assert_close(name, &v, &tensor(&st["exp_avg_sq"]), 1e-5);
    }
}

#[test]
fn adamw_state_round_trips_through_files() {
    let fx = fixture("adamw_steps.json");
    let make = || {
        let vars: BTreeMap<String, Var> = fx["initial"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), Var::from_tensor(&tensor(t)).unwrap()))
            .collect();
        let params = NamedParams::new(vars.iter().map(|(n, v)| (n.clone(), v.clone()))).unwrap();
        let opt = AdamW::new(
            &params,
            AdamWConfig {
                weight_decay: 0.01,
                ..Default::default()
            },
        );
        (vars, opt)
    };
    let grads_of = |k: usize| {
        let mut grads = Gradients::new();
        for (name, g) in fx["steps"][k]["grads"].as_object().unwrap() {
            grads.insert(name.clone(), tensor(g));
        }
        grads
    };
    let lr = |k: usize| fx["steps"][k]["lr"].as_f64().unwrap();
    // Uninterrupted: five steps.
    let (vars_a, mut opt_a) = make();
    for k in 0..5 {
        opt_a.step(&grads_of(k), lr(k)).unwrap();
    }
    // Interrupted after two: save, rebuild from the saved parameters, load, continue.
    let (vars_b, mut opt_b) = make();
    for k in 0..2 {
        opt_b.step(&grads_of(k), lr(k)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    opt_b.save_state(dir.path()).unwrap();
    let (vars_c, mut opt_c) = make();
    for (name, var) in &vars_c {
        var.set(vars_b[name].as_tensor()).unwrap();
    }
    opt_c.load_state(dir.path(), &Device::Cpu).unwrap();
    for k in 2..5 {
        opt_c.step(&grads_of(k), lr(k)).unwrap();
    }
    for (name, var) in &vars_a {
        let a = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let c = vars_c[name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, c, "{name}");
        assert_eq!(opt_a.step_count(name), opt_c.step_count(name), "{name}");
    }
}

#[test]
fn schedule_matches_lambda_lr_for_both_variants() {
    let fx = fixture("schedule_lr.json");
    for case in fx["cases"].as_array().unwrap() {
        let base = case["base_lr"].as_f64().unwrap();
        let schedule = if case["variant"] == "A" {
            LinearSchedule::variant_a(
                base,
                case["warmup"].as_u64().unwrap(),
                case["total"].as_u64().unwrap(),
            )
        } else {
            let s = LinearSchedule::variant_b(
                base,
                case["batches_per_epoch"].as_u64().unwrap(),
                case["grad_accum"].as_u64().unwrap(),
                case["epochs"].as_u64().unwrap(),
            );
            assert_eq!(s.warmup_steps, case["warmup"].as_u64().unwrap());
            assert_eq!(s.total_steps, case["total"].as_u64().unwrap());
            s
        };
        for (k, want) in case["lrs"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            let got = schedule.lr_at(k as u64);
            assert!(
                (got - want).abs() <= 1e-15 * want.abs().max(1e-30),
                "{case}: update {} lr {got} vs {want}",
                k + 1
            );
        }
    }
}

#[test]
fn dev_bleu_subset_matches_cpython() {
    let fx = fixture("dev_subset.json");
    for n in [1400usize, 13914, 30] {
        let want: Vec<usize> = serde_json::from_value(fx[n.to_string()].clone()).unwrap();
        assert_eq!(dev_bleu_subset(n, 1000, 42), want, "N = {n}");
    }
    let ruby = dev_bleu_subset(1400, 1000, 42);
    assert_eq!(
        &ruby[..10],
        &[1309, 228, 51, 563, 501, 457, 285, 209, 1385, 1116]
    );
    assert_eq!(&ruby[997..], &[419, 554, 387]);
}
