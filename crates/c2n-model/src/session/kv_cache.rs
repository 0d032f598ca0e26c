//! KV-cached incremental decoding (§6.8 "allowed optimizations").
//!
//! - The encoder runs once; each decoder layer's cross-attention keys/values are computed
//!   once per example. Beam rows come in groups of K rows per example: the layer then attends
//!   with the example's K queries together, reading its keys/values once (not K copies).
//!   They are re-gathered only when the set of examples changes.
//! - Self-attention keys/values of past positions are cached per layer and reordered (or
//!   dropped) by `origin` at each step, together with appending the newest position (the only
//!   one computed): [`KvCache`](crate::decoder::KvCache); or, in the slotted layout
//!   ([`CacheLayout`]), kept in place with only a table of slots following the beam
//!   ([`SlotCache`](crate::decoder::SlotCache)).
//! - Position ids come from a per-row count of non-pad tokens, so a generated `<pad>` gets
//!   position `pad_id` and does not advance later positions, exactly as the full-prefix path.

use candle_core::Tensor;

use super::host_log_probs::log_probs_to_host;
use super::row_top_k::{logits_row_top_k, CandidateRanking};
use super::rows::{is_identity, Rows};
use crate::decoder::{memory_key_padding_mask, CacheLayout, SelfAttentionCache};
use crate::step::NextTokenLogProbs;
use crate::{ModelError, Result, RowTopK, Seq2Seq};

/// Per-example cross-attention inputs and their gather for the current rows.
///
/// When the rows come in equal groups of consecutive rows of one example (always so in beam
/// search: K rows per example still decoding), one entry per group is gathered and the layer
/// attends per group; otherwise one entry per row.
struct CrossAttention {
    /// Per layer: keys and values `[E, heads, S, d]`.
    per_example: Vec<(Tensor, Tensor)>,
    /// `[E, 1, 1, S]`, 0 or −inf.
    mask: Tensor,
    /// The examples the gathered tensors were built for, one per group (or per row).
    gathered_for: Vec<u32>,
    /// Rows per gathered entry.
    rows_per_entry: usize,
    gathered: Vec<(Tensor, Tensor)>,
    gathered_mask: Option<Tensor>,
}

/// `(example of each group, rows per group)` when `example` is a run of equal-length groups
/// of one example each, else `(example, 1)`.
fn example_groups(example: &[u32]) -> (Vec<u32>, usize) {
    let group = example
        .iter()
        .position(|&e| Some(&e) != example.first())
        .unwrap_or(example.len());
    let grouped = group > 1
        && example.len().is_multiple_of(group)
        && example
            .chunks_exact(group)
            .all(|chunk| chunk.iter().all(|&e| e == chunk[0]));
    if grouped {
        (example.iter().step_by(group).copied().collect(), group)
    } else {
        (example.to_vec(), 1)
    }
}

/// A decoding session with self-attention KV caches.
pub struct KvCacheSession<'a> {
    model: &'a Seq2Seq,
    rows: Rows,
    cross: CrossAttention,
    /// Per decoder layer; created at the first step, in `cache_layout`.
    caches: Vec<SelfAttentionCache>,
    cache_layout: CacheLayout,
    /// Non-pad tokens in each row's prefix (drives the position ids).
    non_pad: Vec<u32>,
    ranking: CandidateRanking,
}

impl<'a> KvCacheSession<'a> {
    /// Encode `source_ids`/`source_mask` `[E, S]` once and precompute the cross-attention
    /// keys/values of every decoder layer; start `E × rows_per_example` empty rows.
    pub fn new(
        model: &'a Seq2Seq,
        source_ids: &Tensor,
        source_mask: &Tensor,
        rows_per_example: usize,
    ) -> Result<Self> {
        let (n, _) = source_ids.dims2()?;
        // Checked before the encoder runs: a beam wider than the vocabulary is refused at once.
        let rows = Rows::new(n, rows_per_example, model.config().vocab_size)?;
        let _no_grad = crate::layers::no_grad();
        let memory = model.encode_inference(source_ids, source_mask)?;
        let per_example = model
            .decoder_layers()
            .iter()
            .map(|l| l.cross_attention().keys_values(&memory))
            .collect::<Result<Vec<_>>>()?;
        let n_rows = rows.len();
        Ok(Self {
            model,
            rows,
            cross: CrossAttention {
                per_example,
                mask: memory_key_padding_mask(source_mask)?,
                gathered_for: Vec::new(),
                rows_per_entry: 1,
                gathered: Vec::new(),
                gathered_mask: None,
            },
            caches: Vec::new(),
            cache_layout: CacheLayout::default(),
            non_pad: vec![0; n_rows],
            ranking: CandidateRanking::default(),
        })
    }

    /// Where beam candidates are ranked (default [`CandidateRanking::Auto`]: on the device
    /// for a GPU model). The search result is the same either way.
    pub fn with_candidate_ranking(mut self, ranking: CandidateRanking) -> Self {
        self.ranking = ranking;
        self
    }

    /// How the self-attention keys and values are kept (default [`CacheLayout::Auto`]). Takes
    /// effect at the first step. On the CPU both layouts give bit-identical log-probabilities;
    /// on CUDA the slotted kernel sums in its own order, so candidates within float round-off
    /// of each other may rank differently.
    pub fn with_cache_layout(mut self, layout: CacheLayout) -> Self {
        self.cache_layout = layout;
        self
    }

    /// The cache layout in use (resolved for the model's device and dtype).
    pub fn cache_layout(&self) -> CacheLayout {
        self.cache_layout
            .resolve(self.model.compute_dtype(), self.model.device())
    }

    /// Number of positions decoded so far.
    pub fn steps(&self) -> usize {
        self.caches.first().map_or(0, SelfAttentionCache::len)
    }

    /// Gathers the cross-attention inputs for the current rows; returns the rows per entry.
    fn gather_cross(&mut self) -> Result<usize> {
        let (entries, rows_per_entry) = example_groups(&self.rows.example);
        if self.cross.gathered_for == entries
            && self.cross.rows_per_entry == rows_per_entry
            && self.cross.gathered_mask.is_some()
        {
            return Ok(rows_per_entry);
        }
        let index = Tensor::new(entries.as_slice(), self.model.device())?;
        self.cross.gathered = self
            .cross
            .per_example
            .iter()
            .map(|(k, v)| Ok((k.index_select(&index, 0)?, v.index_select(&index, 0)?)))
            .collect::<Result<Vec<_>>>()?;
        self.cross.gathered_mask = Some(self.cross.mask.index_select(&index, 0)?);
        self.cross.gathered_for = entries;
        self.cross.rows_per_entry = rows_per_entry;
        Ok(rows_per_entry)
    }
}

impl NextTokenLogProbs for KvCacheSession<'_> {
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
        match self.logits(origin, tokens)? {
            Some(logits) => {
                let _no_grad = crate::layers::no_grad();
                log_probs_to_host(&logits)
            }
            None => Ok(Vec::new()),
        }
    }

    fn prefers_row_top_k(&self) -> bool {
        self.ranking.on_device(self.model.device())
    }

    fn step_row_top_k(
        &mut self,
        origin: &[u32],
        tokens: &[u32],
        row_scores: Option<&[f32]>,
        k: usize,
    ) -> Result<RowTopK> {
        match self.logits(origin, tokens)? {
            Some(logits) => logits_row_top_k(&logits, row_scores, k),
            None => Ok(RowTopK::empty(k)),
        }
    }
}

impl KvCacheSession<'_> {
    /// Advance the rows by one token and return the next-token logits `[rows, V]`; `None`
    /// when no row is left.
    fn logits(&mut self, origin: &[u32], tokens: &[u32]) -> Result<Option<Tensor>> {
        let _no_grad = crate::layers::no_grad();
        self.rows.check(origin, tokens)?;
        let previous_rows = self.rows.len();
        let device = self.model.device().clone();
        if !is_identity(origin, previous_rows) {
            let index = Tensor::new(origin, &device)?;
            for cache in self.caches.iter_mut() {
                // Applied with this step's append (one copy of the cache on CUDA).
                cache.reorder(&index)?;
            }
        }
        self.rows.reorder(origin);
        let pad = self.model.config().pad_token_id;
        self.non_pad = origin
            .iter()
            .zip(tokens)
            .map(|(&o, &t)| self.non_pad[o as usize] + u32::from(t != pad))
            .collect();
        let r = origin.len();
        if r == 0 {
            return Ok(None);
        }
        let positions: Vec<u32> = tokens
            .iter()
            .zip(&self.non_pad)
            .map(|(&t, &count)| if t == pad { pad } else { pad + count })
            .collect();
        if self.caches.is_empty() {
            let config = self.model.config();
            let heads = config.decoder_heads();
            self.caches = (0..self.model.decoder_layers().len())
                .map(|_| {
                    SelfAttentionCache::new(
                        self.cache_layout,
                        r,
                        heads,
                        config.hidden_size / heads,
                        self.model.compute_dtype(),
                        &device,
                    )
                })
                .collect::<Result<_>>()?;
        }
        let rows_per_entry = self.gather_cross()?;
        // Checked on the host: no device reduction or round trip per step.
        let embeddings = self.model.embeddings();
        let inputs = embeddings.inputs_from_host(tokens, &positions, (r, 1), &device)?;
        let mut x = embeddings.forward_inputs(&inputs, self.model.compute_dtype(), false)?;
        let mask =
            self.cross.gathered_mask.as_ref().ok_or_else(|| {
                ModelError::InvalidInput("cross-attention mask not gathered".into())
            })?;
        for ((layer, cache), kv) in self
            .model
            .decoder_layers()
            .iter()
            .zip(self.caches.iter_mut())
            .zip(&self.cross.gathered)
        {
            // Under no_grad the layers read detached weights: no op graph links a step's
            // activations or the `cat`-built cache to earlier steps.
            x = layer.step(&x, cache, kv, mask, rows_per_entry)?;
        }
        let hidden = self.model.head_hidden(&x.squeeze(1)?)?;
        Ok(Some(self.model.lm_logits(&hidden)?))
    }
}

#[cfg(test)]
mod tests {
    use super::example_groups;

    #[test]
    fn rows_group_by_example_only_in_equal_runs() {
        assert_eq!(example_groups(&[0, 0, 2, 2, 5, 5]), (vec![0, 2, 5], 2));
        assert_eq!(example_groups(&[3, 3, 3]), (vec![3], 3));
        // Unequal runs, a split example, single rows: one entry per row.
        assert_eq!(example_groups(&[0, 0, 1]), (vec![0, 0, 1], 1));
        assert_eq!(example_groups(&[0, 0, 1, 0]), (vec![0, 0, 1, 0], 1));
        assert_eq!(example_groups(&[0, 1, 2]), (vec![0, 1, 2], 1));
        assert_eq!(example_groups(&[]), (vec![], 1));
    }
}
