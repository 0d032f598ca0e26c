//! Dev evaluation with its checkpoints, and writing a checkpoint.

use crate::checkpoint_dir;
use crate::checkpoint_policy::{BEST_BLEU, BEST_PPL, LAST};
use crate::comm::{Communicator, SingleComm};
use crate::config::TRAIN_CONFIG_FILE;
use crate::evaluate::{broadcast_f64, decode_sharded, dev_loss_sharded, EvalBatching, Predictions};
use crate::metrics::MetricRecord;
use crate::state::TrainState;
use crate::Result;
use c2n_model::generation::GenerationConfig;
use std::path::PathBuf;

use super::Trainer;
use crate::train_memory::{explain_out_of_memory, MemoryUse};

impl Trainer {
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
            // Last: the digests of every file above, checked before a resume or evaluation.
            crate::checkpoint_checksums::write(partial)?;
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
        let loss = dev_loss_sharded(comm, &self.model, &dev.loss_features, &batching)
            .map_err(|e| explain_out_of_memory(e, "the dev loss", MemoryUse::Evaluation))?;
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
                )
                .map_err(|e| {
                    explain_out_of_memory(e, "the dev BLEU decoding", MemoryUse::Evaluation)
                })?;
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
            format!(
                " bleu {}",
                c2n_eval::python_repr(crate::checkpoint_policy::python_round2(b))
            )
        });
        Ok(format!(
            "eval after update {global_step}: train loss {train_loss:.5} dev loss {:.5} ppl {:.5}{bleu_text} → {}",
            loss.loss(),
            loss.perplexity(),
            saved.join(", ")
        ))
    }
}
