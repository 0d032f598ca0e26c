//! `-` names the standard streams: `prepare --dump-features -` writes the features to stdout
//! (the statistics table then goes to stderr) and `predict --jsonl -` reads its functions from
//! stdin, each giving what the same program gives with a file, and neither creates a file
//! called `-`.
//!
//! Runs the examples that `cargo test` builds beside this test, on the real ruby data and
//! tokenizer (`../shared` or `$C2N_SHARED`; skipped with a printed reason without them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn shared() -> Option<PathBuf> {
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

/// `target/<profile>/examples/<name>`, which `cargo test` builds with the tests.
/// `cargo test --test …` does not build examples, so it may run an older build of one.
fn program(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile_dir = test.parent().and_then(Path::parent).unwrap();
    let program = profile_dir.join("examples").join(name);
    assert!(
        program.is_file(),
        "{} is missing: a plain `cargo test` builds the examples (with `--test`, run `cargo build --examples` first)",
        program.display()
    );
    program
}

/// Runs `command` in `dir` with `stdin` as its input; fails the test unless it exits 0.
fn run(mut command: Command, dir: &Path, stdin: &[u8]) -> Output {
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn prepare_dumps_features_to_stdout_with_a_dash() {
    let Some(shared) = shared() else { return };
    let data = shared.join("data");
    let dir = tempfile::tempdir().unwrap();
    let prepare = |dump: &str| {
        let mut command = Command::new(program("prepare"));
        command
            .arg("--data")
            .arg(data.join("codesearchnet/ruby/valid.jsonl"))
            .arg("--tokenizer")
            .arg(data.join("roberta-base"))
            .args(["--stage", "dev", "--cache-dir"])
            .arg(dir.path().join("cache"))
            .args(["--dump-features", dump]);
        run(command, dir.path(), b"")
    };
    let to_file = prepare("features.jsonl");
    let to_stdout = prepare("-");
    let from_file = std::fs::read(dir.path().join("features.jsonl")).unwrap();
    assert_eq!(to_stdout.stdout, from_file, "the same features either way");
    assert_eq!(from_file.iter().filter(|&&b| b == b'\n').count(), 1400);
    let table = String::from_utf8(to_file.stdout).unwrap();
    assert!(table.contains("| ruby | valid | 1400 | 1400 |"), "{table}");
    let stderr = String::from_utf8(to_stdout.stderr).unwrap();
    assert!(
        stderr.contains(table.trim()),
        "the table on stderr: {stderr}"
    );
    assert!(!dir.path().join("-").exists(), "no file called -");
}

#[test]
fn predict_reads_functions_from_stdin_with_a_dash() {
    let Some(shared) = shared() else { return };
    let data = shared.join("data");
    let dir = tempfile::tempdir().unwrap();
    let functions: Vec<u8> = std::fs::read(data.join("codesearchnet/ruby/test.jsonl"))
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .take(4)
        .flatten()
        .copied()
        .collect();
    std::fs::write(dir.path().join("functions.jsonl"), &functions).unwrap();
    let predict = |jsonl: &str, stdin: &[u8]| {
        let mut command = Command::new(program("predict"));
        command
            .arg("--checkpoint")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/c2n-model/tests/data/small"))
            .arg("--tokenizer")
            .arg(data.join("roberta-base"))
            .args([
                "--jsonl",
                jsonl,
                "--beam-size",
                "2",
                "--max-target-len",
                "6",
            ])
            .args(["--device", "cpu"]);
        String::from_utf8(run(command, dir.path(), stdin).stdout).unwrap()
    };
    let from_file = predict("functions.jsonl", b"");
    assert_eq!(from_file.lines().count(), 4, "{from_file}");
    assert_eq!(predict("-", &functions), from_file);
    assert!(!dir.path().join("-").exists(), "no file called -");
}
