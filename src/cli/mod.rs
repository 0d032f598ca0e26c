//! Command-line definitions of the example programs, kept in the library so that a test can
//! check every flag (`tests/cli.rs`: clap's debug assertions and help text on each flag)
//! without running the programs. Each example parses its struct and calls the library;
//! nothing else lives here but helpers all programs share (closed pipes, writing results).

pub mod bleu;
pub mod checkpoint;
pub mod evaluate;
pub mod interrupt;
pub mod pipeline;
pub mod predict;
pub mod prepare;
pub mod search_rules;
pub mod sweep;
pub mod tie_order;
pub mod train;

/// Lets the program end quietly, as Unix tools do, when the reader of its output goes away
/// (`prepare … | head`). Rust ignores SIGPIPE, so printing to the closed pipe would panic
/// ("failed printing to stdout: Broken pipe"); with the default action the process just ends.
/// Call first thing in `main`, before any thread starts.
pub fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: resets one signal to its default action; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// How a program ends: `Ok` exits 0; an error prints `Error: …` with its causes on stderr and
/// exits 1, like `main() -> anyhow::Result<()>` but without the stack backtrace anyhow adds
/// when `RUST_BACKTRACE` is set: a wrong flag or a missing file is not a crash (panics keep
/// their backtraces).
pub fn finish<E>(result: Result<(), E>) -> std::process::ExitCode
where
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error_report(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `Error: message`, then the causes as anyhow lists them.
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut report = format!("Error: {error}");
    let causes: Vec<String> = std::iter::successors(error.source(), |e| e.source())
        .map(ToString::to_string)
        .collect();
    match causes.as_slice() {
        [] => {}
        [cause] => report += &format!("\n\nCaused by:\n    {cause}"),
        _ => {
            report += "\n\nCaused by:";
            for (i, cause) in causes.iter().enumerate() {
                report += &format!("\n    {i}: {cause}");
            }
        }
    }
    report
}

/// Makes a child process end with this one: on Linux the kernel sends it SIGTERM when the
/// thread that started it dies (`PR_SET_PDEATHSIG`), so a sweep killed by a signal (even
/// SIGKILL) leaves no run going on as an orphan, holding its folder's lock. Elsewhere a no-op.
/// The thread that spawns `command` must outlive the child (the sweep's runners wait for
/// theirs).
pub fn end_with_parent(command: &mut std::process::Command) -> &mut std::process::Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec the closure only makes async-signal-safe calls
        // (prctl, getppid, raise) and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGTERM);
                }
                Ok(())
            });
        }
    }
    command
}

/// Writes a program's result to standard output, flushed. A failed write (a full disk
/// behind a redirect) comes back as an error that names standard output, where `print!`
/// would panic. Used through [`outln!`](crate::outln) and [`out!`](crate::out).
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing to standard output: {e}")))
}

/// `println!` that returns an error instead of panicking ([`cli::write_stdout`](crate::cli::write_stdout)).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns an error instead of panicking ([`cli::write_stdout`](crate::cli::write_stdout)).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// `--eval-steps N` as run.py reads it: `(global_step + 1) % N == 0` in Python holds for `-N`
/// exactly when it holds for `N`, so `-1` (run.py's default) means every update and a negative
/// value counts as its magnitude; 0 is refused (a ZeroDivisionError there).
pub(crate) fn parse_eval_steps(text: &str) -> std::result::Result<u64, String> {
    let value: i64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a whole number: {e}"))?;
    match value.unsigned_abs() {
        0 => Err("must not be 0 (run.py's -1: every update)".into()),
        n => Ok(n),
    }
}

/// A count flag that must be at least 1 (`--world-size 0`: "must be at least 1", where
/// clap's range parser says "0 is not in 1..18446744073709551615").
pub(crate) fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a whole number: {e}"))?;
    if n == 0 {
        Err("must be at least 1".into())
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_reads_with_its_causes_and_no_backtrace() {
        let missing = crate::train::TrainError::io(
            "r/checkpoint-lsat",
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        );
        assert_eq!(
            super::error_report(&missing),
            "Error: r/checkpoint-lsat: no such file"
        );
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("loading the model")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let outer = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(
            super::error_report(&outer),
            "Error: loading the model\n\nCaused by:\n    disk on fire"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_ends_with_the_thread_that_started_it() {
        use std::os::unix::process::ExitStatusExt;
        // The spawning thread ends at once; without the death signal `sleep` runs 30 s.
        let mut child = std::thread::spawn(|| {
            let mut command = std::process::Command::new("sleep");
            command.arg("30");
            super::end_with_parent(&mut command).spawn().unwrap()
        })
        .join()
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    }
}
