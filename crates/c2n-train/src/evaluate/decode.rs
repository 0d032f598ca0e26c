//! Batched beam search over features (§6, §8.2), on one rank or sharded over several.

use super::EvalBatching;
use crate::comm::Communicator;
use crate::tensors::BatchTensors;
use crate::{Result, TrainError};
use c2n_data::{inference_batches, make_batch, Feature};
use c2n_model::beam::{BeamOutput, Hypothesis};
use c2n_model::generation::GenerationConfig;
use c2n_model::Seq2Seq;
use serde::Serialize;

/// Beam search over `features` (only the source side is used), one batch per session; with
/// reference settings each result equals decoding the example alone. With dynamic padding the
/// batches go longest source first ([`inference_batches`]), so each pads little; the results
/// come back in the order of `features` either way. `on_batch` gets each batch's size.
pub fn decode(
    model: &Seq2Seq,
    features: &[Feature],
    batching: &EvalBatching,
    generation: &GenerationConfig,
    on_batch: impl FnMut(usize),
) -> Result<Vec<BeamOutput>> {
    let batches = inference_batches(features, batching.batch_size, batching.padding);
    let outputs = decode_batches(model, features, &batches, batching, generation, on_batch)?;
    in_feature_order(features.len(), &batches, outputs)
}

/// Beam search over the given batches of positions into `features`, one session per batch;
/// the results in batch order.
fn decode_batches(
    model: &Seq2Seq,
    features: &[Feature],
    batches: &[Vec<usize>],
    batching: &EvalBatching,
    generation: &GenerationConfig,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<BeamOutput>> {
    if model.device().is_cpu() {
        let largest = batches.iter().map(Vec::len).max().unwrap_or(0);
        crate::decode_memory::check_rows_fit(
            largest.saturating_mul(generation.effective_beam_size()),
            model.config().vocab_size,
            crate::decode_memory::available_host_memory(),
        )?;
    }
    let mut outputs = Vec::with_capacity(batches.iter().map(Vec::len).sum());
    for positions in batches {
        let (s, _) = batching.lengths(positions.iter().map(|&p| &features[p]));
        let batch = make_batch(features, positions, s, 2);
        let x = BatchTensors::new(&batch, model.device())?;
        outputs.extend(model.generate(&x.source_ids, &x.source_mask, generation)?);
        on_batch(positions.len());
    }
    Ok(outputs)
}

/// Puts results given in the order of `batches` (positions into a set of `n`) back in
/// position order; every position must get exactly one result.
fn in_feature_order<T>(n: usize, batches: &[Vec<usize>], results: Vec<T>) -> Result<Vec<T>> {
    let mut placed: Vec<Option<T>> = std::iter::repeat_with(|| None).take(n).collect();
    let mut results = results.into_iter();
    for &p in batches.iter().flatten() {
        let slot = placed
            .get_mut(p)
            .ok_or_else(|| TrainError::InvalidInput(format!("batch position {p} of {n}")))?;
        *slot = results.next();
    }
    if results.next().is_some() {
        return Err(TrainError::InvalidInput(
            "more decoded examples than batch positions".into(),
        ));
    }
    placed
        .into_iter()
        .enumerate()
        .map(|(p, o)| {
            o.ok_or_else(|| {
                TrainError::InvalidInput(format!("beam search returned no result for example {p}"))
            })
        })
        .collect()
}

/// What evaluation keeps of one example's beam search: enough to write `*.output` and
/// `nbest.jsonl`, small enough to send between ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Row 0 cut at its first id 0 ([`BeamOutput::prediction`]).
    pub prediction: Vec<u32>,
    /// The hypotheses in rank order.
    pub hypotheses: Vec<Hypothesis>,
}

impl From<&BeamOutput> for Decoded {
    fn from(o: &BeamOutput) -> Self {
        Self {
            prediction: o.prediction().to_vec(),
            hypotheses: o.hypotheses.clone(),
        }
    }
}

/// Wire form of [`Decoded`]: scores as bit patterns, so every value survives the trip.
#[derive(Serialize, serde::Deserialize)]
struct DecodedWire {
    p: Vec<u32>,
    h: Vec<(Vec<u32>, u32)>,
}

impl Decoded {
    fn to_wire(&self) -> Result<String> {
        let wire = DecodedWire {
            p: self.prediction.clone(),
            h: self
                .hypotheses
                .iter()
                .map(|h| (h.ids.clone(), h.score.to_bits()))
                .collect(),
        };
        serde_json::to_string(&wire)
            .map_err(|e| TrainError::InvalidInput(format!("encoding a decoded example: {e}")))
    }

    fn from_wire(text: &str) -> Result<Self> {
        let wire: DecodedWire = serde_json::from_str(text).map_err(|e| {
            TrainError::InvalidInput(format!("a rank sent a malformed decoded example: {e}"))
        })?;
        Ok(Self {
            prediction: wire.p,
            hypotheses: wire
                .h
                .into_iter()
                .map(|(ids, bits)| Hypothesis {
                    ids,
                    score: f32::from_bits(bits),
                })
                .collect(),
        })
    }
}

/// [`decode`] with its batches shared out among the ranks of `comm` (rank `r` takes batches
/// `r`, `r + W`, …, which also spreads the long ones of a length-sorted plan): `Some(all
/// examples in order)` on rank 0, `None` on the others. Every batch holds the same examples,
/// padded to the same length, as with one rank. `on_batch` sees this rank's batches only.
pub fn decode_sharded(
    comm: &dyn Communicator,
    model: &Seq2Seq,
    features: &[Feature],
    batching: &EvalBatching,
    generation: &GenerationConfig,
    on_batch: impl FnMut(usize),
) -> Result<Option<Vec<Decoded>>> {
    let batches = inference_batches(features, batching.batch_size, batching.padding);
    let world = comm.world_size().max(1);
    let of_rank = |rank: usize| -> Vec<Vec<usize>> {
        batches.iter().skip(rank).step_by(world).cloned().collect()
    };
    let mine = of_rank(comm.rank());
    let outputs = decode_batches(model, features, &mine, batching, generation, on_batch)?;
    let decoded: Vec<Decoded> = outputs.iter().map(Decoded::from).collect();
    if world == 1 {
        return in_feature_order(features.len(), &mine, decoded).map(Some);
    }
    let wire = decoded
        .iter()
        .map(Decoded::to_wire)
        .collect::<Result<Vec<_>>>()?;
    let Some(per_rank) = comm.gather_strings(&wire)? else {
        return Ok(None);
    };
    // Rank 0 knows every rank's batches, so the gathered results need no positions.
    let mut order = Vec::with_capacity(batches.len());
    let mut all = Vec::with_capacity(features.len());
    for (rank, texts) in per_rank.iter().enumerate() {
        order.extend(of_rank(rank));
        for t in texts {
            all.push(Decoded::from_wire(t)?);
        }
    }
    if all.len() != features.len() {
        return Err(TrainError::InvalidInput(format!(
            "gathered {} decoded examples for {} features",
            all.len(),
            features.len()
        )));
    }
    in_feature_order(features.len(), &order, all).map(Some)
}

/// Sends rank 0's `value` to every rank exactly (as three integer-valued f32 pieces of its
/// bit pattern: f32 holds integers below 2^24 exactly).
pub fn broadcast_f64(comm: &dyn Communicator, value: f64) -> Result<f64> {
    if comm.world_size() == 1 {
        return Ok(value);
    }
    let bits = value.to_bits();
    let mut buf = [
        (bits & 0x1f_ffff) as f32,
        ((bits >> 21) & 0x1f_ffff) as f32,
        (bits >> 42) as f32,
    ];
    comm.broadcast(&mut buf)?;
    let bits = buf[0] as u64 | (buf[1] as u64) << 21 | (buf[2] as u64) << 42;
    Ok(f64::from_bits(bits))
}
