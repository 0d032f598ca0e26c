//! One micro-batch's forward pass, ready for the backward pass the configuration chooses.

use c2n_model::{LossOutput, Seq2Seq, TrainingPass};
use candle_core::backprop::GradStore;

use crate::config::BackwardPath;
use crate::tensors::BatchTensors;
use crate::Result;

/// The loss of a micro-batch and what its backward pass needs.
pub enum ForwardPass<'m> {
    /// The op graph recorded by `forward_loss`.
    Graph(LossOutput),
    /// The explicit pass's saved tensors (boxed: the pass holds one tape per layer).
    Explicit(Box<TrainingPass<'m>>),
}

impl<'m> ForwardPass<'m> {
    /// The training-mode forward pass of `x` along `path`.
    pub fn run(model: &'m Seq2Seq, x: &BatchTensors, path: BackwardPath) -> Result<Self> {
        let args = (&x.source_ids, &x.source_mask, &x.target_ids, &x.target_mask);
        Ok(match path {
            BackwardPath::Graph => {
                Self::Graph(model.forward_loss(args.0, args.1, args.2, args.3, true)?)
            }
            BackwardPath::Explicit => Self::Explicit(Box::new(
                model.training_pass(args.0, args.1, args.2, args.3, true)?,
            )),
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
