//! Batches: which examples go together (per epoch, per rank) and how they are padded.
//!
//! A [`Batch`] holds flat `u32` arrays plus their shape, ready to become tensors in the
//! training crate; this crate knows nothing of candle.
//!
//! Global batches are planned once per epoch from `(seed, epoch)` only, so every rank plans the
//! same list; each rank then takes its contiguous slice ([`crate::partition::rank_slice`]).
//! Padding lengths are those of the **global** batch, so the rows a rank sees do not depend
//! on the number of ranks.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::features::pad;
use crate::partition::{epoch_rng, rank_slice};
use crate::shard::FeatureSet;
use crate::tokenizer::PAD_ID;

/// How sequences are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Every batch padded to `max_source_len` / `max_target_len` (the reference).
    #[default]
    Reference,
    /// Padded to the longest sequence of the global batch.
    Dynamic,
}

/// How an epoch is cut into global batches.
///
/// Default: batch 32, reference padding to 256 / 128, shuffled with seed 42, last batch kept,
/// no bucketing, no token budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchConfig {
    /// Global batch size (examples), split across ranks.
    pub batch_size: usize,
    /// Reference or dynamic padding.
    pub padding: Padding,
    /// Source length for reference padding.
    pub max_source_len: usize,
    /// Target length for reference padding.
    pub max_target_len: usize,
    /// Shuffle with `(seed, epoch)`; otherwise file order.
    pub shuffle: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Drop a last batch smaller than `batch_size` (with a `token_budget`, batches have no
    /// fixed size, so nothing is dropped).
    pub drop_last: bool,
    /// Length bucketing: sort windows of this many global batches by length before cutting
    /// them (then the batch order is shuffled). `None`: no bucketing.
    pub bucket_window: Option<usize>,
    /// Cap on `batch rows × padded source length` (dynamic batches), with `batch_size` still
    /// the cap on rows. `None`: fixed row count.
    pub token_budget: Option<usize>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_size: 32,
            padding: Padding::Reference,
            max_source_len: 256,
            max_target_len: 128,
            shuffle: true,
            seed: 42,
            drop_last: false,
            bucket_window: None,
            token_budget: None,
        }
    }
}

/// One padded batch, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Example idx of each row.
    pub idx: Vec<u64>,
    /// Position of each row in the feature set.
    pub positions: Vec<usize>,
    /// Rows.
    pub batch_size: usize,
    /// Columns of the source arrays.
    pub source_len: usize,
    /// Columns of the target arrays.
    pub target_len: usize,
    /// `[batch_size × source_len]` ids, padded with 1.
    pub source_ids: Vec<u32>,
    /// `[batch_size × source_len]` 1 for real tokens, 0 for padding.
    pub source_mask: Vec<u32>,
    /// `[batch_size × target_len]` ids, padded with 1.
    pub target_ids: Vec<u32>,
    /// `[batch_size × target_len]` mask.
    pub target_mask: Vec<u32>,
}

/// Pads the features at `positions` to `source_len` × `target_len`.
///
/// A feature longer than its length is cut to it (its `</s>` included): callers choose the
/// lengths from the batch ([`padded_lengths`], or the features' own maximum) when they need
/// every id, and a shorter target length on purpose where the targets are not used (decoding
/// passes 2).
///
/// # Panics
///
/// When a position is out of range of `set`, as slice indexing does: positions come from
/// [`plan_epoch`], [`inference_batches`] or the caller's own `0..set.len()`.
pub fn make_batch<S: FeatureSet + ?Sized>(
    set: &S,
    positions: &[usize],
    source_len: usize,
    target_len: usize,
) -> Batch {
    let n = positions.len();
    let mut batch = Batch {
        idx: Vec::with_capacity(n),
        positions: positions.to_vec(),
        batch_size: n,
        source_len,
        target_len,
        source_ids: Vec::with_capacity(n * source_len),
        source_mask: Vec::with_capacity(n * source_len),
        target_ids: Vec::with_capacity(n * target_len),
        target_mask: Vec::with_capacity(n * target_len),
    };
    for &p in positions {
        let f = set.get(p);
        batch.idx.push(f.idx);
        let (ids, mask) = pad(f.source_ids, source_len, PAD_ID);
        batch.source_ids.extend(ids);
        batch.source_mask.extend(mask);
        let (ids, mask) = pad(f.target_ids, target_len, PAD_ID);
        batch.target_ids.extend(ids);
        batch.target_mask.extend(mask);
    }
    batch
}

/// Plans the global batches of one epoch (positions into `set`). Identical on every rank.
pub fn plan_epoch<S: FeatureSet + ?Sized>(
    set: &S,
    cfg: &BatchConfig,
    epoch: u64,
) -> Result<Vec<Vec<usize>>> {
    if cfg.batch_size == 0 {
        return Err(DataError::Config("batch_size must be positive".into()));
    }
    let n = set.len();
    let mut rng = epoch_rng(cfg.seed, epoch);
    let mut order: Vec<usize> = (0..n).collect();
    if cfg.shuffle {
        rng.shuffle(&mut order);
    }
    let source_len = |p: usize| set.get(p).source_ids.len();
    let mut batches = Vec::new();
    match cfg.bucket_window {
        None => cut(&order, cfg, &source_len, &mut batches),
        Some(window) => {
            // A window past the data (even past usize) is one bucket of everything.
            let window = window.max(1).saturating_mul(cfg.batch_size);
            for chunk in order.chunks(window) {
                let mut chunk = chunk.to_vec();
                // Stable sort: equal lengths keep the shuffled order.
                chunk.sort_by_key(|&p| {
                    let f = set.get(p);
                    (f.source_ids.len(), f.target_ids.len())
                });
                cut(&chunk, cfg, &source_len, &mut batches);
            }
            if cfg.shuffle {
                rng.shuffle(&mut batches);
            }
        }
    }
    if cfg.drop_last && cfg.token_budget.is_none() {
        batches.retain(|b| b.len() == cfg.batch_size);
    }
    Ok(batches)
}

fn cut(
    order: &[usize],
    cfg: &BatchConfig,
    source_len: &dyn Fn(usize) -> usize,
    out: &mut Vec<Vec<usize>>,
) {
    let Some(budget) = cfg.token_budget else {
        out.extend(order.chunks(cfg.batch_size).map(|c| c.to_vec()));
        return;
    };
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for &p in order {
        let len = source_len(p);
        let new_longest = longest.max(len);
        let fits = (current.len() + 1) * new_longest <= budget && current.len() < cfg.batch_size;
        if !current.is_empty() && !fits {
            out.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(len);
        current.push(p);
    }
    if !current.is_empty() {
        out.push(current);
    }
}

/// Batches of at most `batch_size` positions for inference (decoding), covering every position
/// of `set` once. With [`Padding::Dynamic`] the positions go longest source first (equal
/// lengths keep file order), so each batch pads to a length close to its examples' own: on
/// the ruby test set at batch 256 that halves the padded source tokens against file order.
/// With [`Padding::Reference`] every batch pads to the maximum anyway, and file order is kept.
/// Whoever decodes in this order writes each result back at its position. A `batch_size` of
/// 0 counts as 1.
pub fn inference_batches<S: FeatureSet + ?Sized>(
    set: &S,
    batch_size: usize,
    padding: Padding,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..set.len()).collect();
    if padding == Padding::Dynamic {
        order.sort_by_key(|&p| std::cmp::Reverse(set.get(p).source_ids.len()));
    }
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// The padded lengths of a global batch under `cfg`.
pub fn padded_lengths<S: FeatureSet + ?Sized>(
    set: &S,
    global_batch: &[usize],
    cfg: &BatchConfig,
) -> Result<(usize, usize)> {
    let longest = global_batch.iter().fold((0, 0), |(s, t), &p| {
        let f = set.get(p);
        (s.max(f.source_ids.len()), t.max(f.target_ids.len()))
    });
    match cfg.padding {
        Padding::Dynamic => Ok(longest),
        Padding::Reference => {
            if longest.0 > cfg.max_source_len || longest.1 > cfg.max_target_len {
                return Err(DataError::Config(format!(
                    "features longer ({}/{}) than the padding lengths {}/{}: prepare them with the same lengths",
                    longest.0, longest.1, cfg.max_source_len, cfg.max_target_len
                )));
            }
            Ok((cfg.max_source_len, cfg.max_target_len))
        }
    }
}

/// Rank `rank`'s batches for one epoch, in order: its slice of every global batch, padded to
/// the global batch's lengths. A rank's slice is empty when a global batch has fewer rows than
/// there are ranks.
pub fn rank_batches<S: FeatureSet + ?Sized>(
    set: &S,
    cfg: &BatchConfig,
    epoch: u64,
    rank: usize,
    world_size: usize,
) -> Result<Vec<Batch>> {
    plan_epoch(set, cfg, epoch)?
        .iter()
        .map(|global| {
            let (s, t) = padded_lengths(set, global, cfg)?;
            Ok(make_batch(set, rank_slice(global, rank, world_size)?, s, t))
        })
        .collect()
}
