//! The logic of `examples/bleu.rs` (`evaluate`) on the public CodeXGLUE example, from a file
//! and from a reader standing in for standard input.

mod common;

use c2n_eval::{evaluate, EvalError, Metric};
use common::{data_path, fixture, str_of};

#[test]
fn evaluate_prints_what_the_python_evaluator_prints() {
    let expected = fixture("public_example.json");
    let gold = data_path("public_example.gold");
    let output_path = data_path("public_example.output");
    let from_file = evaluate(
        &gold,
        Some(&output_path),
        std::io::empty(),
        Metric::CodeXglue,
    )
    .expect("file");
    assert_eq!(from_file.printed, str_of(&expected, "bleu"));
    assert_eq!(from_file.matched, 5);
    let rows = std::fs::read(&output_path).expect("read");
    let from_stdin = evaluate(&gold, None, rows.as_slice(), Metric::CodeXglue).expect("stdin");
    assert_eq!(from_stdin, from_file);
    let sacre = evaluate(&gold, None, rows.as_slice(), Metric::SacreBleu).expect("sacre");
    assert_eq!(sacre.printed, str_of(&expected, "sacrebleu"));
    assert_eq!(sacre.matched, 5);
}

#[test]
fn evaluate_reports_bad_input() {
    let gold = data_path("public_example.gold");
    let err = evaluate(&gold, None, &b"0\tok\n\xff\n"[..], Metric::CodeXglue).unwrap_err();
    assert_eq!(err.to_string(), "<stdin>:2: not valid UTF-8");
    let err = evaluate(&gold, None, &b"99\tno such id\n"[..], Metric::SacreBleu).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::NoMatchedIds {
                gold_ids: 5,
                predictions: 1
            }
        ),
        "{err}"
    );
}
