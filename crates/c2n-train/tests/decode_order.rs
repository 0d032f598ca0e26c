//! Decoding with dynamic padding runs the batches longest source first: each example's result
//! is the one it gets decoded alone, and the results come back in file order.

use crate::support::{expected, features, tiny_model};
use c2n_data::{inference_batches, Feature, Padding};
use c2n_model::generation::GenerationConfig;
use c2n_train::evaluate::{decode, EvalBatching};

#[test]
fn longest_first_batches_give_each_example_its_own_result_in_file_order() {
    let model = tiny_model();
    let feats: Vec<Feature> = features(&expected());
    let order = inference_batches(&feats, 4, Padding::Dynamic).concat();
    assert_ne!(
        order,
        (0..feats.len()).collect::<Vec<_>>(),
        "the fixture's sources must differ in length for this test to mean anything"
    );
    let generation = GenerationConfig {
        beam_size: 3,
        max_length: 12,
        ..Default::default()
    };
    let batching = |batch_size| EvalBatching {
        batch_size,
        padding: Padding::Dynamic,
        max_source_len: 64,
        max_target_len: 16,
    };
    let mut sizes = Vec::new();
    let batched = decode(&model, &feats, &batching(4), &generation, |n| sizes.push(n)).unwrap();
    assert_eq!(sizes.iter().sum::<usize>(), feats.len());
    assert_eq!(batched.len(), feats.len());
    for (i, feature) in feats.iter().enumerate() {
        let alone = decode(
            &model,
            std::slice::from_ref(feature),
            &batching(1),
            &generation,
            |_| {},
        )
        .unwrap();
        let ids = |o: &c2n_model::beam::BeamOutput| -> Vec<Vec<u32>> {
            o.hypotheses.iter().map(|h| h.ids.clone()).collect()
        };
        assert_eq!(ids(&batched[i]), ids(&alone[0]), "example {i}: n-best ids");
        for (a, b) in batched[i].hypotheses.iter().zip(&alone[0].hypotheses) {
            assert!(
                (a.score - b.score).abs() <= 1e-5 * b.score.abs().max(1.0),
                "example {i}: score {} batched, {} alone",
                a.score,
                b.score
            );
        }
    }
}
