//! What the tests that run the example programs share: the real data's folder and the
//! programs `cargo test` builds beside them.

use std::path::{Path, PathBuf};

/// `../shared` (or `$C2N_SHARED`) when it holds the ruby data; `None`, with the reason
/// printed, otherwise (the caller skips).
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("data/codesearchnet/ruby/valid.jsonl").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: no ruby data under {} (set C2N_SHARED)",
            dir.display()
        );
        None
    }
}

/// `target/<profile>/examples/<name>`, which a plain `cargo test` builds with the tests.
/// `cargo test --test …` does not build examples, so it may run an older build of one.
pub fn example_program(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile_dir = test.parent().and_then(Path::parent).unwrap();
    let program = profile_dir.join("examples").join(name);
    assert!(
        program.is_file(),
        "{} is missing: a plain `cargo test` builds the examples (with `--test`, run \
         `cargo build --examples` first)",
        program.display()
    );
    program
}
