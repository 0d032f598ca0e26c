//! Drivers that run beams against a [`NextTokenLogProbs`] session.
//!
//! - [`beam_search`]: B examples × K rows through one session. Every example has its own
//!   [`Beam`]; after each step the examples whose beam is `done()` are **frozen**: their
//!   rows are left out of the next `origin`, so the session drops them (and their cache),
//!   and their beam is never advanced again. Advancing a done beam would append more
//!   finished entries and change `getFinal` (§6.8), so freezing is what keeps the batched
//!   result equal to decoding each example alone.
//! - [`reference_search`]: one example, K rows, the literal full-sort selection and rules
//!   off: the plain reference algorithm (§6.1), used as the baseline in tests and benches.

use super::output::BeamOutput;
use super::reference::{Beam, Selection};
use super::rules::BeamRules;
use crate::generation::GenerationConfig;
use crate::{ModelError, NextTokenLogProbs, Result};

/// Decode `num_examples` examples whose session holds `num_examples × K` rows, example `i`
/// owning rows `i·K .. (i+1)·K` (K = `config.effective_beam_size()`).
///
/// A session that reports its [`layout`](NextTokenLogProbs::layout) (every session of this
/// crate does) must have been built for exactly `num_examples` examples of K rows; otherwise
/// the search is refused, since rows would go to the wrong example.
///
/// Returns one [`BeamOutput`] per example, in order. With reference settings every output
/// equals [`reference_search`] run on that example alone.
pub fn beam_search<S: NextTokenLogProbs + ?Sized>(
    session: &mut S,
    num_examples: usize,
    config: &GenerationConfig,
) -> Result<Vec<BeamOutput>> {
    config.validate()?;
    let beam_size = config.effective_beam_size();
    let mut beams: Vec<Beam> = (0..num_examples)
        .map(|_| {
            Beam::with_rules(
                beam_size,
                config.sos_id,
                config.eos_id,
                config.rules(),
                Selection::Streaming,
            )
            .with_tie_order(config.tie_order)
        })
        .collect();
    run_beams(session, &mut beams, config, true)?;
    Ok(beams
        .iter()
        .map(|beam| beam.output(config.max_length))
        .collect())
}

/// Decode one example with the plain reference algorithm; the session holds K rows.
///
/// Rules are off whatever `config` says: only `beam_size`, `max_length`, `sos_id`, `eos_id`
/// and `tie_order` are used (the session's full rows are ranked on the host, so `auto`
/// orders ties as torch does on the CPU).
pub fn reference_search<S: NextTokenLogProbs + ?Sized>(
    session: &mut S,
    config: &GenerationConfig,
) -> Result<BeamOutput> {
    config.validate()?;
    let mut beams = vec![Beam::with_rules(
        config.beam_size,
        config.sos_id,
        config.eos_id,
        BeamRules::default(),
        Selection::FullSort,
    )
    .with_tie_order(config.tie_order)];
    run_beams(session, &mut beams, config, false)?;
    Ok(beams[0].output(config.max_length))
}

/// The step loop shared by both drivers. With `allow_row_top_k`, a session that prefers it
/// ranks each row's candidates itself ([`NextTokenLogProbs::step_row_top_k`]); the result is
/// the same either way.
fn run_beams<S: NextTokenLogProbs + ?Sized>(
    session: &mut S,
    beams: &mut [Beam],
    config: &GenerationConfig,
    allow_row_top_k: bool,
) -> Result<()> {
    let Some(beam_size) = beams.first().map(Beam::size) else {
        return Ok(());
    };
    if let Some((examples, per_example)) = session.layout() {
        if (examples, per_example) != (beams.len(), beam_size) {
            return Err(ModelError::InvalidInput(format!(
                "the session holds {examples} examples × {per_example} rows, but the search \
                 decodes {} examples × beam {beam_size}: build the session with the beam size \
                 of the generation config in use (after its overrides; 1 when greedy) and one \
                 source row per example",
                beams.len()
            )));
        }
    }
    if let Some(longest) = session.max_prefix_len() {
        if config.max_length > longest {
            return Err(ModelError::InvalidInput(format!(
                "max_length {} is longer than the model's position table allows ({longest} \
                 tokens, <s> included): choose at most {longest}",
                config.max_length
            )));
        }
    }
    let vocab = session.vocab_size();
    let rows = beams.len() * beam_size;
    let row_top_k =
        allow_row_top_k && session.prefers_row_top_k() && !beams.iter().any(Beam::needs_full_rows);
    // Examples still decoding, in the order their rows appear in the session.
    let mut live: Vec<usize> = (0..beams.len()).collect();
    let mut origin: Vec<u32> = (0..rows as u32).collect();
    let mut tokens: Vec<u32> = vec![config.sos_id; rows];
    let mut row_scores: Vec<f32> = Vec::with_capacity(rows);
    for step in 0..config.max_length {
        if live.is_empty() {
            break;
        }
        if row_top_k {
            // Every live beam has taken `step` steps: before the first, candidates are the
            // bare log-probabilities of row 0 (§6.2), afterwards score + log-probability.
            row_scores.clear();
            for &example in &live {
                row_scores.extend_from_slice(beams[example].scores());
            }
            let scores = (step > 0).then_some(row_scores.as_slice());
            let top = session.step_row_top_k(&origin, &tokens, scores, beam_size)?;
            if top.rows() != live.len() * beam_size {
                return Err(ModelError::InvalidInput(format!(
                    "session returned candidates for {} rows, expected {}",
                    top.rows(),
                    live.len() * beam_size
                )));
            }
            for (slot, &example) in live.iter().enumerate() {
                beams[example].advance_row_top_k(&top, slot * beam_size, vocab)?;
            }
        } else {
            let logp = session.step(&origin, &tokens)?;
            let block = beam_size * vocab;
            if logp.len() != live.len() * block {
                return Err(ModelError::InvalidInput(format!(
                    "session returned {} log-probabilities for {} rows of vocabulary {vocab}",
                    logp.len(),
                    live.len() * beam_size
                )));
            }
            for (slot, &example) in live.iter().enumerate() {
                beams[example].advance(&logp[slot * block..(slot + 1) * block], vocab)?;
            }
        }
        // Next step: only the rows of examples that are not done, re-ordered by their origins.
        origin.clear();
        tokens.clear();
        let mut still_live = Vec::with_capacity(live.len());
        for (slot, &example) in live.iter().enumerate() {
            let beam = &beams[example];
            if beam.done() {
                continue;
            }
            let base = (slot * beam_size) as u32;
            let beam_origin = beam.current_origin().unwrap_or(&[]);
            origin.extend(beam_origin.iter().map(|&row| base + row));
            tokens.extend_from_slice(beam.current_tokens());
            still_live.push(example);
        }
        live = still_live;
    }
    Ok(())
}
