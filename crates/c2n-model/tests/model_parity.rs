//! Parity of the Candle model with the spec-written PyTorch reference
//! (`tools/reference/make_model_fixtures.py`): encoder output, teacher-forced logits, loss.

use crate::model_support;

use c2n_model::load::load_state_dict;
use c2n_model::Seq2Seq;
use candle_core::{Device, D};
use candle_nn::VarMap;
use model_support::*;

const TOL: f32 = 1e-5;

#[test]
fn bin_and_safetensors_give_the_same_parameters() {
    let from_safetensors = small_model();
    let cfg = from_safetensors.config().clone();
    let from_bin = Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu).unwrap();
    load_state_dict(&from_bin, &small_dir().join("pytorch_model.bin")).unwrap();
    let a = from_safetensors.varmap().data().lock().unwrap();
    let b = from_bin.varmap().data().lock().unwrap();
    assert_eq!(a.len(), from_safetensors.trainable_var_names().len());
    for name in from_safetensors.trainable_var_names() {
        let x = a[&name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let y = b[&name]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(x, y, "{name} differs between .bin and .safetensors");
    }
}

#[test]
fn encoder_output_matches_reference() {
    let fx = fixture();
    let model = small_model();
    let ids = batch(&fx, "source_ids");
    let mask = batch(&fx, "source_mask");
    let out = model.encode(&ids, &mask, false).unwrap();
    let (n, s) = ids.dims2().unwrap();
    assert_eq!(out.dims(), &[n, s, model.config().hidden_size]);
    let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_rel_diff(&got, &f32s(&fx["encoder_output"]));
    assert!(diff <= TOL, "encoder output differs: {diff}");
}

#[test]
fn teacher_forced_logits_match_reference() {
    let fx = fixture();
    let model = small_model();
    let logits = model
        .logits(
            &batch(&fx, "source_ids"),
            &batch(&fx, "source_mask"),
            &batch(&fx, "target_ids"),
            false,
        )
        .unwrap();
    let (n, t, v) = logits.dims3().unwrap();
    assert_eq!(v, 50265);
    let slice_ids = u32s(&fx["slice_ids"]);
    let index = candle_core::Tensor::new(slice_ids.as_slice(), &Device::Cpu).unwrap();
    let slice = logits.index_select(&index, 2).unwrap();
    let got = slice.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = max_rel_diff(&got, &f32s(&fx["logits_slice"]));
    assert!(diff <= TOL, "logit slice differs: {diff}");

    let lse = (logits.exp().unwrap().sum(D::Minus1).unwrap().log().unwrap())
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let diff = max_rel_diff(&lse, &f32s(&fx["logits_logsumexp"]));
    assert!(diff <= TOL, "logsumexp differs: {diff}");
    assert_eq!(lse.len(), n * t);

    let argmax = logits
        .argmax(D::Minus1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    assert_eq!(argmax, u32s(&fx["logits_argmax"]));
}

#[test]
fn loss_matches_reference() {
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
    assert_eq!(out.n_active as u64, fx["n_active"].as_u64().unwrap());
    let loss = out.loss.to_scalar::<f32>().unwrap();
    let loss_sum = out.loss_sum.to_scalar::<f32>().unwrap();
    let want = fx["loss"].as_f64().unwrap() as f32;
    let want_sum = fx["loss_sum"].as_f64().unwrap() as f32;
    assert!(
        max_rel_diff(&[loss], &[want]) <= TOL,
        "loss {loss} vs {want}"
    );
    assert!(
        max_rel_diff(&[loss_sum], &[want_sum]) <= TOL,
        "loss_sum {loss_sum} vs {want_sum}"
    );
}

#[test]
fn loss_is_a_token_mean_over_the_batch_not_a_mean_of_sentence_means() {
    let fx = fixture();
    let model = small_model();
    let (src, src_mask) = (batch(&fx, "source_ids"), batch(&fx, "source_mask"));
    let (tgt, tgt_mask) = (batch(&fx, "target_ids"), batch(&fx, "target_mask"));
    let whole = model
        .forward_loss(&src, &src_mask, &tgt, &tgt_mask, false)
        .unwrap();
    let n = src.dim(0).unwrap();
    let mut sum = 0f64;
    let mut count = 0usize;
    let mut sentence_means = Vec::new();
    for i in 0..n {
        let one = model
            .forward_loss(
                &src.narrow(0, i, 1).unwrap(),
                &src_mask.narrow(0, i, 1).unwrap(),
                &tgt.narrow(0, i, 1).unwrap(),
                &tgt_mask.narrow(0, i, 1).unwrap(),
                false,
            )
            .unwrap();
        sum += one.loss_sum.to_scalar::<f32>().unwrap() as f64;
        count += one.n_active;
        sentence_means.push(one.loss.to_scalar::<f32>().unwrap() as f64);
    }
    assert_eq!(count, whole.n_active);
    let token_mean = (sum / count as f64) as f32;
    let whole_loss = whole.loss.to_scalar::<f32>().unwrap();
    assert!(max_rel_diff(&[whole_loss], &[token_mean]) <= TOL);
    let mean_of_means = (sentence_means.iter().sum::<f64>() / n as f64) as f32;
    assert!(
        (whole_loss - mean_of_means).abs() > 1e-4,
        "lengths differ, so the two means must differ"
    );
}
