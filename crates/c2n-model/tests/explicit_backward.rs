//! The explicit backward pass (`Seq2Seq::training_pass`) against the graph path
//! (`forward_loss` + Candle's `backward()`): same loss, same gradient for every parameter, in
//! training mode with dropout (both paths draw the same masks under `seeded_dropout`), with a
//! loss scale, with padded sources and targets, and in bf16.

use crate::model_support;

use c2n_model::layers::seeded_dropout;
use c2n_model::{HostBatch, ModelConfig, Seq2Seq};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use model_support::*;

/// A batch with padding on both sides: source lengths 7 and 4 of 7, target lengths 5 and 3.
fn padded_batch() -> [Tensor; 4] {
    let dev = Device::Cpu;
    let source = Tensor::new(
        &[[0u32, 411, 52, 9, 1000, 77, 2], [0, 13, 808, 2, 1, 1, 1]],
        &dev,
    )
    .unwrap();
    let source_mask =
        Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]], &dev).unwrap();
    let target = Tensor::new(&[[0u32, 31, 4000, 6, 2], [0, 95, 2, 1, 1]], &dev).unwrap();
    let target_mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &dev).unwrap();
    [source, source_mask, target, target_mask]
}

fn model_with(dtype: DType) -> Seq2Seq {
    let cfg = ModelConfig {
        init_seed: 11,
        ..ModelConfig::small()
    };
    Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu)
        .unwrap()
        .with_compute_dtype(dtype)
}

/// `(loss, gradients)` of the graph path for `d_loss × loss`.
fn graph_path(model: &Seq2Seq, x: &[Tensor; 4], train: bool, d_loss: f64) -> (f32, GradStore) {
    let out = model
        .forward_loss(&x[0], &x[1], &x[2], &x[3], train)
        .unwrap();
    let loss = out.loss.to_scalar::<f32>().unwrap();
    (loss, (out.loss * d_loss).unwrap().backward().unwrap())
}

fn explicit_path(model: &Seq2Seq, x: &[Tensor; 4], train: bool, d_loss: f64) -> (f32, GradStore) {
    let pass = model
        .training_pass(&x[0], &x[1], &x[2], &x[3], train)
        .unwrap();
    assert!(
        !pass.output().loss.track_op(),
        "the explicit forward records no graph"
    );
    let loss = pass.output().loss.to_scalar::<f32>().unwrap();
    (loss, pass.backward(d_loss).unwrap())
}

/// For every parameter: both paths give a gradient or neither does, and where they do the
/// largest difference is at most `tolerance` × the largest entry of the graph's gradient.
fn assert_same_gradients(model: &Seq2Seq, graph: &GradStore, explicit: &GradStore, tolerance: f32) {
    let data = model.varmap().data().lock().unwrap();
    let mut compared = 0;
    for name in model.trainable_var_names() {
        let var = data[&name].as_tensor();
        match (graph.get(var), explicit.get(var)) {
            (None, None) => assert!(name.starts_with("encoder.pooler."), "{name}: no gradient"),
            (Some(g), Some(e)) => {
                assert_eq!(g.dims(), e.dims(), "{name}");
                // A gradient that tracks would hold an op graph (and its tensors) alive.
                assert!(
                    !e.track_op(),
                    "{name}: the explicit gradient records an op graph"
                );
                let (g, e) = (flat_f32(g), flat_f32(e));
                let scale = g.iter().fold(0f32, |m, x| m.max(x.abs()));
                let diff = g
                    .iter()
                    .zip(&e)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                // Key biases: their exact gradient is zero; both sides hold rounding noise.
                let floor = if name.ends_with("self.key.bias") {
                    1e-6
                } else {
                    0.0
                };
                assert!(
                    diff <= tolerance * scale + floor,
                    "{name}: max |graph − explicit| = {diff:e}, max |graph| = {scale:e}"
                );
                compared += 1;
            }
            (g, e) => panic!(
                "{name}: graph gradient {}, explicit gradient {}",
                g.is_some(),
                e.is_some()
            ),
        }
    }
    assert_eq!(
        compared,
        model.trainable_var_names().len() - 2,
        "all but the pooler"
    );
}

#[test]
fn explicit_backward_equals_the_graph_in_training_mode_with_dropout() {
    let model = model_with(DType::F32);
    let x = padded_batch();
    let (graph_loss, graph) = {
        let _masks = seeded_dropout(5);
        graph_path(&model, &x, true, 0.25)
    };
    let (explicit_loss, explicit) = {
        let _masks = seeded_dropout(5);
        explicit_path(&model, &x, true, 0.25)
    };
    assert_eq!(explicit_loss, graph_loss, "same masks, same loss");
    assert_same_gradients(&model, &graph, &explicit, 2e-5);

    // Other masks give another loss: dropout is really active in both paths.
    let (other_loss, _) = {
        let _masks = seeded_dropout(6);
        explicit_path(&model, &x, true, 1.0)
    };
    assert_ne!(other_loss, explicit_loss);
}

#[test]
fn explicit_backward_equals_the_graph_in_eval_mode_on_the_fixture_model() {
    let fx = fixture();
    let model = small_model();
    let x = [
        batch(&fx, "source_ids"),
        batch(&fx, "source_mask"),
        batch(&fx, "target_ids"),
        batch(&fx, "target_mask"),
    ];
    let (graph_loss, graph) = graph_path(&model, &x, false, 1.0);
    let (explicit_loss, explicit) = explicit_path(&model, &x, false, 1.0);
    assert_eq!(explicit_loss, graph_loss);
    assert_same_gradients(&model, &graph, &explicit, 2e-5);
}

#[test]
fn explicit_backward_stays_close_to_the_graph_in_bf16() {
    let model = model_with(DType::BF16);
    let x = padded_batch();
    let (graph_loss, graph) = graph_path(&model, &x, false, 1.0);
    let (explicit_loss, explicit) = explicit_path(&model, &x, false, 1.0);
    assert!((explicit_loss - graph_loss).abs() <= 1e-3 * graph_loss.abs());
    // bf16 keeps 8 bits of mantissa; the two paths round their sums in different orders.
    assert_same_gradients(&model, &graph, &explicit, 3e-2);
}

#[test]
fn bad_inputs_are_errors_on_both_paths_before_any_op_runs() {
    let model = model_with(DType::F32);
    let [s, sm, t, _] = padded_batch();
    let no_active = t.zeros_like().unwrap();
    let err = model
        .training_pass(&s, &sm, &t, &no_active, true)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("no active target position"),
        "{err}"
    );
    let short = t.narrow(1, 0, 1).unwrap();
    let err = model
        .training_pass(&s, &sm, &short, &short.ones_like().unwrap(), true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("at least 2 positions"), "{err}");

    // Ids and positions are checked on the host before any op runs, on both paths.
    let vocab = model.config().vocab_size as u32;
    let bad_source = Tensor::new(&[[0u32, vocab, 2], [0, 5, 2]], &Device::Cpu).unwrap();
    let bad_mask = bad_source.ones_like().unwrap();
    let tm = t.ones_like().unwrap();
    let graph = model
        .forward_loss(&bad_source, &bad_mask, &t, &tm, true)
        .err()
        .unwrap();
    let explicit = model
        .training_pass(&bad_source, &bad_mask, &t, &tm, true)
        .err()
        .unwrap();
    for err in [graph, explicit] {
        assert!(
            err.to_string()
                .contains(&format!("token id {vocab} out of range")),
            "{err}"
        );
    }
    let positions = model.config().max_position_embeddings;
    let long = Tensor::ones((1, positions), DType::U32, &Device::Cpu)
        .unwrap()
        .affine(0.0, 5.0)
        .unwrap();
    let long_mask = long.ones_like().unwrap();
    let (t1, tm1) = (t.narrow(0, 0, 1).unwrap(), tm.narrow(0, 0, 1).unwrap());
    let err = model
        .training_pass(&long, &long_mask, &t1, &tm1, true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("position id"), "{err}");
}

/// A step prepared from host copies of the batch (no device read) computes what the tensor
/// entry points compute, on both paths; inconsistent host data is an error.
#[test]
fn host_prepared_steps_equal_the_tensor_entry_points() {
    let model = model_with(DType::F32);
    let x = padded_batch();
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<u32>().unwrap();
    let (source_ids, target_ids, target_mask) = (host(&x[0]), host(&x[2]), host(&x[3]));
    let (n, s) = x[0].dims2().unwrap();
    let t = x[2].dim(1).unwrap();
    let batch = HostBatch {
        source_ids: &source_ids,
        target_ids: &target_ids,
        target_mask: &target_mask,
        rows: n,
        source_len: s,
        target_len: t,
    };
    let (graph_loss, _) = graph_path(&model, &x, false, 1.0);
    let inputs = model.loss_inputs_from_host(batch).unwrap();
    let out = model.forward_loss_with(inputs, &x[1], false).unwrap();
    assert_eq!(out.loss.to_scalar::<f32>().unwrap(), graph_loss);

    let (explicit_loss, explicit) = explicit_path(&model, &x, false, 1.0);
    let inputs = model.loss_inputs_from_host(batch).unwrap();
    let pass = model.training_pass_with(inputs, &x[1], false).unwrap();
    assert_eq!(
        pass.output().loss.to_scalar::<f32>().unwrap(),
        explicit_loss
    );
    assert_same_gradients(&model, &explicit, &pass.backward(1.0).unwrap(), 0.0);

    let short = HostBatch {
        target_mask: &target_mask[1..],
        ..batch
    };
    let err = model.loss_inputs_from_host(short).err().unwrap();
    assert!(err.to_string().contains("mask values"), "{err}");
    let inputs = model.loss_inputs_from_host(batch).unwrap();
    let wrong_mask = x[1].narrow(1, 0, s - 1).unwrap();
    let err = model
        .training_pass_with(inputs, &wrong_mask, false)
        .err()
        .unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
}
