//! Ctrl-C during training. The first signal (SIGINT; SIGTERM, SIGHUP and SIGUSR1 too: see
//! [`SIGNALS`]) lets the run finish its current update and save
//! `checkpoint-last`, from which it resumes exactly; another one a second or more later, or
//! one outside training (preparing data, decoding), ends the process at once. Without this, a signal loses every
//! update since the last evaluation's checkpoint. A signal ignored when the program starts
//! (`nohup` ignores SIGHUP; a non-interactive shell's background job, SIGINT) stays ignored.
//!
//! Under a launcher (torchrun, mpirun, srun) every rank's process has the handler, and the
//! ranks stop after the same update (`c2n_train::interrupt`); only the process that
//! [`announce`]s prints the first signal's message, so that it shows once.

use crate::train::interrupt::Interrupt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether this process prints the first signal's message.
static ANNOUNCES: AtomicBool = AtomicBool::new(true);

/// Sets whether this process prints the message of a first signal (on by default): a
/// multi-rank program turns it off before its ranks start and on in rank 0.
pub fn announce(on: bool) {
    ANNOUNCES.store(on, Ordering::SeqCst);
}

/// Installs the handler and returns what it requests (`None` when the process has a handler
/// already or the system refuses one: signals then keep their default action). `resumes`
/// says what continues the run, for the message the first signal prints.
pub fn stop_after_this_update(resumes: &str) -> Option<Arc<Interrupt>> {
    install(format!(
        "stopping after this update (and its evaluation, if one is due): checkpoint-last is \
         saved, and {resumes} continues from it; another Ctrl-C a second or more later stops at \
         once, losing the updates since the last saved checkpoint"
    ))
}

/// The handler with `first` as the message of a first signal that something acts on.
/// `None` when a handler is installed already or the system refuses one: signals then keep
/// their default action.
pub fn install(first: String) -> Option<Arc<Interrupt>> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return None;
    }
    let interrupt = Interrupt::new();
    let requested = Arc::clone(&interrupt);
    let installed = listen(move |signal: &str| {
        let repeated = requested.is_requested();
        if requested.request() {
            eprintln!("\n{signal}: stopped");
            std::process::exit(130);
        }
        // A launcher passing the same Ctrl-C on: said already.
        if !repeated && ANNOUNCES.load(Ordering::SeqCst) {
            eprintln!("\n{signal}: {first}");
        }
    });
    if installed.is_none() {
        INSTALLED.store(false, Ordering::SeqCst);
    }
    installed.map(|()| interrupt)
}

/// Whether [`install`] has installed the handler.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Calls `on_signal` with the signal's name, on a thread of its own, for each signal of
/// [`SIGNALS`] that the process did not start out ignoring.
#[cfg(unix)]
fn listen(on_signal: impl Fn(&str) + Send + 'static) -> Option<()> {
    let wanted: Vec<libc::c_int> = SIGNALS
        .into_iter()
        .filter(|&signal| !ignored_at_start(signal))
        .collect();
    let mut signals = signal_hook::iterator::Signals::new(&wanted).ok()?;
    std::thread::Builder::new()
        .name("c2n-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                on_signal(signal_hook::low_level::signal_name(signal).unwrap_or("signal"));
            }
        })
        .ok()?;
    Some(())
}

#[cfg(not(unix))]
fn listen(on_signal: impl Fn(&str) + Send + 'static) -> Option<()> {
    ctrlc::set_handler(move || on_signal("Ctrl-C")).ok()
}

/// What the handler takes: a terminal's Ctrl-C; SIGTERM (`kill`, Slurm's time limit and
/// `scancel`, torchrun passing a signal on); SIGHUP (a closed terminal); SIGUSR1, which
/// mpirun passes on to every rank and leaves time for (it follows its SIGTERM with a SIGKILL
/// a second later) and which Slurm's `--signal=USR1@SECONDS` sends before a time limit.
#[cfg(unix)]
pub const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1];

/// Whether the process started with `signal` ignored (`nohup`; a non-interactive shell's
/// background job ignores SIGINT): it then stays ignored.
#[cfg(unix)]
fn ignored_at_start(signal: libc::c_int) -> bool {
    // SAFETY: reads the current disposition only (a null new action changes nothing).
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}
