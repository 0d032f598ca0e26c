//! Cleaning rules: the real ruby splits lose nothing; crafted dirty records are each dropped
//! for the documented reason.

mod common;

use c2n_data::clean::{has_special_tokens, non_latin_letter_share, strip_comment_tokens};
use c2n_data::{
    read_records, run_file, CleanConfig, CleanReport, Cleaner, CommentStyle, DropReason,
    FeatureConfig, PipelineConfig, PipelineOptions, Stage, Strictness, TokenRecord,
};

fn record(doc: &str, url: &str) -> TokenRecord {
    TokenRecord {
        code_tokens: vec![
            "def".into(),
            "# a comment".into(),
            "f".into(),
            "\"# not\"".into(),
        ],
        docstring_tokens: doc.split(' ').map(String::from).collect(),
        url: Some(url.to_string()),
    }
}

#[test]
fn real_ruby_splits_drop_nothing() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    for split in ["test", "valid"] {
        let path = shared.join(format!("data/codesearchnet/ruby/{split}.jsonl"));
        let (records, _) = read_records(&path, Strictness::Strict).unwrap();
        let n = records.len();
        let mut report = CleanReport::default();
        let kept = Cleaner::new(CleanConfig::published()).clean_all(records, &mut report);
        assert_eq!(kept.len(), n, "{split}: {report:?}");
        assert_eq!(report.dropped_total(), 0);
        assert_eq!((report.seen, report.kept), (n, n));
    }
}

#[test]
fn crafted_records_are_dropped_for_their_reason() {
    let cases = [
        ("Too short", DropReason::DocstringTooShort),
        (&*vec!["w"; 257].join(" "), DropReason::DocstringTooLong),
        (
            "See https : / / example . com for details",
            DropReason::SpecialTokens,
        ),
        (
            "See http://example.com for details",
            DropReason::SpecialTokens,
        ),
        ("Visit www . example . org now", DropReason::SpecialTokens),
        (
            "Shows < img src = \" x . png \" > here",
            DropReason::SpecialTokens,
        ),
        ("Ends the < / div > block", DropReason::SpecialTokens),
        ("Uses <b> bold </b> text", DropReason::SpecialTokens),
        ("获取 用户 的 名字 和 地址", DropReason::NonEnglish),
        ("Возвращает значение по ключу", DropReason::NonEnglish),
    ];
    let mut records: Vec<(usize, TokenRecord)> = cases
        .iter()
        .enumerate()
        .map(|(i, (doc, _))| (i, record(doc, &format!("u{i}"))))
        .collect();
    records.push((100, record("Returns the value .", "dup")));
    records.push((101, record("Returns another value .", "dup")));
    let mut report = CleanReport::default();
    let kept = Cleaner::new(CleanConfig::published()).clean_all(records, &mut report);
    assert_eq!(kept.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [100]);
    for (i, (doc, reason)) in cases.iter().enumerate() {
        let mut r = record(doc, "x");
        assert_eq!(
            Cleaner::check(&CleanConfig::published(), &mut r),
            Err(*reason),
            "case {i}: {doc}"
        );
    }
    assert_eq!(report.dropped.get(&DropReason::DuplicateUrl), Some(&1));
    assert_eq!(report.dropped.get(&DropReason::SpecialTokens), Some(&6));
    assert_eq!(report.dropped_total() + report.kept, report.seen);
}

#[test]
fn near_misses_are_kept() {
    for doc in [
        "Returns true if x < i .",
        "Opens class << self block",
        "Compares a < b and c",
        "Café naïve résumé façade",
        "Uses the π constant for circles",
    ] {
        let mut r = record(doc, "x");
        assert_eq!(
            Cleaner::check(&CleanConfig::published(), &mut r),
            Ok(0),
            "{doc}"
        );
    }
    assert!(!has_special_tokens(&["a", "<", "i"]));
    assert!(has_special_tokens(&["a", "<", "i", ">"]));
    assert!(non_latin_letter_share(&["abc"]) == 0.0);
    assert!(non_latin_letter_share(&["ab", "中文"]) == 0.5);
}

#[test]
fn thresholds_sit_exactly_where_documented() {
    let verdict = |doc: &str| Cleaner::check(&CleanConfig::published(), &mut record(doc, "x"));
    // Length: 3..=256 docstring tokens are kept.
    assert_eq!(verdict("a b"), Err(DropReason::DocstringTooShort));
    assert_eq!(verdict("a b c"), Ok(0));
    assert_eq!(verdict(&vec!["w"; 256].join(" ")), Ok(0));
    assert_eq!(
        verdict(&vec!["w"; 257].join(" ")),
        Err(DropReason::DocstringTooLong)
    );
    // Non-English: a non-Latin share of exactly 0.1 is kept, above it dropped.
    assert_eq!(non_latin_letter_share(&["abcd", "efghi", "π"]), 0.1);
    assert_eq!(verdict("abcd efghi π"), Ok(0));
    assert_eq!(verdict("abcd efgh πα"), Err(DropReason::NonEnglish));
}

#[test]
fn the_prepare_pipeline_counts_each_drop_under_its_reason() {
    // The streaming path (run_file, parallel checks, then dedup in line order), not clean_all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dirty.jsonl");
    let line = |doc: &str, url: &str| {
        serde_json::json!({
            "code_tokens": ["def", "f"],
            "docstring_tokens": doc.split(' ').collect::<Vec<_>>(),
            "url": url,
        })
        .to_string()
    };
    let lines = [
        line("Returns the value .", "u1"),
        line("Too short", "u2"),
        line("See http://example.com now", "u3"),
        line("Returns the value .", "u1"), // duplicate url of line 0
        line("返回 值 的 函数", "u5"),
        line("Sets the name .", "u6"),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let cfg = PipelineConfig {
        features: FeatureConfig {
            max_source_len: 16,
            max_target_len: 16,
            stage: Stage::Train,
        },
        clean: CleanConfig::published(),
        strictness: Strictness::Strict,
    };
    let mut kept = Vec::new();
    let report = run_file(
        &path,
        &common::tiny_tokenizer(),
        &cfg,
        PipelineOptions { chunk_lines: 2 },
        &mut |f| {
            kept.push(f.idx);
            Ok(())
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(kept, [0, 5]);
    let dropped = &report.clean.dropped;
    for (reason, n) in [
        (DropReason::DocstringTooShort, 1),
        (DropReason::SpecialTokens, 1),
        (DropReason::DuplicateUrl, 1),
        (DropReason::NonEnglish, 1),
    ] {
        assert_eq!(dropped.get(&reason), Some(&n), "{reason:?}: {dropped:?}");
    }
    assert_eq!((report.clean.seen, report.clean.kept), (6, 2));
    assert_eq!(report.clean.dropped_total() + report.clean.kept, 6);
}

#[test]
fn config_none_keeps_everything_and_comment_stripping_is_counted() {
    let mut r = record("x", "x");
    assert_eq!(Cleaner::check(&CleanConfig::none(), &mut r), Ok(0));
    assert!(CleanConfig::default().is_noop());

    let config = CleanConfig {
        strip_code_comments: Some(CommentStyle::Hash),
        ..CleanConfig::none()
    };
    let mut report = CleanReport::default();
    let kept = Cleaner::new(config).clean_all(vec![(0, record("a b c", "u"))], &mut report);
    assert_eq!(kept[0].1.code_tokens, ["def", "f", "\"# not\""]);
    assert_eq!(
        (
            report.comment_tokens_stripped,
            report.records_with_comments_stripped
        ),
        (1, 1)
    );

    let mut code: Vec<String> = ["// c", "x", "/* d */", "y /"].map(String::from).to_vec();
    assert_eq!(strip_comment_tokens(&mut code, CommentStyle::Slash), 2);
    assert_eq!(code, ["x", "y /"]);
}
