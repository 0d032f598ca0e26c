//! A hub id resolves from the Hugging Face cache without network, and fails clearly offline.
//! (One test in its own binary: it sets process-wide environment variables.)
#![cfg(feature = "hub")]

mod common;

use c2n_data::{RobertaTokenizer, TokenizerFiles};

/// A hub cache entry for `repo_folder` (`models--owner--name`) holding the tiny tokenizer;
/// its snapshot folder.
fn cached_tokenizer(home: &std::path::Path, repo_folder: &str) -> std::path::PathBuf {
    let repo = home.join("hub").join(repo_folder);
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    common::write_tiny_tokenizer(&snapshot, false);
    snapshot
}

#[test]
fn hub_id_is_served_from_the_cache_and_offline_misses_are_errors() {
    let home = tempfile::tempdir().unwrap();
    let snapshot = cached_tokenizer(home.path(), "models--someorg--tiny-bpe");
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let files = TokenizerFiles::resolve("someorg/tiny-bpe").unwrap();
    assert_eq!(
        files,
        TokenizerFiles::VocabMerges {
            vocab: snapshot.join("vocab.json"),
            merges: snapshot.join("merges.txt"),
        }
    );
    let tok = RobertaTokenizer::from_files(&files).unwrap();
    assert_eq!(
        tok.encode(" the").unwrap(),
        common::tiny_tokenizer().encode(" the").unwrap()
    );

    let err = TokenizerFiles::resolve("someorg/missing")
        .unwrap_err()
        .to_string();
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    let err = TokenizerFiles::resolve("not a path or id")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hub id"), "{err}");

    // A bare name is a legacy hub id (`roberta-base`), served from the cache as well.
    cached_tokenizer(home.path(), "models--tiny-bpe");
    assert!(matches!(
        TokenizerFiles::resolve("tiny-bpe").unwrap(),
        TokenizerFiles::VocabMerges { .. }
    ));
    let err = TokenizerFiles::resolve("no-such-name")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no such file or folder here, and as a hub id")
            && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}
