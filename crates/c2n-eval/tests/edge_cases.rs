//! Hand-made gold/prediction sets (spec §9.7, §12 item 19), scored by the spec-written Python
//! reference and by the `sacrebleu` package: tests/data/edge_cases.json.

mod common;

use c2n_eval::{EvalError, Gold, Predictions};
use common::{check_scores, fixture, rows_of, str_of};

#[test]
fn edge_cases_match_python_in_memory() {
    let cases = fixture("edge_cases.json");
    let cases = cases.as_object().expect("object");
    assert!(cases.len() >= 40);
    for (name, case) in cases {
        let predictions = Predictions::from_rows(rows_of(case));
        let gold = Gold::from_text(str_of(case, "gold"), "edge.gold");
        match case.get("error").and_then(|e| e.as_str()) {
            Some("gold_line") => {
                let line = case["line"].as_u64().expect("line") as usize;
                match gold {
                    Err(EvalError::GoldLine {
                        line: got,
                        ref origin,
                        ..
                    }) => {
                        assert_eq!(got, line, "{name}");
                        assert_eq!(origin, "edge.gold", "{name}");
                    }
                    other => panic!("{name}: expected a gold-line error, got {other:?}"),
                }
            }
            Some("no_match") => {
                let gold = gold.expect("gold parses");
                let err = c2n_eval::smoothed_bleu(&gold, &predictions).unwrap_err();
                assert!(
                    matches!(err, EvalError::NoMatchedIds { .. }),
                    "{name}: {err}"
                );
                assert!(c2n_eval::sacrebleu_corpus(&gold, &predictions).is_err());
            }
            Some(other) => panic!("{name}: unknown error kind {other}"),
            None => check_scores(name, &gold.expect("gold parses"), &predictions, case),
        }
    }
}

#[test]
fn edge_cases_match_python_through_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = fixture("edge_cases.json");
    let mut checked = 0;
    for (name, case) in cases.as_object().expect("object") {
        let rows = rows_of(case);
        // A row with `\n` cannot survive a prediction file (run.py scores those in memory); a
        // `\r` stays in its row, as on the evaluator's standard input.
        if case.get("error").is_some() || rows.iter().any(|r| r.contains('\n')) {
            continue;
        }
        let gold_path = dir.path().join(format!("{name}.gold"));
        let pred_path = dir.path().join(format!("{name}.output"));
        std::fs::write(&gold_path, str_of(case, "gold")).expect("write gold");
        std::fs::write(&pred_path, rows.join("\n")).expect("write predictions");
        let gold = Gold::read(&gold_path).expect("read gold");
        let from_file = Predictions::read(&pred_path).expect("read predictions");
        check_scores(name, &gold, &from_file, case);
        let from_reader =
            Predictions::read_from(rows.join("\n").as_bytes(), "<stdin>").expect("reader");
        check_scores(name, &gold, &from_reader, case);
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} cases went through files");
}

#[test]
fn gold_line_error_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.gold");
    std::fs::write(&path, "0\ta\n1\tb\tc\n").expect("write");
    let err = Gold::read(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("bad.gold:2:"), "{message}");
    assert!(message.contains("found 2"), "{message}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Gold::read(std::path::Path::new("/nonexistent/x.gold")).unwrap_err();
    assert!(matches!(err, EvalError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/x.gold"));
}

#[test]
fn write_idx_text_round_trips_through_gold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dev.gold");
    c2n_eval::write_idx_text(&path, [(3, "Returns x ."), (1, "Sets y")]).expect("write");
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "3\tReturns x .\n1\tSets y\n"
    );
    let gold = Gold::read(&path).expect("gold");
    let ids: Vec<&str> = gold.entries().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["3", "1"]);
    let same = Gold::from_pairs([(3, "Returns x ."), (1, "Sets y")]).expect("pairs");
    assert_eq!(same.entries(), gold.entries());
}

#[test]
fn from_pairs_cuts_predictions_at_tabs_like_run_py() {
    let pairs = Predictions::from_pairs([(0, "Returns\tthe value"), (1, " padded ")]);
    assert_eq!(pairs.get("0"), Some("Returns"));
    assert_eq!(pairs.get("1"), Some(" padded"));
}
