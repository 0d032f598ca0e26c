//! Every trainable parameter except the pooler receives a gradient (the model is built from
//! differentiable primitives); dropout acts only in training mode; bf16 compute stays close.

mod model_support;

use candle_core::DType;
use model_support::*;

#[test]
fn every_parameter_but_the_pooler_gets_a_nonzero_gradient() {
    let fx = fixture();
    let model = small_model();
    let out = model
        .forward_loss(
            &batch(&fx, "source_ids"),
            &batch(&fx, "source_mask"),
            &batch(&fx, "target_ids"),
            &batch(&fx, "target_mask"),
            false,
        )
        .unwrap();
    let grads = out.loss.backward().unwrap();
    let data = model.varmap().data().lock().unwrap();
    let names = model.trainable_var_names();
    assert_eq!(names.len(), data.len(), "every Var is a named parameter");
    for name in names {
        let var = &data[&name];
        let grad = grads.get(var.as_tensor());
        if name.starts_with("encoder.pooler.") {
            assert!(
                grad.is_none(),
                "{name}: the pooler output is unused, so no gradient"
            );
            continue;
        }
        let grad = grad.unwrap_or_else(|| panic!("{name} received no gradient"));
        assert_eq!(grad.dims(), var.dims());
        let norm = grad
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{name}: gradient norm² {norm}"
        );
    }
}

#[test]
fn dropout_is_active_only_in_training_mode() {
    let fx = fixture();
    let model = small_model();
    let run = |train: bool| {
        model
            .forward_loss(
                &batch(&fx, "source_ids"),
                &batch(&fx, "source_mask"),
                &batch(&fx, "target_ids"),
                &batch(&fx, "target_mask"),
                train,
            )
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap()
    };
    assert_eq!(run(false), run(false));
    let (a, b, eval) = (run(true), run(true), run(false));
    assert!(
        a != eval && b != eval && a != b,
        "train losses {a} {b}, eval {eval}"
    );
}

#[test]
fn bf16_compute_is_close_to_f32_and_keeps_f32_gradients() {
    let fx = fixture();
    let model = small_model();
    let bf16 = model.clone().with_compute_dtype(DType::BF16);
    let loss = |m: &c2n_model::Seq2Seq| {
        m.forward_loss(
            &batch(&fx, "source_ids"),
            &batch(&fx, "source_mask"),
            &batch(&fx, "target_ids"),
            &batch(&fx, "target_mask"),
            false,
        )
        .unwrap()
    };
    let full = loss(&model).loss.to_scalar::<f32>().unwrap();
    let reduced = loss(&bf16);
    assert_eq!(reduced.loss.dtype(), DType::F32);
    let r = reduced.loss.to_scalar::<f32>().unwrap();
    assert!(
        (r - full).abs() / full < 1e-2,
        "bf16 loss {r} vs f32 {full}"
    );
    let grads = reduced.loss.backward().unwrap();
    let data = bf16.varmap().data().lock().unwrap();
    let g = grads
        .get(data["dense.weight"].as_tensor())
        .expect("dense.weight gradient");
    assert_eq!(g.dtype(), DType::F32);
}
