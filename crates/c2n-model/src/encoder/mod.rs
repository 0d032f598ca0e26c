//! The RoBERTa encoder of transformers 2.5 (spec §4.2): embeddings, post-LN layers, pooler.

mod embeddings;
mod layer;
mod positions;

pub use embeddings::{EmbeddingInputs, Embeddings};
pub use layer::EncoderLayer;
pub use positions::padding_aware_positions;

use candle_core::{DType, Tensor};

use crate::init::Params;
use crate::layers::Linear;
use crate::Result;

/// `encoder.*`: embeddings, `encoder.layer.N`, `pooler.dense` (present in checkpoints, unused).
#[derive(Debug, Clone)]
pub struct RobertaEncoder {
    embeddings: Embeddings,
    pub(crate) layers: Vec<EncoderLayer>,
    /// Kept so the Vars exist and round-trip; its output is never used (§4.5).
    #[allow(dead_code)]
    pooler: Linear,
}

impl RobertaEncoder {
    pub(crate) fn new(p: &Params) -> Result<Self> {
        let h = p.cfg.hidden_size;
        let layers = (0..p.cfg.num_hidden_layers)
            .map(|l| EncoderLayer::new(&p.pp("encoder.layer").pp(l)))
            .collect::<Result<Vec<_>>>()?;
        let pooler_p = p.pp("pooler.dense");
        Ok(Self {
            embeddings: Embeddings::new(&p.pp("embeddings"))?,
            layers,
            pooler: Linear::new(
                pooler_p.get("weight", &[h, h])?,
                Some(pooler_p.get("bias", &[h])?),
            ),
        })
    }

    /// The embedding module (shared with the decoder inputs).
    pub fn embeddings(&self) -> &Embeddings {
        &self.embeddings
    }

    /// Last hidden state `[n, S, H]` for `source_ids [n, S]` (u32) and `source_mask [n, S]`
    /// (1 real, 0 pad; any dtype). Pads are masked as keys with −10000.
    pub fn forward(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        dtype: DType,
        train: bool,
    ) -> Result<Tensor> {
        let inputs = self.embeddings.inputs(source_ids)?;
        self.forward_inputs(&inputs, source_mask, dtype, train)
    }

    /// [`forward`](Self::forward) from prepared lookup indices.
    pub fn forward_inputs(
        &self,
        inputs: &EmbeddingInputs,
        source_mask: &Tensor,
        dtype: DType,
        train: bool,
    ) -> Result<Tensor> {
        self.run(inputs, &mask_term(source_mask)?, dtype, train, false)
    }

    /// [`forward`](Self::forward) in eval mode for inference: the op graph is cut after every
    /// layer, so only one layer's activations are alive at a time. The weights are variables,
    /// so a plain forward records the graph and its output keeps every layer's activations
    /// (≈ 0.6 GB per 256-token example at CodeBERT size) until it is dropped.
    pub fn forward_inference(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        dtype: DType,
    ) -> Result<Tensor> {
        let inputs = self.embeddings.inputs(source_ids)?;
        self.run(&inputs, &mask_term(source_mask)?, dtype, false, true)
    }

    fn run(
        &self,
        inputs: &EmbeddingInputs,
        mask_term: &Tensor,
        dtype: DType,
        train: bool,
        cut_graph: bool,
    ) -> Result<Tensor> {
        let mut h = self.embeddings.forward_inputs(inputs, dtype, train)?;
        for layer in &self.layers {
            if cut_graph {
                h = h.detach();
            }
            h = layer.forward(&h, mask_term, train)?;
        }
        Ok(if cut_graph { h.detach() } else { h })
    }
}

/// The additive key mask `[n, 1, 1, S]`: `(1 − mask) × −10000 = mask × 10000 − 10000`.
pub(crate) fn mask_term(source_mask: &Tensor) -> Result<Tensor> {
    let (n, s) = source_mask.dims2()?;
    Ok(source_mask
        .to_dtype(DType::F32)?
        .affine(10000.0, -10000.0)?
        .reshape((n, 1, 1, s))?)
}
