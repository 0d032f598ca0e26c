//! The hand-written ASCII GPT-2 split gives the same ids as the `tokenizers` regex path.

mod common;

use c2n_data::RobertaTokenizer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn same_ids(tok: &RobertaTokenizer, text: &str) {
    let mut fast = Vec::new();
    let mut general = Vec::new();
    tok.bpe_fragment(text, &mut fast).unwrap();
    tok.bpe_fragment_general(text, &mut general).unwrap();
    assert_eq!(fast, general, "{text:?}");
}

const ALPHABET: &[u8] = b"ab Z09 \t\n\r\x0b\x0c'srevlmtd.,=(){}<>_-#\"\x1c\x00\x7f";

fn ascii_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET.to_vec()), 0..40)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

#[test]
fn hand_picked_cases() {
    let tok = common::tiny_tokenizer();
    for text in [
        "",
        " ",
        "  ",
        "a  b",
        "a \n b",
        "x\n\ny",
        "'s's 're'",
        " 'll",
        "it's",
        "''s",
        "a'",
        "  \t x",
        "end   ",
        "1.5e10 x2",
        "\x1c a",
        "=>  {",
        "ab\r\nab",
    ] {
        same_ids(&tok, text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_ascii_matches_regex_path(text in ascii_text()) {
        let tok = common::tiny_tokenizer();
        same_ids(&tok, &text);
    }
}

#[test]
fn random_ascii_matches_regex_path_with_real_vocab() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..3000 {
        let text = ascii_text().new_tree(&mut runner).unwrap().current();
        same_ids(&tok, &text);
    }
}
