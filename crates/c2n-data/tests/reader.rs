//! Bad input: strict errors name file and 1-based line; lenient mode counts every skipped line.

use std::io::Write;

use c2n_data::{read_first_records, read_records, BadLineReason, DataError, Strictness};

const GOOD: &str =
    r#"{"code_tokens": ["def", "f"], "docstring_tokens": ["Does", "it", "."], "url": "u1"}"#;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn bad_file_cases() -> Vec<(Vec<u8>, usize, BadLineReason)> {
    let good = GOOD.as_bytes();
    let line = |parts: &[&[u8]]| parts.join(&b'\n');
    vec![
        (
            line(&[good, b"{not json", good]),
            2,
            BadLineReason::MalformedJson,
        ),
        (line(&[good, good, b"", good]), 3, BadLineReason::BlankLine),
        (line(&[b"  \t ", good]), 1, BadLineReason::BlankLine),
        (
            line(&[good, br#"{"docstring_tokens": ["a"]}"#]),
            2,
            BadLineReason::MissingCodeTokens,
        ),
        (
            line(&[br#"{"code_tokens": null, "docstring_tokens": []}"#]),
            1,
            BadLineReason::MissingCodeTokens,
        ),
        (
            line(&[good, br#"{"code_tokens": ["a"]}"#]),
            2,
            BadLineReason::MissingDocstringTokens,
        ),
        (
            line(&[
                good,
                b"{\"code_tokens\": [\"\xc3\x28\"], \"docstring_tokens\": []}",
            ]),
            2,
            BadLineReason::InvalidUtf8,
        ),
        (
            line(&[good, br#"{"code_tokens": [1], "docstring_tokens": []}"#]),
            2,
            BadLineReason::MalformedJson,
        ),
    ]
}

#[test]
fn strict_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (bytes, line, reason)) in bad_file_cases().into_iter().enumerate() {
        let path = write(&dir, &format!("bad{i}.jsonl"), &bytes);
        match read_records(&path, Strictness::Strict) {
            Err(DataError::BadLine {
                path: p,
                line: l,
                reason: r,
                ..
            }) => {
                assert_eq!(
                    (p.as_path(), l, r),
                    (path.as_path(), line, reason),
                    "case {i}"
                );
            }
            other => panic!("case {i}: expected a bad line error, got {other:?}"),
        }
        let message = read_records(&path, Strictness::Strict)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("bad{i}.jsonl:{line}:")),
            "{message}"
        );
    }
}

#[test]
fn lenient_counts_each_skipped_line() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (bytes, _, reason)) in bad_file_cases().into_iter().enumerate() {
        let path = write(&dir, &format!("bad{i}.jsonl"), &bytes);
        let (records, report) = read_records(&path, Strictness::Lenient).unwrap();
        let total_lines = bytes.split(|&b| b == b'\n').count();
        assert_eq!(report.lines, total_lines, "case {i}");
        assert_eq!(report.records, records.len());
        assert_eq!(
            report.records + report.bad_total(),
            report.lines,
            "nothing uncounted"
        );
        assert_eq!(report.bad_lines.get(&reason), Some(&1), "case {i}");
    }
}

#[test]
fn idx_is_the_line_number_even_after_skips() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{GOOD}\n\n{GOOD}\nnope\n{GOOD}\n");
    let path = write(&dir, "mixed.jsonl", text.as_bytes());
    let (records, report) = read_records(&path, Strictness::Lenient).unwrap();
    let idx: Vec<usize> = records.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, [0, 2, 4]);
    assert_eq!(report.bad_total(), 2);
}

#[test]
fn reading_the_first_lines_stops_before_a_later_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{GOOD}\n{GOOD}\nnope\n{GOOD}\n");
    let path = write(&dir, "head.jsonl", text.as_bytes());
    let err = read_records(&path, Strictness::Strict).unwrap_err();
    assert!(err.to_string().contains(":3:"), "{err}");
    let (records, report) = read_first_records(&path, Strictness::Strict, Some(2)).unwrap();
    assert_eq!((records.len(), report.lines), (2, 2));
    let (records, _) = read_first_records(&path, Strictness::Lenient, Some(10)).unwrap();
    assert_eq!(records.len(), 3);
    let (records, _) = read_first_records(&path, Strictness::Strict, Some(0)).unwrap();
    assert!(records.is_empty());
}

#[test]
fn empty_file_is_an_error_in_strict_mode_and_counted_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "empty.jsonl", b"");
    assert!(matches!(
        read_records(&path, Strictness::Strict),
        Err(DataError::EmptyFile { .. })
    ));
    let (records, report) = read_records(&path, Strictness::Lenient).unwrap();
    assert!(records.is_empty());
    assert_eq!(report.empty_files, 1);
}

#[test]
fn gzip_reads_like_plain_and_truncation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..2000).map(|_| format!("{GOOD}\n")).collect();
    let plain = write(&dir, "a.jsonl", text.as_bytes());
    let packed = gzip(text.as_bytes());
    let gz = write(&dir, "a.jsonl.gz", &packed);
    let (from_plain, _) = read_records(&plain, Strictness::Strict).unwrap();
    let (from_gz, _) = read_records(&gz, Strictness::Strict).unwrap();
    assert_eq!(from_plain, from_gz);

    let cut = write(&dir, "cut.jsonl.gz", &packed[..packed.len() / 2]);
    match read_records(&cut, Strictness::Strict) {
        Err(DataError::BadLine { reason, line, .. }) => {
            assert_eq!(reason, BadLineReason::CorruptGzip);
            assert!(line >= 1);
        }
        other => panic!("expected corrupt gzip error, got {other:?}"),
    }
    let (records, report) = read_records(&cut, Strictness::Lenient).unwrap();
    assert_eq!(report.bad_lines.get(&BadLineReason::CorruptGzip), Some(&1));
    assert_eq!(report.records, records.len());
    assert!(records.len() < 2000);
}

#[test]
fn lone_surrogates_are_replaced_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"code_tokens": ["x\ud800y", "\ud83d\ude00"], "docstring_tokens": ["a\udc00"]}"#;
    let path = write(&dir, "s.jsonl", format!("{line}\n{GOOD}\n").as_bytes());
    let (records, report) = read_records(&path, Strictness::Strict).unwrap();
    assert_eq!(report.lone_surrogate_lines, 1);
    assert_eq!(records[0].1.code_tokens, ["x\u{FFFD}y", "\u{1F600}"]);
    assert_eq!(records[0].1.docstring_tokens, ["a\u{FFFD}"]);
}

#[test]
fn missing_optional_fields_are_tolerated_and_full_records_parse() {
    let full = br#"{"repo": "o/n", "path": "p.rb", "func_name": "f", "original_string": "s", "language": "ruby", "code": "c", "code_tokens": ["c"], "docstring": "d", "docstring_tokens": ["d"], "sha": "0", "url": "u", "partition": "test", "extra": 1}"#;
    let (record, lone) = c2n_data::reader::parse_full_record(full).unwrap();
    assert!(!lone);
    assert_eq!(record.repo.as_deref(), Some("o/n"));
    assert_eq!(record.partition.as_deref(), Some("test"));
    let (minimal, _) =
        c2n_data::reader::parse_full_record(br#"{"code_tokens": [], "docstring_tokens": []}"#)
            .unwrap();
    assert_eq!(minimal.url, None);
}

#[test]
fn fields_the_reference_never_reads_cannot_reject_a_record() {
    // A `url` (or `sha`, …) that is no string reads as absent; run.py keeps the example.
    let odd = br#"{"code_tokens": ["c"], "docstring_tokens": ["d"], "url": 5, "sha": ["x"]}"#;
    let parsed = c2n_data::reader::parse_line(odd).unwrap();
    assert_eq!(parsed.record.url, None);
    let (record, _) = c2n_data::reader::parse_full_record(odd).unwrap();
    assert_eq!((record.url, record.sha), (None, None));
    // A repeated key: the last one counts, as in Python's json.loads.
    let twice = br#"{"code_tokens": ["old"], "docstring_tokens": ["d"], "code_tokens": ["new"]}"#;
    assert_eq!(
        c2n_data::reader::parse_line(twice)
            .unwrap()
            .record
            .code_tokens,
        ["new"]
    );
    // The required fields stay required and typed.
    let wrong = br#"{"code_tokens": 5, "docstring_tokens": ["d"]}"#;
    let problem = c2n_data::reader::parse_line(wrong).unwrap_err();
    assert_eq!(problem.reason, BadLineReason::MalformedJson);
}

#[test]
fn a_line_past_the_limit_is_an_error_naming_it() {
    use c2n_data::reader::JsonlLines;
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(500);
    let text = format!("{GOOD}\n{long}\n{GOOD}\n");
    let path = write(&dir, "long.jsonl", text.as_bytes());
    let mut lines = JsonlLines::open(&path).unwrap().with_max_line_bytes(200);
    assert!(lines.next_line().unwrap().is_some());
    let err = match lines.next_line() {
        Err(c2n_data::reader::LineReadError::Io(e)) => e.to_string(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(
        err.contains("long.jsonl:2") && err.contains("longer than 200 bytes"),
        "{err}"
    );
    // The limit is per line: classic-Mac line ends (a lone `\r`) count as line ends.
    let mac: String = (0..10).map(|_| format!("{}\r", "z".repeat(150))).collect();
    let path = write(&dir, "mac.jsonl", mac.as_bytes());
    let mut lines = JsonlLines::open(&path).unwrap().with_max_line_bytes(200);
    let mut count = 0;
    while let Some(line) = lines.next_line().unwrap() {
        assert_eq!(line.bytes.len(), 150);
        count += 1;
    }
    assert_eq!(count, 10);
    // A line at the limit is read whole, with either line end.
    for end in ["\n", "\r\n", "\r", ""] {
        let exact = "y".repeat(200);
        let path = write(&dir, "exact.jsonl", format!("{exact}{end}").as_bytes());
        let mut lines = JsonlLines::open(&path).unwrap().with_max_line_bytes(200);
        assert_eq!(
            lines.next_line().unwrap().unwrap().bytes.len(),
            200,
            "{end:?}"
        );
    }
}
