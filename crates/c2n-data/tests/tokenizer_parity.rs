//! Tokenizer and example parity against the reference fixture written by
//! `tools/reference/tokenize_reference.py` (see that file for the regenerate command).

mod common;

use c2n_data::{
    normalize_tokens, read_examples, Newline, RobertaTokenizer, Strictness, TokenizerFiles,
};
use common::*;

fn real_tokenizers(shared: &std::path::Path) -> Vec<(&'static str, RobertaTokenizer)> {
    let dir = shared.join("data/roberta-base");
    let slow = RobertaTokenizer::from_files(&TokenizerFiles::from_dir(&dir).unwrap()).unwrap();
    let fast =
        RobertaTokenizer::from_files(&TokenizerFiles::TokenizerJson(dir.join("tokenizer.json")))
            .unwrap();
    vec![("vocab+merges", slow), ("tokenizer.json", fast)]
}

#[test]
fn normalization_matches_cpython() {
    for case in fixture()["normalize_cases"].as_array().unwrap() {
        let strings = |k: &str| -> Vec<String> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let code = strings("code_tokens");
        let doc = strings("docstring_tokens");
        assert_eq!(
            normalize_tokens(&code, Newline::Space),
            case["source"].as_str().unwrap()
        );
        assert_eq!(
            normalize_tokens(&doc, Newline::Delete),
            case["target"].as_str().unwrap()
        );
    }
}

#[test]
fn special_cases_and_spot_checks() {
    let Some(shared) = shared_dir() else { return };
    let fx = fixture();
    for (name, tok) in real_tokenizers(&shared) {
        for case in fx["token_cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                tok.encode(text).unwrap(),
                ids_of(&case["ids"]),
                "{name}: {text:?}"
            );
            let tokens: Vec<String> = case["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            assert_eq!(tok.tokenize(text).unwrap(), tokens, "{name}: {text:?}");
        }
        for case in fx["decode_cases"].as_array().unwrap() {
            let ids = ids_of(&case["ids"]);
            assert_eq!(
                tok.decode(&ids),
                case["text"].as_str().unwrap(),
                "{name}: {ids:?}"
            );
        }
        // Spec §2.2 / §2.5 literal spot checks.
        assert_eq!(
            tok.encode("Returns the value .").unwrap(),
            [48826, 5, 923, 479]
        );
        assert_eq!(tok.encode("None").unwrap(), [29802]);
        assert_eq!(tok.vocab_size(), 50265);
    }
}

#[test]
fn every_ruby_example_matches_the_reference() {
    let Some(shared) = shared_dir() else { return };
    let fx = fixture();
    let expected = fx["examples"].as_array().unwrap();
    assert_eq!(expected.len(), 2661);
    let toks = real_tokenizers(&shared);
    let mut i = 0;
    for split in ["test", "valid"] {
        let path = shared.join(format!("data/codesearchnet/ruby/{split}.jsonl"));
        let (examples, report) = read_examples(&path, Strictness::Strict).unwrap();
        assert_eq!(report.bad_total(), 0);
        for ex in examples {
            let want = &expected[i];
            i += 1;
            assert_eq!(want["split"], split);
            assert_eq!(want["idx"].as_u64().unwrap() as usize, ex.idx);
            assert_eq!(
                sha16(ex.source.as_bytes()),
                want["source_sha"],
                "{split} {}",
                ex.idx
            );
            assert_eq!(
                sha16(ex.target.as_bytes()),
                want["target_sha"],
                "{split} {}",
                ex.idx
            );
            for (name, tok) in &toks {
                let s = tok.encode(&ex.source).unwrap();
                let t = tok.encode(&ex.target).unwrap();
                assert_eq!(
                    s.len() as u64,
                    want["source_len"].as_u64().unwrap(),
                    "{name} {split} {}",
                    ex.idx
                );
                assert_eq!(
                    ids_sha(&s),
                    want["source_ids_sha"],
                    "{name} {split} {}",
                    ex.idx
                );
                assert_eq!(
                    ids_sha(&t),
                    want["target_ids_sha"],
                    "{name} {split} {}",
                    ex.idx
                );
                // Decoding the gold target round-trips (§12 item 4).
                assert_eq!(tok.decode(&t), ex.target);
            }
        }
    }
    assert_eq!(i, expected.len());
    for full in fx["full"].as_array().unwrap() {
        let (_, tok) = &toks[0];
        let source = full["source"].as_str().unwrap();
        assert_eq!(tok.encode(source).unwrap(), ids_of(&full["source_ids"]));
        assert_eq!(
            tok.encode(full["target"].as_str().unwrap()).unwrap(),
            ids_of(&full["target_ids"])
        );
    }
}

#[test]
fn record_zero_target_ids_from_the_spec() {
    let Some(shared) = shared_dir() else { return };
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let path = shared.join("data/codesearchnet/ruby/test.jsonl");
    let (examples, _) = read_examples(&path, Strictness::Strict).unwrap();
    assert_eq!(
        examples[0].target,
        "Outputs the deferred summary information saved via"
    );
    assert_eq!(
        tok.encode_with_specials(&examples[0].target).unwrap(),
        [0, 48293, 29, 5, 16899, 4819, 335, 5305, 1241, 2]
    );
}
