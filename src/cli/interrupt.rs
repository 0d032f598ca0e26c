//! Ctrl-C during training. The first signal (SIGINT; SIGTERM and SIGHUP too: a Slurm time
//! limit, a closed terminal) lets the run finish its current update and save
//! `checkpoint-last`, from which it resumes exactly; a second one, or one outside training
//! (preparing data, decoding), ends the process at once. Without this, a signal loses every
//! update since the last evaluation's checkpoint.

use crate::train::interrupt::Interrupt;
use std::sync::Arc;

/// Installs the handler and returns what it requests (`None` when the process has a handler
/// already or the system refuses one: signals then keep their default action). `resumes`
/// says what continues the run, for the message the first signal prints.
pub fn stop_after_this_update(resumes: &str) -> Option<Arc<Interrupt>> {
    let interrupt = Interrupt::new();
    let requested = Arc::clone(&interrupt);
    let resumes = resumes.to_string();
    let installed = ctrlc::set_handler(move || {
        if requested.request() {
            eprintln!("\nstopped");
            std::process::exit(130);
        }
        eprintln!(
            "\nstopping after this update (and its evaluation, if one is due): checkpoint-last \
             is saved, and {resumes} continues from it; a second Ctrl-C stops at once, losing \
             the updates since the last saved checkpoint"
        );
    });
    installed.ok().map(|()| interrupt)
}
