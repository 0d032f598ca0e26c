//! The reference decoding path of §6.1: recompute the whole decoder on each row's full prefix
//! at every step. No cache; the test oracle and benchmark baseline for [`KvCacheSession`].
//!
//! [`KvCacheSession`]: super::KvCacheSession

use candle_core::Tensor;

use super::host_log_probs::log_probs_to_host;
use super::rows::Rows;
use crate::step::NextTokenLogProbs;
use crate::{ModelError, Result, Seq2Seq};

/// A decoding session that keeps token prefixes and reruns the decoder on them.
pub struct FullPrefixSession<'a> {
    model: &'a Seq2Seq,
    /// Encoder output per example `[E, S, H]`.
    memory: Tensor,
    /// Source mask per example `[E, S]`.
    source_mask: Tensor,
    rows: Rows,
    prefixes: Vec<Vec<u32>>,
}

impl<'a> FullPrefixSession<'a> {
    /// Encode `source_ids`/`source_mask` `[E, S]` once; start `E × rows_per_example` empty rows.
    pub fn new(
        model: &'a Seq2Seq,
        source_ids: &Tensor,
        source_mask: &Tensor,
        rows_per_example: usize,
    ) -> Result<Self> {
        let (n, _) = source_ids.dims2()?;
        // Checked before the encoder runs: a beam wider than the vocabulary is refused at once.
        let rows = Rows::new(n, rows_per_example, model.config().vocab_size)?;
        // Detached: the op graph would keep every encoder activation alive.
        let memory = model.encode_inference(source_ids, source_mask)?;
        let prefixes = vec![Vec::new(); rows.len()];
        Ok(Self {
            model,
            memory,
            source_mask: source_mask.clone(),
            rows,
            prefixes,
        })
    }

    /// The current prefix of every row (including the initial `<s>`).
    pub fn prefixes(&self) -> &[Vec<u32>] {
        &self.prefixes
    }
}

impl NextTokenLogProbs for FullPrefixSession<'_> {
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn layout(&self) -> Option<(usize, usize)> {
        Some(self.rows.layout)
    }

    fn max_prefix_len(&self) -> Option<usize> {
        Some(self.model.config().max_sequence_len())
    }

    fn step(&mut self, origin: &[u32], tokens: &[u32]) -> Result<Vec<f32>> {
        let _no_grad = crate::layers::no_grad();
        self.rows.check(origin, tokens)?;
        self.prefixes = origin
            .iter()
            .zip(tokens)
            .map(|(&o, &t)| {
                let mut p = self.prefixes[o as usize].clone();
                p.push(t);
                p
            })
            .collect();
        self.rows.reorder(origin);
        let r = origin.len();
        if r == 0 {
            return Ok(Vec::new());
        }
        let len = self.prefixes[0].len();
        if self.prefixes.iter().any(|p| p.len() != len) {
            return Err(ModelError::InvalidInput(
                "rows have different prefix lengths".into(),
            ));
        }
        let device = self.model.device();
        let flat: Vec<u32> = self.prefixes.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (r, len), device)?;
        let index = Tensor::new(self.rows.example.as_slice(), device)?;
        let memory = self.memory.index_select(&index, 0)?;
        let mask = self.source_mask.index_select(&index, 0)?;
        let hidden = self.model.decode_hidden(&ids, &memory, &mask, false)?;
        let last = hidden.narrow(1, len - 1, 1)?.squeeze(1)?;
        let logits = self.model.lm_logits(&last)?;
        log_probs_to_host(&logits)
    }
}
