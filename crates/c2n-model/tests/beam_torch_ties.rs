//! The torch-CPU tie order against `torch.topk` itself.
//!
//! Fixture: `tests/data/topk_torch_cpu.json`, written by
//! `python3 tools/reference/make_topk_fixture.py crates/c2n-model/tests/data/topk_torch_cpu.json`:
//! tie-heavy inputs on both sides of torch's `k * 64 <= n` switch between its heap and its
//! introselect path, with NaN, ±0, +inf and −1e20, and the indices torch returned.

use std::path::Path;

use c2n_model::beam::torch_order::{select_top_k_torch_cpu, torch_cpu_uses_heap, TorchHeapTopK};
use serde_json::Value;

fn value_of(code: i64) -> f32 {
    match code {
        100 => f32::NAN,
        101 => -0.0,
        102 => f32::INFINITY,
        103 => f32::NEG_INFINITY,
        104 => -1e20,
        code => code as f32 / 2.0,
    }
}

fn cases() -> Vec<(Vec<f32>, usize, Vec<u32>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/topk_torch_cpu.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture"))
        .expect("fixture is JSON");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| {
            let n = case["n"].as_u64().unwrap() as usize;
            let codes: Vec<i64> = match case["codes"].as_array() {
                Some(codes) => codes.iter().map(|c| c.as_i64().unwrap()).collect(),
                None => {
                    // The recipe stated in the fixture for its large cases.
                    let modulus = case["distinct"].as_u64().unwrap() + 1;
                    (0..n as u64)
                        .map(|i| -(((i * 7919 + (i >> 3) * 104_729) % modulus) as i64))
                        .collect()
                }
            };
            assert_eq!(codes.len(), n);
            let values = codes.into_iter().map(value_of).collect();
            let k = case["k"].as_u64().unwrap() as usize;
            let indices = case["indices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (values, k, indices)
        })
        .collect()
}

#[test]
fn torch_cpu_order_equals_torch_topk_on_ties() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let (mut heap_cases, mut select_cases) = (0, 0);
    for (number, (values, k, expected)) in cases.iter().enumerate() {
        let ours: Vec<u32> = select_top_k_torch_cpu(values, *k)
            .iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(&ours, expected, "case {number}: n {} k {k}", values.len());
        if torch_cpu_uses_heap(*k, values.len()) {
            heap_cases += 1;
            let mut heap = TorchHeapTopK::new(*k);
            for (index, &value) in values.iter().enumerate() {
                heap.offer(value, index as u32);
            }
            let streamed: Vec<u32> = heap.sorted().iter().map(|e| e.1).collect();
            assert_eq!(&streamed, expected, "case {number} streamed");
        } else {
            select_cases += 1;
        }
    }
    assert!(heap_cases >= 5 && select_cases >= 5);
}

#[test]
fn torch_cpu_order_differs_from_lower_index_on_some_case() {
    // Otherwise the fixture would not tell the two tie rules apart.
    let differing = cases()
        .iter()
        .filter(|(values, k, expected)| {
            let lower: Vec<u32> = c2n_model::beam::select::select_top_k_full_sort(values, *k)
                .iter()
                .map(|e| e.1)
                .collect();
            &lower != expected
        })
        .count();
    assert!(differing >= 5, "only {differing} cases differ");
}
