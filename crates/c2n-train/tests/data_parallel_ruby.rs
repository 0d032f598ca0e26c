//! Sharded `evaluate_file` on real ruby lines and the RoBERTa BPE in `../shared` (or
//! `$C2N_SHARED`): 1, 2 and 3 thread ranks write byte-identical `test.output`, `test.gold` and
//! `nbest.jsonl` and report the same BLEU. Skips with a message when the data is absent.

use crate::support::shared_data;
use c2n_data::{Padding, RobertaTokenizer};
use c2n_model::generation::GenerationConfig;
use c2n_model::{ModelConfig, Seq2Seq};
use c2n_train::comm::ThreadGroup;
use c2n_train::evaluate::{evaluate_file_sharded, EvaluateRequest};
use candle_core::Device;
use candle_nn::VarMap;

#[test]
fn sharded_evaluate_file_writes_the_single_rank_files() {
    let Some(shared) = shared_data(&["test.jsonl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("test.jsonl");
    let text = std::fs::read_to_string(shared.join("data/codesearchnet/ruby/test.jsonl")).unwrap();
    std::fs::write(
        &data,
        text.split_inclusive('\n').take(7).collect::<String>(),
    )
    .unwrap();
    // A random small model, saved once so that every rank loads the same weights.
    let checkpoint = dir.path().join("model");
    let model = Seq2Seq::new(&ModelConfig::small(), &VarMap::new(), &Device::Cpu).unwrap();
    c2n_model::save_checkpoint(&model, &checkpoint).unwrap();
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let request = |out: &str| EvaluateRequest {
        data: data.clone(),
        limit: None,
        generation: GenerationConfig {
            beam_size: 3,
            max_length: 8,
            ..Default::default()
        },
        max_source_len: 64,
        batch_size: 2,
        padding: Padding::Dynamic,
        output_dir: dir.path().join(out),
        prefix: "test".into(),
        nbest: Some(2),
    };
    let read = |out: &str, file: &str| std::fs::read(dir.path().join(out).join(file)).unwrap();
    let mut bleus = Vec::new();
    for world in [1, 2, 3] {
        let out = format!("eval{world}");
        let req = request(&out);
        let reports = ThreadGroup::new(world)
            .unwrap()
            .run_fallible(|comm| {
                let model = c2n_model::load_checkpoint(&checkpoint, &Device::Cpu)?;
                evaluate_file_sharded(comm, &model, &tok, &req, |_| {})
            })
            .unwrap();
        assert!(
            reports[1..].iter().all(Option::is_none),
            "only rank 0 reports"
        );
        let report = reports[0].as_ref().unwrap();
        assert_eq!(report.examples, 7);
        bleus.push(report.bleu.bleu);
        assert_eq!(read(&out, "nbest.jsonl").split(|&b| b == b'\n').count(), 8);
        for file in ["test.output", "test.gold", "nbest.jsonl"] {
            assert_eq!(
                read(&out, file),
                read("eval1", file),
                "{world} ranks: {file}"
            );
        }
    }
    assert!(bleus.iter().all(|&b| b == bleus[0]), "{bleus:?}");
}
