//! Beam search against the Python reference (`tools/reference/beam.py`) on toy tables.
//!
//! Fixtures: `tests/data/beam_*.json`, regenerated with
//! `python3 tools/reference/beam.py --write-fixtures crates/c2n-model/tests/data`.
//! Each holds a table model, the settings, and the reference result: the K `getFinal`
//! triples, the n-best ids and scores, the padded rows, the step count and stop reason.
//! Together the scenarios force every path of reference-semantics §12 item 11.

use crate::beam_support;

use std::path::{Path, PathBuf};

use beam_support::{TableModel, TableSession};
use c2n_model::beam::{beam_search, reference_search, BeamOutput, TieOrder};
use c2n_model::generation::GenerationConfig;
use serde_json::Value;

struct Fixture {
    name: String,
    model: TableModel,
    config: GenerationConfig,
    json: Value,
}

fn fixture_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data exists")
        .map(|entry| entry.expect("readable dir entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("beam_") && name.ends_with(".json")
        })
        .collect();
    paths.sort();
    paths
}

fn load(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    let json: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let usize_of = |key: &str| json[key].as_u64().expect(key) as usize;
    let table: Vec<f32> = json["table"]
        .as_array()
        .expect("table")
        .iter()
        .flat_map(|row| row.as_array().expect("table row").iter())
        .map(|value| value.as_f64().expect("table value") as f32)
        .collect();
    let model = TableModel {
        vocab: usize_of("vocab"),
        buckets: usize_of("buckets"),
        table,
    };
    assert_eq!(model.table.len(), model.vocab * model.buckets);
    let config = GenerationConfig {
        beam_size: usize_of("beam_size"),
        max_length: usize_of("max_length"),
        sos_id: usize_of("sos") as u32,
        eos_id: usize_of("eos") as u32,
        // The main result of beam.py ranks with the documented lower-index rule; the
        // "torch_cpu" result ranks with torch.topk itself.
        tie_order: TieOrder::LowerIndex,
        ..Default::default()
    };
    Fixture {
        name: json["scenario"].as_str().expect("scenario").to_string(),
        model,
        config,
        json,
    }
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("id list")
        .iter()
        .map(|id| id.as_u64().expect("id") as u32)
        .collect()
}

fn assert_close(ours: f32, theirs: f64, what: &str) {
    let theirs = theirs as f32;
    let tolerance = 1e-6 * theirs.abs().max(1e-30);
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{what}: ours {ours} vs reference {theirs}"
    );
}

fn check_against_reference(fixture: &Fixture, out: &BeamOutput, driver: &str) {
    check_against(fixture, &fixture.json, out, driver);
}

fn check_against(fixture: &Fixture, json: &Value, out: &BeamOutput, driver: &str) {
    let name = format!("{} ({driver})", fixture.name);
    let k = fixture.config.beam_size;
    assert_eq!(out.hypotheses.len(), k, "{name}: K hypotheses");
    assert_eq!(
        out.steps,
        json["steps"].as_u64().unwrap() as usize,
        "{name}: steps"
    );
    assert_eq!(
        out.done,
        json["stopped_by_done"].as_bool().unwrap(),
        "{name}: stop reason"
    );
    assert_eq!(
        out.eos_top,
        json["eos_top"].as_bool().unwrap(),
        "{name}: eos_top"
    );
    let rows: Vec<Vec<u32>> = json["rows"].as_array().unwrap().iter().map(ids).collect();
    assert_eq!(out.rows, rows, "{name}: padded rows");
    for (rank, (ours, theirs)) in out
        .final_entries
        .iter()
        .zip(json["final"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(
            ours.step,
            theirs[1].as_u64().unwrap() as usize,
            "{name}: final[{rank}].t"
        );
        assert_eq!(
            ours.row,
            theirs[2].as_u64().unwrap() as usize,
            "{name}: final[{rank}].k"
        );
        assert_close(
            ours.score,
            theirs[0].as_f64().unwrap(),
            &format!("{name}: final[{rank}]"),
        );
    }
    for (rank, (ours, theirs)) in out
        .hypotheses
        .iter()
        .zip(json["hypotheses"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(
            ours.ids,
            ids(&theirs["ids"]),
            "{name}: hypothesis {rank} ids"
        );
        assert_close(
            ours.score,
            theirs["score"].as_f64().unwrap(),
            &format!("{name}: hyp {rank}"),
        );
    }
    let finished = json["finished_by_advance"].as_array().unwrap();
    assert_eq!(out.finished.len(), finished.len(), "{name}: finished count");
    for (ours, theirs) in out.finished.iter().zip(finished) {
        assert_eq!(
            (ours.step, ours.row),
            (
                theirs[1].as_u64().unwrap() as usize,
                theirs[2].as_u64().unwrap() as usize
            )
        );
    }
}

#[test]
fn fixtures_cover_every_beam_path() {
    let fixtures: Vec<Fixture> = fixture_paths().iter().map(|p| load(p)).collect();
    assert!(fixtures.len() >= 8, "expected the 8 beam.py scenarios");
    let covered = |flag: &str| {
        fixtures
            .iter()
            .any(|f| f.json["coverage"][flag].as_bool() == Some(true))
    };
    for flag in [
        "eos_at_step1_top",
        "finished_over_several_steps",
        "several_finished_in_one_step",
        "more_than_k_finished",
        "fewer_than_k_finished",
        "none_finished",
        "stopped_by_done",
        "reached_max_length",
    ] {
        assert!(covered(flag), "no fixture covers {flag}");
    }
}

#[test]
fn reference_search_matches_python_reference() {
    for path in fixture_paths() {
        let fixture = load(&path);
        let mut session = TableSession::new(vec![&fixture.model], fixture.config.beam_size);
        let out = reference_search(&mut session, &fixture.config).expect("decodes");
        check_against_reference(&fixture, &out, "reference_search");
    }
}

#[test]
fn batched_search_matches_python_reference() {
    for path in fixture_paths() {
        let fixture = load(&path);
        // Three copies of the example in one session: each must equal the reference.
        let models = vec![&fixture.model; 3];
        let mut session = TableSession::new(models, fixture.config.beam_size);
        let outs = beam_search(&mut session, 3, &fixture.config).expect("decodes");
        assert_eq!(outs.len(), 3);
        for out in &outs {
            check_against_reference(&fixture, out, "beam_search");
        }
    }
}

#[test]
fn torch_cpu_tie_order_matches_the_search_ranked_by_torch_topk() {
    let mut differing = 0;
    for path in fixture_paths() {
        let fixture = load(&path);
        let expected = &fixture.json["torch_cpu"];
        assert!(
            expected.is_object(),
            "{}: no torch_cpu result",
            fixture.name
        );
        if expected["rows"] != fixture.json["rows"] || expected["final"] != fixture.json["final"] {
            differing += 1;
        }
        // `auto` is the torch-CPU order for a session ranked on the host.
        for tie_order in [TieOrder::TorchCpu, TieOrder::Auto] {
            let config = GenerationConfig {
                tie_order,
                ..fixture.config.clone()
            };
            let mut session = TableSession::new(vec![&fixture.model], config.beam_size);
            let out = reference_search(&mut session, &config).expect("decodes");
            check_against(&fixture, expected, &out, "reference_search, torch-cpu");
            let models = vec![&fixture.model; 2];
            let mut session = TableSession::new(models, config.beam_size);
            for out in beam_search(&mut session, 2, &config).expect("decodes") {
                check_against(&fixture, expected, &out, "beam_search, torch-cpu");
            }
        }
    }
    assert!(
        differing >= 2,
        "the tie fixtures no longer tell the two orders apart"
    );
}
