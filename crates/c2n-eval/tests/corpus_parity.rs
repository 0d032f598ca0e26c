//! Corpus-level parity: random corpora (multi-references, missing and shuffled predictions)
//! and the public CodeXGLUE example, against the Python reference and `sacrebleu`.

mod common;

use c2n_eval::{Gold, Predictions};
use common::{check_scores, data_path, fixture, rows_of, str_of};

#[test]
fn random_corpora_match_python_bit_for_bit() {
    let cases = fixture("random_corpus.json");
    let cases = cases.as_array().expect("array");
    assert_eq!(cases.len(), 8);
    for (i, case) in cases.iter().enumerate() {
        let gold = Gold::from_text(str_of(case, "gold"), "random.gold").expect("gold");
        let predictions = Predictions::from_rows(rows_of(case));
        check_scores(&format!("corpus {i}"), &gold, &predictions, case);
    }
}

#[test]
fn public_codexglue_example_prints_the_published_score() {
    let gold = Gold::read(data_path("public_example.gold")).expect("gold");
    let predictions = Predictions::read(data_path("public_example.output")).expect("predictions");
    let expected = fixture("public_example.json");
    check_scores("public example", &gold, &predictions, &expected);
    // The number published with the CodeXGLUE evaluator (spec §9.8).
    let score = c2n_eval::smoothed_bleu(&gold, &predictions).expect("score");
    assert_eq!(score.to_string(), "9.554726113590661");
    assert_eq!(score.matched, 5);
}
