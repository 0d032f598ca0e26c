//! Ruby test gold (built from ../shared per spec §1.5) against deterministic prediction
//! transforms, versus tests/data/ruby_test_transforms.json from tools/bleu/make_fixtures.py.
//! The transforms below mirror `transforms()` there. Skips when the data is absent.

mod common;

use c2n_eval::python_str::{split_whitespace, strip};
use c2n_eval::{Gold, Predictions};
use common::{check_scores, fixture, shared_file};

/// `(idx, target)` per spec §1.5: join docstring tokens, delete `\n`, collapse Python whitespace.
fn ruby_gold() -> Option<Vec<(String, String)>> {
    let path = shared_file("data/codesearchnet/ruby/test.jsonl")?;
    let text = std::fs::read_to_string(path).expect("read jsonl");
    let mut gold = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(strip(line)).expect("json");
        let tokens: Vec<&str> = record["docstring_tokens"]
            .as_array()
            .expect("docstring_tokens")
            .iter()
            .map(|t| t.as_str().expect("token"))
            .collect();
        let joined = tokens.join(" ").replace('\n', "");
        let target = split_whitespace(strip(&joined))
            .collect::<Vec<_>>()
            .join(" ");
        gold.push((i.to_string(), target));
    }
    Some(gold)
}

fn each(gold: &[(String, String)], f: impl Fn(&[&str]) -> String) -> Vec<String> {
    gold.iter()
        .map(|(i, t)| format!("{i}\t{}", f(&t.split(' ').collect::<Vec<_>>())))
        .collect()
}

fn transform(name: &str, gold: &[(String, String)]) -> Vec<String> {
    match name {
        "identity" => each(gold, |w| w.join(" ")),
        "first_half" => each(gold, |w| w[..w.len().div_ceil(2)].join(" ")),
        "reversed" => each(gold, |w| {
            w.iter().rev().copied().collect::<Vec<_>>().join(" ")
        }),
        "drop_every_third" => each(gold, |w| {
            let kept: Vec<&str> = w
                .iter()
                .enumerate()
                .filter(|(k, _)| k % 3 != 2)
                .map(|(_, x)| *x)
                .collect();
            kept.join(" ")
        }),
        "swap_pairs" => each(gold, |w| {
            let swapped: Vec<&str> = (0..w.len())
                .map(|k| match k % 2 {
                    0 if k + 1 < w.len() => w[k + 1],
                    1 => w[k - 1],
                    _ => w[k],
                })
                .collect();
            swapped.join(" ")
        }),
        "first_word" => each(gold, |w| w[0].to_owned()),
        "constant" => each(gold, |_| "Returns the value .".to_owned()),
        "empty" => each(gold, |_| String::new()),
        "upper_underscored" => each(gold, |w| w.join("_").to_uppercase()),
        "odd_ids_tail" => gold
            .iter()
            .filter(|(i, _)| i.parse::<u64>().expect("id") % 2 == 1)
            .map(|(i, t)| {
                format!(
                    "{i}\t{}",
                    t.split(' ').skip(1).collect::<Vec<_>>().join(" ")
                )
            })
            .collect(),
        "overwritten" => {
            let mut rows: Vec<String> = gold.iter().map(|(i, _)| format!("{i}\tgarbage")).collect();
            rows.extend(gold.iter().map(|(i, t)| format!("{i}\t{t}")));
            rows
        }
        "extra_tab_field" => each(gold, |w| {
            format!("{}\t{}", w[..3.min(w.len())].join(" "), w.join(" "))
        }),
        other => panic!("fixture has a transform this test does not know: {other}"),
    }
}

#[test]
fn ruby_test_transforms_match_python_bit_for_bit() {
    let Some(gold_pairs) = ruby_gold() else {
        return;
    };
    assert_eq!(gold_pairs.len(), 1261);
    let gold = Gold::from_pairs(gold_pairs.iter().map(|(i, t)| (i, t))).expect("gold");
    let expected = fixture("ruby_test_transforms.json");
    let expected = expected.as_object().expect("object");
    assert_eq!(expected.len(), 12);
    for (name, record) in expected {
        let predictions = Predictions::from_rows(transform(name, &gold_pairs));
        check_scores(name, &gold, &predictions, record);
    }
}
