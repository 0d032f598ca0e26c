//! A request to stop a run early, shared between a signal handler (Ctrl-C) and the training
//! loop. This crate installs no handler: a program does (`code2nl::cli::interrupt`).
//!
//! A training loop that holds an [`Interrupt`] ([`Trainer::stop_on`](crate::trainer::Trainer::stop_on))
//! ends after the update during which the request came, saving `checkpoint-last`, from which
//! the run resumes exactly. Outside such a loop nobody acts on a request, and
//! [`Interrupt::request`] says so, so that the handler can end the process itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Interrupt {
    requested: AtomicBool,
    /// Whether a training loop is reading `requested` now.
    watched: AtomicBool,
}

impl Interrupt {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records a request to stop. Returns `true` when nothing will act on it (no training
    /// loop is watching, or this is the second request): the caller should end the process.
    pub fn request(&self) -> bool {
        let again = self.requested.swap(true, Ordering::SeqCst);
        again || !self.watched.load(Ordering::SeqCst)
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Marks the interrupt watched until the guard is dropped.
    pub(crate) fn watch(self: &Arc<Self>) -> Watching {
        self.watched.store(true, Ordering::SeqCst);
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
        self.0.watched.store(false, Ordering::SeqCst);
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
            assert!(!interrupt.request(), "the loop stops at its update's end");
            assert!(watching.is_requested());
            assert!(interrupt.request(), "a second request ends the process");
        }
        let unwatched = Interrupt::new();
        assert!(unwatched.request(), "no loop: the handler ends the process");
        assert!(unwatched.is_requested());
    }
}
