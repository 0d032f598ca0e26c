//! A tiny TCP rendezvous: rank 0 hands the same bytes (e.g. the 128-byte NCCL unique id) to every rank.
//!
//! Rank 0 listens; every other rank connects (retrying while rank 0 is not up yet), says who it is, and
//! receives the payload. Both sides have a deadline, and the errors say which ranks never showed up, so a
//! job whose rendezvous cannot complete fails in bounded time instead of hanging.
//!
//! Wire format (little endian): the client sends `b"C2NR"`, `rank: u32`, `world_size: u32`; the server
//! answers `b"C2NR"`, `len: u32`, then `len` payload bytes. Connections that do not start with the magic
//! (port scanners, a stale job) are dropped and do not count.
//!
//! ```
//! use std::time::Duration;
//! use c2n_train::comm::rendezvous::{fetch_from_rank0, RendezvousServer};
//!
//! let server = RendezvousServer::bind("127.0.0.1:0")?; // port 0: any free port
//! let addr = server.local_addr().to_string();
//! let client = std::thread::spawn(move || fetch_from_rank0(&addr, 1, 2, Duration::from_secs(10)));
//! server.serve(2, b"nccl-id", Duration::from_secs(10))?;
//! assert_eq!(client.join().unwrap()?, b"nccl-id");
//! # Ok::<(), c2n_train::comm::CommError>(())
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use super::{CommError, CommResult, LaunchEnv};

const MAGIC: &[u8; 4] = b"C2NR";
/// Longest payload accepted (the NCCL id is 128 bytes; this only guards against garbage lengths).
const MAX_PAYLOAD: u32 = 1 << 20;
const POLL: Duration = Duration::from_millis(20);

/// Rank 0's side: a bound listener waiting for the other ranks.
#[derive(Debug)]
pub struct RendezvousServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl RendezvousServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one).
    pub fn bind(addr: &str) -> CommResult<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| CommError::Rendezvous {
            addr: addr.to_string(),
            message: format!("cannot listen: {e} (is another job using this port?)"),
        })?;
        let local = listener.local_addr().map_err(|e| CommError::Rendezvous {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            listener,
            addr: local,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `payload` to ranks `1 .. world_size` as they connect; returns when all have it.
    pub fn serve(self, world_size: usize, payload: &[u8], timeout: Duration) -> CommResult<()> {
        let fail = |message: String| CommError::Rendezvous {
            addr: self.addr.to_string(),
            message,
        };
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= MAX_PAYLOAD)
            .ok_or_else(|| fail(format!("payload of {} bytes is too long", payload.len())))?;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut served = vec![false; world_size];
        served[0] = true;
        while served.iter().any(|s| !s) {
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<usize> = (0..world_size).filter(|&r| !served[r]).collect();
                return Err(fail(format!(
                    "timed out after {timeout:?}: ranks {missing:?} never connected \
                     (did they start? do they see MASTER_ADDR/MASTER_PORT of rank 0?)"
                )));
            }
            let mut stream = match self.listener.accept() {
                Ok((stream, _peer)) => stream,
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
                {
                    thread::sleep(POLL);
                    continue;
                }
                Err(e) => return Err(fail(format!("accept failed: {e}"))),
            };
            let io = |e: std::io::Error| fail(format!("talking to a rank: {e}"));
            stream.set_nonblocking(false).map_err(io)?;
            stream
                .set_read_timeout(Some((deadline - now).max(POLL)))
                .map_err(io)?;
            let mut hello = [0u8; 12];
            if stream.read_exact(&mut hello).is_err() || &hello[..4] != MAGIC {
                continue; // not one of ours
            }
            let rank = u32::from_le_bytes([hello[4], hello[5], hello[6], hello[7]]) as usize;
            let their_world =
                u32::from_le_bytes([hello[8], hello[9], hello[10], hello[11]]) as usize;
            if their_world != world_size {
                return Err(fail(format!(
                    "rank {rank} reports world size {their_world}, rank 0 has {world_size}"
                )));
            }
            if rank == 0 || rank >= world_size {
                return Err(fail(format!("a client claims rank {rank} of {world_size}")));
            }
            if served[rank] {
                return Err(fail(format!(
                    "rank {rank} connected twice (two jobs on one port?)"
                )));
            }
            let mut reply = Vec::with_capacity(8 + payload.len());
            reply.extend_from_slice(MAGIC);
            reply.extend_from_slice(&len.to_le_bytes());
            reply.extend_from_slice(payload);
            stream.write_all(&reply).map_err(io)?;
            served[rank] = true;
        }
        Ok(())
    }
}

/// A non-zero rank's side: connects to rank 0 at `addr` and returns the payload.
pub fn fetch_from_rank0(
    addr: &str,
    rank: usize,
    world_size: usize,
    timeout: Duration,
) -> CommResult<Vec<u8>> {
    let fail = |message: String| CommError::Rendezvous {
        addr: addr.to_string(),
        message: format!("rank {rank}: {message}"),
    };
    let (rank32, world32) = match (u32::try_from(rank), u32::try_from(world_size)) {
        (Ok(r), Ok(w)) if rank > 0 && rank < world_size => (r, w),
        _ => {
            return Err(fail(format!(
                "rank {rank} of {world_size} cannot be a client"
            )))
        }
    };
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last_error = String::from("no attempt");
    let mut stream = loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(fail(format!(
                "could not reach rank 0 within {timeout:?} (last error: {last_error}); \
                 is rank 0 running, and are MASTER_ADDR/MASTER_PORT right?"
            )));
        }
        match connect_once(addr, deadline - now) {
            Ok(stream) => break stream,
            Err(e) => {
                last_error = e;
                thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
            }
        }
    };
    let io = |e: std::io::Error| {
        let why = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            format!("rank 0 did not answer within {timeout:?}")
        } else {
            e.to_string()
        };
        fail(why)
    };
    let remaining = deadline.saturating_duration_since(Instant::now()).max(POLL);
    stream.set_read_timeout(Some(remaining)).map_err(io)?;
    stream.set_write_timeout(Some(remaining)).map_err(io)?;
    let mut hello = Vec::with_capacity(12);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&rank32.to_le_bytes());
    hello.extend_from_slice(&world32.to_le_bytes());
    stream.write_all(&hello).map_err(io)?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            fail("rank 0 closed the connection (it rejected this rank; see rank 0's error)".into())
        } else {
            io(e)
        }
    })?;
    if &header[..4] != MAGIC {
        return Err(fail(
            "the server at this address is not a code2nl rendezvous".into(),
        ));
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_PAYLOAD {
        return Err(fail(format!("payload length {len} is implausible")));
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).map_err(io)?;
    Ok(payload)
}

fn connect_once(addr: &str, budget: Duration) -> Result<TcpStream, String> {
    let targets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = String::from("the name resolved to no address");
    for target in targets {
        match TcpStream::connect_timeout(&target, budget.clamp(POLL, Duration::from_secs(5))) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Hands rank 0's `make_payload()` to every rank of the job described by `env`.
///
/// Rank 0 listens on all interfaces (IPv4, or IPv6 when `MASTER_ADDR` is an IPv6 address) at
/// `env.rendezvous_port`; the others connect to
/// `env.rendezvous_addr()`. With one rank, no socket is opened.
pub fn share_from_rank0(
    env: &LaunchEnv,
    make_payload: impl FnOnce() -> CommResult<Vec<u8>>,
    timeout: Duration,
) -> CommResult<Vec<u8>> {
    if env.rank == 0 {
        let payload = make_payload()?;
        if env.world_size > 1 {
            // Listen on every interface of the address family the other ranks will dial.
            let any = if env.master_addr.contains(':') {
                "[::]"
            } else {
                "0.0.0.0"
            };
            let server = RendezvousServer::bind(&format!("{any}:{}", env.rendezvous_port))?;
            server.serve(env.world_size, &payload, timeout)?;
        }
        Ok(payload)
    } else {
        fetch_from_rank0(&env.rendezvous_addr(), env.rank, env.world_size, timeout).map_err(|e| {
            if env.master_addr_from_env {
                e
            } else {
                CommError::Rendezvous {
                    addr: env.rendezvous_addr(),
                    message: format!(
                        "{e} (MASTER_ADDR is unset; localhost only works on one node)"
                    ),
                }
            }
        })
    }
}
