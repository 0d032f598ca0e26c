//! One micro-step: this rank's forward and backward, gradient accumulation, the
//! cross-rank sum and the update.

use crate::comm::{
    self, exchange_batch_stats, rank_grad_scale, BucketPlan, Communicator, GradWeighting,
    LocalBatch, ReduceOp, SingleComm,
};
use crate::dropout_seeds::micro_batch_dropout_seed;
use crate::forward_pass::ForwardPass;
use crate::loop_plan::MicroStep;
use crate::model_setup::POSITION_EMBEDDINGS;
use crate::optim::Gradients;
use crate::tensors::feature_tokens;
use crate::{Result, TrainError};
use c2n_data::batch::padded_lengths;
use c2n_data::partition::{chunk_slice, rank_slice};
use c2n_data::{make_batch, plan_epoch, Feature};
use c2n_model::layers::dropout_seed_stream;
use std::time::Instant;

use super::Trainer;
use crate::train_memory::{explain_out_of_memory, MemoryUse};

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
            let outcome = if comm.world_size() == 1 {
                self.single_rank_gradients(&positions)
            } else {
                self.rank_gradients(&positions, comm)
            };
            outcome.map_err(|e| explain_out_of_memory(e, "a training step", MemoryUse::Training))?
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
        let (loss, tokens, examples) = (outcome.loss, outcome.tokens, outcome.examples);
        self.state.running_loss.add(outcome.loss);
        self.state.examples_seen += outcome.examples as u64;
        self.state.target_tokens_seen += outcome.target_tokens;
        // AdamW allocates its moments at the first update: a device that runs out of memory
        // does so here as often as in the step itself.
        self.accumulate_and_update(step, outcome.grads, comm)
            .map_err(|e| explain_out_of_memory(e, "an optimizer update", MemoryUse::Training))?;
        self.state.counters = self.driver.counters();
        Ok((loss, tokens, examples))
    }

    /// Adds a micro-batch's gradients to the pending sum and, when the step updates, sums
    /// them across ranks, clips them (if asked) and applies them.
    fn accumulate_and_update(
        &mut self,
        step: &MicroStep,
        grads: Gradients,
        comm: &dyn Communicator,
    ) -> Result<()> {
        self.pending.accumulate(grads)?;
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
        Ok(())
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
    pub(super) fn fold_pending_into_rank0(&mut self, comm: &dyn Communicator) -> Result<()> {
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
