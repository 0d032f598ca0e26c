//! The pipeline itself: prepare → train → evaluate (dev, test) → report, each stage skipped
//! when an earlier run finished it.

use super::config::{PipelineConfig, Preset};
use super::identity::{check_same_data, check_same_run, save_run_config};
use super::plot::training_curves_png;
use super::preset::{
    apply_train_overrides, preset_model_id, preset_train_config, published_codebert_bleu,
    published_roberta_bleu, small_model_config,
};
use super::report::{PipelineReport, SplitScore, StageTiming, TrainOutcome};
use super::splits::{resolve_splits, strict_read_error, SplitFiles};
use super::stages::{load_stage, save_stage};
use crate::checkpoint_policy::{CheckpointPolicy, BEST_BLEU, BEST_PPL, LAST};
use crate::config::{TrainConfig, TRAIN_CONFIG_FILE};
use crate::data::load_features;
use crate::device::select_device;
use crate::evaluate::{dev_loss, evaluate_file, EvalBatching, EvaluateRequest};
use crate::interrupt::Interrupt;
use crate::metrics::MetricsLog;
use crate::model_setup::model_params;
use crate::state::TRAIN_STATE_FILE;
use crate::trainer::{TrainSummary, Trainer};
use crate::{Result, TrainError};
use c2n_data::{
    FeatureConfig, PipelineConfig as DataPipelineConfig, PrepareProgress, PrepareRequest,
    RobertaTokenizer, Stage, TokenizerFiles,
};
use c2n_model::{ModelConfig, Seq2Seq};
use candle_core::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What the prepare stage records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareRecord {
    pub timing: StageTiming,
    pub stats_markdown: String,
}

/// What the train stage records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    pub timing: StageTiming,
    pub outcome: TrainOutcome,
}

/// The preset a run uses: the configured one, else `codebert` on a GPU and `small` on CPU.
pub fn choose_preset(configured: Option<Preset>, device: &Device) -> (Preset, &'static str) {
    match configured {
        Some(p) => (p, "as requested"),
        None if device.is_cuda() => (Preset::Codebert, "default on a GPU"),
        None => (
            Preset::Small,
            "default on CPU: a small random model, far below the published numbers",
        ),
    }
}

/// Human-readable device with the CPU thread count.
pub fn describe_device(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => {
            format!("cpu ({} threads)", candle_core::utils::get_num_threads())
        }
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The tokenizer of a run: configured, the preset's model, or for `small` the
/// `roberta-base` folder beside the data folder (the offline layout), else the hub's.
pub fn tokenizer_spec(cfg: &PipelineConfig, preset: Preset) -> String {
    if let Some(t) = &cfg.tokenizer {
        return t.clone();
    }
    if let Some(id) = preset_model_id(preset) {
        return id.to_string();
    }
    if let Some(beside) = cfg
        .data_dir
        .as_ref()
        .and_then(|d| d.parent())
        .map(|p| p.join("roberta-base"))
    {
        if beside.join("vocab.json").is_file() {
            return beside.display().to_string();
        }
    }
    "roberta-base".into()
}

/// `OUTPUT/init-small`: the random initial weights of the small preset, written once so
/// that a resumed or repeated run starts from the same model.
fn small_init(cfg: &PipelineConfig, model: &ModelConfig) -> Result<PathBuf> {
    let dir = cfg.output_dir.join("init-small");
    if !dir.join("model.safetensors").is_file() {
        let seq2seq = Seq2Seq::new(model, &VarMap::new(), &Device::Cpu)?;
        // Through a partial folder: a kill mid-write leaves no half folder (nor the
        // safetensors writer's temporary file) that the rerun would keep.
        crate::checkpoint_dir::write_replacing(&dir, |partial| {
            Ok(c2n_model::save_checkpoint(&seq2seq, partial)?)
        })?;
    }
    Ok(dir.canonicalize().unwrap_or(dir))
}

/// The resolved training config of a run.
pub fn train_config(
    cfg: &PipelineConfig,
    preset: Preset,
    splits: &SplitFiles,
    tokenizer: &str,
) -> Result<TrainConfig> {
    let mut train = apply_train_overrides(&preset_train_config(preset, &cfg.lang), &cfg.train)?;
    train.init = match preset_model_id(preset) {
        Some(id) => id.to_string(),
        None => small_init(cfg, &small_model_config(&cfg.small_model))?
            .display()
            .to_string(),
    };
    train.train_data = Some(splits.train.clone());
    train.dev_data = Some(splits.dev.clone());
    train.tokenizer = Some(tokenizer.to_string());
    train.output_dir = cfg.output_dir.join(TRAIN_FOLDER);
    // The features the prepare stage cached: training maps them instead of tokenizing again.
    train.cache_dir = Some(cfg.cache_root());
    train.device = cfg.device.clone();
    train.progress = cfg.progress;
    // Saved absolute (as `train` saves them), so `train --resume`, `evaluate` and `predict`
    // find the data and the tokenizer from any folder.
    let here = std::env::current_dir().map_err(|e| TrainError::io(".", e))?;
    let train = train.with_absolute_paths(&here);
    train.validate()?;
    Ok(train)
}

fn prepare_stage(
    cfg: &PipelineConfig,
    splits: &SplitFiles,
    train: &TrainConfig,
    tokenizer: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PrepareRecord> {
    if let Some(mut done) = load_stage::<PrepareRecord>(&cfg.output_dir, "prepare") {
        done.timing.skipped = true;
        log("prepare: done by an earlier run, skipping");
        return Ok(done);
    }
    let start = Instant::now();
    let files = TokenizerFiles::resolve(tokenizer)?;
    let mut rows = Vec::new();
    let mut examples = 0u64;
    let mut notes = Vec::new();
    for (name, path, stage) in [
        ("train", &splits.train, Stage::Train),
        ("dev", &splits.dev, Stage::Dev),
        ("test", &splits.test, Stage::Test),
    ] {
        let features = FeatureConfig {
            max_source_len: train.max_source_len,
            max_target_len: train.max_target_len,
            stage,
        };
        let mut req = PrepareRequest::new(path, files.clone(), cfg.cache_root());
        req.pipeline = DataPipelineConfig::strict_unfiltered(features);
        let prepared = c2n_data::prepare(&req, &mut |event| {
            if let PrepareProgress::WaitingForOtherBuild { lock } = event {
                log(&format!(
                    "prepare: {name}: another process is building this cache; waiting (lock {})",
                    lock.display()
                ));
            }
        })
        .map_err(|e| match e {
            c2n_data::DataError::BadLine { .. } => strict_read_error(e),
            other => other.into(),
        })?;
        log(&format!(
            "prepare: {name} {} → {} features ({})",
            path.display(),
            prepared.store.len(),
            prepared.status
        ));
        notes.push(format!("{name}: {:?}", prepared.status));
        examples += prepared.store.len() as u64;
        rows.push(c2n_data::stats_row(
            &cfg.lang,
            name,
            &prepared.store,
            &features,
            &prepared.manifest.report,
        ));
    }
    let record = PrepareRecord {
        timing: StageTiming::new(
            "prepare",
            start.elapsed().as_secs_f64(),
            examples,
            format!("tokenize + cache ({})", notes.join(", ")),
        ),
        stats_markdown: c2n_data::markdown_table(&rows),
    };
    save_stage(&cfg.output_dir, "prepare", &record)?;
    Ok(record)
}

/// Refuses a folder whose training ran with other binding settings than the ones this run
/// resolves to. The recorded pipeline configuration names a preset, not its recipe: when a
/// preset's recipe changes between versions (the small preset went from 250 to 600 updates),
/// an old folder would otherwise be taken for this run, its stages skipped, and its report
/// would show the new settings next to the old run's numbers.
fn check_same_training(train: &TrainConfig) -> Result<()> {
    let saved_path = train.output_dir.join(TRAIN_CONFIG_FILE);
    if !saved_path.is_file() {
        return Ok(());
    }
    let conflicts = train.resume_conflicts(&TrainConfig::load(&saved_path)?);
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(TrainError::OtherRun(format!(
        "{} holds a training run of other settings ({}): the preset's recipe may have changed \
         since that run",
        train.output_dir.display(),
        conflicts.join("; ")
    )))
}

fn train_stage(
    cfg: &PipelineConfig,
    train: &TrainConfig,
    interrupt: Option<&Arc<Interrupt>>,
    log: &mut dyn FnMut(&str),
) -> Result<TrainRecord> {
    if let Some(mut done) = load_stage::<TrainRecord>(&cfg.output_dir, "train") {
        done.timing.skipped = true;
        log(&format!(
            "train: done by an earlier run ({} updates), skipping",
            done.outcome.updates
        ));
        return Ok(done);
    }
    // A crash between a checkpoint save's two renames left a checkpoint aside.
    crate::checkpoint_dir::recover_run(&train.output_dir)?;
    let resume = train.output_dir.join(LAST).join(TRAIN_STATE_FILE).is_file();
    let start = Instant::now();
    let mut trainer = Trainer::from_config(train.clone(), resume)?;
    if let Some(earlier) = trainer.earlier_run_set_aside() {
        log(&format!(
            "train: an earlier run's files moved to {} ({:.1} MB)",
            earlier.dir.display(),
            earlier.bytes as f64 / 1e6
        ));
    }
    let seen_before = trainer.state().examples_seen;
    if resume {
        log(&format!(
            "train: resuming from {} after {} updates",
            train.output_dir.join(LAST).display(),
            trainer.state().counters.global_step
        ));
    }
    log(&format!(
        "train: {} parameters, {} updates planned",
        trainer.params().numel(),
        trainer.total_updates()
    ));
    if let Some(interrupt) = interrupt {
        trainer.stop_on(Arc::clone(interrupt));
    }
    let summary = trainer.run()?;
    if summary.interrupted {
        // No stage record: the rerun resumes from checkpoint-last.
        return Err(TrainError::Interrupted(format!(
            "training stopped after update {} of {}, {} saved; run the same command again to \
             resume",
            summary.updates,
            trainer.total_updates(),
            summary.last_checkpoint.display()
        )));
    }
    let seen = trainer.state().examples_seen;
    let what = match summary.evaluations {
        0 => format!("{} updates, no dev evaluation", summary.updates),
        n => format!("{} updates incl. {n} dev evaluations", summary.updates),
    };
    // The row covers the whole training, every resume included (the checkpoints keep its
    // seconds), so its examples per second stay meaningful.
    let record = TrainRecord {
        timing: StageTiming::new(
            "train",
            trainer.train_seconds(),
            seen,
            if resume {
                format!(
                    "{what}; resumed from checkpoint-last, this process {:.1} s and {} examples",
                    start.elapsed().as_secs_f64(),
                    seen - seen_before
                )
            } else {
                what
            },
        ),
        outcome: TrainOutcome {
            updates: summary.updates,
            evaluations: summary.evaluations,
            examples_seen: seen,
            best_dev_bleu: summary.best_bleu.unwrap_or(0.0),
            best_dev_loss: summary
                .best_loss
                .unwrap_or(CheckpointPolicy::default().best_loss),
            checkpoint: recorded_checkpoint(&best_checkpoint(&train.output_dir, &summary)?),
        },
    };
    save_stage(&cfg.output_dir, "train", &record)?;
    Ok(record)
}

/// The training run's folder inside the pipeline's output folder.
pub(super) const TRAIN_FOLDER: &str = "train";

/// A checkpoint as the train record keeps it: relative to the output folder
/// (`train/checkpoint-best-bleu`), so that a moved or copied output folder, or one run from
/// another working directory, still scores its own model.
fn recorded_checkpoint(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or(path.as_os_str());
    Path::new(TRAIN_FOLDER).join(name)
}

/// The checkpoint a train record names, inside this run's training folder. Records of older
/// versions hold a path as the first run spelled it; only its last part counts, and it must
/// be one of the run's checkpoints.
fn checkpoint_in(train_dir: &Path, recorded: &Path) -> Result<PathBuf> {
    let name = recorded.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if [LAST, BEST_PPL, BEST_BLEU].contains(&name) {
        Ok(train_dir.join(name))
    } else {
        Err(TrainError::InvalidInput(format!(
            "stages/train.json names the checkpoint {}, which is none of the run's \
             ({LAST}, {BEST_PPL}, {BEST_BLEU}); delete stages/train.json to train again",
            recorded.display()
        )))
    }
}

/// The checkpoint the final scores use: best dev BLEU (the reference's `--do_test`
/// choice), else best dev perplexity, else the last. A best checkpoint that the run's
/// summary says was written (a best BLEU above 0, a best loss below the starting 1e6) must
/// be there: falling back would score another model without a word.
pub fn best_checkpoint(train_dir: &Path, summary: &TrainSummary) -> Result<PathBuf> {
    let has_model = |name: &str| train_dir.join(name).join("model.safetensors").is_file();
    for (name, recorded) in [
        (BEST_BLEU, summary.best_bleu.is_some()),
        (BEST_PPL, summary.best_loss.is_some()),
    ] {
        if has_model(name) {
            return Ok(train_dir.join(name));
        }
        if recorded {
            return Err(TrainError::InvalidInput(format!(
                "{}: missing, though training recorded a best dev {} for it; delete {} to \
                 train again",
                train_dir.join(name).display(),
                if name == BEST_BLEU { "BLEU" } else { "loss" },
                train_dir.display()
            )));
        }
    }
    Ok(train_dir.join(LAST))
}

struct EvalContext<'a> {
    cfg: &'a PipelineConfig,
    train: &'a TrainConfig,
    tokenizer: &'a RobertaTokenizer,
    checkpoint: PathBuf,
    device: &'a Device,
    model: Option<Seq2Seq>,
}

impl EvalContext<'_> {
    fn model(&mut self) -> Result<&Seq2Seq> {
        if self.model.is_none() {
            self.model = Some(crate::checkpoint_checksums::load_model(
                &self.checkpoint,
                self.device,
            )?);
        }
        self.model
            .as_ref()
            .ok_or_else(|| TrainError::InvalidInput("no model".into()))
    }

    fn score(
        &mut self,
        stage: &str,
        split: &str,
        path: &Path,
        limit: Option<usize>,
        log: &mut dyn FnMut(&str),
    ) -> Result<SplitScore> {
        // The files a finished stage wrote, in this output folder (it may have moved).
        let eval_dir = self.cfg.output_dir.join("eval");
        let missing = |done: &SplitScore| {
            [&done.output, &done.gold]
                .into_iter()
                .filter_map(|file| file.file_name())
                .map(|name| eval_dir.join(name))
                .find(|file| !file.is_file())
        };
        match load_stage::<SplitScore>(&self.cfg.output_dir, stage) {
            Some(done) if done.limit == limit && missing(&done).is_some() => {
                if let Some(file) = missing(&done) {
                    log(&format!(
                        "{stage}: an earlier run scored it, but {} is gone; scoring again",
                        file.display()
                    ));
                }
            }
            Some(mut done) if done.limit == limit => {
                done.timing.skipped = true;
                log(&format!(
                    "{stage}: done by an earlier run (BLEU {:.2}), skipping",
                    done.bleu_2dp
                ));
                return Ok(done);
            }
            Some(done) => log(&format!(
                "{stage}: an earlier run scored {} examples (limit {}); the limit is now {}, scoring again",
                done.examples,
                describe_limit(done.limit),
                describe_limit(limit)
            )),
            None => {}
        }
        let start = Instant::now();
        let t = self.train;
        let request = EvaluateRequest {
            limit,
            ..EvaluateRequest::from_train_config(t, path, self.cfg.output_dir.join("eval"), split)
        };
        let tokenizer = self.tokenizer;
        let bar = decoding_bar(self.cfg.progress, stage);
        let model = self.model()?;
        let report = evaluate_file(model, tokenizer, &request, |n| bar.inc(n as u64));
        bar.finish();
        let report = report?;
        let mut features = load_features(
            path,
            tokenizer,
            t.max_source_len,
            t.max_target_len,
            Stage::Dev,
        )?;
        if let Some(limit) = limit {
            features.truncate(limit);
        }
        let batching = EvalBatching {
            batch_size: t.eval_batch_size,
            padding: t.padding,
            max_source_len: t.max_source_len,
            max_target_len: t.max_target_len,
        };
        let loss = dev_loss(model, &features, &batching)?;
        let score = SplitScore {
            split: split.to_string(),
            limit,
            examples: report.examples,
            bleu: report.bleu.bleu,
            bleu_2dp: 0.0,
            loss: loss.loss(),
            perplexity: loss.perplexity(),
            empty_predictions: count_empty_predictions(&report.output)?,
            output: report.output,
            gold: report.gold,
            timing: StageTiming::new(
                stage,
                start.elapsed().as_secs_f64(),
                report.examples as u64,
                format!("beam {} + teacher-forced loss", t.beam_size),
            ),
        }
        .with_rounding();
        log(&format!(
            "{stage}: BLEU {:.2} ({}) on {} examples ({} empty predictions), perplexity {:.3}",
            score.bleu_2dp,
            c2n_eval::python_repr(score.bleu),
            score.examples,
            score.empty_predictions,
            score.perplexity
        ));
        save_stage(&self.cfg.output_dir, stage, &score)?;
        Ok(score)
    }
}

/// Rows of an `idx<TAB>text` file whose text is empty.
pub fn count_empty_predictions(output: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(output).map_err(|e| TrainError::io(output, e))?;
    Ok(text
        .lines()
        .filter(|l| l.split_once('\t').is_none_or(|(_, t)| t.trim().is_empty()))
        .count())
}

fn describe_limit(limit: Option<usize>) -> String {
    limit.map_or_else(|| "none".into(), |n| n.to_string())
}

/// Runs (or resumes) the whole pipeline and writes `report.json`, `report.md` and
/// `curves.png` into the output folder. `log` receives one line per event.
pub fn run_pipeline(cfg: &PipelineConfig, log: &mut dyn FnMut(&str)) -> Result<PipelineReport> {
    run_pipeline_interruptible(cfg, None, log)
}

/// [`run_pipeline`] whose training stage ends after the update during which `interrupt` is
/// requested ([`Trainer::stop_on`]): `checkpoint-last` is saved and the pipeline returns
/// [`TrainError::Interrupted`]; a rerun resumes there.
pub fn run_pipeline_interruptible(
    cfg: &PipelineConfig,
    interrupt: Option<&Arc<Interrupt>>,
    log: &mut dyn FnMut(&str),
) -> Result<PipelineReport> {
    let start = Instant::now();
    cfg.validate()?;
    let out = &cfg.output_dir;
    // Held to the end: a second pipeline here would redo or skip this one's stages mid-run.
    let _lock = crate::run_lock::RunLock::acquire(out, "pipeline")?;
    let device = select_device(&cfg.device)?;
    let (preset, why) = choose_preset(cfg.preset, &device);
    let cfg = &PipelineConfig {
        preset: Some(preset),
        ..cfg.clone()
    };
    log(&format!(
        "=== code2nl pipeline: lang {} · preset {preset} ({why}) · device {} · output {} ===",
        cfg.lang,
        describe_device(&device),
        out.display()
    ));
    // The folders the stages write: a file in the way fails now, not after the prepare stage.
    for folder in ["data", TRAIN_FOLDER, "eval", "stages"] {
        crate::output_dir::check_no_file_in_the_way(&out.join(folder))?;
    }
    super::identity::discard_leftovers_of_a_failed_start(cfg, log)?;
    check_same_run(cfg, log)?;
    if cfg.dev_split == cfg.test_split {
        log(&format!(
            "warning: dev_split and test_split are both `{}`: checkpoints are chosen on the test data, so its score is optimistic",
            cfg.test_split
        ));
    }
    let tokenizer_spec = tokenizer_spec(cfg, preset);
    if cfg.tokenizer.is_none() && preset == Preset::Small {
        // The user never named it: say where it was looked for.
        let looked = if cfg.data_dir.is_some() {
            "a roberta-base folder beside the data folder, else the hub's roberta-base"
        } else {
            "the hub's roberta-base"
        };
        log(&format!(
            "tokenizer: {tokenizer_spec} (no --tokenizer given; the small preset takes {looked})"
        ));
    }
    let splits = resolve_splits(cfg)?;
    check_same_data(cfg, log)?;
    save_run_config(cfg)?;
    let train = train_config(cfg, preset, &splits, &tokenizer_spec)?;
    for warning in train.warnings() {
        log(&format!("warning: {warning}"));
    }
    check_same_training(&train)?;
    let prepare = prepare_stage(cfg, &splits, &train, &tokenizer_spec, log)?;
    let trained = train_stage(cfg, &train, interrupt, log)?;
    if interrupt.is_some_and(|i| i.is_requested()) {
        // Asked during the last update: training is done and recorded, the rest is not begun.
        return Err(TrainError::Interrupted(
            "training is done; the evaluation stages did not run; run the same command again \
             to run them"
                .into(),
        ));
    }
    let tokenizer = RobertaTokenizer::load(&tokenizer_spec)?;
    let mut eval = EvalContext {
        cfg,
        train: &train,
        tokenizer: &tokenizer,
        checkpoint: checkpoint_in(&train.output_dir, &trained.outcome.checkpoint)?,
        device: &device,
        model: None,
    };
    let dev = eval.score("evaluate-dev", "dev", &splits.dev, cfg.dev_limit, log)?;
    let test = eval.score("evaluate-test", "test", &splits.test, cfg.test_limit, log)?;
    let parameters = model_params(eval.model()?)?.numel();

    let metrics_path = train.output_dir.join("metrics.jsonl");
    let curves = out.join("curves.png");
    let curves_png = match MetricsLog::read(&metrics_path) {
        Ok(records) if !records.is_empty() => {
            training_curves_png(&records, &curves)?;
            Some(curves)
        }
        _ => None,
    };
    let (published_bleu, published_row) = match preset {
        Preset::Roberta => (published_roberta_bleu(&cfg.lang), "RoBERTa"),
        _ => (published_codebert_bleu(&cfg.lang), "CodeBERT"),
    };
    let stages = vec![
        prepare.timing,
        trained.timing,
        dev.timing.clone(),
        test.timing.clone(),
    ];
    // This invocation's time plus the stages an earlier one did: a rerun that skips every
    // stage still reports what the results took.
    let earlier_seconds: f64 = stages.iter().filter(|s| s.skipped).map(|s| s.seconds).sum();
    let report = PipelineReport {
        lang: cfg.lang.clone(),
        preset: preset.name().into(),
        device: describe_device(&device),
        parameters,
        splits,
        stages,
        train: trained.outcome,
        dev,
        test,
        published_bleu,
        published_row: published_row.into(),
        train_config: serde_json::to_value(&train)
            .map_err(|e| TrainError::Config(e.to_string()))?,
        data_stats: prepare.stats_markdown,
        curves_png,
        total_seconds: start.elapsed().as_secs_f64() + earlier_seconds,
    };
    let json_path = out.join("report.json");
    let json =
        serde_json::to_string_pretty(&report).map_err(|e| TrainError::parse(&json_path, e))?;
    let write = crate::output_file::write_text_aside;
    write(&json_path, &json)?;
    write(&out.join("report.md"), &report.markdown())?;
    Ok(report)
}

/// Examples decoded so far in an evaluation stage (hidden without `progress`). Decoding
/// the CodeBERT-size model on a CPU takes minutes.
fn decoding_bar(progress: bool, stage: &str) -> crate::progress::Progress {
    if progress {
        crate::progress::Progress::examples(None, &format!("decoded ({stage})"))
    } else {
        crate::progress::Progress::hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(best_loss: Option<f64>, best_bleu: Option<f64>) -> TrainSummary {
        TrainSummary {
            interrupted: false,
            updates: 10,
            batches: 10,
            evaluations: 2,
            best_loss,
            best_bleu,
            stopped_early: false,
            last_checkpoint: PathBuf::new(),
            seconds: 1.0,
        }
    }

    #[test]
    fn a_recorded_checkpoint_is_found_in_the_run_that_reads_it() {
        // Recorded by a run started as `--output-dir runA` from somewhere else.
        let recorded = recorded_checkpoint(Path::new("runA/train/checkpoint-best-bleu"));
        assert_eq!(recorded, Path::new("train/checkpoint-best-bleu"));
        // The folder moved to runB: runB's own checkpoint, also from an old absolute record.
        for old in [
            recorded.as_path(),
            Path::new("/elsewhere/runA/train/checkpoint-best-bleu"),
        ] {
            assert_eq!(
                checkpoint_in(Path::new("runB/train"), old).unwrap(),
                Path::new("runB/train/checkpoint-best-bleu")
            );
        }
        let err = checkpoint_in(Path::new("runB/train"), Path::new("/tmp/some-model"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("none of the run's"), "{err}");
    }

    #[test]
    fn best_checkpoint_never_falls_back_past_one_the_run_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path();
        // No evaluation: the last checkpoint.
        assert_eq!(
            best_checkpoint(train, &summary(None, None)).unwrap(),
            train.join(LAST)
        );
        std::fs::create_dir_all(train.join(BEST_PPL)).unwrap();
        std::fs::write(train.join(BEST_PPL).join("model.safetensors"), "x").unwrap();
        // BLEU never above 0: no best-BLEU checkpoint is expected, best-ppl is used.
        assert_eq!(
            best_checkpoint(train, &summary(Some(3.0), None)).unwrap(),
            train.join(BEST_PPL)
        );
        // A best BLEU was recorded but its checkpoint is gone: refused, naming it.
        let err = best_checkpoint(train, &summary(Some(3.0), Some(4.5)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checkpoint-best-bleu") && err.contains("BLEU"),
            "{err}"
        );
        std::fs::remove_dir_all(train.join(BEST_PPL)).unwrap();
        let err = best_checkpoint(train, &summary(Some(3.0), None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("checkpoint-best-ppl"), "{err}");
    }
}
