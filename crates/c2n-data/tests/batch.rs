//! Batching: reference and dynamic padding, per-rank slices independent of the world size,
//! identical plans on every rank, bucketing and token budgets.

use c2n_data::batch::{padded_lengths, plan_epoch};
use c2n_data::partition::rank_slice;
use c2n_data::{
    inference_batches, make_batch, rank_batches, BatchConfig, Feature, FeatureSet, Padding,
};

fn features(n: usize) -> Vec<Feature> {
    (0..n)
        .map(|i| {
            let s = 3 + (i * 37) % 20;
            let t = 3 + (i * 11) % 7;
            Feature {
                idx: i as u64 * 10,
                source_ids: [vec![0], vec![100 + i as u16; s - 2], vec![2]].concat(),
                target_ids: [vec![0], vec![7; t - 2], vec![2]].concat(),
                source_bpe_len: (s - 2) as u32,
                target_bpe_len: (t - 2) as u32,
            }
        })
        .collect()
}

fn cfg() -> BatchConfig {
    BatchConfig {
        batch_size: 8,
        max_source_len: 32,
        max_target_len: 16,
        ..BatchConfig::default()
    }
}

#[test]
fn reference_padding_shapes_and_values() {
    let set = features(5);
    let b = make_batch(&set, &[4, 1], 32, 16);
    assert_eq!((b.batch_size, b.source_len, b.target_len), (2, 32, 16));
    assert_eq!(b.idx, [40, 10]);
    assert_eq!(b.source_ids.len(), 64);
    let row0_len = set[4].source_ids.len();
    assert_eq!(
        &b.source_ids[..row0_len],
        set[4]
            .source_ids
            .iter()
            .map(|&x| u32::from(x))
            .collect::<Vec<_>>()
    );
    assert!(b.source_ids[row0_len..32].iter().all(|&x| x == 1));
    assert_eq!(b.source_mask[..32].iter().sum::<u32>() as usize, row0_len);
    assert!(b.target_mask[16..]
        .iter()
        .take(set[1].target_ids.len())
        .all(|&m| m == 1));

    let too_short = BatchConfig {
        max_source_len: 4,
        ..cfg()
    };
    assert!(padded_lengths(&set, &[0, 1, 2], &too_short).is_err());
}

#[test]
fn ranks_see_their_slice_of_the_same_global_batches() {
    let set = features(53);
    for padding in [Padding::Reference, Padding::Dynamic] {
        let config = BatchConfig { padding, ..cfg() };
        let single = rank_batches(&set, &config, 3, 0, 1).unwrap();
        assert_eq!(single.len(), 7);
        for world in [2, 4] {
            let per_rank: Vec<_> = (0..world)
                .map(|r| rank_batches(&set, &config, 3, r, world).unwrap())
                .collect();
            for (step, whole) in single.iter().enumerate() {
                let mut rows: Vec<u64> = Vec::new();
                let mut ids: Vec<u32> = Vec::new();
                for rank in &per_rank {
                    let b = &rank[step];
                    assert_eq!(
                        (b.source_len, b.target_len),
                        (whole.source_len, whole.target_len)
                    );
                    rows.extend(&b.idx);
                    ids.extend(&b.source_ids);
                }
                assert_eq!(rows, whole.idx, "world {world} step {step}");
                assert_eq!(ids, whole.source_ids);
            }
        }
    }
}

#[test]
fn plans_are_seeded_and_cover_every_example_once() {
    let set = features(100);
    let a = plan_epoch(&set, &cfg(), 0).unwrap();
    assert_eq!(a, plan_epoch(&set, &cfg(), 0).unwrap());
    assert_ne!(a, plan_epoch(&set, &cfg(), 1).unwrap());
    let mut all: Vec<usize> = a.concat();
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    let ordered = plan_epoch(
        &set,
        &BatchConfig {
            shuffle: false,
            ..cfg()
        },
        5,
    )
    .unwrap();
    assert_eq!(ordered.concat(), (0..100).collect::<Vec<_>>());
    let dropped = plan_epoch(
        &set,
        &BatchConfig {
            drop_last: true,
            ..cfg()
        },
        0,
    )
    .unwrap();
    assert_eq!(dropped.len(), 12);
    assert!(dropped.iter().all(|b| b.len() == 8));
}

#[test]
fn dynamic_bucketing_and_token_budget() {
    let set = features(200);
    let config = BatchConfig {
        padding: Padding::Dynamic,
        bucket_window: Some(5),
        ..cfg()
    };
    let plan = plan_epoch(&set, &config, 0).unwrap();
    let mut all: Vec<usize> = plan.concat();
    all.sort();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
    // Bucketing makes batches tighter than a plain shuffle.
    let waste = |plan: &[Vec<usize>]| -> usize {
        plan.iter()
            .map(|b| {
                let (s, _) = padded_lengths(&set, b, &config).unwrap();
                b.iter()
                    .map(|&p| s - set.get(p).source_ids.len())
                    .sum::<usize>()
            })
            .sum()
    };
    let plain = plan_epoch(
        &set,
        &BatchConfig {
            bucket_window: None,
            ..config.clone()
        },
        0,
    )
    .unwrap();
    assert!(
        waste(&plan) < waste(&plain),
        "{} vs {}",
        waste(&plan),
        waste(&plain)
    );

    let budget = BatchConfig {
        token_budget: Some(60),
        batch_size: 100,
        ..config
    };
    let plan = plan_epoch(&set, &budget, 0).unwrap();
    assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), 200);
    for b in &plan {
        let (s, _) = padded_lengths(&set, b, &budget).unwrap();
        assert!(b.len() == 1 || b.len() * s <= 60, "{} x {s}", b.len());
    }
    assert!(rank_slice(&[1, 2, 3], 0, 0).is_err());
}

#[test]
fn a_bucket_window_past_the_data_is_one_bucket() {
    let set = features(50);
    let plan_with = |window: usize| {
        let config = BatchConfig {
            padding: Padding::Dynamic,
            bucket_window: Some(window),
            ..cfg()
        };
        plan_epoch(&set, &config, 3).unwrap()
    };
    // A window × batch size that overflows usize sorts the whole epoch at once, like any
    // window that holds every example.
    let whole = plan_with(7);
    assert_eq!(plan_with(usize::MAX), whole);
    assert_eq!(plan_with(1 << 62), whole);
    let mut all = whole.concat();
    all.sort_unstable();
    assert_eq!(all, (0..50).collect::<Vec<_>>());
}

#[test]
fn inference_batches_go_longest_first_with_dynamic_padding_and_cover_every_position_once() {
    let set = features(45);
    let len = |p: usize| set[p].source_ids.len();
    let batches = inference_batches(&set, 8, Padding::Dynamic);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [8, 8, 8, 8, 8, 5]
    );
    let order: Vec<usize> = batches.concat();
    let mut covered = order.clone();
    covered.sort_unstable();
    assert_eq!(covered, (0..45).collect::<Vec<_>>(), "every position once");
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            len(a) > len(b) || (len(a) == len(b) && a < b),
            "longest first, file order among equals: {a} ({}) before {b} ({})",
            len(a),
            len(b)
        );
    }
    // Less padding than file order: Σ rows × longest row, per batch.
    let padded = |batches: &[Vec<usize>]| -> usize {
        batches
            .iter()
            .map(|b| b.len() * b.iter().map(|&p| len(p)).max().unwrap())
            .sum()
    };
    let file_order = inference_batches(&set, 8, Padding::Reference);
    assert_eq!(file_order.concat(), (0..45).collect::<Vec<_>>());
    assert!(padded(&batches) < padded(&file_order));
    assert_eq!(inference_batches(&set, 0, Padding::Dynamic).len(), 45);
    assert!(inference_batches(&features(0), 8, Padding::Dynamic).is_empty());
}
