//! The fused softmax and LayerNorm ops compute the same function and the same gradients as
//! their primitive-op formulations, alone and inside the whole model.

use crate::model_support;

use c2n_model::layers::{attend, softmax_last_dim, AttendOptions, LayerNorm};
use c2n_model::load_checkpoint;
use candle_core::{DType, Device, Tensor, Var, D};
use model_support::*;

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Scores with a padded tail (−10000, the encoder's mask) and a −∞ entry (the causal mask).
fn masked_scores() -> Tensor {
    let scores = (Tensor::randn(0f32, 3.0, (2, 3, 5, 11), &Device::Cpu).unwrap() * 1.0).unwrap();
    let mut mask = vec![0f32; 11];
    mask[9] = -10000.0;
    mask[10] = f32::NEG_INFINITY;
    let mask = Tensor::from_vec(mask, (1, 1, 1, 11), &Device::Cpu).unwrap();
    scores.broadcast_add(&mask).unwrap()
}

#[test]
fn fused_softmax_equals_the_primitive_softmax_and_its_gradient() {
    let x = Var::from_tensor(&masked_scores()).unwrap();
    let weights = Tensor::randn(0f32, 1.0, x.dims(), &Device::Cpu).unwrap();
    let fused = softmax_last_dim(x.as_tensor()).unwrap();
    let primitive = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
    assert!(max_abs_diff(&fused, &primitive) < 1e-6);
    // Rows sum to one, the −∞ column is exactly zero.
    let sums = values(&fused.sum(D::Minus1).unwrap());
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    let last = values(&fused.narrow(3, 10, 1).unwrap());
    assert!(last.iter().all(|&p| p == 0.0));

    let grad_of = |y: &Tensor| {
        let loss = (y * &weights).unwrap().sum_all().unwrap();
        loss.backward().unwrap().get(x.as_tensor()).unwrap().clone()
    };
    let (g_fused, g_primitive) = (grad_of(&fused), grad_of(&primitive));
    let scale = values(&g_primitive)
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "a non-trivial gradient");
    let diff = max_abs_diff(&g_fused, &g_primitive);
    assert!(diff <= 1e-6 * scale.max(1.0), "gradient differs by {diff}");
}

#[test]
fn fused_softmax_takes_strided_input_and_other_dtypes() {
    let x = Tensor::randn(0f32, 2.0, (4, 6, 9), &Device::Cpu).unwrap();
    let strided = x.transpose(1, 2).unwrap();
    let want = candle_nn::ops::softmax(&strided, D::Minus1).unwrap();
    assert!(max_abs_diff(&softmax_last_dim(&strided).unwrap(), &want) < 1e-6);
    for (dtype, tolerance) in [(DType::F64, 1e-6), (DType::BF16, 1e-2), (DType::F16, 1e-3)] {
        let got = softmax_last_dim(&strided.to_dtype(dtype).unwrap()).unwrap();
        assert_eq!(got.dtype(), dtype);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < tolerance, "{dtype:?}: {diff}");
    }
    assert!(softmax_last_dim(&x.to_dtype(DType::U32).unwrap()).is_err());
}

fn layer_norm_pair(width: usize) -> (Var, Var, LayerNorm, LayerNorm) {
    let weight = Var::from_tensor(&Tensor::randn(1f32, 0.5, width, &Device::Cpu).unwrap()).unwrap();
    let bias = Var::from_tensor(&Tensor::randn(0f32, 0.5, width, &Device::Cpu).unwrap()).unwrap();
    let make = |fused| {
        LayerNorm::new(weight.as_tensor().clone(), bias.as_tensor().clone(), 1e-5).with_fused(fused)
    };
    let (fused, primitive) = (make(true), make(false));
    (weight, bias, fused, primitive)
}

#[test]
fn fused_layer_norm_equals_the_primitive_one_with_all_three_gradients() {
    let width = 24;
    let (weight, bias, fused, primitive) = layer_norm_pair(width);
    // A large common offset checks the statistics are not computed as E[x²] − E[x]².
    let x = Var::from_tensor(
        &(Tensor::randn(0f32, 2.0, (3, 7, width), &Device::Cpu).unwrap() + 30.0).unwrap(),
    )
    .unwrap();
    let upstream = Tensor::randn(0f32, 1.0, (3, 7, width), &Device::Cpu).unwrap();
    let run = |norm: &LayerNorm| {
        let y = norm.forward(x.as_tensor()).unwrap();
        let grads = (&y * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grad = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
        (y, grad(&x), grad(&weight), grad(&bias))
    };
    let (y_f, gx_f, gw_f, gb_f) = run(&fused);
    let (y_p, gx_p, gw_p, gb_p) = run(&primitive);
    assert!(max_abs_diff(&y_f, &y_p) < 1e-5);
    for (name, got, want) in [
        ("x", gx_f, gx_p),
        ("weight", gw_f, gw_p),
        ("bias", gb_f, gb_p),
    ] {
        let scale = values(&want).iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 1e-3, "{name}: a non-trivial gradient");
        let diff = max_abs_diff(&got, &want);
        assert!(
            diff <= 2e-5 * scale.max(1.0),
            "{name}: gradient differs by {diff}"
        );
    }
}

#[test]
fn fused_layer_norm_keeps_a_bf16_input_in_bf16() {
    let (_, _, fused, primitive) = layer_norm_pair(16);
    let x = Tensor::randn(0f32, 1.0, (5, 16), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let y = fused.forward(&x).unwrap();
    assert_eq!(y.dtype(), DType::BF16);
    assert!(max_abs_diff(&y, &primitive.forward(&x).unwrap()) < 2e-2);
}

#[test]
fn attention_folds_a_power_of_two_divisor_into_the_queries_exactly() {
    let q = Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &Device::Cpu).unwrap();
    let k = Tensor::randn(0f32, 1.0, (2, 3, 6, 8), &Device::Cpu).unwrap();
    let v = Tensor::randn(0f32, 1.0, (2, 3, 6, 8), &Device::Cpu).unwrap();
    for divisor in [8.0, 3.0] {
        let options = AttendOptions {
            score_divisor: Some(divisor),
            ..AttendOptions::default()
        };
        let got = attend(&q, &k, &v, None, options).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / divisor).unwrap();
        let want = candle_nn::ops::softmax(&scores, D::Minus1)
            .unwrap()
            .matmul(&v)
            .unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-6, "divisor {divisor}");
    }
}

/// The small fixture model with `fused_kernels` set as given (weights identical).
fn small_model_with(fused: bool) -> (tempfile::TempDir, c2n_model::Seq2Seq) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(small_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let config_path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["fused_kernels"] = serde_json::Value::Bool(fused);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let model = load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(model.config().fused_kernels, fused);
    (dir, model)
}

#[test]
fn the_model_gives_the_same_loss_and_gradients_with_fused_and_primitive_kernels() {
    let fx = fixture();
    let (_a, fused) = small_model_with(true);
    let (_b, primitive) = small_model_with(false);
    let run = |model: &c2n_model::Seq2Seq| {
        let out = fixture_loss(model, &fx, false);
        let loss = out.loss.to_scalar::<f32>().unwrap();
        let grads = out.loss.backward().unwrap();
        let data = model.varmap().data().lock().unwrap();
        let per_param: Vec<(String, Option<Vec<f32>>)> = model
            .trainable_var_names()
            .into_iter()
            .map(|name| {
                let g = grads.get(data[&name].as_tensor()).map(values);
                (name, g)
            })
            .collect();
        (loss, per_param)
    };
    let (loss_f, grads_f) = run(&fused);
    let (loss_p, grads_p) = run(&primitive);
    assert!(
        (loss_f - loss_p).abs() <= 1e-6 * loss_p.abs(),
        "{loss_f} vs {loss_p}"
    );
    let mut compared = 0;
    for ((name, got), (_, want)) in grads_f.iter().zip(&grads_p) {
        match (got, want) {
            (None, None) => {}
            (Some(got), Some(want)) => {
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let diff = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    diff <= 1e-4 * scale + 1e-9,
                    "{name}: {diff} (scale {scale})"
                );
                compared += 1;
            }
            _ => panic!("{name}: a gradient on one side only"),
        }
    }
    assert!(compared > 20, "compared {compared} gradients");
}

#[test]
fn closed_form_activations_match_candles_own_gradients() {
    use c2n_model::config::Activation;
    use c2n_model::layers::apply_activation_with;
    // Away from 0, where ReLU's subgradient conventions differ (PyTorch: 0, Candle: 1).
    let x = Tensor::randn(0f32, 2.0, (6, 40), &Device::Cpu).unwrap();
    let x = (x.abs().unwrap() + 0.01)
        .unwrap()
        .mul(&x.sign().unwrap())
        .unwrap();
    let x = Var::from_tensor(&x).unwrap();
    let upstream = Tensor::randn(0f32, 1.0, (6, 40), &Device::Cpu).unwrap();
    for act in [Activation::Gelu, Activation::Relu] {
        let run = |fused| {
            let y = apply_activation_with(x.as_tensor(), act, fused).unwrap();
            let grads = (&y * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (y, grads.get(x.as_tensor()).unwrap().clone())
        };
        let ((y_c, g_c), (y_p, g_p)) = (run(true), run(false));
        assert_eq!(
            max_abs_diff(&y_c, &y_p),
            0.0,
            "{act:?}: same forward kernel"
        );
        // Candle's GELU backward uses 0.398942 for 1/√(2π) (relative error 7e-7).
        let diff = max_abs_diff(&g_c, &g_p);
        assert!(diff < 1e-5, "{act:?}: gradient differs by {diff}");
    }
}

#[test]
fn closed_form_token_nll_matches_log_softmax_and_gather() {
    use c2n_model::layers::token_nll;
    let logits =
        Var::from_tensor(&Tensor::randn(0f32, 3.0, (7, 50), &Device::Cpu).unwrap()).unwrap();
    let gold = Tensor::from_vec(vec![0u32, 49, 3, 3, 17, 2, 31], (7, 1), &Device::Cpu).unwrap();
    let weights = Tensor::randn(0f32, 1.0, (7, 1), &Device::Cpu).unwrap();
    let run = |fused| {
        let nll = token_nll(logits.as_tensor(), &gold, fused).unwrap();
        let grads = (&nll * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        (nll, grads.get(logits.as_tensor()).unwrap().clone())
    };
    let ((nll_c, g_c), (nll_p, g_p)) = (run(true), run(false));
    assert_eq!(nll_c.dims(), &[7, 1]);
    assert_eq!(max_abs_diff(&nll_c, &nll_p), 0.0, "same forward ops");
    assert!(values(&nll_c).iter().all(|&v| v > 0.0));
    let diff = max_abs_diff(&g_c, &g_p);
    assert!(diff < 1e-6, "gradient differs by {diff}");
    assert!(token_nll(
        &logits.as_tensor().to_dtype(DType::BF16).unwrap(),
        &gold,
        true
    )
    .is_err());
}

#[test]
fn no_grad_nests_and_restores_the_closed_form_ops() {
    use c2n_model::layers::{gradients_enabled, no_grad, Linear};
    assert!(gradients_enabled());
    {
        let _outer = no_grad();
        {
            let _inner = no_grad();
            assert!(!gradients_enabled());
        }
        assert!(!gradients_enabled(), "the outer guard still holds");
        // Under no_grad a Var's linear layer runs as plain ops and still computes the same.
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4), &Device::Cpu).unwrap()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4), &Device::Cpu).unwrap();
        let y = Linear::new(w.as_tensor().clone(), None)
            .forward(&x)
            .unwrap();
        let want = x.matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert_eq!(max_abs_diff(&y, &want), 0.0);
    }
    assert!(gradients_enabled());
}
