//! `-` names the standard streams: `prepare --dump-features -` writes the features to stdout
//! (the statistics table then goes to stderr) and `predict --jsonl -` reads its functions from
//! stdin, each giving what the same program gives with a file, and neither creates a file
//! called `-`.
//!
//! Runs the examples that `cargo test` builds beside this test, on the real ruby data and
//! tokenizer (`../shared` or `$C2N_SHARED`; skipped with a printed reason without them).

mod common;

use common::{example_program, shared};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

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
        let mut command = Command::new(example_program("prepare"));
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
        let mut command = Command::new(example_program("predict"));
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
