//! Progress of long work (training updates, decoding, summarizing) on stderr, shared by the
//! trainer, the pipeline and the example programs.
//!
//! On a terminal it is indicatif's bar. Elsewhere (stderr redirected to a log file, a pipe,
//! a batch job's output) indicatif draws nothing and its `println` is silent, so a long run
//! would leave no trace until its end: there [`Progress`] writes a plain line every
//! [`PLAIN_EVERY`] instead, prints [`Progress::println`] messages as they come, and ends with
//! a line of totals. (A sweep runs its points with `progress = false`: their `log.txt` holds
//! the pipeline's stage lines only.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain lines come when stderr is no terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);

/// Where plain lines go: stderr, or a test's buffer.
type Sink = Box<dyn Fn(&str) + Send + Sync>;

/// A progress display: the bar on a terminal, plain lines elsewhere, nothing when hidden.
pub struct Progress {
    bar: ProgressBar,
    plain: Option<PlainLines>,
}

struct PlainLines {
    /// What the totals line says was done ("decoded", "trained").
    label: String,
    unit: &'static str,
    every: Duration,
    started: Instant,
    /// The position work started from (a resumed run's updates done before): rates and ETA
    /// count what this process did.
    base: std::sync::atomic::AtomicU64,
    /// When the last line was written.
    last: Mutex<Instant>,
    sink: Sink,
}

impl Progress {
    /// Shows nothing (another rank's work, `--quiet`, a short single prediction).
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            plain: None,
        }
    }

    /// Counts examples (`what`: the verb shown), with rate, and with ETA when the total `len`
    /// is known.
    pub fn examples(len: Option<u64>, what: &str) -> Self {
        Self::counting(len, what, "examples")
    }

    /// Counts training updates up to `target`.
    pub fn updates(target: u64) -> Self {
        Self::on_stderr(bar_for(Some(target)), "trained", "updates")
    }

    /// Counts `unit`s (lines read, files written) of work named `label`, up to `len` when
    /// known.
    pub fn counting(len: Option<u64>, label: &str, unit: &'static str) -> Self {
        let progress = Self::on_stderr(bar_for(len), label, unit);
        progress.set_message(label.to_string());
        progress
    }

    /// `bar` on stderr, or plain lines to stderr when indicatif would hide it.
    fn on_stderr(bar: ProgressBar, label: &str, unit: &'static str) -> Self {
        let plain = bar.is_hidden().then(|| {
            let sink: Sink = Box::new(|line: &str| eprintln!("{line}"));
            PlainLines::new(label, unit, PLAIN_EVERY, sink)
        });
        let bar = if plain.is_some() {
            // Keeps position, length and rate for the plain lines; draws nothing.
            let hidden = ProgressBar::hidden();
            if let Some(len) = bar.length() {
                hidden.set_length(len);
            }
            hidden
        } else {
            bar
        };
        style(&bar, unit);
        Self { bar, plain }
    }

    /// Plain lines to `sink` at most every `every` (what stderr gets when it is no terminal).
    pub fn plain_lines(
        len: Option<u64>,
        label: &str,
        unit: &'static str,
        every: Duration,
        sink: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        let bar = ProgressBar::hidden();
        if let Some(len) = len {
            bar.set_length(len);
        }
        Self {
            bar,
            plain: Some(PlainLines::new(label, unit, every, Box::new(sink))),
        }
    }

    /// Work resumes at `position` (done by an earlier process): shown, but not counted in
    /// this process's rate and ETA.
    pub fn start_at(&self, position: u64) {
        self.bar.set_position(position);
        if let Some(plain) = &self.plain {
            plain
                .base
                .store(position, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `n` more done.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.tick();
    }

    /// `position` done in all.
    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
        self.tick();
    }

    /// The text after the counts (loss, learning rate, rates).
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// A line of its own (an evaluation's result), above the bar or among the plain lines.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.plain {
            Some(plain) => (plain.sink)(line.as_ref()),
            None => self.bar.println(line.as_ref()),
        }
    }

    /// Clears the bar; plain lines end with the totals.
    pub fn finish(&self) {
        if let Some(plain) = &self.plain {
            let seconds = plain.started.elapsed().as_secs_f64();
            let done = plain.done(self.bar.position());
            let rate = if seconds > 0.0 {
                done as f64 / seconds
            } else {
                0.0
            };
            (plain.sink)(&format!(
                "{}: {done} {} in {seconds:.1} s ({rate:.1}/s)",
                plain.label, plain.unit
            ));
        }
        self.bar.finish_and_clear();
    }

    /// Clears the bar and writes nothing more (for work that reports its own totals).
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Writes a plain line if the last one is `every` old.
    fn tick(&self) {
        let Some(plain) = &self.plain else { return };
        let now = Instant::now();
        {
            let Ok(mut last) = plain.last.lock() else {
                return;
            };
            if now.duration_since(*last) < plain.every {
                return;
            }
            *last = now;
        }
        (plain.sink)(&self.plain_line(plain));
    }

    fn plain_line(&self, plain: &PlainLines) -> String {
        let position = self.bar.position();
        let elapsed = format_duration(plain.started.elapsed());
        let counts = match self.bar.length() {
            Some(len) if len > 0 => {
                let percent = 100.0 * position as f64 / len as f64;
                let mut counts = format!("{position}/{len} {} ({percent:.0}%)", plain.unit);
                let done = plain.done(position);
                if done > 0 && position < len {
                    let seconds = plain.started.elapsed().as_secs_f64();
                    let left = seconds * (len - position) as f64 / done as f64;
                    counts += &format!(", ETA {}", format_duration(Duration::from_secs_f64(left)));
                }
                counts
            }
            _ => format!("{position} {}", plain.unit),
        };
        let message = self.bar.message();
        if message.is_empty() {
            format!("[{elapsed}] {counts}")
        } else {
            format!("[{elapsed}] {counts} | {message}")
        }
    }
}

impl PlainLines {
    /// Done by this process, of `position` in all.
    fn done(&self, position: u64) -> u64 {
        position.saturating_sub(self.base.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn new(label: &str, unit: &'static str, every: Duration, sink: Sink) -> Self {
        let now = Instant::now();
        Self {
            label: label.to_string(),
            unit,
            every,
            started: now,
            base: std::sync::atomic::AtomicU64::new(0),
            last: Mutex::new(now),
            sink,
        }
    }
}

fn bar_for(len: Option<u64>) -> ProgressBar {
    match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::no_length(),
    }
}

fn style(bar: &ProgressBar, unit: &str) {
    let template = if bar.length().is_some() {
        format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}} | {{msg}}")
    } else {
        format!("{{elapsed_precise}} {{pos}} {unit}, {{per_sec}} | {{msg}}")
    };
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
}

/// `h:mm:ss`.
fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn collecting(len: Option<u64>, every: Duration) -> (Progress, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let progress =
            Progress::plain_lines(len, "trained", "updates", every, move |line: &str| {
                sink.lock().unwrap().push(line.to_string())
            });
        (progress, lines)
    }

    #[test]
    fn plain_lines_count_and_carry_messages_and_totals() {
        let (progress, lines) = collecting(Some(10), Duration::ZERO);
        progress.set_message("loss 2.5000".into());
        progress.set_position(4);
        progress.println("eval after update 4: dev loss 2.1");
        progress.inc(1);
        progress.finish();
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].contains("4/10 updates (40%)") && lines[0].ends_with("| loss 2.5000"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("ETA"), "{}", lines[0]);
        assert_eq!(lines[1], "eval after update 4: dev loss 2.1");
        assert!(lines[2].contains("5/10 updates (50%)"), "{}", lines[2]);
        assert!(
            lines[3].starts_with("trained: 5 updates in "),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn a_resumed_count_times_only_its_own_work() {
        let (progress, lines) = collecting(Some(100), Duration::ZERO);
        progress.start_at(90);
        progress.set_position(95);
        progress.finish();
        let lines = lines.lock().unwrap();
        assert!(lines[0].contains("95/100 updates (95%)"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("trained: 5 updates in "),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn plain_lines_wait_for_their_interval() {
        let (progress, lines) = collecting(None, Duration::from_secs(3600));
        for _ in 0..100 {
            progress.inc(3);
        }
        progress.println("kept at once");
        assert_eq!(*lines.lock().unwrap(), ["kept at once"]);
        progress.finish();
        assert!(lines.lock().unwrap()[1].starts_with("trained: 300 updates in "));
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(format_duration(Duration::from_secs(3_725)), "1:02:05");
        assert_eq!(format_duration(Duration::from_secs(59)), "0:00:59");
    }
}
