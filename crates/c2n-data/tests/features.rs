//! Features (§3) on real data and on a tiny tokenizer, and parallel = sequential.

mod common;

use c2n_data::features::pad;
use c2n_data::{
    features_in_memory, featurize, read_examples, run_file, Example, FeatureConfig, PipelineConfig,
    PipelineOptions, RobertaTokenizer, Stage, Strictness,
};
use common::*;

fn pipeline(max_source_len: usize, max_target_len: usize, stage: Stage) -> PipelineConfig {
    PipelineConfig::strict_unfiltered(FeatureConfig {
        max_source_len,
        max_target_len,
        stage,
    })
}

#[test]
fn truncation_counts_and_layout_on_ruby() {
    let Some(shared) = shared_dir() else { return };
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let fx = fixture();
    let expected = fx["examples"].as_array().unwrap();
    // Spec §3 table: 120/1261 and 100/1400 truncated sources at 256, no truncated target.
    for (split, n, truncated) in [("test", 1261, 120), ("valid", 1400, 100)] {
        let path = shared.join(format!("data/codesearchnet/ruby/{split}.jsonl"));
        for (max_s, max_t) in [(256, 128), (64, 16)] {
            let (feats, report) =
                features_in_memory(&path, &tok, &pipeline(max_s, max_t, Stage::Dev)).unwrap();
            assert_eq!((feats.len(), report.read.records), (n, n));
            let lens: Vec<(u64, u64)> = expected
                .iter()
                .filter(|e| e["split"] == split)
                .map(|e| {
                    (
                        e["source_len"].as_u64().unwrap(),
                        e["target_len"].as_u64().unwrap(),
                    )
                })
                .collect();
            let want_src = lens.iter().filter(|(s, _)| *s as usize > max_s - 2).count();
            let want_tgt = lens.iter().filter(|(_, t)| *t as usize > max_t - 2).count();
            assert_eq!(
                feats.iter().filter(|f| f.source_truncated()).count(),
                want_src
            );
            assert_eq!(
                feats.iter().filter(|f| f.target_truncated()).count(),
                want_tgt
            );
            if max_s == 256 {
                assert_eq!(want_src, truncated);
                assert_eq!(want_tgt, 0);
            }
            for (f, (s, t)) in feats.iter().zip(&lens) {
                assert_eq!(f.source_ids.len(), (*s as usize).min(max_s - 2) + 2);
                assert_eq!(f.target_ids.len(), (*t as usize).min(max_t - 2) + 2);
                assert_eq!((f.source_ids[0], *f.source_ids.last().unwrap()), (0, 2));
                assert_eq!((f.target_ids[0], *f.target_ids.last().unwrap()), (0, 2));
            }
        }
        let (test_stage, _) =
            features_in_memory(&path, &tok, &pipeline(256, 128, Stage::Test)).unwrap();
        assert!(test_stage.iter().all(|f| f.target_ids == [0, 29802, 2]));
    }
}

#[test]
fn padding_fills_with_one_and_mask_zero() {
    let (ids, mask) = pad(&[0, 48293, 29, 2], 8, 1);
    assert_eq!(ids, [0, 48293, 29, 2, 1, 1, 1, 1]);
    assert_eq!(mask, [1, 1, 1, 1, 0, 0, 0, 0]);
    let (ids, mask) = pad(&[0, 5, 2], 3, 1);
    assert_eq!((ids.len(), mask), (3, vec![1, 1, 1]));
}

#[test]
fn tiny_tokenizer_special_split_and_truncation() {
    let tok = tiny_tokenizer();
    let piece = |s: &str| tok.encode(s).unwrap();
    // Spec §2.2 example: fragments a, <s>, " b", </s>, c, <mask>, " d".
    let mut want = piece("a");
    want.push(0);
    want.extend(piece(" b"));
    want.push(2);
    want.extend(piece("c"));
    want.push(tok.encode("<mask>").unwrap()[0]);
    want.extend(piece(" d"));
    assert_eq!(tok.encode("a <s> b</s>c  <mask> d").unwrap(), want);
    assert_eq!(tok.encode("  \t").unwrap(), Vec::<u32>::new());
    assert_eq!(tok.encode("x   ").unwrap(), piece("x"));
    assert_eq!(tok.tokenize(" the").unwrap(), ["Ġthe"]);
    assert_eq!(
        tok.decode(&tok.encode(" the ab\ncafé").unwrap()),
        " the ab\ncafé"
    );

    let ex = Example::from_tokens(3, &["a", "b", "c", "d", "e"], &["the", "x"]);
    let cfg = FeatureConfig {
        max_source_len: 5,
        max_target_len: 16,
        stage: Stage::Train,
    };
    let f = featurize(&tok, &ex, &cfg).unwrap();
    assert_eq!(f.idx, 3);
    let head: Vec<u16> = tok.encode("a b c d e").unwrap()[..3]
        .iter()
        .map(|&i| i as u16)
        .collect();
    assert_eq!(f.source_ids, [vec![0], head, vec![2]].concat());
    assert!(f.source_truncated() && !f.target_truncated());
    assert!(FeatureConfig {
        max_source_len: 513,
        ..cfg
    }
    .validate()
    .is_err());
    assert!(FeatureConfig {
        max_target_len: 1,
        ..cfg
    }
    .validate()
    .is_err());
    // featurize itself refuses lengths below 2 (no underflow in library code).
    let too_short = FeatureConfig {
        max_source_len: 1,
        ..cfg
    };
    assert!(featurize(&tok, &ex, &too_short).is_err());

    // The test-stage placeholder is never truncated, as in the reference (§3 step 4):
    // at max_target_len 2 its ids are still `<s> None </s>`.
    let test_stage = FeatureConfig {
        max_target_len: 2,
        stage: Stage::Test,
        ..cfg
    };
    let f = featurize(&tok, &ex, &test_stage).unwrap();
    let none = tok.encode("None").unwrap();
    assert_eq!(f.target_ids.len(), none.len() + 2);
    assert!(!f.target_truncated());
    let dev_stage = FeatureConfig {
        stage: Stage::Dev,
        ..test_stage
    };
    assert_eq!(featurize(&tok, &ex, &dev_stage).unwrap().target_ids, [0, 2]);
}

#[test]
fn parallel_chunks_equal_a_sequential_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    synthetic_jsonl(&path, 500);
    let tok = tiny_tokenizer();
    let cfg = pipeline(24, 12, Stage::Train);
    let collect = |chunk_lines| {
        let mut out = Vec::new();
        run_file(
            &path,
            &tok,
            &cfg,
            PipelineOptions { chunk_lines },
            &mut |f| {
                out.push(f);
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();
        out
    };
    let parallel = collect(7);
    assert_eq!(parallel.len(), 500);
    assert_eq!(parallel, collect(100_000));
    let (examples, _) = read_examples(&path, Strictness::Strict).unwrap();
    let sequential: Vec<_> = examples
        .iter()
        .map(|e| featurize(&tok, e, &cfg.features).unwrap())
        .collect();
    assert_eq!(parallel, sequential);
}
