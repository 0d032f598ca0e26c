//! Decoding sessions: the KV-cached path equals the full-prefix path, and both reproduce the
//! PyTorch reference's beam scores (sum of per-step log-probs) on the fixture's hypotheses.

use crate::model_support;

use c2n_model::{CacheLayout, FullPrefixSession, KvCacheSession, NextTokenLogProbs};
use model_support::*;

const EOS: u32 = 2;
const PAD: u32 = 1;

/// A tiny deterministic generator (xorshift) so the test needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    let diff = max_rel_diff(a, b);
    assert!(
        diff <= 1e-5,
        "{what}: cached and uncached log-probs differ by {diff}"
    );
}

#[test]
fn cached_equals_full_prefix_with_pads_reordering_and_dropping() {
    let fx = fixture();
    let model = small_model();
    let src = batch(&fx, "source_ids").narrow(0, 0, 3).unwrap();
    let mask = batch(&fx, "source_mask").narrow(0, 0, 3).unwrap();
    let per_example = 3;
    let mut cached = KvCacheSession::new(&model, &src, &mask, per_example).unwrap();
    let mut full = FullPrefixSession::new(&model, &src, &mask, per_example).unwrap();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut rows = 9usize;
    let origin: Vec<u32> = (0..rows as u32).collect();
    let tokens = vec![0u32; rows];
    let a = cached.step(&origin, &tokens).unwrap();
    let b = full.step(&origin, &tokens).unwrap();
    assert_eq!(a.len(), rows * 50265);
    assert_close(&a, &b, "step 1");
    let mut saw_pad = false;
    for step in 2..=9 {
        // Drop a row now and then, duplicate others, and shuffle: origin is arbitrary.
        let new_rows = if step % 3 == 0 { rows - 1 } else { rows };
        let origin: Vec<u32> = (0..new_rows).map(|_| rng.below(rows) as u32).collect();
        let tokens: Vec<u32> = (0..new_rows)
            .map(|i| match (step + i) % 5 {
                0 => PAD,
                1 => EOS,
                _ => 3 + rng.below(50000) as u32,
            })
            .collect();
        saw_pad |= tokens.contains(&PAD);
        let a = cached.step(&origin, &tokens).unwrap();
        let b = full.step(&origin, &tokens).unwrap();
        assert_eq!(a.len(), new_rows * 50265);
        assert_close(&a, &b, &format!("step {step}"));
        rows = new_rows;
    }
    assert!(saw_pad);
    assert!(full.prefixes().iter().any(|p| p[1..].contains(&PAD)));
    assert_eq!(cached.steps(), 9);
}

/// The slotted cache (keys and values stay put, a slot table follows the beam) against the
/// dense one (reordered every step): on the CPU both attend over the same values in the same
/// order, so the log-probabilities must be bit-identical. 40 steps outgrow the slotted
/// cache's first capacity (32 positions); rows are dropped, duplicated, shuffled, and once
/// outnumber the rows it was built for.
#[test]
fn slotted_cache_equals_dense_cache_bit_for_bit() {
    let fx = fixture();
    let model = small_model();
    let src = batch(&fx, "source_ids").narrow(0, 0, 3).unwrap();
    let mask = batch(&fx, "source_mask").narrow(0, 0, 3).unwrap();
    let per_example = 3;
    let new = |layout| {
        KvCacheSession::new(&model, &src, &mask, per_example)
            .unwrap()
            .with_cache_layout(layout)
    };
    let mut dense = new(CacheLayout::Dense);
    let mut slotted = new(CacheLayout::Slotted);
    assert_eq!(slotted.cache_layout(), CacheLayout::Slotted);
    assert_eq!(new(CacheLayout::Auto).cache_layout(), CacheLayout::Dense);
    let mut rng = Rng(0x5107_7ed5);
    let mut rows = 9usize;
    let mut origin: Vec<u32> = (0..rows as u32).collect();
    let mut tokens = vec![0u32; rows];
    for step in 1..=40 {
        let a = dense.step(&origin, &tokens).unwrap();
        let b = slotted.step(&origin, &tokens).unwrap();
        assert_eq!(a.len(), rows * 50265);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&a) == bits(&b),
            "step {step}: slotted and dense differ"
        );
        let new_rows = match step {
            5 => rows + 2,
            s if s % 4 == 0 => rows - 1,
            _ => rows,
        };
        origin = (0..new_rows).map(|_| rng.below(rows) as u32).collect();
        tokens = (0..new_rows).map(|_| 3 + rng.below(50000) as u32).collect();
        rows = new_rows;
    }
    assert_eq!(slotted.steps(), 40);
    assert_eq!(dense.steps(), 40);
}

#[test]
fn invalid_steps_are_errors() {
    let fx = fixture();
    let model = small_model();
    let src = batch(&fx, "source_ids").narrow(0, 0, 1).unwrap();
    let mask = batch(&fx, "source_mask").narrow(0, 0, 1).unwrap();
    let mut s = KvCacheSession::new(&model, &src, &mask, 2).unwrap();
    assert!(s.step(&[0, 2], &[0, 0]).is_err(), "origin out of range");
    assert!(s.step(&[0], &[0, 0]).is_err(), "length mismatch");
    assert!(s.step(&[0], &[50265]).is_err(), "token out of range");
    assert!(s.step(&[0, 1], &[0, 0]).is_ok());
}

#[test]
fn sessions_reproduce_reference_beam_scores() {
    let fx = fixture();
    let src_all = batch(&fx, "source_ids");
    let mask_all = batch(&fx, "source_mask");
    let mut checked = 0;
    for run in fx["nbest"]["runs"].as_array().unwrap() {
        let scale = run["eos_row_scale"].as_f64().unwrap();
        let model = small_model();
        scale_word_row(&model, EOS as usize, scale);
        for (e, result) in run["results"].as_array().unwrap().iter().enumerate() {
            // Token paths: the hypothesis, plus the EOS that buildTargetTokens cut.
            let paths: Vec<(Vec<u32>, f32)> = result["final"]
                .as_array()
                .unwrap()
                .iter()
                .zip(result["hypotheses"].as_array().unwrap())
                .map(|(f, h)| {
                    let t = f[1].as_u64().unwrap() as usize;
                    let mut ids = u32s(&h["ids"]);
                    if ids.len() < t {
                        ids.push(EOS);
                    }
                    assert_eq!(ids.len(), t);
                    (ids, f[0].as_f64().unwrap() as f32)
                })
                .collect();
            let src = src_all.narrow(0, e, 1).unwrap();
            let mask = mask_all.narrow(0, e, 1).unwrap();
            let k = paths.len();
            let mut cached = KvCacheSession::new(&model, &src, &mask, k).unwrap();
            let mut full = FullPrefixSession::new(&model, &src, &mask, k).unwrap();
            let mut alive: Vec<usize> = (0..k).collect();
            let mut scores = vec![0f32; k];
            let mut origin: Vec<u32> = (0..k as u32).collect();
            let mut tokens = vec![0u32; k];
            let mut step = 0;
            while !alive.is_empty() {
                let a = cached.step(&origin, &tokens).unwrap();
                let b = full.step(&origin, &tokens).unwrap();
                assert!(max_rel_diff(&a, &b) <= 1e-5);
                let v = a.len() / alive.len();
                for (row, &p) in alive.iter().enumerate() {
                    let next = paths[p].0[step] as usize;
                    scores[p] += a[row * v + next];
                }
                // Keep the rows whose path continues; the others are dropped.
                let keep: Vec<usize> = (0..alive.len())
                    .filter(|&row| paths[alive[row]].0.len() > step + 1)
                    .collect();
                origin = keep.iter().map(|&r| r as u32).collect();
                tokens = keep.iter().map(|&r| paths[alive[r]].0[step]).collect();
                alive = keep.iter().map(|&r| alive[r]).collect();
                step += 1;
            }
            for (p, (_, want)) in paths.iter().enumerate() {
                let got = scores[p];
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "scale {scale}, example {e}, hypothesis {p}: score {got} vs reference {want}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 200, "checked {checked} hypotheses");
}

#[test]
fn bf16_sessions_agree_with_each_other_and_with_f32() {
    let fx = fixture();
    let f32_model = small_model();
    let model = f32_model
        .clone()
        .with_compute_dtype(candle_core::DType::BF16);
    let src = batch(&fx, "source_ids").narrow(0, 0, 2).unwrap();
    let mask = batch(&fx, "source_mask").narrow(0, 0, 2).unwrap();
    let mut cached = KvCacheSession::new(&model, &src, &mask, 2).unwrap();
    let mut full = FullPrefixSession::new(&model, &src, &mask, 2).unwrap();
    let mut reference = KvCacheSession::new(&f32_model, &src, &mask, 2).unwrap();
    let steps: [(&[u32], &[u32]); 3] = [
        (&[0, 1, 2, 3], &[0, 0, 0, 0]),
        (&[1, 0, 3, 3], &[7, PAD, 9, EOS]),
        (&[2, 3, 0], &[11, 12, 13]),
    ];
    for (origin, tokens) in steps {
        let a = cached.step(origin, tokens).unwrap();
        let b = full.step(origin, tokens).unwrap();
        let c = reference.step(origin, tokens).unwrap();
        assert!(
            max_rel_diff(&a, &b) <= 1e-2,
            "bf16 cached vs bf16 full prefix"
        );
        assert!(max_rel_diff(&a, &c) <= 5e-2, "bf16 vs f32");
    }
}

#[test]
fn models_and_sessions_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<c2n_model::Seq2Seq>();
    fn assert_send<T: Send>() {}
    assert_send::<KvCacheSession<'static>>();
    assert_send::<FullPrefixSession<'static>>();
}

#[test]
fn inference_encoding_equals_eval_encoding_without_an_op_graph() {
    let fx = fixture();
    let model = small_model();
    let src = batch(&fx, "source_ids");
    let mask = batch(&fx, "source_mask");
    let eval = model.encode(&src, &mask, false).unwrap();
    let inference = model.encode_inference(&src, &mask).unwrap();
    // The eval forward records the graph (the weights are variables); the inference one must
    // not, or its output would keep every layer's activations alive.
    assert!(eval.track_op());
    assert!(!inference.track_op());
    let a: Vec<f32> = eval.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = inference.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a, b);
}

#[test]
fn generate_refuses_bad_settings_before_decoding() {
    use c2n_model::generation::GenerationConfig;
    let fx = fixture();
    let model = small_model();
    let src = batch(&fx, "source_ids").narrow(0, 0, 1).unwrap();
    let mask = batch(&fx, "source_mask").narrow(0, 0, 1).unwrap();
    // The config's own wording, not the session's "rows_per_example".
    let zero_beam = GenerationConfig {
        beam_size: 0,
        ..Default::default()
    };
    let err = model.generate(&src, &mask, &zero_beam).unwrap_err();
    assert!(err.to_string().contains("beam_size"), "{err}");
    // 514 position rows from pad id 1: prefixes of up to 512 tokens, refused above that
    // before the first step (the session reports it).
    assert_eq!(model.config().max_sequence_len(), 512);
    let session = KvCacheSession::new(&model, &src, &mask, 1).unwrap();
    assert_eq!(session.max_prefix_len(), Some(512));
    let too_long = GenerationConfig {
        beam_size: 1,
        max_length: 513,
        ..Default::default()
    };
    let err = model.generate(&src, &mask, &too_long).unwrap_err();
    assert!(
        err.to_string().contains("max_length 513") && err.to_string().contains("at most 512"),
        "{err}"
    );
}
