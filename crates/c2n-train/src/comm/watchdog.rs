//! A bound on how long a process waits in one collective, for backends that cannot time out
//! themselves (MPI: a peer that is alive but stopped, by `kill -STOP`, a hung file system or a
//! debugger, stalls the others in their collective for ever, and MPI never notices).
//!
//! The backend wraps each collective in [`CollectiveWatchdog::watch`]; a thread of its own
//! checks, about ten times per timeout, whether the collective in flight has waited longer
//! than the timeout. If so it runs its [`StuckAction`]: by default it prints which collective
//! waited and ends this process with status 1, and the launcher (`mpirun`, `srun
//! --kill-on-bad-exit`) then ends the job, the stalled rank included. The time between
//! collectives (a rank's own forward and backward) is not bounded: only waiting is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::abort_group::StuckAction;

#[derive(Default)]
struct Watched {
    /// The collective in flight and when it began.
    in_flight: Mutex<Option<(&'static str, Instant)>>,
    stopped: AtomicBool,
}

/// Watches the collectives of one rank; dropping it stops the watching thread.
pub struct CollectiveWatchdog {
    watched: Arc<Watched>,
}

impl std::fmt::Debug for CollectiveWatchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectiveWatchdog").finish_non_exhaustive()
    }
}

/// While alive, marks a collective as in flight (see [`CollectiveWatchdog::watch`]).
pub struct Watch<'a> {
    watched: &'a Watched,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        *self
            .watched
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl CollectiveWatchdog {
    /// Starts watching for rank `rank` of `world_size`: a collective that waits longer than
    /// `timeout` makes `on_stuck` run once, with a message naming it.
    pub fn start(rank: usize, world_size: usize, timeout: Duration, on_stuck: StuckAction) -> Self {
        let watched = Arc::new(Watched::default());
        let poll = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let seen = Arc::clone(&watched);
        let watch = move || loop {
            thread::sleep(poll);
            if seen.stopped.load(Ordering::SeqCst) {
                return;
            }
            let in_flight = *seen
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((op, since)) = in_flight {
                let waited = since.elapsed();
                if waited > timeout {
                    on_stuck(&format!(
                        "rank {rank} of {world_size}: `{op}` has waited {:.0} s for the other \
                         ranks (limit {:.0} s): one is stopped, stuck or gone; ending this \
                         process so that the launcher ends the job",
                        waited.as_secs_f64(),
                        timeout.as_secs_f64()
                    ));
                    return;
                }
            }
        };
        // Without the thread there is no bound, but the job still runs.
        if let Err(e) = thread::Builder::new()
            .name(format!("c2n-collective-watchdog-{rank}"))
            .spawn(watch)
        {
            eprintln!("warning: rank {rank}: no collective watchdog: {e}");
        }
        Self { watched }
    }

    /// Marks the collective `op` as in flight until the returned guard is dropped.
    pub fn watch(&self, op: &'static str) -> Watch<'_> {
        *self
            .watched
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((op, Instant::now()));
        Watch {
            watched: &self.watched,
        }
    }
}

impl Drop for CollectiveWatchdog {
    fn drop(&mut self) {
        self.watched.stopped.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn recording() -> (StuckAction, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let action: StuckAction = Arc::new(move |message: &str| {
            let _ = tx.lock().unwrap().send(message.to_string());
        });
        (action, rx)
    }

    #[test]
    fn a_collective_that_waits_too_long_is_named() {
        let (action, said) = recording();
        let dog = CollectiveWatchdog::start(1, 4, Duration::from_millis(100), action);
        let _watch = dog.watch("all_reduce");
        let message = said
            .recv_timeout(Duration::from_secs(10))
            .expect("it fired");
        assert!(
            message.contains("rank 1 of 4: `all_reduce` has waited"),
            "{message}"
        );
    }

    #[test]
    fn short_collectives_and_long_gaps_between_them_are_fine() {
        let (action, said) = recording();
        let dog = CollectiveWatchdog::start(0, 2, Duration::from_millis(150), action);
        for _ in 0..5 {
            drop(dog.watch("broadcast"));
            // Work between collectives, longer than the timeout: not a wait.
            thread::sleep(Duration::from_millis(60));
        }
        thread::sleep(Duration::from_millis(200));
        assert!(said.try_recv().is_err());
        drop(dog);
        // A stopped watchdog is silent even if a guard were leaked.
        thread::sleep(Duration::from_millis(50));
        assert!(said.try_recv().is_err());
    }
}
