//! A request to stop a run early, shared between a signal handler (Ctrl-C) and the training
//! loop. This crate installs no handler: a program does (`code2nl::cli::interrupt`).
//!
//! A training loop that holds an [`Interrupt`] ([`Trainer::stop_on`](crate::trainer::Trainer::stop_on))
//! ends after the update during which the request came, saving `checkpoint-last`, from which
//! the run resumes exactly. Outside such a loop nobody acts on a request, and
//! [`Interrupt::request`] says so, so that the handler can end the process itself.
//!
//! With several ranks every rank holds one and the ranks vote after each update, so that a
//! request on any rank stops them all after the same update (a Slurm time limit signals every
//! task; a Ctrl-C reaches every process of the terminal's job).
//!
//! A launcher passes a terminal's Ctrl-C on to its workers, which the terminal signalled
//! already (torchrun sends the SIGINT it got to every worker): requests within
//! [`SAME_REQUEST_WINDOW`] of the first count as that one. Only a later one ends the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Requests this close to the first are the same request passed on (see the module docs).
pub const SAME_REQUEST_WINDOW: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Debug, Default)]
pub struct Interrupt {
    requested: AtomicBool,
    /// How many training loops read `requested` now (ranks that are threads share one).
    watchers: AtomicUsize,
    /// When the first request came.
    first_request: OnceLock<Instant>,
}

impl Interrupt {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a request to stop. Returns `true` when nothing will act on it (no training
    /// loop is watching, or this is a second request, [`SAME_REQUEST_WINDOW`] or more after
    /// the first): the caller should end the process.
    pub fn request(&self) -> bool {
        self.request_at(Instant::now())
    }

    fn request_at(&self, now: Instant) -> bool {
        let first = *self.first_request.get_or_init(|| now);
        if self.requested.swap(true, Ordering::SeqCst) {
            // The same request passed on is never a reason to end the process, even once
            // the loop is over (a rank that has finished while rank 0 still saves).
            return now.saturating_duration_since(first) >= SAME_REQUEST_WINDOW;
        }
        self.watchers.load(Ordering::SeqCst) == 0
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Marks the interrupt watched until the guard is dropped.
    pub(crate) fn watch(self: &Arc<Self>) -> Watching {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        Watching(Arc::clone(self))
    }
}

/// Holds an [`Interrupt`] watched; dropping it (the loop's end, an error) releases it.
pub(crate) struct Watching(Arc<Interrupt>);

impl Watching {
    pub(crate) fn is_requested(&self) -> bool {
        self.0.is_requested()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_left_to_the_loop_only_while_one_watches_and_only_once() {
        let interrupt = Interrupt::new();
        {
            let watching = interrupt.watch();
            assert!(!watching.is_requested());
            let first = Instant::now();
            assert!(
                !interrupt.request_at(first),
                "the loop stops at its update's end"
            );
            assert!(watching.is_requested());
            assert!(
                !interrupt.request_at(first + SAME_REQUEST_WINDOW / 2),
                "a launcher passing the same Ctrl-C on"
            );
            assert!(
                interrupt.request_at(first + SAME_REQUEST_WINDOW),
                "a second request ends the process"
            );
        }
        let unwatched = Interrupt::new();
        let first = Instant::now();
        assert!(
            unwatched.request_at(first),
            "no loop: the handler ends the process"
        );
        assert!(unwatched.is_requested());

        // A request acted on, then the loop ends (a rank done while rank 0 saves): the
        // same request passed on does not end the process; a later one does.
        let interrupt = Interrupt::new();
        let watching = interrupt.watch();
        assert!(!interrupt.request_at(first));
        drop(watching);
        assert!(!interrupt.request_at(first + SAME_REQUEST_WINDOW / 2));
        assert!(interrupt.request_at(first + SAME_REQUEST_WINDOW));
    }
}
