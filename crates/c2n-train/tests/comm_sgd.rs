//! Data-parallel SGD on a toy linear model: W thread ranks with token weighting must equal one rank on
//! the combined batch. The one-rank run is the independent reference (plain autograd on all tokens).
//!
//! The "tokens" are rows of a regression problem grouped into sequences of different lengths, so the
//! ranks' shards hold different token counts, as real target sequences do.

use std::collections::BTreeMap;

use c2n_train::comm::{
    empty_grad_store, exchange_batch_stats, sync_grad_store, BucketPlan, Communicator,
    GradWeighting, LocalBatch, SingleComm, ThreadGroup,
};
use candle_core::{DType, Device, Tensor, Var};

const DIM: usize = 5;
const STEPS: usize = 25;
const LR: f64 = 0.05;

/// A deterministic pseudo-random sequence (LCG), so the test needs no RNG crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// One sequence: `tokens` rows of features and their targets.
#[derive(Clone)]
struct Sequence {
    x: Vec<f32>,
    y: Vec<f32>,
}

/// Batches of 8 sequences with 1..=9 tokens each.
fn make_batches() -> Vec<Vec<Sequence>> {
    let mut rng = Lcg(42);
    let true_w: Vec<f32> = (0..DIM).map(|_| rng.next()).collect();
    (0..STEPS)
        .map(|_| {
            (0..8)
                .map(|_| {
                    let tokens = 1 + ((rng.next() + 1.0) * 4.5) as usize % 9;
                    let x: Vec<f32> = (0..tokens * DIM).map(|_| rng.next()).collect();
                    let y = x
                        .chunks(DIM)
                        .map(|row| {
                            row.iter().zip(&true_w).map(|(a, b)| a * b).sum::<f32>()
                                + 0.3
                                + 0.1 * rng.next()
                        })
                        .collect();
                    Sequence { x, y }
                })
                .collect()
        })
        .collect()
}

/// The rank's contiguous share of the batch's sequences (`torch.chunk`-like: ceil(n / world) each).
fn shard(batch: &[Sequence], rank: usize, world: usize) -> Vec<Sequence> {
    let per = batch.len().div_ceil(world);
    batch.iter().skip(rank * per).take(per).cloned().collect()
}

/// Trains `w`, `b` with SGD on this rank's shards; returns the final weights and the logged losses.
fn train(
    comm: &dyn Communicator,
    batches: &[Vec<Sequence>],
    weighting: GradWeighting,
) -> (Vec<f32>, f32, Vec<f32>) {
    let dev = Device::Cpu;
    let w = Var::zeros((DIM, 1), DType::F32, &dev).unwrap();
    let b = Var::zeros(1, DType::F32, &dev).unwrap();
    let vars = [("linear.weight", &w), ("linear.bias", &b)];
    // 16-byte buckets: the 5-element weight spans two buckets, so splitting is exercised.
    let plan = BucketPlan::new(vars.iter().map(|(n, v)| (*n, v.elem_count())), 16).unwrap();
    let mut losses = Vec::new();
    for batch in batches {
        let mine = shard(batch, comm.rank(), comm.world_size());
        let xs: Vec<f32> = mine.iter().flat_map(|s| s.x.iter().copied()).collect();
        let ys: Vec<f32> = mine.iter().flat_map(|s| s.y.iter().copied()).collect();
        let tokens = ys.len();
        let (mean_loss, mut grads) = if tokens == 0 {
            (0.0, empty_grad_store(&dev).unwrap())
        } else {
            let x = Tensor::from_vec(xs, (tokens, DIM), &dev).unwrap();
            let y = Tensor::from_vec(ys, (tokens, 1), &dev).unwrap();
            let pred = x
                .matmul(w.as_tensor())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap();
            let loss = (pred - y).unwrap().sqr().unwrap().mean_all().unwrap(); // mean over local tokens
            (loss.to_scalar::<f32>().unwrap(), loss.backward().unwrap())
        };
        let stats =
            exchange_batch_stats(comm, weighting, LocalBatch { mean_loss, tokens }).unwrap();
        losses.push(stats.mean_loss);
        sync_grad_store(comm, &plan, vars, &mut grads, stats.grad_scale).unwrap();
        for (_, var) in vars {
            let g = grads.get(var.as_tensor()).unwrap();
            var.set(&(var.as_tensor() - (g * LR).unwrap()).unwrap())
                .unwrap();
        }
    }
    let wv = w
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let bv = b.as_tensor().to_vec1::<f32>().unwrap()[0];
    (wv, bv, losses)
}

fn assert_close(a: f32, b: f32, what: &str) {
    let tol = 1e-5 * a.abs().max(b.abs()).max(1e-3);
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

#[test]
fn token_weighted_ranks_equal_one_rank_on_the_combined_batch() {
    let batches = make_batches();
    let (w1, b1, l1) = train(&SingleComm, &batches, GradWeighting::TokenMean);
    assert!(
        l1.last().unwrap() < &(l1[0] * 0.5),
        "the toy model must learn: {l1:?}"
    );
    for world in [2, 4] {
        let ranks = ThreadGroup::new(world)
            .unwrap()
            .run(|comm| train(comm, &batches, GradWeighting::TokenMean))
            .unwrap();
        for (rank, (w, b, losses)) in ranks.iter().enumerate() {
            for (i, (x, y)) in w.iter().zip(&w1).enumerate() {
                assert_close(*x, *y, &format!("world {world} rank {rank} w[{i}]"));
            }
            assert_close(*b, b1, &format!("world {world} rank {rank} b"));
            for (step, (x, y)) in losses.iter().zip(&l1).enumerate() {
                assert_close(
                    *x,
                    *y,
                    &format!("world {world} rank {rank} loss at step {step}"),
                );
            }
            // Replicas are bit-identical to each other.
            assert_eq!((w, b), (&ranks[0].0, &ranks[0].1));
        }
    }
}

/// Mean of the per-shard mean losses, computed directly (the DataParallel reference objective).
fn mean_of_shard_means(batch: &[Sequence], world: usize, w: &[f32], b: f32) -> f32 {
    let means: Vec<f32> = (0..world)
        .map(|r| shard(batch, r, world))
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (mut sum, mut n) = (0.0f32, 0usize);
            for seq in &s {
                for (row, y) in seq.x.chunks(DIM).zip(&seq.y) {
                    let pred: f32 = row.iter().zip(w).map(|(a, c)| a * c).sum::<f32>() + b;
                    sum += (pred - y) * (pred - y);
                    n += 1;
                }
            }
            sum / n as f32
        })
        .collect();
    means.iter().sum::<f32>() / means.len() as f32
}

#[test]
fn mean_of_rank_means_reproduces_the_data_parallel_loss_and_differs_from_token_mean() {
    let batches = make_batches();
    // 3 ranks over 8 sequences: chunks of 3, 3, 2 sequences with unequal token counts.
    let world = 3;
    let ranks = ThreadGroup::new(world)
        .unwrap()
        .run(|comm| {
            let (_, _, losses) = train(comm, &batches[..1], GradWeighting::MeanOfRankMeans);
            losses[0]
        })
        .unwrap();
    let reference = mean_of_shard_means(&batches[0], world, &[0.0; DIM], 0.0);
    assert_close(ranks[0], reference, "first-step DataParallel loss");
    let token_mean = ThreadGroup::new(world)
        .unwrap()
        .run(|comm| train(comm, &batches[..1], GradWeighting::TokenMean).2[0])
        .unwrap();
    assert!(
        (token_mean[0] - ranks[0]).abs() > 1e-4,
        "{} vs {}",
        token_mean[0],
        ranks[0]
    );
}

#[test]
fn empty_shards_contribute_nothing() {
    // 8 sequences over 6 ranks in chunks of 2: ranks 4 and 5 get none, like torch.chunk.
    let batches = make_batches();
    let (w1, b1, _) = train(&SingleComm, &batches[..3], GradWeighting::TokenMean);
    let ranks = ThreadGroup::new(6)
        .unwrap()
        .run(|comm| train(comm, &batches[..3], GradWeighting::TokenMean))
        .unwrap();
    for (x, y) in ranks[5].0.iter().zip(&w1) {
        assert_close(*x, *y, "w with empty shards");
    }
    assert_close(ranks[5].1, b1, "b with empty shards");
}

#[test]
fn plain_buffers_sync_without_candle() {
    // Rank r holds gradient r+1 on 10 tokens * (r+1): weights (r+1)/total.
    let world = 4;
    let plan = BucketPlan::new([("g", 3)], 8).unwrap();
    let out = ThreadGroup::new(world)
        .unwrap()
        .run(|comm| {
            let tokens = 10 * (comm.rank() + 1);
            let stats = exchange_batch_stats(
                comm,
                GradWeighting::TokenMean,
                LocalBatch {
                    mean_loss: 1.0,
                    tokens,
                },
            )
            .unwrap();
            let mut grads = BTreeMap::from([("g".to_string(), vec![(comm.rank() + 1) as f32; 3])]);
            plan.sync_named(comm, &mut grads, stats.grad_scale).unwrap();
            (stats.tokens, grads.remove("g").unwrap())
        })
        .unwrap();
    // Σ (r+1)·(r+1)/10 over r = 1+4+9+16 = 30 / 10 = 3.
    for (tokens, g) in out {
        assert_eq!(tokens, 100);
        for x in g {
            assert_close(x, 3.0, "weighted gradient");
        }
    }
}
