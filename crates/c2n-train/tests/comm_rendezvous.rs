//! The TCP rendezvous on localhost: payload delivery, late servers, and bounded failures.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use c2n_train::comm::rendezvous::{fetch_from_rank0, share_from_rank0, RendezvousServer};
use c2n_train::comm::{CommError, LaunchEnv};

/// A port nobody listens on right now (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn payload() -> Vec<u8> {
    (0..128u32).map(|i| (i * 7 + 3) as u8).collect() // the size of an NCCL unique id
}

#[test]
fn every_rank_receives_rank_zeros_bytes() {
    let world = 4;
    let server = RendezvousServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().to_string();
    let clients: Vec<_> = (1..world)
        .map(|rank| {
            let addr = addr.clone();
            thread::spawn(move || fetch_from_rank0(&addr, rank, world, Duration::from_secs(20)))
        })
        .collect();
    server
        .serve(world, &payload(), Duration::from_secs(20))
        .unwrap();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), payload());
    }
}

#[test]
fn clients_wait_for_a_late_rank_zero() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let client = {
        let addr = addr.clone();
        thread::spawn(move || fetch_from_rank0(&addr, 1, 2, Duration::from_secs(20)))
    };
    thread::sleep(Duration::from_millis(300)); // the client retries meanwhile
    let server = RendezvousServer::bind(&addr).unwrap();
    server.serve(2, b"late", Duration::from_secs(20)).unwrap();
    assert_eq!(client.join().unwrap().unwrap(), b"late");
}

#[test]
fn server_gives_up_on_missing_ranks_and_names_them() {
    let server = RendezvousServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().to_string();
    let client = thread::spawn(move || fetch_from_rank0(&addr, 2, 4, Duration::from_secs(20)));
    let started = Instant::now();
    let err = server
        .serve(4, b"x", Duration::from_millis(500))
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("ranks [1, 3] never connected"), "{err}");
    assert_eq!(
        client.join().unwrap().unwrap(),
        b"x",
        "rank 2 was served before the timeout"
    );
}

#[test]
fn client_gives_up_when_rank_zero_never_comes() {
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = fetch_from_rank0(&addr, 1, 2, Duration::from_millis(400)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(matches!(err, CommError::Rendezvous { .. }), "{err:?}");
    assert!(err.to_string().contains("could not reach rank 0"), "{err}");
}

#[test]
fn a_silent_rank_zero_does_not_hang_the_client() {
    // Something listens but never answers (wrong service, or rank 0 stuck before serving).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let started = Instant::now();
    let err = fetch_from_rank0(&addr, 1, 2, Duration::from_millis(400)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("did not answer"), "{err}");
    drop(listener);
}

#[test]
fn world_size_disagreement_is_an_error() {
    let server = RendezvousServer::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().to_string();
    let client = thread::spawn(move || fetch_from_rank0(&addr, 1, 3, Duration::from_secs(10)));
    let err = server
        .serve(2, b"x", Duration::from_secs(10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("reports world size 3, rank 0 has 2"), "{err}");
    let client_err = client.join().unwrap().unwrap_err().to_string();
    assert!(client_err.contains("closed the connection"), "{client_err}");
}

#[test]
fn share_from_rank0_uses_the_launch_environment() {
    let port = free_port().to_string();
    let env_for = |rank: usize| {
        let port = port.clone();
        LaunchEnv::from_lookup(move |name| match name {
            "RANK" | "LOCAL_RANK" => Some(rank.to_string()),
            "WORLD_SIZE" => Some("3".into()),
            "MASTER_ADDR" => Some("127.0.0.1".into()),
            "C2N_RENDEZVOUS_PORT" => Some(port.clone()),
            _ => None,
        })
        .unwrap()
    };
    let ranks: Vec<_> = (0..3)
        .map(|rank| {
            let env = env_for(rank);
            thread::spawn(move || share_from_rank0(&env, || Ok(payload()), Duration::from_secs(20)))
        })
        .collect();
    for r in ranks {
        assert_eq!(r.join().unwrap().unwrap(), payload());
    }
}
