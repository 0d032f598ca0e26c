//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` next to the workspace, or `$C2N_SHARED`; `None` (with a printed reason) when absent.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join("data/roberta-base/vocab.json").is_file()
        && dir.join("data/codesearchnet/ruby/test.jsonl").is_file()
    {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: shared data not found at {} (set C2N_SHARED)",
            dir.display()
        );
        None
    }
}

pub fn fixture() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ruby_tokenize_fixture.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture json")
}

pub fn sha16(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn ids_sha<T: ToString>(ids: &[T]) -> String {
    let joined: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    sha16(joined.join(",").as_bytes())
}

pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// A tiny byte-level BPE vocabulary: the 256 byte symbols, the five specials and a few merges.
pub fn tiny_tokenizer() -> c2n_data::RobertaTokenizer {
    use std::collections::HashMap;
    let table = c2n_data::tokenizer::bytes_to_unicode();
    let mut vocab: HashMap<String, u32> = HashMap::new();
    for (i, s) in ["<s>", "<pad>", "</s>", "<unk>"].iter().enumerate() {
        vocab.insert(s.to_string(), i as u32);
    }
    for c in table {
        let id = vocab.len() as u32;
        vocab.insert(c.to_string(), id);
    }
    let merges: Vec<(String, String)> = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "b")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (a, b) in &merges {
        let id = vocab.len() as u32;
        vocab.insert(format!("{a}{b}"), id);
    }
    let id = vocab.len() as u32;
    vocab.insert("<mask>".to_string(), id);
    c2n_data::RobertaTokenizer::from_vocab_merges(vocab, merges).expect("tiny tokenizer")
}

/// Writes the tiny tokenizer of [`tiny_tokenizer`] as `vocab.json` + `merges.txt` into `dir`.
pub fn write_tiny_tokenizer(dir: &std::path::Path, extra_merge: bool) -> c2n_data::TokenizerFiles {
    let tok = tiny_tokenizer();
    let mut vocab = serde_json::Map::new();
    for id in 0..tok.vocab_size() as u32 {
        if let Some(t) = tok.id_to_token(id) {
            vocab.insert(t.to_string(), serde_json::Value::from(id));
        }
    }
    let mut merges = String::from("#version: 0.2\nĠ t\nh e\nĠt he\na b\n");
    if extra_merge {
        // Changes the tokenizer files (and so the cache fingerprint) without changing ids.
        merges.push_str("z z\n");
        let next = tok.vocab_size() as u32;
        vocab.insert("zz".to_string(), serde_json::Value::from(next));
    }
    std::fs::write(dir.join("vocab.json"), serde_json::to_vec(&vocab).unwrap()).unwrap();
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    c2n_data::TokenizerFiles::from_dir(dir).unwrap()
}

/// A synthetic jsonl file of `n` records with varied lengths.
pub fn synthetic_jsonl(path: &std::path::Path, n: usize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let code: Vec<String> = (0..(i * 7) % 40 + 1)
            .map(|k| format!("tok{}", (i + k) % 13))
            .collect();
        let doc: Vec<String> = (0..(i * 3) % 9 + 3).map(|k| format!("the w{k}")).collect();
        let record = serde_json::json!({
            "code_tokens": code, "docstring_tokens": doc, "url": format!("https://x/{i}")
        });
        writeln!(out, "{record}").unwrap();
    }
}
