//! Running the points of a sweep, N child processes at a time, each in its own folder;
//! a point with a `report.json` is done and skipped (if its recorded run still matches the
//! point: [`earlier_run_match`]; other
//! evaluation limits run the child, which re-scores); a failing
//! point is recorded and the others go on.

use super::grid::SweepPoint;
use crate::interrupt::Interrupt;
use crate::pipeline::identity::{earlier_run_match, RunMatch};
use crate::pipeline::PipelineReport;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// File name of a point's config inside its folder (what the child reads).
pub const POINT_CONFIG: &str = "pipeline.json";
/// File name of a point's combined stdout/stderr.
pub const POINT_LOG: &str = "log.txt";

/// How one point ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PointStatus {
    /// Finished in this sweep.
    Done,
    /// Finished by an earlier sweep (its `report.json` was there).
    Skipped,
    /// Asked to stop (the sweep was interrupted) and did; the same sweep continues it.
    Stopped { exit_code: Option<i32> },
    /// The child failed; the last lines of its log say why.
    Failed {
        exit_code: Option<i32>,
        log_tail: String,
    },
}

/// One row of the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub name: String,
    pub dir: PathBuf,
    pub overrides: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub status: PointStatus,
    /// Wall time of the child in this sweep (0 when skipped).
    pub seconds: f64,
    pub report: Option<PipelineReport>,
}

impl PointResult {
    /// Dev BLEU of the point (full value), if it finished.
    pub fn dev_bleu(&self) -> Option<f64> {
        self.report.as_ref().map(|r| r.dev.bleu)
    }
}

/// Makes every point's folder and sets its config's output folder (`root/<name>`). The
/// config is written into the folder when the point runs ([`POINT_CONFIG`]), not before: a
/// finished point refused as stale keeps the config its run had.
pub fn lay_out_points(points: &[SweepPoint], root: &Path) -> Result<Vec<(SweepPoint, PathBuf)>> {
    points
        .iter()
        .map(|p| {
            let dir = root.join(&p.name);
            crate::output_dir::create(&dir)?;
            let mut config = p.config.clone();
            config.output_dir = dir.clone();
            config.progress = false;
            Ok((
                SweepPoint {
                    config,
                    ..p.clone()
                },
                dir,
            ))
        })
        .collect()
}

fn read_report(dir: &Path) -> Option<PipelineReport> {
    let text = std::fs::read_to_string(dir.join("report.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The last `lines` lines of a failed run's log, before any backtrace (a child run with
/// `RUST_BACKTRACE=1` ends its log with stack frames, not with its error).
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    tail_before_backtrace(&text, lines)
}

fn tail_before_backtrace(text: &str, lines: usize) -> String {
    // anyhow's report says "Stack backtrace:", a panic's "stack backtrace:".
    let cut = ["\nStack backtrace:", "\nstack backtrace:"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min();
    let text = match cut {
        Some(at) => &text[..at],
        None => text,
    };
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for a point's run. Once `interrupt` is requested it is passed on to the run as a
/// SIGTERM, once, so that a run the signal did not reach (one sent to the sweep alone) stops
/// as `train` does: after its update, with `checkpoint-last` saved. A run that the same Ctrl-C
/// reached already takes this as the same request (`crate::interrupt`).
fn wait_passing_on(
    child: &mut Child,
    interrupt: Option<&Interrupt>,
) -> std::io::Result<ExitStatus> {
    let Some(interrupt) = interrupt else {
        return child.wait();
    };
    let mut passed_on = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if !passed_on && interrupt.is_requested() {
            ask_to_stop(child);
            passed_on = true;
        }
        // Well inside the second within which a repeated signal counts as the first.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
fn ask_to_stop(child: &Child) {
    // SAFETY: signals a child of this process that has not been waited for (its pid is ours).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// No signal to ask with: the run goes on to its end.
#[cfg(not(unix))]
fn ask_to_stop(_child: &Child) {}

fn run_point(
    point: &SweepPoint,
    dir: &Path,
    slot: usize,
    interrupt: Option<&Interrupt>,
    launcher: &(dyn Fn(&Path, usize) -> Command + Sync),
) -> PointResult {
    let mut result = PointResult {
        name: point.name.clone(),
        dir: dir.to_path_buf(),
        overrides: point.overrides.clone(),
        status: PointStatus::Skipped,
        seconds: 0.0,
        report: read_report(dir),
    };
    if result.report.is_some() {
        // A finished point counts only while its run is this sweep's point: other evaluation
        // limits re-score (the child runs), anything else would be refused by its pipeline
        // too, so say why here.
        match earlier_run_match(&point.config) {
            RunMatch::Same => return result,
            RunMatch::EvaluationChanged(_) => {}
            RunMatch::Different(reason) => {
                result.report = None;
                result.status = PointStatus::Failed {
                    exit_code: None,
                    log_tail: format!(
                        "the finished run in {} is stale: {reason}; delete that folder to run the point again",
                        dir.display()
                    ),
                };
                return result;
            }
        }
    }
    let start = Instant::now();
    if let Err(e) = point.config.save_json(&dir.join(POINT_CONFIG)) {
        result.report = None;
        result.status = PointStatus::Failed {
            exit_code: None,
            log_tail: format!("could not write the point's config: {e}"),
        };
        return result;
    }
    let log_path = dir.join(POINT_LOG);
    let outcome = std::fs::File::create(&log_path).and_then(|log| {
        let err = log.try_clone()?;
        let mut child = launcher(&dir.join(POINT_CONFIG), slot)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()?;
        wait_passing_on(&mut child, interrupt)
    });
    result.seconds = start.elapsed().as_secs_f64();
    result.report = read_report(dir);
    result.status = match outcome {
        Ok(status) if status.success() && result.report.is_some() => PointStatus::Done,
        Ok(status) if interrupt.is_some_and(Interrupt::is_requested) => PointStatus::Stopped {
            exit_code: status.code(),
        },
        Ok(status) => PointStatus::Failed {
            exit_code: status.code(),
            log_tail: log_tail(&log_path, 5),
        },
        Err(e) => PointStatus::Failed {
            exit_code: None,
            log_tail: format!("could not start the run: {e}"),
        },
    };
    result
}

/// Runs the points, `parallel` at a time. `launcher(config_path, slot)` builds the child
/// command (e.g. this executable with `--run-one`); `slot` (0..parallel) is the runner that
/// starts it, so no two children running at once share one (one GPU per slot).
/// `on_finish` hears about each point as it ends. Results come back in point order. Once
/// `interrupt` is requested no further point starts (the results lack them), and the running
/// ones are asked to stop (SIGTERM, once).
pub fn run_points(
    points: &[(SweepPoint, PathBuf)],
    parallel: usize,
    interrupt: Option<&Interrupt>,
    launcher: &(dyn Fn(&Path, usize) -> Command + Sync),
    on_finish: &(dyn Fn(&PointResult) + Sync),
) -> Vec<PointResult> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<PointResult>>> = Mutex::new(vec![None; points.len()]);
    std::thread::scope(|scope| {
        for slot in 0..parallel.max(1).min(points.len().max(1)) {
            let (next, results) = (&next, &results);
            scope.spawn(move || loop {
                if interrupt.is_some_and(|i| i.is_requested()) {
                    return;
                }
                let i = {
                    let Ok(mut n) = next.lock() else { return };
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some((point, dir)) = points.get(i) else {
                    return;
                };
                let result = run_point(point, dir, slot, interrupt, launcher);
                on_finish(&result);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_told_by_its_error_not_its_backtrace() {
        let log = "step 1\nError: tokenizer /x: no such file\n\nStack backtrace:\n   0: main\n   8: _start\n";
        assert_eq!(
            tail_before_backtrace(log, 2),
            "step 1\nError: tokenizer /x: no such file"
        );
        assert_eq!(tail_before_backtrace("a\nb\nc\n", 2), "b\nc");
        let panicked = "thread 'main' panicked at src/x.rs:3:5:\nboom\nstack backtrace:\n   0: x\n";
        assert_eq!(
            tail_before_backtrace(panicked, 5),
            "thread 'main' panicked at src/x.rs:3:5:\nboom"
        );
    }
}
