//! The hub path offline: a hf-hub cache folder built in the test (`datasets--{org}--{name}/
//! snapshots/<rev>/…` + `refs/main`) with parquet files written here, converted to jsonl and
//! read back as the reference jsonl would be.
#![cfg(feature = "hub")]

mod common;

use c2n_data::hub::{cached_split_files, dataset_cache_dir, split_jsonl_with_cache};
use c2n_data::{read_examples, Example, Strictness};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DATASET: &str = "google/code_x_glue_ct_code_to_text";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

/// One row with the CodeSearchNet columns the converter must carry.
struct Row {
    repo: String,
    code: String,
    code_tokens: Vec<String>,
    docstring: String,
    docstring_tokens: Vec<String>,
    url: String,
}

impl Row {
    fn from_json(v: &serde_json::Value) -> Row {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let list = |k: &str| {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| t.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        Row {
            repo: s("repo"),
            code: s("code"),
            code_tokens: list("code_tokens"),
            docstring: s("docstring"),
            docstring_tokens: list("docstring_tokens"),
            url: s("url"),
        }
    }
}

fn strings(values: impl Iterator<Item = String>) -> Vec<ByteArray> {
    values.map(|s| ByteArray::from(s.into_bytes())).collect()
}

/// A `list<string>` leaf: values, definition levels (0 = empty list) and repetition levels.
fn list_levels(lists: Vec<&Vec<String>>) -> (Vec<ByteArray>, Vec<i16>, Vec<i16>) {
    let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    for list in lists {
        if list.is_empty() {
            def.push(0);
            rep.push(0);
        }
        for (i, t) in list.iter().enumerate() {
            values.push(ByteArray::from(t.clone().into_bytes()));
            def.push(1);
            rep.push(if i == 0 { 0 } else { 1 });
        }
    }
    (values, def, rep)
}

/// Writes `rows` as a snappy parquet file with the Hub dataset's column names.
fn write_parquet(path: &Path, rows: &[Row], first_id: i32) {
    let schema = Arc::new(
        parse_message_type(
            "message schema {
                REQUIRED INT32 id;
                REQUIRED BYTE_ARRAY repo (UTF8);
                REQUIRED BYTE_ARRAY code (UTF8);
                REQUIRED GROUP code_tokens (LIST) { REPEATED GROUP list { REQUIRED BYTE_ARRAY element (UTF8); } }
                REQUIRED BYTE_ARRAY docstring (UTF8);
                REQUIRED GROUP docstring_tokens (LIST) { REPEATED GROUP list { REQUIRED BYTE_ARRAY element (UTF8); } }
                REQUIRED BYTE_ARRAY url (UTF8);
            }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        match column {
            0 => {
                let ids: Vec<i32> = (0..rows.len() as i32).map(|i| first_id + i).collect();
                col.typed::<Int32Type>()
                    .write_batch(&ids, None, None)
                    .unwrap();
            }
            3 | 5 => {
                let lists = rows
                    .iter()
                    .map(|r| {
                        if column == 3 {
                            &r.code_tokens
                        } else {
                            &r.docstring_tokens
                        }
                    })
                    .collect();
                let (values, def, rep) = list_levels(lists);
                col.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&def), Some(&rep))
                    .unwrap();
            }
            _ => {
                let values = strings(rows.iter().map(|r| match column {
                    1 => r.repo.clone(),
                    2 => r.code.clone(),
                    4 => r.docstring.clone(),
                    _ => r.url.clone(),
                }));
                col.typed::<ByteArrayType>()
                    .write_batch(&values, None, None)
                    .unwrap();
            }
        }
        col.close().unwrap();
        column += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

/// A hub cache root with `refs/main` → `REVISION`; returns (cache root, snapshot folder).
fn hub_cache(root: &Path) -> (hf_hub::Cache, PathBuf) {
    let cache = hf_hub::Cache::new(root.to_path_buf());
    let repo = dataset_cache_dir(&cache, DATASET);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), REVISION).unwrap();
    let snapshot = repo.join("snapshots").join(REVISION);
    std::fs::create_dir_all(&snapshot).unwrap();
    (cache, snapshot)
}

fn synthetic_rows() -> Vec<Row> {
    let row = |code: &[&str], doc: &[&str]| Row {
        repo: "a/b".into(),
        code: code.join(" "),
        code_tokens: code.iter().map(|s| s.to_string()).collect(),
        docstring: doc.join(" "),
        docstring_tokens: doc.iter().map(|s| s.to_string()).collect(),
        url: format!("https://example.invalid/{}", code.len()),
    };
    vec![
        row(
            &["def", "add", "(", "a", ",", "b", ")", "a", "+", "b", "end"],
            &["Adds", "two", "numbers", "."],
        ),
        row(&["def", "x", "\n", "end"], &["Line", "one\nline", "two"]),
        row(&["def", "é", "(", ")", "end"], &["Ünïcode", "«ok»"]),
    ]
}

#[test]
fn cached_parquet_split_becomes_reference_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, snapshot) = hub_cache(&tmp.path().join("hub"));
    let rows = synthetic_rows();
    // Two shards of the split, a different split and a different language beside them.
    write_parquet(
        &snapshot.join("ruby/test-00000-of-00002.parquet"),
        &rows[..2],
        0,
    );
    write_parquet(
        &snapshot.join("ruby/test-00001-of-00002.parquet"),
        &rows[2..],
        2,
    );
    write_parquet(
        &snapshot.join("ruby/train-00000-of-00001.parquet"),
        &rows[..1],
        0,
    );
    write_parquet(
        &snapshot.join("go/test-00000-of-00001.parquet"),
        &rows[..1],
        0,
    );
    let files = cached_split_files(&cache, DATASET, "ruby", "test").unwrap();
    assert_eq!(files.len(), 2, "{files:?}");

    let out = tmp.path().join("jsonl");
    let jsonl = split_jsonl_with_cache(&cache, DATASET, "ruby", "test", &out, false).unwrap();
    assert_eq!(jsonl, out.join("ruby/test.jsonl"));
    let (examples, report) = read_examples(&jsonl, Strictness::Strict).unwrap();
    assert_eq!(report.bad_total(), 0);
    let expected: Vec<Example> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| Example::from_tokens(i, &r.code_tokens, &r.docstring_tokens))
        .collect();
    assert_eq!(examples, expected);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["id"], 0);
    assert_eq!(first["url"], rows[0].url.as_str());
    assert_eq!(first["docstring"], rows[0].docstring.as_str());

    // A second call reuses the jsonl, even with the cache gone.
    std::fs::remove_dir_all(tmp.path().join("hub")).unwrap();
    let again = split_jsonl_with_cache(&cache, DATASET, "ruby", "test", &out, false).unwrap();
    assert_eq!(again, jsonl);
}

#[test]
fn validation_alias_conversion_layout_and_offline_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, snapshot) = hub_cache(&tmp.path().join("hub"));
    let rows = synthetic_rows();
    // The parquet-conversion layout with the Hub's split name.
    write_parquet(&snapshot.join("ruby/validation/0000.parquet"), &rows, 0);
    let out = tmp.path().join("jsonl");
    let valid = split_jsonl_with_cache(&cache, DATASET, "ruby", "valid", &out, false).unwrap();
    assert_eq!(
        read_examples(&valid, Strictness::Strict).unwrap().0.len(),
        3
    );
    let err = split_jsonl_with_cache(&cache, DATASET, "ruby", "train", &out, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ruby/train") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn a_parquet_file_without_codesearchnet_columns_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, snapshot) = hub_cache(&tmp.path().join("hub"));
    let schema = Arc::new(parse_message_type("message s { REQUIRED INT32 id; }").unwrap());
    let path = snapshot.join("ruby/test-00000-of-00001.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(&path).unwrap(),
        schema,
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int32Type>()
        .write_batch(&[7], None, None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
    let err = split_jsonl_with_cache(
        &cache,
        DATASET,
        "ruby",
        "test",
        &tmp.path().join("o"),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("code_tokens") && err.contains("0000"), "{err}");
    assert!(
        !tmp.path().join("o/ruby/test.jsonl").exists(),
        "no partial output is left as done"
    );
}

#[test]
fn real_ruby_records_survive_the_parquet_round_trip() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let source = shared.join("data/codesearchnet/ruby/test.jsonl");
    let text = std::fs::read_to_string(&source).unwrap();
    let lines: Vec<&str> = text.lines().take(60).collect();
    let rows: Vec<Row> = lines
        .iter()
        .map(|l| Row::from_json(&serde_json::from_str(l).unwrap()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let head = tmp.path().join("head.jsonl");
    std::fs::write(&head, lines.join("\n") + "\n").unwrap();
    let (cache, snapshot) = hub_cache(&tmp.path().join("hub"));
    write_parquet(&snapshot.join("ruby/test-00000-of-00001.parquet"), &rows, 0);
    let jsonl = split_jsonl_with_cache(
        &cache,
        DATASET,
        "ruby",
        "test",
        &tmp.path().join("o"),
        false,
    )
    .unwrap();
    // The reference jsonl lines and the converted parquet rows give the same examples.
    let reference = read_examples(&head, Strictness::Strict).unwrap().0;
    let converted = read_examples(&jsonl, Strictness::Strict).unwrap().0;
    assert_eq!(reference.len(), 60);
    assert_eq!(converted, reference);
}

/// A file written by pyarrow (what the Hub's files are): nullable columns, the
/// `list<element: string>` layout, snappy. Fixture: `tools/reference/make_hub_fixture.py`.
#[test]
fn pyarrow_written_parquet_gives_the_reference_examples() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/hub");
    let tmp = tempfile::tempdir().unwrap();
    let (cache, snapshot) = hub_cache(&tmp.path().join("hub"));
    let target = snapshot.join("ruby/test-00000-of-00001.parquet");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(fixtures.join("ruby-test-head.parquet"), &target).unwrap();
    let jsonl = split_jsonl_with_cache(
        &cache,
        DATASET,
        "ruby",
        "test",
        &tmp.path().join("o"),
        false,
    )
    .unwrap();
    let reference = read_examples(fixtures.join("ruby-test-head.jsonl"), Strictness::Strict)
        .unwrap()
        .0;
    assert_eq!(reference.len(), 6);
    assert_eq!(
        read_examples(&jsonl, Strictness::Strict).unwrap().0,
        reference
    );
}
