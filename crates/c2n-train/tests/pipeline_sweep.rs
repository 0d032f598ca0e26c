//! The sweep runner with stand-in child processes (a shell script per point): parallel runs,
//! ranking by dev BLEU, a failing point that does not stop the others, resumption.

use c2n_train::pipeline::report::{PipelineReport, SplitScore, StageTiming, TrainOutcome};
use c2n_train::pipeline::splits::SplitFiles;
use c2n_train::sweep::{run_sweep, PointStatus, SweepFile};
use std::path::{Path, PathBuf};
use std::process::Command;

fn score(split: &str, bleu: f64) -> SplitScore {
    SplitScore {
        split: split.into(),
        limit: None,
        examples: 10,
        bleu,
        bleu_2dp: 0.0,
        loss: 1.0,
        perplexity: 1f64.exp(),
        empty_predictions: 0,
        output: PathBuf::from("x.output"),
        gold: PathBuf::from("x.gold"),
        timing: StageTiming::new(split, 1.0, 10, ""),
    }
    .with_rounding()
}

fn report(dev_bleu: f64, dev_ppl: f64) -> PipelineReport {
    PipelineReport {
        lang: "ruby".into(),
        preset: "small".into(),
        device: "cpu".into(),
        parameters: 1,
        splits: SplitFiles {
            train: "t".into(),
            dev: "d".into(),
            test: "e".into(),
            dev_held_out: false,
            source: "test".into(),
        },
        stages: vec![StageTiming::new("train", 2.0, 10, "")],
        train: TrainOutcome {
            updates: 1,
            evaluations: 1,
            examples_seen: 10,
            best_dev_bleu: dev_bleu,
            best_dev_loss: 1.0,
            checkpoint: "c".into(),
        },
        dev: SplitScore {
            perplexity: dev_ppl,
            ..score("dev", dev_bleu)
        },
        test: score("test", dev_bleu / 2.0),
        published_bleu: Some(12.16),
        published_row: "CodeBERT".into(),
        train_config: serde_json::json!({}),
        data_stats: String::new(),
        curves_png: None,
        total_seconds: 3.0,
    }
}

/// A child that copies the prepared report of its point, or fails for `lr = 0.5`.
fn launcher(reports: &Path) -> impl Fn(&Path, usize) -> Command + Sync + '_ {
    move |config: &Path, _slot| {
        let script = "dir=$(dirname \"$1\"); name=$(basename \"$dir\"); \
            case \"$name\" in *lr=0.5*) echo 'training loss is NaN: diverged' >&2; exit 3;; esac; \
            cp \"$2/$name.json\" \"$dir/report.json\"";
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("sh").arg(config).arg(reports);
        cmd
    }
}

#[test]
fn runs_at_the_same_time_never_share_a_slot() {
    // Each child claims `slot-N.busy` (noclobber: a claim of a busy slot fails the child),
    // holds it a moment, then releases it: the slots are how the sweep gives each running
    // child its own GPU.
    let tmp = tempfile::tempdir().unwrap();
    let sweep: SweepFile = toml::from_str(
        "[base]\nlang = \"ruby\"\npreset = \"small\"\n[grid]\nlr = [0.001, 0.002, 0.003, 0.004, 0.005]\n",
    )
    .unwrap();
    let reports = tmp.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    for point in sweep.expand().unwrap() {
        let text = serde_json::to_string(&report(1.0, 9.0)).unwrap();
        std::fs::write(reports.join(format!("{}.json", point.name)), text).unwrap();
    }
    let slots = tmp.path().join("slots");
    std::fs::create_dir_all(&slots).unwrap();
    let launcher = |config: &Path, slot: usize| {
        let script = "set -o noclobber; dir=$(dirname \"$1\"); name=$(basename \"$dir\"); \
            echo x > \"$3/slot-$4.busy\" || exit 9; echo $4 >> \"$3/used\"; sleep 0.2; \
            rm \"$3/slot-$4.busy\"; cp \"$2/$name.json\" \"$dir/report.json\"";
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(config)
            .arg(&reports)
            .arg(&slots)
            .arg(slot.to_string());
        cmd
    };
    let out = tmp.path().join("sweep");
    let outcome = run_sweep(&sweep, &out, 2, &launcher, &|_| {}).unwrap();
    assert!(
        outcome
            .rows
            .iter()
            .all(|r| matches!(r.status, PointStatus::Done)),
        "{:?}",
        outcome.rows.iter().map(|r| &r.status).collect::<Vec<_>>()
    );
    let mut used: Vec<String> = std::fs::read_to_string(slots.join("used"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(used.len(), 5);
    used.sort();
    used.dedup();
    assert_eq!(used, ["0", "1"]);

    // Interrupted before the first point: none starts, and the outcome says how many.
    let interrupt = c2n_train::interrupt::Interrupt::new();
    interrupt.request();
    let stopped = tmp.path().join("stopped");
    let outcome = c2n_train::sweep::run_sweep_interruptible(
        &sweep,
        &stopped,
        2,
        Some(&interrupt),
        &launcher,
        &|_| {},
    )
    .unwrap();
    assert_eq!((outcome.rows.len(), outcome.not_started), (0, 5));
}

#[test]
fn points_run_in_parallel_rank_by_dev_bleu_and_failures_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep: SweepFile = toml::from_str(
        "[base]\nlang = \"ruby\"\npreset = \"small\"\n[grid]\nlr = [0.001, 0.5, 0.002]\n\
         [[points]]\nlr = 0.003\nbeam_size = 5\n[[points]]\nlr = 0.004\n",
    )
    .unwrap();
    let points = sweep.expand().unwrap();
    assert_eq!(points.len(), 5);
    let reports = tmp.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    // The last point ties the second best on dev BLEU with a lower perplexity: it ranks first.
    for (point, (bleu, ppl)) in
        points
            .iter()
            .zip([(3.0, 9.0), (0.0, 9.0), (7.5, 9.0), (5.25, 9.0), (5.25, 8.0)])
    {
        let text = serde_json::to_string(&report(bleu, ppl)).unwrap();
        std::fs::write(reports.join(format!("{}.json", point.name)), text).unwrap();
    }
    let out = tmp.path().join("sweep");
    let finished = std::sync::Mutex::new(Vec::new());
    let outcome = run_sweep(&sweep, &out, 2, &launcher(&reports), &|r| {
        finished.lock().unwrap().push(r.name.clone())
    })
    .unwrap();
    assert_eq!(finished.lock().unwrap().len(), 5);
    let order: Vec<&str> = outcome.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "02-lr=0.002",
            "04-lr=0.004",
            "03-beam_size=5-lr=0.003",
            "00-lr=0.001",
            "01-lr=0.5"
        ]
    );
    match &outcome.rows[4].status {
        PointStatus::Failed {
            exit_code,
            log_tail,
        } => {
            assert_eq!(*exit_code, Some(3));
            assert!(log_tail.contains("diverged"), "{log_tail}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(outcome.rows[..4]
        .iter()
        .all(|r| r.status == PointStatus::Done));
    // Each point got its own folder and config with that folder as output.
    let cfg = std::fs::read_to_string(out.join("03-beam_size=5-lr=0.003/pipeline.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["train"]["beam_size"], 5);
    assert!(cfg["output_dir"]
        .as_str()
        .unwrap()
        .ends_with("03-beam_size=5-lr=0.003"));
    let md = std::fs::read_to_string(&outcome.markdown).unwrap();
    assert!(
        md.contains("| 1 | `02-lr=0.002` | 7.50 | 3.75 | 9.000 | 0/10 · 0/10 |"),
        "{md}"
    );
    assert!(!md.contains("Every prediction is empty"), "{md}");
    assert!(md.contains("**failed** (exit 3)"), "{md}");
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&outcome.json).unwrap()).unwrap();
    assert_eq!(json[0]["status"], "done");
    assert_eq!(&std::fs::read(&outcome.png).unwrap()[1..4], b"PNG");

    // Not while another sweep runs in the folder.
    {
        let held = c2n_train::run_lock::RunLock::acquire(&out, "sweep").unwrap();
        let err = run_sweep(&sweep, &out, 2, &launcher(&reports), &|_| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("in use by this process (sweep, process"),
            "{err}"
        );
        drop(held);
    }

    // A rerun skips the finished points and retries the failed one.
    let outcome = run_sweep(&sweep, &out, 2, &launcher(&reports), &|_| {}).unwrap();
    let statuses: Vec<_> = outcome.rows.iter().map(|r| r.status.clone()).collect();
    assert!(statuses[..4].iter().all(|s| *s == PointStatus::Skipped));
    assert!(matches!(statuses[4], PointStatus::Failed { .. }));

    // A finished point whose recorded run has another configuration (the sweep file changed
    // under it) is not passed off as done: it fails, saying why, and is not ranked.
    let dir = out.join("00-lr=0.001");
    let mut recorded: c2n_train::pipeline::PipelineConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pipeline.json")).unwrap()).unwrap();
    recorded.train.insert("lr".into(), serde_json::json!(0.01));
    recorded
        .save_json(&dir.join(c2n_train::pipeline::identity::RUN_CONFIG))
        .unwrap();
    // As if that run had been laid out by an earlier sweep file.
    recorded.save_json(&dir.join("pipeline.json")).unwrap();
    let outcome = run_sweep(&sweep, &out, 2, &launcher(&reports), &|_| {}).unwrap();
    let stale = outcome
        .rows
        .iter()
        .find(|r| r.name == "00-lr=0.001")
        .unwrap();
    match &stale.status {
        PointStatus::Failed { log_tail, .. } => {
            assert!(
                log_tail.contains("stale") && log_tail.contains("train.lr"),
                "{log_tail}"
            )
        }
        other => panic!("expected the stale point to fail, got {other:?}"),
    }
    assert!(stale.report.is_none());
    // Its folder keeps the config of the run it holds, not the refused point's (lr 0.001).
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pipeline.json")).unwrap()).unwrap();
    assert_eq!(kept["train"]["lr"], 0.01);
}

#[test]
fn an_interrupt_is_passed_on_to_the_running_point_once() {
    // A signal sent to the sweep alone: the running child hears it as one SIGTERM (train
    // would save checkpoint-last and exit 1), and no further point starts.
    let tmp = tempfile::tempdir().unwrap();
    let sweep: SweepFile = toml::from_str(
        "[base]\nlang = \"ruby\"\npreset = \"small\"\n[grid]\nlr = [0.001, 0.002, 0.003]\n",
    )
    .unwrap();
    let launcher = |config: &Path, _slot: usize| {
        let script = "dir=$(dirname \"$1\"); \
            trap 'echo TERM >> \"$dir/signals\"; kill $pid; exit 1' TERM; \
            sleep 60 & pid=$!; touch \"$dir/started\"; wait $pid";
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("sh").arg(config);
        cmd
    };
    let interrupt = c2n_train::interrupt::Interrupt::new();
    let out = tmp.path().join("sweep");
    let first = out.join("00-lr=0.001");
    let start = std::time::Instant::now();
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !first.join("started").exists() {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(30),
                    "the first point never started: {:?}",
                    std::fs::read_dir(&out)
                        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            interrupt.request();
        });
        c2n_train::sweep::run_sweep_interruptible(
            &sweep,
            &out,
            1,
            Some(&interrupt),
            &launcher,
            &|_| {},
        )
        .unwrap()
    });
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the run was not asked to stop: {:?}",
        start.elapsed()
    );
    assert_eq!((outcome.rows.len(), outcome.not_started), (1, 2));
    assert!(
        matches!(
            outcome.rows[0].status,
            PointStatus::Stopped { exit_code: Some(1) }
        ),
        "{:?}",
        outcome.rows[0].status
    );
    let signals = std::fs::read_to_string(first.join("signals")).unwrap();
    assert_eq!(signals, "TERM\n", "once");
}

/// Runs whose every prediction is empty are flagged below the table: their BLEU ranks nothing.
#[test]
fn runs_that_decoded_nothing_are_flagged() {
    use c2n_train::sweep::table::markdown;
    use c2n_train::sweep::PointResult;
    let point = |name: &str, empty: usize| {
        let mut rep = report(0.51, 9.0);
        rep.dev.empty_predictions = empty;
        rep.test.empty_predictions = empty;
        PointResult {
            name: name.into(),
            dir: PathBuf::from(name),
            overrides: serde_json::Map::new(),
            status: PointStatus::Done,
            seconds: 1.0,
            report: Some(rep),
        }
    };
    let md = markdown(&[point("a", 10), point("b", 3)]);
    assert!(
        md.contains("| 1 | `a` | 0.51 | 0.26 | 9.000 | 10/10 · 10/10 |"),
        "{md}"
    );
    assert!(
        md.contains("**Every prediction is empty** in 1 of the finished runs (`a`)"),
        "{md}"
    );
    assert!(!markdown(&[point("b", 3)]).contains("Every prediction is empty"));
}
