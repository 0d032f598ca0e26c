//! Code-only input for batch prediction: same sources as the reference features, `idx` = line.

mod common;

use c2n_data::{
    code_features, featurize, read_code_examples, read_code_examples_from_reader, read_examples,
    DataError, FeatureConfig, RobertaTokenizer, Stage, Strictness,
};
use common::*;
use std::io::Write;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn code_tokens_and_code_text_give_the_same_source_and_blank_lines_keep_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "code.jsonl",
        concat!(
            "{\"code_tokens\": [\"def\", \"f\", \"(\", \"x\", \")\"], \"docstring_tokens\": [\"ignored\"]}\n",
            "   \n",
            "{\"code\": \"def f ( x\\n)\", \"url\": \"u\"}\n",
            "{\"code_tokens\": [\"a\"], \"code\": \"not used\"}",
        ),
    );
    let examples = read_code_examples(&path).unwrap();
    let got: Vec<(usize, &str, &str)> = examples
        .iter()
        .map(|e| (e.idx, e.source.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        got,
        [(0, "def f ( x )", ""), (2, "def f ( x )", ""), (3, "a", "")]
    );
    let tok = tiny_tokenizer();
    let features = code_features(&tok, &examples, 8).unwrap();
    assert_eq!(features[0].source_ids, features[1].source_ids);
    // Stored u16 ids decode directly.
    assert_eq!(tok.decode(&features[2].source_ids), "<s>a</s>");
    assert_eq!(
        features.iter().map(|f| f.idx).collect::<Vec<_>>(),
        [0, 2, 3]
    );
    assert!(features.iter().all(|f| f.source_ids.len() <= 8));
}

#[test]
fn bad_lines_are_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, needle) in [
        (
            "{\"code\": \"x\"}\n{\"docstring_tokens\": [\"d\"]}\n",
            2,
            "neither",
        ),
        ("{\"code\": \"x\"}\n\n{not json\n", 3, "malformed_json"),
        ("{\"code_tokens\": \"a string\"}\n", 1, "malformed_json"),
    ] {
        let path = write(dir.path(), "bad.jsonl", text);
        let err = read_code_examples(&path).unwrap_err();
        assert!(
            matches!(&err, DataError::BadLine { line: l, .. } if *l == line),
            "{text:?}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("bad.jsonl") && message.contains(needle),
            "{message}"
        );
    }
    let empty = write(dir.path(), "empty.jsonl", "\n  \n");
    assert!(matches!(
        read_code_examples(&empty),
        Err(DataError::EmptyFile { .. })
    ));
}

#[test]
fn gzip_input_reads_like_plain() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.jsonl");
    synthetic_jsonl(&plain, 20);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    let gz = dir.path().join("data.gz");
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    assert_eq!(
        read_code_examples(&gz).unwrap(),
        read_code_examples(&plain).unwrap()
    );
}

#[test]
fn a_stream_reads_like_its_file_gzip_included() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.jsonl");
    synthetic_jsonl(&plain, 20);
    let bytes = std::fs::read(&plain).unwrap();
    let from_file = read_code_examples(&plain).unwrap();
    let streamed =
        read_code_examples_from_reader("<stdin>", std::io::Cursor::new(bytes.clone())).unwrap();
    assert_eq!(streamed, from_file);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(
        read_code_examples_from_reader("<stdin>", std::io::Cursor::new(gz.clone())).unwrap(),
        from_file
    );
    // A pipe may hand over one byte per read: the magic bytes are still recognised.
    struct OneByteAtATime(std::io::Cursor<Vec<u8>>);
    impl std::io::Read for OneByteAtATime {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let end = buf.len().min(1);
            self.0.read(&mut buf[..end])
        }
    }
    let trickle = OneByteAtATime(std::io::Cursor::new(gz));
    assert_eq!(
        read_code_examples_from_reader("<stdin>", trickle).unwrap(),
        from_file
    );
    let err = read_code_examples_from_reader(
        "<stdin>",
        std::io::Cursor::new(b"{\"code\": \"x\"}\nnot json\n".to_vec()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("<stdin>:2"), "{err}");
}

#[test]
fn ruby_test_file_gives_the_reference_test_stage_sources() {
    // `predict --jsonl` on a CodeSearchNet file must decode what `evaluate` decodes.
    let Some(shared) = shared_dir() else { return };
    let path = shared.join("data/codesearchnet/ruby/test.jsonl");
    let tok =
        RobertaTokenizer::load(&shared.join("data/roberta-base").display().to_string()).unwrap();
    let code_only = read_code_examples(&path).unwrap();
    let (reference, _) = read_examples(&path, Strictness::Strict).unwrap();
    assert_eq!(code_only.len(), reference.len());
    let features = code_features(&tok, &code_only, 256).unwrap();
    let cfg = FeatureConfig {
        max_source_len: 256,
        max_target_len: 128,
        stage: Stage::Test,
    };
    for (ours, example) in features.iter().zip(&reference) {
        let want = featurize(&tok, example, &cfg).unwrap();
        assert_eq!(ours, &want, "example {}", example.idx);
    }
}
