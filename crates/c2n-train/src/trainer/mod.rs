//! The training loop: variants A and B of the reference (spec §7, §8) driven by
//! [`LoopDriver`], with dev evaluation, checkpoints, metrics, progress and full resume.
//!
//! Per micro-batch: forward in training mode, `loss / GA` backward, gradients added to the
//! pending sum (row 1 of the position table zeroed: `padding_idx`); on an update the pending
//! sum is (optionally clipped and) applied by the reference AdamW with the scheduled lr.
//! On an evaluation: dev loss over the whole dev file, dev BLEU on the seeded subset
//! (`dev.output`/`dev.gold`), then `checkpoint-last` (with the full train state),
//! `checkpoint-best-ppl` and `checkpoint-best-bleu` by the rules of §8.3. The run always ends
//! by writing `checkpoint-last`.
//!
//! ## Data parallelism
//!
//! The `*_with` methods take a [`Communicator`](crate::comm::Communicator); the plain ones run as a single rank. With
//! `W` ranks (docs/distributed.md):
//! * rank 0's parameters are broadcast once before the first step;
//! * every rank walks the same seeded batch plan; `batch_size` is the **global** batch and
//!   rank `r` computes its contiguous slice of each micro-batch ([`rank_slice`](c2n_data::partition::rank_slice)), padded to the
//!   global batch's lengths;
//! * one 4-float all-reduce per micro-batch gives the global loss and token count; each rank
//!   scales its gradient by its weight ([`GradWeighting`](crate::comm::GradWeighting): `N_r / N` by default, so `W` ranks
//!   equal one rank on the combined batch; or the reference `DataParallel` mean of means);
//! * at an update the accumulated gradients, flattened in sorted-name order, are summed
//!   bucket by bucket ([`BucketPlan`], one all-reduce per bucket), then clipped and stepped
//!   identically on every rank;
//! * evaluation is sharded ([`dev_loss_sharded`](crate::evaluate::dev_loss_sharded), [`decode_sharded`](crate::evaluate::decode_sharded)), rank 0 scores and
//!   broadcasts the BLEU so every rank takes the same checkpoint/early-stopping decisions;
//! * only rank 0 writes checkpoints, metrics, dev outputs and the progress bar.

mod build;
mod evaluation;
mod run;
mod step;
mod throughput;

use crate::checkpoint_dir;
use crate::comm::BucketPlan;
use crate::config::TrainConfig;
use crate::data::DevSet;
use crate::loop_plan::{LoopDriver, MicroStep};
use crate::metrics::MetricsLog;
use crate::optim::{AdamW, Gradients, NamedParams};
use crate::run_lock::RunLock;
use crate::schedule::LinearSchedule;
use crate::state::TrainState;
use c2n_data::{BatchConfig, Feature, RobertaTokenizer};
use c2n_model::Seq2Seq;
use std::path::PathBuf;
use std::time::Instant;
use throughput::Throughput;

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub updates: u64,
    pub batches: u64,
    /// Dev evaluations of the whole run, those before a resume included.
    pub evaluations: u64,
    /// The dev loss of `checkpoint-best-ppl`; `None` when no evaluation wrote one.
    pub best_loss: Option<f64>,
    /// The dev BLEU of `checkpoint-best-bleu`; `None` when none was written (no BLEU
    /// evaluated, or none above 0: the reference's first best must beat 0).
    pub best_bleu: Option<f64>,
    pub stopped_early: bool,
    /// Whether the interrupt of [`Trainer::stop_on`] ended the run before its end (it can
    /// be resumed from `last_checkpoint` exactly as a `stop_after` cut).
    pub interrupted: bool,
    pub last_checkpoint: PathBuf,
    pub seconds: f64,
}

/// Time spent summing gradients across ranks (multi-rank runs; zeros for one rank).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SyncStats {
    /// Updates whose gradients were all-reduced.
    pub updates: u64,
    /// Wall time inside those all-reduces (including waiting for slower ranks).
    pub seconds: f64,
    /// f32 gradient bytes all-reduced per update (the last one).
    pub bytes_per_update: u64,
}

/// What one call of [`Trainer::advance`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: MicroStep,
    /// Unscaled loss of the micro-batch.
    pub loss: f64,
    /// The learning rate of the update that followed, if one did.
    pub lr: Option<f64>,
    pub examples: u64,
    /// Real (non-pad) source + target tokens of the micro-batch.
    pub tokens: u64,
    /// The evaluation's log line, if one ran.
    pub evaluation: Option<String>,
}

/// What holds an output folder's lock, as the refusal names it.
const RUN_WHAT: &str = "training run";

/// A training run in progress.
pub struct Trainer {
    config: TrainConfig,
    model: Seq2Seq,
    params: NamedParams,
    optimizer: AdamW,
    tokenizer: Option<RobertaTokenizer>,
    train: Vec<Feature>,
    dev: Option<DevSet>,
    batch_config: BatchConfig,
    driver: LoopDriver,
    state: TrainState,
    pending: Gradients,
    epoch_plan: Option<(u64, Vec<Vec<usize>>)>,
    metrics: Option<MetricsLog>,
    /// `(saved, now)` ranks when a resume continues on another number of ranks.
    world_size_change: Option<(usize, usize)>,
    stopped_early: bool,
    /// Whether rank 0's weights have been broadcast (multi-rank runs only).
    replicas_synced: bool,
    /// The bucket plan of the last update, reused while the same parameters have gradients.
    bucket_plan: Option<BucketPlan>,
    sync_stats: SyncStats,
    /// Where a fresh run moved the earlier run it found in its output folder.
    earlier_run: Option<checkpoint_dir::EarlierRun>,
    /// When this process's `run` started, and the run's seconds before it (resumes).
    run_clock: Option<(Instant, f64)>,
    /// Rank 0's hold on the output folder (no other process may write there meanwhile).
    run_lock: Option<RunLock>,
    /// The saved run's update count when this trainer continues it ([`Trainer::resume`]).
    resumed_at: Option<u64>,
    /// The checkpoint this trainer resumed from and its loop counters: a run that ends there
    /// trained nothing and has nothing new to save into it.
    resumed_from: Option<(std::path::PathBuf, crate::loop_plan::LoopCounters)>,
    /// Whether a fresh run has looked for an earlier run's files in its output folder.
    earlier_run_checked: bool,
    /// Whether rank 0 has taken its output folder (lock, earlier run, `train_config.json`).
    output_dir_taken: bool,
    /// Examples and tokens since the last `log_every` multiple (a `train` metrics line).
    log_window: Throughput,
    /// Whether `log_window` has been started by a first step.
    log_window_started: bool,
    /// Set from outside (Ctrl-C) to end [`Trainer::run`] after the current update.
    interrupt: Option<std::sync::Arc<crate::interrupt::Interrupt>>,
}

/// A summary (the weights, optimizer moments and data are far too large to print).
impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("output_dir", &self.config.output_dir)
            .field("parameters", &self.params.len())
            .field("train_examples", &self.train.len())
            .field(
                "dev_examples",
                &self.dev.as_ref().map(|dev| dev.loss_features.len()),
            )
            .field("counters", &self.state.counters)
            .field("total_updates", &self.driver.total_updates())
            .field("stopped_early", &self.stopped_early)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn model(&self) -> &Seq2Seq {
        &self.model
    }

    pub fn params(&self) -> &NamedParams {
        &self.params
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Gradient all-reduce time so far (see [`SyncStats`]).
    pub fn sync_stats(&self) -> SyncStats {
        self.sync_stats
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn schedule(&self) -> &LinearSchedule {
        &self.state.schedule
    }

    /// Ends [`Trainer::run`] after the update during which `interrupt` is requested (and
    /// the evaluation that update triggers, if any), as `stop_after` would end it there:
    /// `checkpoint-last` is written, a resume continues exactly, and the summary says
    /// [`interrupted`](TrainSummary::interrupted). A signal handler (Ctrl-C) requests it
    /// ([`crate::interrupt`]). With several ranks ([`Trainer::run_with`]) every rank must
    /// be given one (the same one, for ranks that are threads of one process): they agree on
    /// that at the start, then a request on any rank stops all after the same update. If a
    /// rank has none, no rank watches its interrupt.
    pub fn stop_on(&mut self, interrupt: std::sync::Arc<crate::interrupt::Interrupt>) {
        self.interrupt = Some(interrupt);
    }

    /// Whether early stopping has ended the run (also when it ended the run this one resumes).
    pub fn stopped_early(&self) -> bool {
        self.stopped_early
    }

    /// Total updates of the full plan (what the progress bar counts towards).
    pub fn total_updates(&self) -> u64 {
        self.driver.total_updates()
    }
}
