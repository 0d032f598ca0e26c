//! Driving the loop: `advance` step by step or `run` to the end, with metrics lines,
//! progress, and the output folder taken before the first write.

use crate::checkpoint_dir;
use crate::checkpoint_policy::LAST;
use crate::comm::{Communicator, ReduceOp, SingleComm};
use crate::config::TRAIN_CONFIG_FILE;
use crate::metrics::{MetricRecord, MetricsLog};
use crate::progress::Progress;
use crate::run_lock::RunLock;
use crate::Result;
use std::path::Path;
use std::time::Instant;

use super::{StepReport, Throughput, TrainSummary, Trainer, RUN_WHAT};

impl Trainer {
    /// Runs the next micro-step (and the evaluation that may follow it). `None` once the
    /// loop is over (end of schedule, `stop_after`, or early stopping).
    pub fn advance(&mut self) -> Result<Option<StepReport>> {
        self.advance_with(&SingleComm)
    }

    /// [`Trainer::advance`] as one rank of `comm` (every rank must call it in lockstep).
    ///
    /// Rank 0 appends a `train` line to `metrics.jsonl` every `log_every` updates and
    /// checkpoints at each evaluation. A one-rank loop driven this way ends with
    /// `save_checkpoint(LAST, true)` to keep its last updates, as [`Trainer::run`] does; with
    /// several ranks, end with [`Trainer::run_with`] (it gathers the ranks' pending
    /// gradients into rank 0 before that save).
    pub fn advance_with(&mut self, comm: &dyn Communicator) -> Result<Option<StepReport>> {
        if self.stopped_early {
            return Ok(None);
        }
        let Some(step) = self.driver.next_step() else {
            return Ok(None);
        };
        if self.run_clock.is_none() {
            // A loop driven by `advance` alone counts its time from its first step.
            self.run_clock = Some((Instant::now(), self.state.train_seconds));
        }
        if !self.log_window_started {
            // Throughput counts from the first step, not from construction or a resume.
            self.log_window = Throughput::default();
            self.log_window_started = true;
        }
        let (loss, tokens, examples) = self.train_micro_step_with(&step, comm)?;
        self.log_window.add(examples as u64, tokens);
        let lr = step
            .update
            .then(|| self.state.schedule.lr_at(step.updates_before));
        if let Some(lr) = lr {
            let global_step = step.updates_before + 1;
            let every = self.config.log_every;
            if every > 0 && global_step.is_multiple_of(every) {
                // An evaluated update's `eval` line carries the training loss instead.
                if !step.evaluate {
                    self.log_train_line(global_step, step.data_epoch, lr, comm)?;
                }
                self.log_window = Throughput::default();
            }
        }
        let evaluation = if step.evaluate {
            Some(self.evaluate_with(step.data_epoch, comm)?)
        } else {
            None
        };
        Ok(Some(StepReport {
            step,
            loss,
            lr,
            examples: examples as u64,
            tokens,
            evaluation,
        }))
    }

    /// Rank 0's `train` line after update `global_step` (a `log_every` multiple).
    fn log_train_line(
        &mut self,
        global_step: u64,
        epoch: u64,
        lr: f64,
        comm: &dyn Communicator,
    ) -> Result<()> {
        // No batch since the last evaluation (its reset): a mean of nothing.
        let has_loss = self.state.running_loss.batches > 0;
        if !comm.is_main() || !has_loss {
            return Ok(());
        }
        let (samples_per_s, tokens_per_s) = self.log_window.rates();
        self.take_output_dir()?;
        self.log(MetricRecord::Train {
            global_step,
            epoch,
            loss: self.state.running_loss.mean(),
            lr,
            samples_per_s,
            tokens_per_s,
        })?;
        Ok(())
    }

    fn open_metrics(&mut self) -> Result<()> {
        if self.metrics.is_none() {
            let dir = &self.config.output_dir;
            crate::output_dir::create(dir)?;
            // The checkpoint's step, not the current one: a loop driven by `advance` opens the
            // log at its first line, after some steps of its own.
            self.metrics = Some(MetricsLog::open(
                &dir.join("metrics.jsonl"),
                self.resumed_at,
            )?);
        }
        Ok(())
    }

    /// Appends to `metrics.jsonl`; callers make sure only rank 0 logs.
    pub(super) fn log(&mut self, record: MetricRecord) -> Result<()> {
        self.open_metrics()?;
        match &mut self.metrics {
            Some(m) => m.append(&record),
            None => Ok(()),
        }
    }

    /// `(saved, now)` when this resumed run continues on another number of ranks than the
    /// run it resumes. Allowed (a node may be lost), but the result will not equal an
    /// uninterrupted run's: dropout masks and the split of each batch follow the ranks.
    pub fn resumed_on_other_world_size(&self) -> Option<(usize, usize)> {
        self.world_size_change
    }

    /// Rank 0's preparation of the output folder before its first write there: the folder's
    /// lock, and for a fresh run the earlier run's files moved aside, then
    /// `train_config.json`. [`Trainer::from_config_on`] takes the lock and moves the earlier
    /// run aside at once; a trainer built with [`Trainer::new`] does both here.
    pub(super) fn take_output_dir(&mut self) -> Result<()> {
        if self.output_dir_taken {
            return Ok(());
        }
        if self.run_lock.is_none() {
            self.run_lock = Some(RunLock::acquire(&self.config.output_dir, RUN_WHAT)?);
        }
        if self.resumed_at.is_none() && !self.earlier_run_checked {
            self.set_aside_earlier_run()?;
        }
        self.config
            .save_json(&self.config.output_dir.join(TRAIN_CONFIG_FILE))?;
        self.output_dir_taken = true;
        Ok(())
    }

    /// Moves an earlier run found in the output folder aside (`OUTPUT/earlier-run-N`), once;
    /// an init from that run's checkpoint is then recorded where it went.
    pub(super) fn set_aside_earlier_run(&mut self) -> Result<()> {
        self.earlier_run = checkpoint_dir::set_aside_earlier_run(&self.config.output_dir)?;
        self.earlier_run_checked = true;
        if let Some(earlier) = &self.earlier_run {
            let init = Path::new(&self.config.init);
            if let Some(moved) = moved_along(init, &self.config.output_dir, &earlier.dir) {
                self.config.init = moved.to_string_lossy().into_owned();
            }
        }
        Ok(())
    }

    /// Wall seconds of `run` so far over the whole run, resumes included (only time that
    /// checkpoints kept: a killed process's work after its last save is redone).
    pub fn train_seconds(&self) -> f64 {
        match self.run_clock {
            Some((start, before)) => before + start.elapsed().as_secs_f64(),
            None => self.state.train_seconds,
        }
    }

    /// Where this fresh run moved the earlier run it found in its output folder
    /// (`OUTPUT/earlier-run-N`) and its size, if there was one.
    pub fn earlier_run_set_aside(&self) -> Option<&checkpoint_dir::EarlierRun> {
        self.earlier_run.as_ref()
    }

    /// Runs the loop to its end (or `stop_after`, or early stopping) and writes
    /// `checkpoint-last`.
    pub fn run(&mut self) -> Result<TrainSummary> {
        self.run_with(&SingleComm)
    }

    /// [`Trainer::run`] as one rank of `comm`; only rank 0 writes files and shows progress.
    pub fn run_with(&mut self, comm: &dyn Communicator) -> Result<TrainSummary> {
        let start = Instant::now();
        let main = comm.is_main();
        if main {
            self.take_output_dir()?;
            self.open_metrics()?;
        }
        self.run_clock = Some((start, self.train_seconds()));
        self.sync_replicas(comm)?;
        let total = self.driver.total_updates();
        let target = self.config.stop_after.map_or(total, |s| s.min(total));
        let bar = if self.config.progress && main {
            Progress::updates(target)
        } else {
            Progress::hidden()
        };
        bar.start_at(self.state.counters.global_step);
        let mut window = Throughput::default();
        // The last update (step, epoch, lr) and whether a metrics line covered it.
        let mut last_update = None;
        // The running loss restarts at each evaluation: show the last mean until it has one.
        let mut shown_loss = self.state.running_loss.mean();
        // Each rank votes after each update, so the ranks act on their interrupts only when
        // every one holds one.
        let all_hold_one = ranks_saying(self.interrupt.is_some(), comm)? == comm.world_size();
        let interrupt = if all_hold_one {
            self.interrupt.as_ref().map(|i| i.watch())
        } else {
            None
        };
        let mut interrupted = false;
        while let Some(report) = self.advance_with(comm)? {
            window.add(report.examples, report.tokens);
            if let Some(lr) = report.lr {
                let global_step = report.step.updates_before + 1;
                let every = self.config.log_every;
                let logged =
                    report.step.evaluate || (every > 0 && global_step.is_multiple_of(every));
                last_update = Some((global_step, report.step.data_epoch, lr, logged));
                bar.set_position(global_step);
                let (sps, tps) = window.rates();
                if self.state.running_loss.batches > 0 {
                    shown_loss = self.state.running_loss.mean();
                }
                bar.set_message(format!(
                    "loss {shown_loss:.4} lr {lr:.3e} {sps:.1} samples/s {tps:.0} tokens/s"
                ));
                if self.config.log_every > 0 && global_step % self.config.log_every == 0 {
                    window = Throughput::default();
                }
            }
            if let Some(message) = report.evaluation {
                bar.println(message);
            }
            // At an update's end, as `stop_after` stops (no gradients left pending).
            if let (Some(interrupt), Some(_)) = (&interrupt, report.lr) {
                // Not on the run's last update, nor on one whose evaluation stopped it early:
                // the run ends there anyway, as it would have.
                let ends_here = self.driver.is_finished() || self.stopped_early;
                // A request on any rank stops every rank after this update.
                let here = interrupt.is_requested();
                if !ends_here && ranks_saying(here, comm)? > 0 {
                    if main && !here {
                        // The signal reached other processes only (a launcher signalling one
                        // rank, a node's time limit): say so where the progress shows.
                        bar.println(
                            "another rank received a stop signal: stopping after this update; \
                             checkpoint-last is saved and --resume continues from it",
                        );
                    }
                    interrupted = true;
                    break;
                }
            }
        }
        bar.finish();
        if let Some((global_step, epoch, lr, false)) = last_update {
            // The run's last updates, short of a `log_every` multiple, get their line too (a
            // run of fewer updates than `log_every` would otherwise log nothing). Not when
            // `stop_after` cut the run: its running loss is saved and the resumed run's
            // lines cover it, so a split run logs what the whole run logs.
            let ended = self.stopped_early || global_step >= self.driver.total_updates();
            if self.config.log_every > 0 && ended {
                self.log_train_line(global_step, epoch, lr, comm)?;
            }
        }
        self.fold_pending_into_rank0(comm)?;
        // A resume that trained nothing (the run was complete, or already past stop_after)
        // leaves checkpoint-last as it was: rewriting it would record this process's
        // evaluation settings in a checkpoint they never touched.
        let last_dir = self.config.output_dir.join(LAST);
        let unchanged = self.resumed_from.as_ref().is_some_and(|(dir, counters)| {
            *counters == self.state.counters && same_folder(dir, &last_dir)
        });
        let last = if main && !unchanged {
            self.save_checkpoint(LAST, true)?
        } else {
            self.config.output_dir.join(LAST)
        };
        if interrupt.is_some() && comm.world_size() > 1 {
            // The other ranks keep watching until rank 0 has saved: a signal reaching one of
            // them now must not end its process (and, under mpirun, the job) mid-save.
            comm.barrier()?;
        }
        drop(interrupt);
        // Stop the clock: another `run` on this trainer counts from here.
        self.state.train_seconds = self.train_seconds();
        self.run_clock = None;
        Ok(TrainSummary {
            updates: self.state.counters.global_step,
            batches: self.state.counters.batches_done,
            evaluations: self.state.evaluations,
            best_loss: self.state.policy.recorded_best_loss(),
            best_bleu: self.state.policy.recorded_best_bleu(),
            stopped_early: self.stopped_early,
            interrupted,
            last_checkpoint: last,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// How many ranks say yes (one scalar all-reduce; nothing is exchanged on one rank).
fn ranks_saying(yes: bool, comm: &dyn Communicator) -> Result<usize> {
    if comm.world_size() == 1 {
        return Ok(usize::from(yes));
    }
    let count = comm.all_reduce_scalar(f32::from(u8::from(yes)), ReduceOp::Sum)?;
    Ok(count as usize)
}

/// Whether `a` and `b` name one existing folder (however spelled).
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Where `path`, inside `from` before its contents moved to `to`, is now (when it moved).
/// Both are compared canonical where they can be (links, `..`): `path` itself is gone, so
/// through its parent.
fn moved_along(path: &Path, from: &Path, to: &Path) -> Option<std::path::PathBuf> {
    let canonical = |p: &Path| p.canonicalize().or_else(|_| std::path::absolute(p)).ok();
    let path = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            canonical(parent)?.join(name)
        }
        _ => canonical(path)?,
    };
    let from = canonical(from)?;
    let rest = path.strip_prefix(&from).ok()?;
    let moved = to.join(rest);
    (!rest.as_os_str().is_empty() && !path.exists() && moved.exists()).then_some(moved)
}
