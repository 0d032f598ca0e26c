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
//! The `*_with` methods take a [`Communicator`]; the plain ones run as a single rank. With
//! `W` ranks (docs/distributed.md):
//! * rank 0's parameters are broadcast once before the first step;
//! * every rank walks the same seeded batch plan; `batch_size` is the **global** batch and
//!   rank `r` computes its contiguous slice of each micro-batch ([`rank_slice`]), padded to the
//!   global batch's lengths;
//! * one 4-float all-reduce per micro-batch gives the global loss and token count; each rank
//!   scales its gradient by its weight ([`GradWeighting`]: `N_r / N` by default, so `W` ranks
//!   equal one rank on the combined batch; or the reference `DataParallel` mean of means);
//! * at an update the accumulated gradients, flattened in sorted-name order, are summed
//!   bucket by bucket ([`BucketPlan`], one all-reduce per bucket), then clipped and stepped
//!   identically on every rank;
//! * evaluation is sharded ([`dev_loss_sharded`], [`decode_sharded`]), rank 0 scores and
//!   broadcasts the BLEU so every rank takes the same checkpoint/early-stopping decisions;
//! * only rank 0 writes checkpoints, metrics, dev outputs and the progress bar.

use crate::checkpoint_dir;
use crate::checkpoint_policy::{BEST_BLEU, BEST_PPL, LAST};
use crate::comm::{
    self, exchange_batch_stats, rank_grad_scale, BucketPlan, Communicator, GradWeighting,
    LocalBatch, ReduceOp, SingleComm,
};
use crate::config::{Schedule, TrainConfig, TRAIN_CONFIG_FILE};
use crate::data::{DevSet, FeatureSource};
use crate::device::{apply_precision, select_device};
use crate::dropout_seeds::micro_batch_dropout_seed;
use crate::early_stopping::EarlyStopping;
use crate::evaluate::{broadcast_f64, decode_sharded, dev_loss_sharded, EvalBatching, Predictions};
use crate::forward_pass::ForwardPass;
use crate::loop_plan::{LoopDriver, LoopKind, LoopPlan, MicroStep};
use crate::metrics::{MetricRecord, MetricsLog};
use crate::model_setup::{model_for, model_params, with_dropout, POSITION_EMBEDDINGS};
use crate::optim::{AdamW, AdamWConfig, Gradients, NamedParams};
use crate::run_lock::RunLock;
use crate::schedule::LinearSchedule;
use crate::state::TrainState;
use crate::tensors::feature_tokens;
use crate::{Result, TrainError};
use c2n_data::batch::padded_lengths;
use c2n_data::partition::{chunk_slice, rank_slice};
use c2n_data::{
    make_batch, plan_epoch, BatchConfig, Feature, RobertaTokenizer, Stage, TokenizerFiles,
};
use c2n_model::generation::GenerationConfig;
use c2n_model::layers::dropout_seed_stream;
use c2n_model::Seq2Seq;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

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

/// Samples and tokens per second over a window of micro-steps.
#[derive(Debug)]
struct Throughput {
    start: Instant,
    examples: u64,
    tokens: u64,
}

impl Default for Throughput {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            examples: 0,
            tokens: 0,
        }
    }
}

impl Throughput {
    fn add(&mut self, examples: u64, tokens: u64) {
        self.examples += examples;
        self.tokens += tokens;
    }

    fn rates(&self) -> (f64, f64) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        (self.examples as f64 / secs, self.tokens as f64 / secs)
    }
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
    /// Whether a fresh run has looked for an earlier run's files in its output folder.
    earlier_run_checked: bool,
    /// Whether rank 0 has taken its output folder (lock, earlier run, `train_config.json`).
    output_dir_taken: bool,
    /// Examples and tokens since the last `log_every` multiple (a `train` metrics line).
    log_window: Throughput,
    /// Whether `log_window` has been started by a first step.
    log_window_started: bool,
}

/// One micro-batch as this rank saw it, and the batch as a whole.
struct MicroOutcome {
    /// This rank's gradient contribution (already weighted), before the cross-rank sum.
    grads: Gradients,
    /// Loss of the whole micro-batch (token mean, or the mean of rank means).
    loss: f64,
    /// Examples and real tokens of the whole micro-batch.
    examples: usize,
    tokens: u64,
    /// Active target tokens of the whole micro-batch.
    target_tokens: u64,
}

impl Trainer {
    /// Everything from a config: device, tokenizer, data, model; with `resume`, continues
    /// from `OUTPUT/checkpoint-last`.
    pub fn from_config(config: TrainConfig, resume: bool) -> Result<Self> {
        Self::from_config_on(config, resume, &SingleComm)
    }

    /// [`Trainer::from_config`] for one rank of `comm`: the backend may fix the device (NCCL:
    /// `cuda:LOCAL_RANK`), and rank 0's weights are broadcast to every rank.
    pub fn from_config_on(
        config: TrainConfig,
        resume: bool,
        comm: &dyn Communicator,
    ) -> Result<Self> {
        config.validate()?;
        // Refused before any loading: another run writes into this folder.
        let run_lock = if comm.is_main() {
            Some(RunLock::acquire(&config.output_dir, RUN_WHAT)?)
        } else {
            None
        };
        let device = match comm.device() {
            Some(device) => device,
            None => select_device(&config.device)?,
        };
        let dtype = apply_precision(config.precision, &device);
        let tokenizer_spec = config.tokenizer_spec()?;
        let tokenizer = RobertaTokenizer::load(&tokenizer_spec)?;
        let tokenizer_files = match &config.cache_dir {
            Some(_) => Some(TokenizerFiles::resolve(&tokenizer_spec)?),
            None => None,
        };
        let source = FeatureSource {
            tokenizer: &tokenizer,
            cache: tokenizer_files.as_ref().zip(config.cache_dir.as_deref()),
        };
        // The model before the data: a wrong init or a damaged checkpoint is said at once,
        // not after the data is tokenized.
        let resume_dir = config.output_dir.join(LAST);
        if resume {
            // A crash between a save's two renames left a checkpoint aside: put it back.
            checkpoint_dir::recover_run(&config.output_dir)?;
        }
        if resume && !resume_dir.join(crate::state::TRAIN_STATE_FILE).is_file() {
            return Err(TrainError::Resume {
                path: resume_dir,
                message: "nothing to resume: no train_state.json (start without --resume, \
                          or point --output-dir at the run to continue)"
                    .into(),
            });
        }
        // A resumed run starts from its own last checkpoint, not from `init` (no download).
        let model = if resume {
            // Its own checkpoint only: an unreadable one is a resume error, not a wrong init.
            let saved = c2n_model::load_checkpoint(&resume_dir, &device).map_err(|e| {
                TrainError::Resume {
                    path: resume_dir.clone(),
                    message: format!("cannot load the saved model: {e}"),
                }
            })?;
            with_dropout(saved, config.dropout, &device)?.with_compute_dtype(dtype)
        } else {
            model_for(&config, dtype, &device)?
        };
        crate::model_setup::check_tokenizer_fits(&tokenizer, &model)?;
        let train_path = config
            .train_data
            .clone()
            .ok_or_else(|| TrainError::Config("train_data is required".into()))?;
        let mut train = source.load(
            &train_path,
            config.max_source_len,
            config.max_target_len,
            Stage::Train,
        )?;
        if let Some(limit) = config.train_limit {
            train.truncate(limit);
        }
        let dev = match &config.dev_data {
            Some(path) => Some(DevSet::load_from(
                &source,
                path,
                config.max_source_len,
                config.max_target_len,
                config.dev_bleu_samples,
                config.seed,
            )?),
            None => None,
        };
        let mut trainer = Self::new(config, model, train, dev, Some(tokenizer))?;
        trainer.run_lock = run_lock;
        if resume {
            trainer.resume(&resume_dir)?;
            let now = comm.world_size();
            trainer.world_size_change = trainer
                .state
                .world_size
                .filter(|&saved| saved != now)
                .map(|saved| (saved, now));
        } else if comm.is_main() {
            // A fresh run replaces an earlier one here: its files step aside, whole, before
            // the caller reads anything there.
            trainer.earlier_run =
                checkpoint_dir::set_aside_earlier_run(&trainer.config.output_dir)?;
            trainer.earlier_run_checked = true;
        }
        trainer.state.world_size = Some(comm.world_size());
        trainer.check_same_data_on_every_rank(comm)?;
        trainer.sync_replicas(comm)?;
        Ok(trainer)
    }

    /// Refuses a multi-rank run whose ranks read different training data (each node its own
    /// copy of a file, and the copies differ): every rank would train on its share of other
    /// batches and the run would end without a word. Compares the data fingerprints; every
    /// rank returns the same verdict.
    fn check_same_data_on_every_rank(&self, comm: &dyn Communicator) -> Result<()> {
        if comm.world_size() == 1 {
            return Ok(());
        }
        let mine = self.state.data_fingerprint.clone().unwrap_or_default();
        let gathered = comm.gather_strings(&[mine])?;
        // 0: all agree; r: the first rank whose data differs from rank 0's.
        let mut verdict = [0f32];
        if let Some(all) = gathered {
            if let Some(rank) = (1..all.len()).find(|&r| all[r].first() != all[0].first()) {
                verdict[0] = rank as f32;
            }
        }
        comm.broadcast(&mut verdict)?;
        match verdict[0] as usize {
            0 => Ok(()),
            rank => Err(TrainError::InvalidInput(format!(
                "rank {rank} read other training data than rank 0 (another file's content, \
                 lengths or tokenizer): every rank must read the same data"
            ))),
        }
    }

    /// A run over given parts (tests, custom pipelines). `tokenizer` is needed for dev BLEU
    /// (without one, set `eval_bleu = false`). `config.train_data`, `dev_data`, `init` and
    /// `tokenizer` are not read: the parts stand for them.
    ///
    /// Nothing is written here. Before its first write into `config.output_dir` (when `run`
    /// starts, or at the first metrics line, evaluation or checkpoint of a loop driven by
    /// [`Trainer::advance`]) rank 0 takes the folder's lock and, unless the trainer was
    /// [resumed](Trainer::resume), moves an earlier run's files there aside
    /// (`OUTPUT/earlier-run-N`), as [`Trainer::from_config`] does at once.
    pub fn new(
        config: TrainConfig,
        model: Seq2Seq,
        train: Vec<Feature>,
        dev: Option<DevSet>,
        tokenizer: Option<RobertaTokenizer>,
    ) -> Result<Self> {
        config.validate_settings()?;
        let schedule_kind = config.schedule()?;
        let dev_has_bleu = dev.as_ref().is_some_and(|d| !d.bleu_features.is_empty());
        if dev_has_bleu && config.eval_bleu && tokenizer.is_none() {
            return Err(TrainError::Config(
                "dev BLEU needs a tokenizer to turn the decoded ids into text: pass one, or \
                 set eval_bleu = false (dev loss only)"
                    .into(),
            ));
        }
        let micro = config.micro_batch_size();
        if config.batch_size == 0 || config.grad_accum == 0 {
            return Err(TrainError::Config(
                "batch_size and grad_accum must be at least 1".into(),
            ));
        }
        if micro == 0 {
            return Err(TrainError::Config(format!(
                "batch_size {} is smaller than grad_accum {}: a micro-batch would be empty",
                config.batch_size, config.grad_accum
            )));
        }
        if train.is_empty() {
            return Err(TrainError::InvalidInput("no training example".into()));
        }
        let batches_per_pass = train.len().div_ceil(micro) as u64;
        let kind = match schedule_kind {
            Schedule::Steps { train_steps } => LoopKind::Steps {
                train_steps,
                eval_steps: if dev.is_some() {
                    config.eval_steps
                } else {
                    None
                },
            },
            Schedule::Epochs { epochs } => LoopKind::Epochs {
                epochs,
                evaluate: dev.is_some(),
            },
        };
        let plan = LoopPlan {
            kind,
            batches_per_pass,
            grad_accum: config.grad_accum,
            accumulation: config.accumulation,
            stop_after: config.stop_after,
        };
        let schedule = match schedule_kind {
            Schedule::Steps { train_steps } => {
                LinearSchedule::variant_a(config.lr, config.warmup_steps, train_steps)
            }
            Schedule::Epochs { epochs } => {
                LinearSchedule::variant_b(config.lr, batches_per_pass, config.grad_accum, epochs)
            }
        };
        let params = model_params(&model)?;
        let optimizer = AdamW::new(
            &params,
            AdamWConfig {
                weight_decay: config.weight_decay,
                eps: config.adam_eps,
                ..Default::default()
            },
        );
        let batch_config = BatchConfig {
            batch_size: micro,
            padding: config.padding,
            max_source_len: config.max_source_len,
            max_target_len: config.max_target_len,
            shuffle: config.shuffle,
            seed: config.seed,
            drop_last: false,
            bucket_window: config.bucket_window,
            token_budget: None,
        };
        let early =
            EarlyStopping::new(config.early_stopping_patience, config.early_stopping_metric);
        Ok(Self {
            driver: LoopDriver::new(plan)?,
            state: TrainState {
                bucket_window: config.bucket_window,
                data_fingerprint: Some(c2n_data::features_fingerprint(&train)),
                ..TrainState::new(plan, schedule, early, config.seed)
            },
            config,
            model,
            params,
            optimizer,
            tokenizer,
            train,
            dev,
            batch_config,
            pending: Gradients::new(),
            epoch_plan: None,
            metrics: None,
            world_size_change: None,
            stopped_early: false,
            replicas_synced: false,
            bucket_plan: None,
            sync_stats: SyncStats::default(),
            earlier_run: None,
            run_lock: None,
            run_clock: None,
            resumed_at: None,
            earlier_run_checked: false,
            output_dir_taken: false,
            log_window: Throughput::default(),
            log_window_started: false,
        })
    }

    /// Overwrites this replica's parameters with rank 0's (once; a no-op for one rank). The
    /// `*_with` methods call it before their first step, so that replicas built from different
    /// random initialisations start identical.
    pub fn sync_replicas(&mut self, comm: &dyn Communicator) -> Result<()> {
        if comm.world_size() > 1 && !self.replicas_synced {
            comm::broadcast_vars(comm, self.params.iter())?;
            if !comm.is_main() {
                // Before any step, pending gradients can only come from a resumed checkpoint,
                // where they are the ranks' sum (`fold_pending_into_rank0`): rank 0 holds them.
                self.pending.clear();
            }
            self.replicas_synced = true;
        }
        Ok(())
    }

    /// Continues from a checkpoint directory written by this trainer: weights, optimizer
    /// state, loop counters, best scores, pending gradients.
    pub fn resume(&mut self, dir: &Path) -> Result<()> {
        if !dir.join(crate::state::TRAIN_STATE_FILE).is_file() {
            return Err(TrainError::Resume {
                path: dir.to_path_buf(),
                message: "no train_state.json: only checkpoint-last keeps the optimizer and \
                          loop state (checkpoint-best-* hold the weights alone, for \
                          evaluation or as an init)"
                    .into(),
            });
        }
        let weights = c2n_model::load::find_weights_file(dir)?;
        c2n_model::load::load_state_dict(&self.model, &weights)?;
        let (state, pending) = TrainState::load(dir, self.model.device())?;
        // Named setting differences first: they explain most loop differences.
        let saved_config = dir.join(TRAIN_CONFIG_FILE);
        if !saved_config.is_file() {
            // Every checkpoint is saved with it; without it a changed setting would go unseen.
            return Err(TrainError::Resume {
                path: saved_config,
                message: "missing: the saved run's settings cannot be checked against this \
                          run's"
                    .into(),
            });
        }
        let conflicts = self
            .config
            .resume_conflicts(&TrainConfig::load(&saved_config)?);
        if !conflicts.is_empty() {
            return Err(TrainError::Resume {
                path: dir.to_path_buf(),
                message: format!(
                    "the saved state belongs to other settings ({}); resume with the saved \
                     values or start a new output directory",
                    conflicts.join("; ")
                ),
            });
        }
        state.check_resumable(self.driver.plan(), dir)?;
        if state.data_seed != self.batch_config.seed {
            return Err(TrainError::Resume {
                path: dir.to_path_buf(),
                message: format!(
                    "the saved run shuffled with seed {}, this run with {}: the data order would differ",
                    state.data_seed, self.batch_config.seed
                ),
            });
        }
        if let (Some(saved), Some(now)) = (&state.data_fingerprint, &self.state.data_fingerprint) {
            if saved != now {
                return Err(TrainError::Resume {
                    path: dir.to_path_buf(),
                    message: format!(
                        "the training data differs from the saved run's (fingerprint {saved}, \
                         now {now}): other file, lengths or tokenizer"
                    ),
                });
            }
        }
        if state.bucket_window != self.batch_config.bucket_window {
            return Err(TrainError::Resume {
                path: dir.to_path_buf(),
                message: format!(
                    "the saved run bucketed batches by length with window {:?}, this run with {:?}: \
                     the data order would differ",
                    state.bucket_window, self.batch_config.bucket_window
                ),
            });
        }
        self.optimizer.load_state(dir, self.model.device())?;
        self.driver = LoopDriver::resume(*self.driver.plan(), state.counters)?;
        self.state = TrainState {
            plan: *self.driver.plan(),
            data_fingerprint: self.state.data_fingerprint.take(),
            ..state
        };
        self.pending = pending;
        self.resumed_at = Some(self.state.counters.global_step);
        Ok(())
    }

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

    /// Total updates of the full plan (what the progress bar counts towards).
    pub fn total_updates(&self) -> u64 {
        self.driver.total_updates()
    }

    fn batch_positions(&mut self, data_epoch: u64, batch_index: u64) -> Result<Vec<usize>> {
        if self
            .epoch_plan
            .as_ref()
            .is_none_or(|(e, _)| *e != data_epoch)
        {
            let plan = plan_epoch(&self.train, &self.batch_config, data_epoch)?;
            self.epoch_plan = Some((data_epoch, plan));
        }
        let (_, plan) = self
            .epoch_plan
            .as_ref()
            .ok_or_else(|| TrainError::InvalidInput("no batch plan".into()))?;
        plan.get(batch_index as usize).cloned().ok_or_else(|| {
            TrainError::InvalidInput(format!(
                "batch {batch_index} of epoch {data_epoch} does not exist ({} batches)",
                plan.len()
            ))
        })
    }

    /// One micro-batch: forward, backward, accumulation and (when due) the update.
    /// Returns the unscaled batch loss and the batch's real token count.
    pub fn train_micro_step(&mut self, step: &MicroStep) -> Result<(f64, u64, usize)> {
        self.train_micro_step_with(step, &SingleComm)
    }

    /// [`Trainer::train_micro_step`] as one rank of `comm`: this rank computes its slice of the
    /// micro-batch, gradients are summed across ranks at the update. Returns the loss, real
    /// tokens and examples of the whole (global) micro-batch.
    pub fn train_micro_step_with(
        &mut self,
        step: &MicroStep,
        comm: &dyn Communicator,
    ) -> Result<(f64, u64, usize)> {
        self.sync_replicas(comm)?;
        let positions = self.batch_positions(step.data_epoch, step.batch_index)?;
        let outcome = {
            let _masks = dropout_seed_stream(micro_batch_dropout_seed(
                self.config.seed,
                step.micro_batch,
                comm.rank(),
            ));
            if comm.world_size() == 1 {
                self.single_rank_gradients(&positions)?
            } else {
                self.rank_gradients(&positions, comm)?
            }
        };
        if !outcome.loss.is_finite() {
            return Err(TrainError::Diverged(format!(
                "the training loss is {} at update {} (batch {} of epoch {})",
                outcome.loss,
                step.updates_before + 1,
                step.batch_index,
                step.data_epoch
            )));
        }
        self.pending.accumulate(outcome.grads)?;
        self.state.running_loss.add(outcome.loss);
        self.state.examples_seen += outcome.examples as u64;
        self.state.target_tokens_seen += outcome.target_tokens;
        if step.update {
            if comm.world_size() > 1 {
                let start = Instant::now();
                self.all_reduce_pending(comm)?;
                self.sync_stats.updates += 1;
                self.sync_stats.seconds += start.elapsed().as_secs_f64();
            }
            if let Some(max_norm) = self.config.max_grad_norm {
                self.pending.clip_global_norm(max_norm)?;
            }
            let lr = self.state.schedule.lr_at(step.updates_before);
            self.optimizer.step(&self.pending, lr)?;
            self.pending.clear();
        }
        self.state.counters = self.driver.counters();
        Ok((outcome.loss, outcome.tokens, outcome.examples))
    }

    /// Forward and backward of `loss / GA` over the whole micro-batch (one rank).
    fn single_rank_gradients(&self, positions: &[usize]) -> Result<MicroOutcome> {
        let (s, t) = padded_lengths(&self.train, positions, &self.batch_config)?;
        let batch = make_batch(&self.train, positions, s, t);
        let pass = ForwardPass::run(&self.model, &batch, self.config.backward)?;
        let loss_tensor = pass.output().loss.clone();
        let target_tokens = pass.output().n_active as u64;
        let d_loss = 1.0 / self.config.grad_accum.max(1) as f64;
        // The backward pass is queued before the loss is read, so the host never waits for
        // the forward pass in the middle of the step.
        let store = pass.backward(d_loss)?;
        let loss = f64::from(loss_tensor.to_scalar::<f32>()?);
        // A non-finite loss is reported by the caller; its gradient is never applied.
        let grads = if loss.is_finite() {
            self.position_masked(Gradients::from_grad_store(&self.params, &store))?
        } else {
            Gradients::new()
        };
        Ok(MicroOutcome {
            grads,
            loss,
            examples: positions.len(),
            tokens: feature_tokens(&self.train, positions),
            target_tokens,
        })
    }

    /// This rank's slice of the micro-batch: forward, backward of the loss weighted by this
    /// rank's share (and `1 / GA`), then one stats all-reduce.
    ///
    /// Every rank's share follows from token counts that each rank computes on the host, so the
    /// backward pass is queued right behind the forward pass; the loss is read (a wait for the
    /// device) only afterwards, and the all-reduced counts are checked against the prediction.
    fn rank_gradients(&self, positions: &[usize], comm: &dyn Communicator) -> Result<MicroOutcome> {
        // Padding lengths of the global batch, so every rank pads as one rank would.
        let (s, t) = padded_lengths(&self.train, positions, &self.batch_config)?;
        let (rank, world) = (comm.rank(), comm.world_size());
        let weighting = self.config.grad_weighting;
        let counts = rank_target_tokens(&self.train, positions, t, world, weighting)?;
        let scale = rank_grad_scale(
            weighting,
            counts[rank],
            counts.iter().sum(),
            counts.iter().filter(|&&c| c > 0).count(),
        );
        let factor = f64::from(scale) / self.config.grad_accum.max(1) as f64;
        let mine = rank_part(positions, rank, world, weighting)?;
        let mut local = LocalBatch {
            mean_loss: 0.0,
            tokens: 0,
        };
        let mut store = None;
        if !mine.is_empty() {
            // (more ranks than examples leave a rank without any)
            let batch = make_batch(&self.train, mine, s, t);
            let pass = ForwardPass::run(&self.model, &batch, self.config.backward)?;
            let loss = pass.output().loss.clone();
            local.tokens = pass.output().n_active;
            // A rank without tokens contributes zeros (its 0/0 loss would give NaN gradients).
            if factor != 0.0 {
                store = Some(pass.backward(factor)?);
            }
            local.mean_loss = loss.to_scalar::<f32>()?;
        }
        let stats = exchange_batch_stats(comm, self.config.grad_weighting, local)?;
        if local.tokens != counts[rank] || stats.grad_scale != scale {
            return Err(TrainError::InvalidInput(format!(
                "rank {rank}: {} target tokens and gradient scale {} on the device, {} and {scale} \
                 predicted from the features",
                local.tokens, stats.grad_scale, counts[rank]
            )));
        }
        let grads = match store {
            Some(store) if local.mean_loss.is_finite() => {
                self.position_masked(Gradients::from_grad_store(&self.params, &store))?
            }
            _ => Gradients::new(),
        };
        Ok(MicroOutcome {
            grads,
            loss: f64::from(stats.mean_loss),
            examples: positions.len(),
            tokens: feature_tokens(&self.train, positions),
            target_tokens: stats.tokens as u64,
        })
    }

    /// padding_idx = 1: the position table's pad row gets no gradient (§4.5).
    fn position_masked(&self, mut grads: Gradients) -> Result<Gradients> {
        grads.zero_rows(
            POSITION_EMBEDDINGS,
            &[self.model.config().pad_token_id as usize],
        )?;
        Ok(grads)
    }

    /// Sums the pending gradients across ranks: the parameters with a gradient on any rank
    /// (agreed by one small all-reduce; a parameter no rank touched keeps "no gradient", as
    /// PyTorch's `grad is None`), flattened in sorted-name order, one all-reduce per bucket.
    /// Before a multi-rank checkpoint: sums the partial accumulation of the ranks into rank 0
    /// and clears it elsewhere (summing is linear, so the next update's all-reduce still gives
    /// the full sum), so that the saved pending gradients are the whole batch's, as with one
    /// rank. A resumed rank other than 0 starts with nothing pending.
    fn fold_pending_into_rank0(&mut self, comm: &dyn Communicator) -> Result<()> {
        if comm.world_size() > 1 {
            self.all_reduce_pending(comm)?;
            if !comm.is_main() {
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn all_reduce_pending(&mut self, comm: &dyn Communicator) -> Result<()> {
        let mut present: Vec<f32> = self
            .params
            .iter()
            .map(|(name, _)| f32::from(u8::from(self.pending.get(name).is_some())))
            .collect();
        comm.all_reduce(&mut present, ReduceOp::Sum)?;
        let mut grads = std::collections::BTreeMap::new();
        for ((name, var), &count) in self.params.iter().zip(&present) {
            if count > 0.0 {
                let grad = match self.pending.get(name) {
                    Some(g) => g.clone(),
                    None => var.as_tensor().zeros_like()?,
                };
                grads.insert(name.to_string(), grad);
            }
        }
        if grads.is_empty() {
            return Ok(()); // nothing pending on any rank
        }
        let plan_fits = self.bucket_plan.as_ref().is_some_and(|p| {
            p.names().len() == grads.len()
                && p.names().iter().zip(grads.keys()).all(|(a, b)| a == b)
        });
        if !plan_fits {
            self.bucket_plan = Some(BucketPlan::new(
                grads.iter().map(|(n, g)| (n.clone(), g.elem_count())),
                comm::DEFAULT_BUCKET_BYTES,
            )?);
        }
        let plan = self
            .bucket_plan
            .as_ref()
            .ok_or_else(|| TrainError::InvalidInput("no bucket plan".into()))?;
        comm::sync_tensor_grads(comm, plan, &mut grads, 1.0)?;
        self.sync_stats.bytes_per_update =
            4 * grads.values().map(|g| g.elem_count() as u64).sum::<u64>();
        self.pending = Gradients::from_map(grads);
        Ok(())
    }

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
    fn log(&mut self, record: MetricRecord) -> Result<()> {
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
    fn take_output_dir(&mut self) -> Result<()> {
        if self.output_dir_taken {
            return Ok(());
        }
        if self.run_lock.is_none() {
            self.run_lock = Some(RunLock::acquire(&self.config.output_dir, RUN_WHAT)?);
        }
        if self.resumed_at.is_none() && !self.earlier_run_checked {
            self.earlier_run = checkpoint_dir::set_aside_earlier_run(&self.config.output_dir)?;
            self.earlier_run_checked = true;
        }
        self.config
            .save_json(&self.config.output_dir.join(TRAIN_CONFIG_FILE))?;
        self.output_dir_taken = true;
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
            ProgressBar::new(target)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} updates, ETA {eta} | {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(self.state.counters.global_step);
        let mut window = Throughput::default();
        while let Some(report) = self.advance_with(comm)? {
            window.add(report.examples, report.tokens);
            if let Some(lr) = report.lr {
                let global_step = report.step.updates_before + 1;
                bar.set_position(global_step);
                let (sps, tps) = window.rates();
                bar.set_message(format!(
                    "loss {:.4} lr {lr:.3e} {sps:.1} samples/s {tps:.0} tokens/s",
                    self.state.running_loss.mean()
                ));
                if self.config.log_every > 0 && global_step % self.config.log_every == 0 {
                    window = Throughput::default();
                }
            }
            if let Some(message) = report.evaluation {
                bar.println(message);
            }
        }
        bar.finish_and_clear();
        self.fold_pending_into_rank0(comm)?;
        let last = if main {
            self.save_checkpoint(LAST, true)?
        } else {
            self.config.output_dir.join(LAST)
        };
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
            last_checkpoint: last,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Writes `OUTPUT/<name>/`: weights + model config + resolved train config, and with
    /// `with_state` the optimizer and train state for resuming.
    ///
    /// The first write of a trainer built with [`Trainer::new`] takes the output folder
    /// first (its lock; a fresh run's earlier files moved aside).
    pub fn save_checkpoint(&mut self, name: &str, with_state: bool) -> Result<PathBuf> {
        self.take_output_dir()?;
        let dir = self.config.output_dir.join(name);
        checkpoint_dir::write_replacing(&dir, |partial| {
            c2n_model::save_checkpoint(&self.model, partial)?;
            self.config.save_json(&partial.join(TRAIN_CONFIG_FILE))?;
            if with_state {
                self.optimizer.save_state(partial)?;
                let state = TrainState {
                    train_seconds: self.train_seconds(),
                    ..self.state.clone()
                };
                state.save(partial, &self.pending)?;
            }
            Ok(())
        })?;
        Ok(dir)
    }

    /// One dev evaluation with checkpointing (§8). Returns the log line.
    pub fn evaluate(&mut self, epoch: u64) -> Result<String> {
        self.evaluate_with(epoch, &SingleComm)
    }

    /// [`Trainer::evaluate`] sharded over the ranks of `comm`: the same scores and decisions
    /// on every rank; rank 0 writes the dev files, checkpoints and the metrics line.
    pub fn evaluate_with(&mut self, epoch: u64, comm: &dyn Communicator) -> Result<String> {
        let main = comm.is_main();
        if main && self.dev.is_some() {
            // A loop driven by `advance` writes here first.
            self.take_output_dir()?;
        }
        let Some(dev) = &self.dev else {
            return Ok(String::new());
        };
        let c = &self.config;
        let train_loss = self.state.running_loss.mean();
        self.state.running_loss.reset();
        let batching = EvalBatching {
            batch_size: c.eval_batch_size,
            padding: c.padding,
            max_source_len: c.max_source_len,
            max_target_len: c.max_target_len,
        };
        let loss = dev_loss_sharded(comm, &self.model, &dev.loss_features, &batching)?;
        let loss_improved = self.state.policy.observe_dev_loss(loss.loss());
        let mut bleu = None;
        let mut bleu_improved = false;
        if c.eval_bleu && !dev.bleu_features.is_empty() {
            if let Some(tokenizer) = &self.tokenizer {
                let generation = GenerationConfig {
                    beam_size: c.beam_size,
                    max_length: c.max_target_len,
                    ..Default::default()
                };
                let decoded = decode_sharded(
                    comm,
                    &self.model,
                    &dev.bleu_features,
                    &batching,
                    &generation,
                    |_| {},
                )?;
                // Rank 0 scores; the others take its score, so all decide alike.
                let mut score = 0.0;
                if let Some(decoded) = decoded {
                    let predictions = Predictions::from_decoded(
                        tokenizer,
                        &decoded,
                        dev.bleu_idx.clone(),
                        dev.bleu_golds.clone(),
                    );
                    predictions.write(&c.output_dir, "dev")?;
                    score = predictions.bleu()?.bleu;
                }
                let score = broadcast_f64(comm, score)?;
                bleu_improved = self.state.policy.observe_dev_bleu(score).improved;
                bleu = Some(score);
            }
        }
        self.stopped_early = self
            .state
            .early_stopping
            .observe(loss_improved, bleu_improved);
        self.state.counters = self.driver.counters();
        let mut saved = vec![LAST.to_string()];
        if loss_improved {
            saved.push(BEST_PPL.into());
        }
        if bleu_improved {
            saved.push(BEST_BLEU.into());
        }
        self.fold_pending_into_rank0(comm)?;
        self.state.evaluations += 1;
        let global_step = self.state.counters.global_step;
        // checkpoint-last goes last: it records this evaluation as done (its state holds the
        // new bests), so a run killed before it redoes the evaluation and every write below
        // on resume; the metrics line of a step after the resumed checkpoint is dropped then.
        if main {
            self.log(MetricRecord::Eval {
                global_step,
                epoch,
                train_loss,
                dev_loss: loss.loss(),
                dev_ppl: loss.perplexity(),
                dev_bleu: bleu,
                saved: saved.clone(),
            })?;
            if loss_improved {
                self.save_checkpoint(BEST_PPL, false)?;
            }
            if bleu_improved {
                self.save_checkpoint(BEST_BLEU, false)?;
            }
            self.save_checkpoint(LAST, true)?;
        }
        let bleu_text = bleu.map_or(String::new(), |b| {
            format!(" bleu {:.2}", crate::checkpoint_policy::python_round2(b))
        });
        Ok(format!(
            "eval after update {global_step}: train loss {train_loss:.5} dev loss {:.5} ppl {:.5}{bleu_text} → {}",
            loss.loss(),
            loss.perplexity(),
            saved.join(", ")
        ))
    }
}

/// Rank `rank`'s examples of a micro-batch. The token mean does not depend on the split, so
/// ranks get balanced slices; the mean of rank means does, so it splits where `DataParallel`'s
/// `torch.chunk` does (31 examples on 4 ranks: 8, 8, 8, 7).
fn rank_part(
    positions: &[usize],
    rank: usize,
    world: usize,
    weighting: GradWeighting,
) -> Result<&[usize]> {
    Ok(match weighting {
        GradWeighting::TokenMean => rank_slice(positions, rank, world)?,
        GradWeighting::MeanOfRankMeans => chunk_slice(positions, rank, world)?,
    })
}

/// Each rank's active target positions (`target_mask[:, 1:]` ones, as the loss counts them) in
/// a micro-batch padded to target length `t`, computed on the host from the features.
fn rank_target_tokens(
    features: &[Feature],
    positions: &[usize],
    t: usize,
    world: usize,
    weighting: GradWeighting,
) -> Result<Vec<usize>> {
    (0..world)
        .map(|r| {
            let slice = rank_part(positions, r, world, weighting)?;
            Ok(slice
                .iter()
                .filter_map(|&p| features.get(p))
                .map(|f| f.target_ids.len().min(t).saturating_sub(1))
                .sum())
        })
        .collect()
}
