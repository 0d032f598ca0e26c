//! Training parity of a launcher: W ranks on a global batch must end where one rank on the same
//! (combined) batch ends, up to float rounding.
//!
//! The pieces of the end-to-end check that `scripts/mpi-test.sh` runs under `mpirun`
//! (`examples/comm_check.rs`, modes `train-parity` and `compare`):
//! * [`write_parity_fixture`]: a tiny byte-level BPE vocabulary and a handful of jsonl examples
//!   in a directory, and the [`TrainConfig`] that trains on them (dropout 0, CPU, a few steps);
//!   the run goes through [`Trainer::from_config_on`](crate::trainer::Trainer::from_config_on)
//!   like a real one;
//! * [`params_snapshot`]: host copies of the trained parameters (what rank 0 saves);
//! * [`replica_mismatches`]: whether every rank still holds rank 0's weights bit for bit;
//! * [`tensor_diffs`]: the relative L2 difference of every tensor between two runs, to be
//!   compared with [`PARITY_TOLERANCE`]; entries whose exact gradient is zero (attention key
//!   biases) are measured apart, against [`zero_gradient_bound`].
//!
//! ```
//! use std::collections::HashMap;
//! use c2n_train::comm::parity::{tensor_diffs, worst};
//! use candle_core::{Device, Tensor};
//!
//! let want = HashMap::from([("w".to_string(), Tensor::new(&[3f32, 4.0], &Device::Cpu)?)]);
//! let got = HashMap::from([("w".to_string(), Tensor::new(&[3f32, 4.5], &Device::Cpu)?)]);
//! let diffs = tensor_diffs(&got, &want)?;
//! // |(0, 0.5)| / |(3, 4)| = 0.5 / 5
//! assert!((worst(&diffs).unwrap().relative_l2 - 0.1).abs() < 1e-12);
//! # Ok::<(), c2n_train::TrainError>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{tensor_to_vec, Communicator, ReduceOp};
use crate::config::TrainConfig;
use crate::optim::NamedParams;
use crate::{Result, TrainError};

/// Largest per-tensor relative L2 difference accepted between W ranks and one rank.
///
/// Float sums in another order differ by about 1e-7 relative; Adam's `m / sqrt(v)` turns the
/// rounding noise of a tensor whose true gradient is zero into steps of about lr, so a
/// per-element bound would be too strict and the L2 norm over the tensor is used.
pub const PARITY_TOLERANCE: f64 = 1e-5;

/// Ids of the fixture's vocabulary: the specials, `a`–`z`, `Ġ` (a leading space), two merges.
const SPECIALS: [(&str, u32); 4] = [("<s>", 0), ("<pad>", 1), ("</s>", 2), ("<unk>", 3)];
const MERGES: [(&str, &str); 2] = [("d", "e"), ("Ġ", "a")];

/// Largest id of the fixture tokenizer plus one; the initial model needs at least this vocabulary.
pub const PARITY_VOCAB_SIZE: usize = 4 + 26 + 1 + MERGES.len() + 1;

/// Training examples (code tokens, docstring tokens) with targets of 1 to 6 subwords, so that
/// the ranks' shards hold different token counts and the token weighting matters. Characters
/// outside the vocabulary (`(`, `_`) become `<unk>`.
const EXAMPLES: [(&[&str], &[&str]); 8] = [
    (&["def", "add", "a", "b"], &["add"]),
    (
        &["def", "max", "(", "x", ")", "x", "sort", "last"],
        &["max", "x"],
    ),
    (&["def", "read", "path"], &["read"]),
    (&["def", "size", "list", "count"], &["size", "de"]),
    (&["def", "empty", "q"], &["is", "a"]),
    (
        &["def", "load_data", "(", "dir", ")", "open", "dir", "each"],
        &["load", "all"],
    ),
    (&["def", "decode", "ids"], &["de"]),
    (&["def", "zero", "grad"], &["zero", "a", "grad"]),
];

/// Writes `vocab.json`, `merges.txt` and `train.jsonl` into `dir` and returns the config of a
/// run on them from the code2nl checkpoint `init` (vocabulary ≥ [`PARITY_VOCAB_SIZE`], at least
/// 14 positions): global batch 4, `train_steps` updates of variant A without warmup, dropout 0,
/// seeded shuffle, CPU, no dev set, output under `dir/output`.
pub fn write_parity_fixture(dir: &Path, init: &str, train_steps: u64) -> Result<TrainConfig> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut vocab: Vec<(String, u32)> = SPECIALS.iter().map(|&(s, i)| (s.into(), i)).collect();
    for c in 'a'..='z' {
        vocab.push((c.to_string(), vocab.len() as u32));
    }
    vocab.push(("Ġ".into(), vocab.len() as u32));
    for (a, b) in MERGES {
        vocab.push((format!("{a}{b}"), vocab.len() as u32));
    }
    vocab.push(("<mask>".into(), vocab.len() as u32));
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab.into_iter().map(|(s, i)| (s, i.into())).collect();
    let merges: String = std::iter::once("#version: 0.2".to_string())
        .chain(MERGES.iter().map(|(a, b)| format!("{a} {b}")))
        .map(|line| line + "\n")
        .collect();
    let jsonl: String = EXAMPLES
        .iter()
        .map(|(code, doc)| {
            serde_json::json!({ "code_tokens": code, "docstring_tokens": doc }).to_string() + "\n"
        })
        .collect();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| TrainError::io(path, e))
    };
    write("vocab.json", serde_json::Value::Object(vocab).to_string())?;
    write("merges.txt", merges)?;
    write("train.jsonl", jsonl)?;
    Ok(TrainConfig {
        init: init.to_string(),
        train_data: Some(dir.join("train.jsonl")),
        tokenizer: Some(dir.display().to_string()),
        output_dir: dir.join("output"),
        max_source_len: 12,
        max_target_len: 8,
        batch_size: 4,
        eval_batch_size: 4,
        lr: 1e-3,
        weight_decay: 0.01,
        warmup_steps: 0,
        train_steps: Some(train_steps),
        epochs: None,
        eval_steps: None,
        dropout: Some(0.0),
        shuffle: true,
        eval_bleu: false,
        device: "cpu".into(),
        progress: false,
        ..TrainConfig::default()
    })
}

/// Host (CPU, f32) copies of the parameters, by name: a snapshot that later steps do not change.
pub fn params_snapshot(params: &NamedParams) -> Result<HashMap<String, Tensor>> {
    params
        .iter()
        .map(|(name, var)| {
            let t = var.as_tensor();
            let copy = Tensor::from_vec(tensor_to_vec(t)?, t.shape(), &Device::Cpu)?;
            Ok((name.to_string(), copy))
        })
        .collect()
}

/// Number of parameter tensors on which some rank differs from rank 0 (bitwise); the same
/// number on every rank. Every rank must call it (one broadcast per tensor, one all-reduce).
pub fn replica_mismatches(comm: &dyn Communicator, params: &NamedParams) -> Result<usize> {
    let mut differing = 0usize;
    for (_, var) in params.iter() {
        let mine = tensor_to_vec(var.as_tensor())?;
        let mut rank0 = mine.clone();
        comm.broadcast(&mut rank0)?;
        // Bit patterns, so that NaNs compare equal to themselves.
        if mine
            .iter()
            .zip(&rank0)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            differing += 1;
        }
    }
    let total = comm.all_reduce_scalar(differing as f32, ReduceOp::Sum)?;
    Ok(total as usize)
}

/// How far one tensor of a run is from the same tensor of another run.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDiff {
    /// Parameter name.
    pub name: String,
    /// `‖got − want‖₂ / ‖want‖₂` (the denominator floored at 1e-12) over the entries whose
    /// exact gradient is not zero.
    pub relative_l2: f64,
    /// Largest `|got − want|` over the entries whose exact gradient is zero (see
    /// [`exact_gradient_is_zero`]); 0 when the tensor has none.
    pub zero_gradient_max_abs: f64,
}

/// Whether entry `i` of parameter `name` (with `len` entries) has an exactly zero gradient:
/// an attention key bias adds the same `q·b` to every score of a query, which softmax
/// ignores. Its computed gradient is rounding noise, which Adam's `m / sqrt(v)` turns into
/// steps of about lr whatever the noise's size, so two runs that sum in another order move it
/// differently. Compare such entries with [`zero_gradient_bound`] instead of a relative bound.
pub fn exact_gradient_is_zero(name: &str, i: usize, len: usize) -> bool {
    let hidden = len / 3;
    name.ends_with("attention.self.key.bias")
        || (name.ends_with("in_proj_bias") && (hidden..2 * hidden).contains(&i))
}

/// How far Adam can move an entry by noise in `steps` updates at learning rate at most `lr`:
/// each step is about `lr · m / sqrt(v)`, at most a small multiple of lr.
pub fn zero_gradient_bound(lr: f64, steps: u64) -> f64 {
    2.0 * lr * steps as f64
}

/// The relative L2 difference over the entries with a non-zero exact gradient, and the largest
/// absolute difference over the others.
pub fn split_diff(name: &str, got: &[f32], want: &[f32]) -> (f64, f64) {
    let len = want.len();
    let (mut kept_got, mut kept_want, mut zero_max) = (Vec::new(), Vec::new(), 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if exact_gradient_is_zero(name, i, len) {
            zero_max = zero_max.max((f64::from(g) - f64::from(w)).abs());
        } else {
            kept_got.push(g);
            kept_want.push(w);
        }
    }
    (relative_l2(&kept_got, &kept_want), zero_max)
}

/// `‖got − want‖₂ / ‖want‖₂` in f64; the slices must have the same length.
pub fn relative_l2(got: &[f32], want: &[f32]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let diff = norm(
        &mut got
            .iter()
            .zip(want)
            .map(|(&a, &b)| f64::from(a) - f64::from(b)),
    );
    diff / norm(&mut want.iter().map(|&x| f64::from(x))).max(1e-12)
}

/// The relative L2 difference of every tensor, in name order. Fails when the two sets of names
/// or any pair of shapes differ (runs of different models cannot be compared).
pub fn tensor_diffs(
    got: &HashMap<String, Tensor>,
    want: &HashMap<String, Tensor>,
) -> Result<Vec<TensorDiff>> {
    let mut names: Vec<&String> = want.keys().collect();
    names.sort();
    if let Some(extra) = got.keys().find(|n| !want.contains_key(*n)) {
        return Err(TrainError::InvalidInput(format!(
            "tensor `{extra}` is only in the first set"
        )));
    }
    names
        .into_iter()
        .map(|name| {
            let w = &want[name];
            let g = got.get(name).ok_or_else(|| {
                TrainError::InvalidInput(format!("tensor `{name}` is only in the second set"))
            })?;
            if g.dims() != w.dims() {
                return Err(TrainError::InvalidInput(format!(
                    "tensor `{name}` has shape {:?} in the first set and {:?} in the second",
                    g.dims(),
                    w.dims()
                )));
            }
            let (relative_l2, zero_gradient_max_abs) =
                split_diff(name, &tensor_to_vec(g)?, &tensor_to_vec(w)?);
            Ok(TensorDiff {
                name: name.clone(),
                relative_l2,
                zero_gradient_max_abs,
            })
        })
        .collect()
}

/// The tensor with the largest relative difference (NaN counts as largest).
pub fn worst(diffs: &[TensorDiff]) -> Option<&TensorDiff> {
    diffs.iter().max_by(|a, b| {
        let key = |d: &TensorDiff| {
            if d.relative_l2.is_nan() {
                f64::INFINITY
            } else {
                d.relative_l2
            }
        };
        key(a).total_cmp(&key(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &[f32])]) -> HashMap<String, Tensor> {
        entries
            .iter()
            .map(|(n, v)| (n.to_string(), Tensor::new(*v, &Device::Cpu).unwrap()))
            .collect()
    }

    #[test]
    fn relative_l2_of_a_3_4_5_triangle() {
        assert_eq!(relative_l2(&[3.0, 4.0], &[3.0, 4.0]), 0.0);
        assert!((relative_l2(&[0.0, 0.0], &[3.0, 4.0]) - 1.0).abs() < 1e-15);
        assert!((relative_l2(&[6.0, 8.0], &[3.0, 4.0]) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn diffs_are_per_tensor_and_worst_names_the_largest() {
        let want = map(&[("a", &[1.0, 0.0]), ("b", &[0.0, 2.0])]);
        let got = map(&[("a", &[1.0, 0.0]), ("b", &[0.0, 3.0])]);
        let diffs = tensor_diffs(&got, &want).unwrap();
        assert_eq!(diffs.len(), 2);
        assert_eq!(diffs[0].relative_l2, 0.0);
        assert_eq!(worst(&diffs).unwrap().name, "b");
        assert!((worst(&diffs).unwrap().relative_l2 - 0.5).abs() < 1e-15);
        let nan = vec![
            diffs[0].clone(),
            TensorDiff {
                name: "n".into(),
                relative_l2: f64::NAN,
                zero_gradient_max_abs: 0.0,
            },
        ];
        assert_eq!(worst(&nan).unwrap().name, "n");
    }

    #[test]
    fn key_bias_entries_are_measured_apart() {
        // in_proj_bias of hidden 2: q (0..2), k (2..4), v (4..6); only k has a zero gradient.
        let want = [1.0, 1.0, 5.0, 5.0, 1.0, 1.0];
        let got = [1.0, 1.0, 5.5, 4.0, 1.0, 1.0];
        let (rel, zero) = split_diff("decoder.layers.0.self_attn.in_proj_bias", &got, &want);
        assert_eq!(rel, 0.0);
        assert_eq!(zero, 1.0);
        let (rel, zero) = split_diff("decoder.layers.0.linear1.bias", &got, &want);
        assert!(rel > 0.1 && zero == 0.0);
        assert!(exact_gradient_is_zero(
            "encoder.layer.3.attention.self.key.bias",
            0,
            8
        ));
        assert!(!exact_gradient_is_zero(
            "encoder.layer.3.attention.self.query.bias",
            0,
            8
        ));
    }

    #[test]
    fn different_names_or_shapes_are_errors() {
        let want = map(&[("a", &[1.0, 0.0])]);
        let err = tensor_diffs(&map(&[("b", &[1.0, 0.0])]), &want).unwrap_err();
        assert!(
            err.to_string().contains("`b` is only in the first"),
            "{err}"
        );
        let err = tensor_diffs(&map(&[]), &want).unwrap_err();
        assert!(
            err.to_string().contains("`a` is only in the second"),
            "{err}"
        );
        let err = tensor_diffs(&map(&[("a", &[1.0])]), &want).unwrap_err();
        assert!(err.to_string().contains("shape [1]"), "{err}");
    }

    #[test]
    fn fixture_tokenizer_loads_and_stays_inside_its_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_parity_fixture(dir.path(), "unused", 3).unwrap();
        config.validate().unwrap();
        let tok = c2n_data::RobertaTokenizer::load(config.tokenizer.as_deref().unwrap()).unwrap();
        assert_eq!(tok.vocab_size(), PARITY_VOCAB_SIZE);
        let features = crate::data::load_features(
            config.train_data.as_deref().unwrap(),
            &tok,
            config.max_source_len,
            config.max_target_len,
            c2n_data::Stage::Train,
        )
        .unwrap();
        assert_eq!(features.len(), EXAMPLES.len());
        // Real subwords, not only <unk>: the merge `Ġa` appears in "add", "a".
        let merged = 4 + 26 + 1 + 1;
        assert!(features.iter().any(|f| f.source_ids.contains(&merged)));
        let pad = 1;
        let counts: Vec<usize> = features
            .iter()
            .map(|f| f.target_ids.iter().filter(|&&id| id != pad).count())
            .collect();
        assert!(counts.iter().any(|&c| c != counts[0]), "{counts:?}");
    }
}
