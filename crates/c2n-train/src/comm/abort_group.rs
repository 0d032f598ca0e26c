//! Ranks as threads of one process, each owning a communicator that a failing peer can abort.
//!
//! This is the failure handling of NCCL ranks as threads (one per GPU), kept apart from NCCL so
//! that the CPU tests can check it with a stand-in communicator. A rank that waits for a peer
//! that failed waits inside the GPU, where no timeout of ours reaches it; NCCL's remedy is to
//! abort the waiting rank's communicator, which ends its pending collectives. So:
//!
//! - each rank's communicator sits in a slot that the rank locks only while it queues a
//!   collective ([`AbortableGroup::with_comm`]);
//! - a rank that returns an error or panics empties every other rank's slot; dropping a
//!   communicator aborts it (cudarc's `Comm` calls `ncclCommAbort` on drop), and the peers'
//!   next collective fails with [`CommError::PeerFailed`];
//! - a watchdog bounds what an abort cannot reach: if some rank is still running `timeout` after
//!   the first failure, the process prints the failure and exits with status 1, as `mpirun` or
//!   `torchrun` would end a job whose rank died.
//!
//! A rank that returns `Ok` aborts nobody: its collectives have completed, and the peers may
//! still be finishing theirs.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use super::threads::panic_message;
use super::{CommError, CommResult};

/// What the watchdog does when ranks are still running `timeout` after a failure: gets the
/// message that names the failure and the ranks still running.
pub type StuckAction = Arc<dyn Fn(&str) + Send + Sync>;

/// The default [`StuckAction`]: print the message and end the process with status 1.
pub fn exit_process() -> StuckAction {
    Arc::new(|message: &str| {
        use std::io::Write;
        eprintln!("error: {message}");
        let _ = std::io::stderr().flush();
        // `_exit`, not `exit`: the libraries' exit handlers (CUDA, NCCL, MPI) could wait for
        // the very threads that are stuck.
        // SAFETY: ends the process at once; nothing after it runs.
        unsafe { libc::_exit(1) }
    })
}

/// The communicators of a group of thread ranks, one slot per rank.
pub struct AbortableGroup<C> {
    slots: Vec<Mutex<Option<C>>>,
    running: Vec<AtomicBool>,
    /// Ranks that returned an error or panicked, with why, in the order they did.
    failures: Mutex<Vec<(usize, String)>>,
}

impl<C> fmt::Debug for AbortableGroup<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortableGroup")
            .field("world_size", &self.slots.len())
            .field("failures", &*lock(&self.failures))
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A rank that panicked while holding a lock left nothing half-written that matters here.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C> AbortableGroup<C> {
    /// A group whose rank `r` owns `comms[r]`.
    pub fn new(comms: Vec<C>) -> Self {
        Self {
            running: comms.iter().map(|_| AtomicBool::new(false)).collect(),
            slots: comms.into_iter().map(|c| Mutex::new(Some(c))).collect(),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.slots.len()
    }

    /// Runs `f` on slot `slot`'s communicator, holding the slot so that no peer aborts it
    /// meanwhile; `rank` and `op` name the caller in the error returned when it was aborted.
    pub fn with_comm<R>(
        &self,
        slot: usize,
        rank: usize,
        op: &'static str,
        f: impl FnOnce(&C) -> R,
    ) -> CommResult<R> {
        let guard = lock(&self.slots[slot]);
        match guard.as_ref() {
            Some(comm) => Ok(f(comm)),
            None => Err(CommError::PeerFailed {
                rank,
                op,
                reason: self.abort_reason(),
            }),
        }
    }

    fn abort_reason(&self) -> String {
        match lock(&self.failures).first() {
            Some((rank, message)) => {
                format!("rank {rank} failed and this rank's communicator was aborted: {message}")
            }
            None => "this rank's communicator was aborted".into(),
        }
    }

    /// Records `rank`'s failure; returns whether it was the group's first.
    fn record_failure(&self, rank: usize, message: String) -> bool {
        let mut failures = lock(&self.failures);
        failures.push((rank, message));
        failures.len() == 1
    }

    /// Aborts every communicator but `rank`'s, each as soon as its rank is not queueing a
    /// collective (a rank stuck inside one keeps its lock: the watchdog ends that case, and the
    /// other slots are aborted meanwhile).
    fn abort_all_but(&self, rank: usize) {
        let mut left: Vec<usize> = (0..self.slots.len()).filter(|&r| r != rank).collect();
        while !left.is_empty() {
            left.retain(|&other| !self.try_abort(other));
            if !left.is_empty() {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Empties `slot`, dropping (and so aborting) its communicator, unless its rank holds it;
    /// returns whether it is empty now.
    fn try_abort(&self, slot: usize) -> bool {
        let taken = match self.slots[slot].try_lock() {
            Ok(mut guard) => guard.take(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
            Err(TryLockError::WouldBlock) => return false,
        };
        // cudarc's `Comm` panics in its drop when the abort fails: that must not stop the
        // other aborts, nor take the place of the failure being handled.
        if let Some(comm) = taken {
            if catch_unwind(AssertUnwindSafe(move || drop(comm))).is_err() {
                eprintln!("warning: aborting rank {slot}'s communicator failed");
            }
        }
        true
    }

    fn still_running(&self) -> Vec<usize> {
        (0..self.running.len())
            .filter(|&r| self.running[r].load(Ordering::SeqCst))
            .collect()
    }
}

/// Marks a rank as no longer running when its thread ends, however it ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Runs `body(rank)` for every rank of `group`, each on its own thread, and returns the results
/// in rank order, or the error of the rank that failed first (the others typically fail because
/// it did). A panic becomes [`CommError::RankPanicked`]. `on_stuck` runs (on a watchdog thread)
/// if ranks are still running `timeout` after the first failure.
pub fn run_ranks<C, T, E, F>(
    group: &Arc<AbortableGroup<C>>,
    timeout: Duration,
    on_stuck: StuckAction,
    body: F,
) -> Result<Vec<T>, E>
where
    C: Send + 'static,
    T: Send,
    E: Send + From<CommError> + fmt::Display,
    F: Fn(usize) -> Result<T, E> + Sync,
{
    let world_size = group.world_size();
    for running in &group.running {
        running.store(true, Ordering::SeqCst);
    }
    let results: Vec<Result<T, E>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..world_size)
            .map(|rank| {
                let body = &body;
                let on_stuck = &on_stuck;
                let spawned = thread::Builder::new()
                    .name(format!("c2n-rank-{rank}"))
                    .spawn_scoped(scope, move || {
                        let _running = Running(&group.running[rank]);
                        match catch_unwind(AssertUnwindSafe(|| body(rank))) {
                            Ok(Ok(value)) => Ok(value),
                            Ok(Err(e)) => {
                                rank_failed(group, rank, e.to_string(), timeout, on_stuck);
                                Err(e)
                            }
                            Err(payload) => {
                                let message = panic_message(payload);
                                let reason = format!("panicked: {message}");
                                rank_failed(group, rank, reason, timeout, on_stuck);
                                Err(CommError::RankPanicked { rank, message }.into())
                            }
                        }
                    });
                spawned.map_err(|e| {
                    // The ranks already started would wait for this one for ever.
                    let message = format!("could not start rank {rank}'s thread: {e}");
                    group.running[rank].store(false, Ordering::SeqCst);
                    rank_failed(group, rank, message.clone(), timeout, on_stuck);
                    message
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(rank, spawned)| match spawned {
                Ok(handle) => handle.join().unwrap_or_else(|payload| {
                    Err(CommError::RankPanicked {
                        rank,
                        message: panic_message(payload),
                    }
                    .into())
                }),
                Err(message) => Err(CommError::Backend {
                    backend: "threads",
                    message,
                }
                .into()),
            })
            .collect()
    });
    // The root cause: the rank that failed first (a thread that failed to start or join is
    // in no record; any failed rank then).
    let mut results = results;
    let first_failed = lock(&group.failures).first().map(|(rank, _)| *rank);
    let failed = first_failed
        .filter(|&rank| results[rank].is_err())
        .or_else(|| results.iter().position(Result::is_err));
    if let Some(rank) = failed {
        results.swap_remove(rank)?;
    }
    results.into_iter().collect()
}

fn rank_failed<C: Send + 'static>(
    group: &Arc<AbortableGroup<C>>,
    rank: usize,
    message: String,
    timeout: Duration,
    on_stuck: &StuckAction,
) {
    // The watchdog before the abort: aborting a peer can itself wait for it.
    if group.record_failure(rank, message.clone()) {
        spawn_watchdog(
            Arc::clone(group),
            rank,
            message,
            timeout,
            Arc::clone(on_stuck),
        );
    }
    group.abort_all_but(rank);
}

fn spawn_watchdog<C: Send + 'static>(
    group: Arc<AbortableGroup<C>>,
    rank: usize,
    message: String,
    timeout: Duration,
    on_stuck: StuckAction,
) {
    let watch = move || {
        let others_running = || -> Vec<usize> {
            group
                .still_running()
                .into_iter()
                .filter(|&r| r != rank)
                .collect()
        };
        let start = Instant::now();
        while start.elapsed() < timeout {
            if others_running().is_empty() {
                return;
            }
            thread::sleep((timeout - start.elapsed().min(timeout)).min(Duration::from_millis(20)));
        }
        let stuck = others_running();
        if !stuck.is_empty() {
            on_stuck(&format!(
                "rank {rank} failed: {message}; rank(s) {stuck:?} did not stop within {timeout:?} \
                 after their communicators were aborted, so the process ends here"
            ));
        }
    };
    // Detached on purpose: it must outlive a scope that never ends. Without a thread there is
    // no bound, but the ranks may still all stop by themselves.
    if let Err(e) = thread::Builder::new()
        .name("c2n-rank-watchdog".into())
        .spawn(watch)
    {
        eprintln!("warning: no watchdog for the failed rank {rank}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A stand-in communicator: dropping it (the abort) closes a channel its rank may wait on.
    struct FakeComm {
        _aborted: mpsc::Sender<()>,
    }

    /// Rank r's wait for its abort, taken once by that rank's thread.
    type AbortWait = Mutex<Option<mpsc::Receiver<()>>>;

    fn group(world: usize) -> (Arc<AbortableGroup<FakeComm>>, Vec<AbortWait>) {
        let (comms, waits): (Vec<_>, Vec<_>) = (0..world)
            .map(|_| {
                let (tx, rx) = mpsc::channel();
                (FakeComm { _aborted: tx }, Mutex::new(Some(rx)))
            })
            .unzip();
        (Arc::new(AbortableGroup::new(comms)), waits)
    }

    fn never_stuck() -> StuckAction {
        Arc::new(|message: &str| panic!("the watchdog fired: {message}"))
    }

    #[test]
    fn results_come_back_in_rank_order() {
        let (group, _waits) = group(3);
        let out = run_ranks(&group, Duration::from_secs(5), never_stuck(), |rank| {
            group.with_comm(rank, rank, "probe", |_| rank * 10)
        })
        .unwrap();
        assert_eq!(out, vec![0, 10, 20]);
    }

    #[test]
    fn a_failing_rank_aborts_a_waiting_peer_and_its_error_is_returned() {
        let (group, waits) = group(2);
        let start = Instant::now();
        let err = run_ranks(&group, Duration::from_secs(30), never_stuck(), |rank| {
            if rank == 1 {
                return Err(CommError::InvalidInput("rank 1 ran out of memory".into()));
            }
            // Rank 0 "waits in a collective" until its communicator is dropped.
            let wait = lock(&waits[0]).take().unwrap();
            let woke = wait.recv_timeout(Duration::from_secs(20));
            assert!(woke.is_err(), "only the abort ends this wait");
            group.with_comm(0, 0, "all_reduce", |_| ())
        })
        .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(
            err.to_string().contains("rank 1 ran out of memory"),
            "{err}"
        );
        let failures = lock(&group.failures).clone();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert_eq!(failures[0].0, 1);
        assert!(
            failures[1].1.contains("`all_reduce` aborted") && failures[1].1.contains("rank 1"),
            "{failures:?}"
        );
    }

    #[test]
    fn a_panic_is_reported_and_aborts_the_peers() {
        let (group, waits) = group(3);
        let start = Instant::now();
        let err = run_ranks(&group, Duration::from_secs(30), never_stuck(), |rank| {
            if rank == 2 {
                panic!("bad shape on rank 2");
            }
            let wait = lock(&waits[rank]).take().unwrap();
            let _ = wait.recv_timeout(Duration::from_secs(20));
            group.with_comm(rank, rank, "broadcast", |_| ())
        })
        .unwrap_err();
        // The peers were aborted, not left to wait out their 20 s.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        match err {
            CommError::RankPanicked { rank, message } => {
                assert_eq!(rank, 2);
                assert!(message.contains("bad shape"), "{message}");
            }
            other => panic!("expected the panic, got {other}"),
        }
    }

    #[test]
    fn the_watchdog_names_a_rank_the_abort_cannot_reach() {
        let (group, _waits) = group(2);
        let (release, stuck_wait) = mpsc::channel::<()>();
        let stuck_wait = Mutex::new(Some(stuck_wait));
        let said = Arc::new(Mutex::new(None::<String>));
        let on_stuck: StuckAction = {
            let said = Arc::clone(&said);
            let release = Mutex::new(release);
            Arc::new(move |message: &str| {
                *lock(&said) = Some(message.to_string());
                let _ = lock(&release).send(());
            })
        };
        let err = run_ranks(&group, Duration::from_millis(200), on_stuck, |rank| {
            if rank == 0 {
                return Err(CommError::InvalidInput("rank 0 gave up".into()));
            }
            // Waits on something the abort does not end (a hung kernel, say).
            let wait = lock(&stuck_wait).take().unwrap();
            wait.recv_timeout(Duration::from_secs(20))
                .map_err(|_| CommError::InvalidInput("never released".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("rank 0 gave up"), "{err}");
        let said = lock(&said).clone().expect("the watchdog fired");
        assert!(
            said.contains("rank 0 failed") && said.contains("[1]"),
            "{said}"
        );
    }

    #[test]
    fn ranks_that_all_end_in_time_leave_the_watchdog_silent() {
        let (group, _waits) = group(2);
        let fired = Arc::new(AtomicBool::new(false));
        let on_stuck: StuckAction = {
            let fired = Arc::clone(&fired);
            Arc::new(move |_: &str| fired.store(true, Ordering::SeqCst))
        };
        let err = run_ranks(&group, Duration::from_millis(50), on_stuck, |rank| {
            if rank == 1 {
                Err(CommError::InvalidInput("rank 1 failed".into()))
            } else {
                Ok(())
            }
        });
        assert!(err.is_err());
        thread::sleep(Duration::from_millis(200));
        assert!(!fired.load(Ordering::SeqCst));
    }
}
