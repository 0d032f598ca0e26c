//! Ctrl-C during training. The first signal (SIGINT; SIGTERM and SIGHUP too: a Slurm time
//! limit, a closed terminal) lets the run finish its current update and save
//! `checkpoint-last`, from which it resumes exactly; a second one, or one outside training
//! (preparing data, decoding), ends the process at once. Without this, a signal loses every
//! update since the last evaluation's checkpoint. A signal ignored when the program starts
//! (`nohup` ignores SIGHUP; a non-interactive shell's background job, SIGINT) stays ignored.

use crate::train::interrupt::Interrupt;
use std::sync::Arc;

/// Installs the handler and returns what it requests (`None` when the process has a handler
/// already or the system refuses one: signals then keep their default action). `resumes`
/// says what continues the run, for the message the first signal prints.
pub fn stop_after_this_update(resumes: &str) -> Option<Arc<Interrupt>> {
    install(format!(
        "stopping after this update (and its evaluation, if one is due): checkpoint-last is \
         saved, and {resumes} continues from it; a second Ctrl-C stops at once, losing the \
         updates since the last saved checkpoint"
    ))
}

/// The handler with `first` as the message of a first signal that something acts on.
pub fn install(first: String) -> Option<Arc<Interrupt>> {
    #[cfg(unix)]
    let ignored = ignored_signals();
    let interrupt = Interrupt::new();
    let requested = Arc::clone(&interrupt);
    ctrlc::set_handler(move || {
        if requested.request() {
            eprintln!("\nstopped");
            std::process::exit(130);
        }
        eprintln!("\n{first}");
    })
    .ok()?;
    #[cfg(unix)]
    for signal in ignored {
        // SAFETY: sets a signal's disposition to "ignore"; no Rust code runs in a handler.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    Some(interrupt)
}

/// The signals the handler takes over that the process was started ignoring.
#[cfg(unix)]
fn ignored_signals() -> Vec<libc::c_int> {
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        .filter(|&signal| {
            // SAFETY: reads the current disposition only (a null new action changes nothing).
            unsafe {
                let mut current: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut current) == 0
                    && current.sa_sigaction == libc::SIG_IGN
            }
        })
        .collect()
}
