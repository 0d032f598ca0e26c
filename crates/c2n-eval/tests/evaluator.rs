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
    assert_eq!((from_file.matched, from_file.gold), (5, 5));
    let rows = std::fs::read(&output_path).expect("read");
    // Two rows fewer: scored over the three left, with the gold count there to say so.
    let text = String::from_utf8(rows.clone()).expect("utf-8");
    let three: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    let partial = evaluate(&gold, None, three.as_bytes(), Metric::CodeXglue).expect("partial");
    assert_eq!((partial.matched, partial.gold), (3, 5));
    let from_stdin = evaluate(&gold, None, rows.as_slice(), Metric::CodeXglue).expect("stdin");
    assert_eq!(from_stdin, from_file);
    let sacre = evaluate(&gold, None, rows.as_slice(), Metric::SacreBleu).expect("sacre");
    assert_eq!(sacre.printed, str_of(&expected, "sacrebleu"));
    assert_eq!(sacre.matched, 5);
    assert!(from_file.unmatched_predictions.is_empty());
    // Ids the gold file lacks are ignored, as the reference does, and listed: an extra row,
    // and the first id behind a byte-order mark.
    let extra = format!("\u{feff}{text}7\tan extra row\n");
    let out = evaluate(&gold, None, extra.as_bytes(), Metric::CodeXglue).expect("extra");
    assert_eq!(out.unmatched_predictions, ["7", "\u{feff}0"]);
    assert_eq!((out.matched, out.gold), (4, 5));
}

#[test]
fn a_carriage_return_inside_a_prediction_stays_in_its_row_as_on_pythons_stdin() {
    // `for row in sys.stdin` splits at `\n` only (POSIX), so the evaluator reads
    // "Prints a summary\rmessage" as one row whose `\r` tokenizes as whitespace: the score is
    // the unchanged 9.554726113590661. Splitting at the `\r` would add a bogus id "message"
    // and cut id 0's text.
    let expected = fixture("public_example.json");
    let gold = data_path("public_example.gold");
    let rows = std::fs::read_to_string(data_path("public_example.output")).expect("read");
    let with_cr = rows.replacen("summary message", "summary\rmessage", 1);
    assert_ne!(with_cr, rows);
    let out = evaluate(&gold, None, with_cr.as_bytes(), Metric::CodeXglue).expect("stdin");
    assert_eq!(out.printed, str_of(&expected, "bleu"));
    assert_eq!(out.matched, 5);
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
                predictions: 1,
                ..
            }
        ),
        "{err}"
    );
    // The message shows how each file names its ids, and spots a byte-order mark.
    assert!(err.to_string().contains(r#"e.g. "99""#), "{err}");
    assert!(err.to_string().contains(r#"e.g. "0", "1", "2""#), "{err}");
    assert!(!err.to_string().contains("byte-order"), "{err}");
    let with_bom = "\u{feff}0\tok\n".as_bytes();
    let err = evaluate(&gold, None, with_bom, Metric::CodeXglue).unwrap_err();
    assert!(err.to_string().contains("byte-order mark"), "{err}");
}

#[test]
fn corpus_bleu_refuses_hypotheses_and_references_that_are_not_parallel() {
    let sentence = "returns the value of the given key";
    let refs = vec![vec![sentence]];
    let one = c2n_eval::corpus_bleu_13a(&[sentence], &refs).unwrap();
    assert!((one.score - 100.0).abs() < 1e-9, "{}", one.score);
    let err = c2n_eval::corpus_bleu_13a(&[sentence, "an extra one"], &refs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 hypotheses but 1 reference lists"), "{err}");
}
