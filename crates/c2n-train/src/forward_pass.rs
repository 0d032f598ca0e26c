//! One micro-batch's forward pass, ready for the backward pass the configuration chooses.

use c2n_data::Batch;
use c2n_model::{HostBatch, LossOutput, Seq2Seq, TrainingPass};
use candle_core::backprop::GradStore;
use candle_core::Tensor;

use crate::config::BackwardPath;
use crate::Result;

/// The loss of a micro-batch and what its backward pass needs.
pub enum ForwardPass<'m> {
    /// The op graph recorded by `forward_loss`.
    Graph(LossOutput),
    /// The explicit pass's saved tensors (boxed: the pass holds one tape per layer).
    Explicit(Box<TrainingPass<'m>>),
}

impl<'m> ForwardPass<'m> {
    /// The training-mode forward pass of `batch` along `path`. Everything the model needs from
    /// the host is taken from the batch itself, so nothing is read back from the device and
    /// the step can be queued while the device still runs the previous one.
    pub fn run(model: &'m Seq2Seq, batch: &Batch, path: BackwardPath) -> Result<Self> {
        let host = HostBatch {
            source_ids: &batch.source_ids,
            target_ids: &batch.target_ids,
            target_mask: &batch.target_mask,
            rows: batch.batch_size,
            source_len: batch.source_len,
            target_len: batch.target_len,
        };
        let inputs = model.loss_inputs_from_host(host)?;
        let source_mask = Tensor::from_slice(
            &batch.source_mask,
            (batch.batch_size, batch.source_len),
            model.device(),
        )?;
        Ok(match path {
            BackwardPath::Graph => {
                Self::Graph(model.forward_loss_with(inputs, &source_mask, true)?)
            }
            BackwardPath::Explicit => Self::Explicit(Box::new(model.training_pass_with(
                inputs,
                &source_mask,
                true,
            )?)),
        })
    }

    /// The loss.
    pub fn output(&self) -> &LossOutput {
        match self {
            Self::Graph(out) => out,
            Self::Explicit(pass) => pass.output(),
        }
    }

    /// Gradients of `d_loss × loss` (`d_loss = 1` backpropagates the loss itself).
    pub fn backward(self, d_loss: f64) -> Result<GradStore> {
        Ok(match self {
            Self::Graph(out) if d_loss == 1.0 => out.loss.backward()?,
            Self::Graph(out) => (out.loss * d_loss)?.backward()?,
            Self::Explicit(pass) => (*pass).backward(d_loss)?,
        })
    }
}
