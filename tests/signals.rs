//! The `train` program on a signal, as a launcher or a cluster sends it: the ranks (two
//! threads here) stop after the same update, save `checkpoint-last`, say so once and exit 1,
//! and `--resume` continues from that update. A signal passed on again at once (torchrun
//! sends its workers the Ctrl-C the terminal sent them already) counts as the same one.
//!
//! Runs the `train` example that `cargo test` builds beside this test, on the real ruby data
//! (`../shared` or `$C2N_SHARED`; skipped with a printed reason without it).
#![cfg(unix)]

mod common;

use common::{example_program, shared};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn train(shared: &Path, out: &Path, extra: &[&str]) -> Command {
    let data = shared.join("data");
    let mut command = Command::new(example_program("train"));
    command
        .args(["--init", "small", "--tokenizer"])
        .arg(data.join("roberta-base"))
        .arg("--train-data")
        .arg(data.join("codesearchnet/ruby/valid.jsonl"))
        .arg("--output-dir")
        .arg(out)
        .args([
            "--train-limit",
            "32",
            "--batch-size",
            "4",
            "--world-size",
            "2",
            "--max-source-len",
            "32",
            "--max-target-len",
            "16",
            "--log-every",
            "1",
            "--quiet",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Lines of the metrics log: one per update with `--log-every 1`.
fn logged_updates(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_signal_stops_every_rank_after_one_update_and_resume_continues_there() {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = train(&shared, &out, &["--train-steps", "100000"])
        .spawn()
        .unwrap();
    wait_until("two updates", Duration::from_secs(300), || {
        logged_updates(&out) >= 2
    });
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(30));
    signal(&child, libc::SIGTERM); // passed on again: the same request
    let mut status = None;
    wait_until("the run to stop", Duration::from_secs(120), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.unwrap().code(), Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches("SIGTERM: stopping after this update")
            .count(),
        1,
        "said once, for two ranks and two signals: {stderr}"
    );
    let stopped_at: u64 = stderr
        .split("training stopped after update ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stop message: {stderr}"));
    assert!(out.join("checkpoint-last/model.safetensors").is_file());
    assert_eq!(
        logged_updates(&out) as u64,
        stopped_at,
        "one line per update"
    );

    // The resumed run starts after that update and ends where told.
    let until = (stopped_at + 2).to_string();
    let resumed = train(
        &shared,
        &out,
        &[
            "--train-steps",
            "100000",
            "--resume",
            "--stop-after",
            &until,
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("after {stopped_at} of 100000 updates")),
        "{stderr}"
    );
    assert_eq!(logged_updates(&out) as u64, stopped_at + 2);
}
