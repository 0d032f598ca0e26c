//! Shared helpers for the fixture tests. Fixtures are produced by
//! `python3 tools/bleu/make_fixtures.py` (see tests/data/README.md).
#![allow(dead_code)]

use std::path::PathBuf;

use c2n_eval::{python_repr, Gold, Predictions};
use serde_json::Value;

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

pub fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(data_path(name)).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// `../shared` next to the workspace, or `$C2N_SHARED`; None (with a printed reason) if absent.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let root = std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = root.join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIP: {} not found (set C2N_SHARED)", path.display());
        None
    }
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string {key}"))
}

pub fn rows_of(v: &Value) -> Vec<String> {
    v["predictions"]
        .as_array()
        .expect("predictions")
        .iter()
        .map(|r| r.as_str().expect("row").to_owned())
        .collect()
}

/// Checks smoothed BLEU (repr, total, round) and sacreBLEU against a fixture record.
pub fn check_scores(name: &str, gold: &Gold, predictions: &Predictions, expected: &Value) {
    let score = c2n_eval::smoothed_bleu(gold, predictions).expect("score");
    assert_eq!(
        python_repr(score.bleu),
        str_of(expected, "bleu"),
        "{name}: bleu"
    );
    assert_eq!(
        score.to_string(),
        str_of(expected, "bleu"),
        "{name}: Display"
    );
    assert_eq!(
        score.matched as u64,
        expected["total"].as_u64().expect("total"),
        "{name}: total"
    );
    assert_eq!(
        python_repr(score.rounded()),
        str_of(expected, "round2"),
        "{name}: round2"
    );
    let sacre = c2n_eval::sacrebleu_corpus(gold, predictions).expect("sacrebleu");
    assert_eq!(
        sacre.to_string(),
        str_of(expected, "sacrebleu"),
        "{name}: sacrebleu"
    );
}
