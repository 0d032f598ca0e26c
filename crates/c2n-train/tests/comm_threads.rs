//! The thread backend: collective results, ordering, and bounded failure (timeouts, dead ranks).
//!
//! Expected values are integer arithmetic computed here (exact in f32), not recorded outputs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use c2n_train::comm::{CommError, Communicator, ReduceOp, ThreadGroup};

/// Rank `r`'s value at index `i`: integers, so sums are exact.
fn value(rank: usize, i: usize) -> f32 {
    (rank * 1000 + i) as f32
}

fn check_all_reduce(world: usize) {
    let len = 1037;
    let results = ThreadGroup::new(world)
        .unwrap()
        .run(|comm| {
            let mut sum: Vec<f32> = (0..len).map(|i| value(comm.rank(), i)).collect();
            let mut avg = sum.clone();
            comm.all_reduce(&mut sum, ReduceOp::Sum).unwrap();
            comm.all_reduce(&mut avg, ReduceOp::Avg).unwrap();
            (sum, avg)
        })
        .unwrap();
    let rank_sum: usize = (0..world).sum();
    for (rank, (sum, avg)) in results.iter().enumerate() {
        for i in 0..len {
            let expected = (1000 * rank_sum + world * i) as f32;
            assert_eq!(sum[i], expected, "rank {rank} sum[{i}]");
            assert_eq!(avg[i], expected / world as f32, "rank {rank} avg[{i}]");
        }
        // Every rank holds bit-identical results, so replicas cannot drift.
        assert_eq!(sum, &results[0].0);
        assert_eq!(avg, &results[0].1);
    }
}

#[test]
fn all_reduce_two_and_four_ranks() {
    check_all_reduce(2);
    check_all_reduce(4);
}

#[test]
fn all_reduce_one_rank_is_identity() {
    let out = ThreadGroup::new(1)
        .unwrap()
        .run(|comm| {
            let mut v = vec![1.5, -2.0];
            comm.all_reduce(&mut v, ReduceOp::Avg).unwrap();
            v
        })
        .unwrap();
    assert_eq!(out[0], vec![1.5, -2.0]);
}

#[test]
fn broadcast_copies_rank_zero() {
    for world in [2, 4] {
        let out = ThreadGroup::new(world)
            .unwrap()
            .run(|comm| {
                let mut v: Vec<f32> = (0..100).map(|i| value(comm.rank(), i)).collect();
                comm.broadcast(&mut v).unwrap();
                v
            })
            .unwrap();
        let root: Vec<f32> = (0..100).map(|i| value(0, i)).collect();
        for v in out {
            assert_eq!(v, root);
        }
    }
}

#[test]
fn gather_strings_collects_on_rank_zero_in_rank_order() {
    for world in [2, 4] {
        let out = ThreadGroup::new(world)
            .unwrap()
            .run(|comm| {
                let mine: Vec<String> = (0..=comm.rank())
                    .map(|j| format!("r{}-{j}", comm.rank()))
                    .collect();
                comm.gather_strings(&mine).unwrap()
            })
            .unwrap();
        let gathered = out[0].as_ref().expect("rank 0 receives the strings");
        assert_eq!(gathered.len(), world);
        for (rank, items) in gathered.iter().enumerate() {
            let expected: Vec<String> = (0..=rank).map(|j| format!("r{rank}-{j}")).collect();
            assert_eq!(items, &expected);
        }
        assert!(out[1..].iter().all(Option::is_none));
    }
}

#[test]
fn barrier_waits_for_every_rank() {
    let world = 4;
    let arrived = AtomicUsize::new(0);
    let seen = ThreadGroup::new(world)
        .unwrap()
        .run(|comm| {
            // The last rank arrives late; nobody may pass the barrier before it.
            if comm.rank() == world - 1 {
                std::thread::sleep(Duration::from_millis(50));
            }
            arrived.fetch_add(1, Ordering::SeqCst);
            comm.barrier().unwrap();
            arrived.load(Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(seen, vec![world; world]);
}

#[test]
fn long_mixed_sequence_of_collectives_stays_in_step() {
    let world = 4;
    let out = ThreadGroup::new(world)
        .unwrap()
        .run(|comm| {
            let mut checks = 0;
            for step in 0..300 {
                let mut v = vec![(comm.rank() + step) as f32; 1 + step % 5];
                match step % 3 {
                    0 => {
                        comm.all_reduce(&mut v, ReduceOp::Sum).unwrap();
                        let expected = (0..world).map(|r| r + step).sum::<usize>() as f32;
                        assert!(v.iter().all(|&x| x == expected), "step {step}: {v:?}");
                    }
                    1 => {
                        comm.broadcast(&mut v).unwrap();
                        assert!(v.iter().all(|&x| x == step as f32), "step {step}: {v:?}");
                    }
                    _ => comm.barrier().unwrap(),
                }
                checks += 1;
            }
            checks
        })
        .unwrap();
    assert_eq!(out, vec![300; world]);
}

#[test]
fn mismatched_lengths_fail_every_rank_instead_of_hanging() {
    let out = ThreadGroup::new(2)
        .unwrap()
        .with_timeout(Duration::from_secs(30))
        .run(|comm| {
            let mut v = vec![0.0; 3 + comm.rank()];
            comm.all_reduce(&mut v, ReduceOp::Sum)
        })
        .unwrap();
    let errors: Vec<String> = out
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
    assert!(
        errors
            .iter()
            .all(|e| e.contains("len 3") && e.contains("len 4")),
        "{errors:?}"
    );
}

#[test]
fn a_rank_that_never_arrives_times_out_in_bounded_time() {
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let out = ThreadGroup::new(2)
        .unwrap()
        .with_timeout(timeout)
        .run(|comm| {
            if comm.rank() == 1 {
                // Stuck far longer than the timeout, then tries to join: the group has failed by then.
                std::thread::sleep(Duration::from_millis(1500));
                let mut v = vec![0.0];
                return (comm.all_reduce(&mut v, ReduceOp::Sum), started.elapsed());
            }
            let mut v = vec![0.0];
            (comm.all_reduce(&mut v, ReduceOp::Sum), started.elapsed())
        })
        .unwrap();
    let (rank0, rank0_done) = &out[0];
    match rank0 {
        Err(CommError::Timeout {
            rank: 0,
            arrived: 1,
            world_size: 2,
            waited,
            ..
        }) => assert!(*waited >= timeout, "{waited:?}"),
        other => panic!("rank 0 should time out, got {other:?}"),
    }
    assert!(
        *rank0_done < Duration::from_millis(1200),
        "rank 0 returned after {rank0_done:?}"
    );
    let (rank1, _) = &out[1];
    assert!(
        matches!(rank1, Err(CommError::PeerFailed { .. })),
        "late rank must see the failure, got {rank1:?}"
    );
}

#[test]
fn a_failing_rank_releases_waiting_peers_and_is_reported_as_root_cause() {
    #[derive(Debug)]
    enum RankError {
        Boom(usize),
        #[allow(dead_code)] // read through Debug only
        Comm(CommError),
    }
    impl From<CommError> for RankError {
        fn from(e: CommError) -> Self {
            RankError::Comm(e)
        }
    }
    let started = Instant::now();
    let result = ThreadGroup::new(4)
        .unwrap()
        .with_timeout(Duration::from_secs(60))
        .run_fallible(|comm| -> Result<(), RankError> {
            if comm.rank() == 2 {
                std::thread::sleep(Duration::from_millis(50));
                return Err(RankError::Boom(2));
            }
            let mut v = vec![1.0; 8];
            comm.all_reduce(&mut v, ReduceOp::Sum)?;
            Ok(())
        });
    // Peers are woken by the exit, not by the 60 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    match result {
        Err(RankError::Boom(2)) => {}
        other => panic!("expected rank 2's own error, got {other:?}"),
    }
}

#[test]
fn a_panicking_rank_is_reported_and_peers_do_not_hang() {
    let started = Instant::now();
    let result = ThreadGroup::new(2)
        .unwrap()
        .with_timeout(Duration::from_secs(60))
        .run(|comm| {
            if comm.rank() == 1 {
                panic!("rank one exploded");
            }
            comm.barrier()
        });
    assert!(started.elapsed() < Duration::from_secs(10));
    match result {
        Err(CommError::RankPanicked { rank: 1, message }) => {
            assert!(message.contains("rank one exploded"), "{message}")
        }
        other => panic!("expected the panic of rank 1, got {other:?}"),
    }
}

#[test]
fn a_rank_that_returns_early_makes_later_collectives_fail() {
    let out = ThreadGroup::new(2)
        .unwrap()
        .with_timeout(Duration::from_secs(60))
        .run(|comm| {
            comm.barrier()?;
            if comm.rank() == 0 {
                return Ok(());
            }
            comm.barrier()
        })
        .unwrap();
    assert!(out[0].is_ok());
    let err = out[1].as_ref().unwrap_err().to_string();
    assert!(err.contains("rank 0 returned before joining"), "{err}");
}

#[test]
fn a_thread_group_has_a_sane_size() {
    use c2n_train::comm::MAX_THREAD_RANKS;
    assert!(ThreadGroup::new(0).is_err());
    assert!(ThreadGroup::new(MAX_THREAD_RANKS).is_ok());
    let err = ThreadGroup::new(100_000).err().unwrap().to_string();
    assert!(err.contains("at most"), "{err}");
}
