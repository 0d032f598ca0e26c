//! Building a trainer: from a config (device, tokenizer, data, model) or from parts, and
//! resuming a saved run.

use crate::checkpoint_dir;
use crate::checkpoint_policy::LAST;
use crate::comm::{self, Communicator, SingleComm};
use crate::config::{Schedule, TrainConfig, TRAIN_CONFIG_FILE};
use crate::data::{DevSet, FeatureSource};
use crate::device::{apply_precision, select_device};
use crate::early_stopping::EarlyStopping;
use crate::loop_plan::{LoopDriver, LoopKind, LoopPlan};
use crate::model_setup::{model_for, model_params, with_dropout};
use crate::optim::{AdamW, AdamWConfig, Gradients};
use crate::run_lock::RunLock;
use crate::schedule::LinearSchedule;
use crate::state::TrainState;
use crate::{Result, TrainError};
use c2n_data::{BatchConfig, Feature, RobertaTokenizer, Stage, TokenizerFiles};
use c2n_model::Seq2Seq;
use std::path::Path;

use super::{SyncStats, Throughput, Trainer, RUN_WHAT};

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
            // Every file as written (weights, moments, state), once, before anything is read.
            crate::checkpoint_checksums::verify(
                &resume_dir,
                crate::checkpoint_checksums::is_run_state_file,
            )?;
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
        if device.is_cpu() {
            check_cpu_memory(&config, &model, &train, comm.world_size())?;
        }
        let mut trainer = Self::new(config, model, train, dev, Some(tokenizer))?;
        trainer.run_lock = run_lock;
        if resume {
            trainer.resume_checked(&resume_dir)?;
            let now = comm.world_size();
            trainer.world_size_change = trainer
                .state
                .world_size
                .filter(|&saved| saved != now)
                .map(|saved| (saved, now));
        } else if comm.is_main() {
            // A fresh run replaces an earlier one here: its files step aside, whole, before
            // the caller reads anything there.
            trainer.set_aside_earlier_run()?;
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
            resumed_from: None,
            earlier_run_checked: false,
            output_dir_taken: false,
            log_window: Throughput::default(),
            log_window_started: false,
            interrupt: None,
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
    /// state, loop counters, best scores, pending gradients. Its files are checked against
    /// its `checksums.json` first ([`crate::checkpoint_checksums`]).
    pub fn resume(&mut self, dir: &Path) -> Result<()> {
        // Every file (weights, moments, state) as written, or a refusal naming the damaged one.
        crate::checkpoint_checksums::verify(dir, crate::checkpoint_checksums::is_run_state_file)?;
        self.resume_checked(dir)
    }

    /// [`Trainer::resume`] of a folder whose files were checked already.
    fn resume_checked(&mut self, dir: &Path) -> Result<()> {
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
        // A run that early stopping ended stays ended.
        self.stopped_early = self.state.early_stopping.has_stopped();
        self.resumed_at = Some(self.state.counters.global_step);
        self.resumed_from = Some((dir.to_path_buf(), self.state.counters));
        Ok(())
    }
}

/// Refuses a CPU run that surely cannot fit (a lower bound per process: this rank's share
/// of a typical micro-batch; [`crate::train_memory`]).
fn check_cpu_memory(
    config: &TrainConfig,
    model: &Seq2Seq,
    train: &[Feature],
    world_size: usize,
) -> Result<()> {
    let examples = train.len().max(1);
    // Active target positions per example, as the loss counts them (`target_mask[:, 1:]`).
    let tokens: usize = train
        .iter()
        .map(|f| f.target_ids.len().saturating_sub(1))
        .sum();
    let per_rank = (config.micro_batch_size() / world_size.max(1)).max(1);
    let parameters: usize = model_params(model)?
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    crate::train_memory::check_cpu_training_fits(
        parameters,
        per_rank,
        tokens * per_rank / examples,
        model.config().vocab_size,
        crate::decode_memory::available_host_memory(),
    )
}
