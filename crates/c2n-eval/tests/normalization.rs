//! Normalization against the Python reference's original mteval (NIST) chain:
//! named edge cases (tests/data/normalization_cases.json) and 400 random strings
//! (tests/data/random_strings.json, which also carries CPython's `str.lower()`).

mod common;

use c2n_eval::python_str::lower;
use c2n_eval::BleuTokens;
use common::{fixture, str_of};
use serde_json::Value;

fn tokens_of(v: &Value) -> Vec<String> {
    v["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_str().expect("token").to_owned())
        .collect()
}

#[test]
fn named_normalization_cases_match_the_nist_chain() {
    let cases = fixture("normalization_cases.json");
    let cases = cases.as_object().expect("object");
    for name in [
        "underscores",
        "apostrophes",
        "digits_dot_comma",
        "xml_entities",
        "superscript_fraction_circled",
        "combining_marks",
        "dotted_capital_i",
        "final_sigma",
        "info_separators",
        "empty",
        "single_token",
    ] {
        assert!(cases.contains_key(name), "fixture lacks {name}");
    }
    for (name, case) in cases {
        let got = BleuTokens::new(str_of(case, "text")).to_vec();
        assert_eq!(got, tokens_of(case), "{name}");
    }
}

#[test]
fn random_strings_match_python_lower_and_the_nist_chain() {
    let cases = fixture("random_strings.json");
    let cases = cases.as_array().expect("array");
    assert_eq!(cases.len(), 400);
    for case in cases {
        let text = str_of(case, "text");
        assert_eq!(lower(text), str_of(case, "lower"), "lower({text:?})");
        assert_eq!(
            BleuTokens::new(text).to_vec(),
            tokens_of(case),
            "tokens({text:?})"
        );
    }
}

#[test]
fn empty_and_whitespace_only_texts_have_no_tokens() {
    assert!(BleuTokens::new("").is_empty());
    assert!(BleuTokens::new(" \t\u{1c}\u{1f}\u{3000}").is_empty());
    assert_eq!(BleuTokens::new("x").len(), 1);
}
