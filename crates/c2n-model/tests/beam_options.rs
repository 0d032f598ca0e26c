//! The non-reference generation options, each checked on the toy table model against an
//! independent computation (a direct argmax walk, or a property the reference run violates).

use crate::beam_support;

use beam_support::{TableModel, TableSession};
use c2n_model::beam::{beam_search, BeamOutput};
use c2n_model::generation::{GenerationConfig, GenerationOverrides};

const EOS: u32 = 2;

fn decode(models: &[TableModel], config: &GenerationConfig) -> Vec<BeamOutput> {
    let refs: Vec<&TableModel> = models.iter().collect();
    let mut session = TableSession::new(refs, config.effective_beam_size());
    beam_search(&mut session, models.len(), config).expect("decodes")
}

fn models(count: u64, eos_bias: f32) -> Vec<TableModel> {
    (0..count)
        .map(|i| TableModel::random(1000 + i, 53, 10, eos_bias, 0.0))
        .collect()
}

fn reference() -> GenerationConfig {
    GenerationConfig {
        beam_size: 4,
        max_length: 16,
        ..Default::default()
    }
}

fn with(overrides: GenerationOverrides) -> GenerationConfig {
    reference().with_overrides(&overrides)
}

#[test]
fn greedy_follows_the_argmax_chain() {
    let models = models(6, 0.0);
    let config = with(GenerationOverrides {
        greedy: Some(true),
        ..Default::default()
    });
    let outs = decode(&models, &config);
    for (model, out) in models.iter().zip(&outs) {
        // Independent walk: argmax (lowest index on ties) until EOS or max_length.
        let mut history = Vec::new();
        let mut score = 0.0f32;
        for _ in 0..config.max_length {
            let row = model.logp(&history);
            let mut best = 0;
            for (w, &value) in row.iter().enumerate() {
                if value > row[best] {
                    best = w;
                }
            }
            score += row[best];
            history.push(best as u32);
            if best as u32 == EOS {
                break;
            }
        }
        let expected: Vec<u32> = history.iter().copied().take_while(|&t| t != EOS).collect();
        assert_eq!(out.hypotheses.len(), 1);
        assert_eq!(out.hypotheses[0].ids, expected);
        assert_eq!(out.hypotheses[0].score, score);
        assert_eq!(out.steps, history.len());
    }
}

#[test]
fn min_length_forbids_early_eos() {
    let models = models(6, 2.5);
    let plain = decode(&models, &reference());
    let min_length = 3;
    let short = |out: &BeamOutput| out.finished.iter().any(|e| e.step <= min_length);
    assert!(
        plain.iter().any(short),
        "the eager-EOS tables finish early without the rule"
    );
    let config = with(GenerationOverrides {
        min_length: Some(min_length),
        ..Default::default()
    });
    let outs = decode(&models, &config);
    for out in &outs {
        assert!(!short(out), "a hypothesis ended before min_length");
        for (entry, hypothesis) in out.final_entries.iter().zip(&out.hypotheses) {
            if out.finished.contains(entry) {
                assert!(hypothesis.ids.len() >= min_length);
            }
        }
    }
    assert!(
        outs.iter().any(|o| !o.finished.is_empty()),
        "the rule must still let rows finish"
    );
}

fn has_repeated_ngram(ids: &[u32], n: usize) -> bool {
    let grams: Vec<&[u32]> = ids.windows(n).collect();
    (0..grams.len()).any(|i| grams[i + 1..].contains(&grams[i]))
}

#[test]
fn no_repeat_ngram_removes_repeated_ngrams() {
    // Few buckets and no EOS pull: the reference rows repeat themselves.
    let models: Vec<TableModel> = (0..4)
        .map(|i| TableModel::random(77 + i, 7, 10, -4.0, 0.0))
        .collect();
    let n = 2;
    let plain = decode(&models, &reference());
    assert!(
        plain
            .iter()
            .flat_map(|o| &o.hypotheses)
            .any(|h| has_repeated_ngram(&h.ids, n)),
        "the reference output repeats bigrams on these tables"
    );
    let config = with(GenerationOverrides {
        no_repeat_ngram_size: Some(n),
        ..Default::default()
    });
    for out in decode(&models, &config) {
        for hypothesis in &out.hypotheses {
            assert!(
                !has_repeated_ngram(&hypothesis.ids, n),
                "{:?}",
                hypothesis.ids
            );
        }
    }
}

#[test]
fn length_penalty_ranks_finished_by_normalized_score() {
    let models = models(8, 1.5);
    let alpha = 1.0;
    let config = with(GenerationOverrides {
        length_penalty: Some(alpha),
        ..Default::default()
    });
    let normalized = |score: f32, len: usize| score / (len as f32).powf(alpha);
    let plain = decode(&models, &reference());
    let outs = decode(&models, &config);
    let mut order_changed = false;
    for (out, plain) in outs.iter().zip(&plain) {
        // The search itself is unchanged; only the ranking differs.
        assert_eq!(out.finished, plain.finished);
        let finished: Vec<_> = out
            .final_entries
            .iter()
            .filter(|e| out.finished.contains(e))
            .collect();
        for pair in finished.windows(2) {
            assert!(
                normalized(pair[0].score, pair[0].step) >= normalized(pair[1].score, pair[1].step)
            );
        }
        order_changed |= out.final_entries != plain.final_entries;
    }
    assert!(
        order_changed,
        "a length penalty should change some ranking on these tables"
    );
}

#[test]
fn early_stopping_stops_once_k_hypotheses_finished() {
    let models = models(16, 0.0);
    let long = GenerationConfig {
        max_length: 40,
        ..reference()
    };
    let plain = decode(&models, &long);
    let config = GenerationConfig {
        early_stopping: true,
        ..long.clone()
    };
    let outs = decode(&models, &config);
    let k = config.beam_size;
    let mut stopped_earlier = false;
    for (out, plain) in outs.iter().zip(&plain) {
        // The trajectory is the reference one; it ends at the first step with K finished.
        let first_k = plain.finished.get(k - 1).map(|e| e.step);
        match first_k {
            Some(step) => {
                assert_eq!(out.steps, step);
                assert!(out.done);
                assert_eq!(out.finished[..], plain.finished[..out.finished.len()]);
                stopped_earlier |= step < plain.steps;
            }
            None => assert_eq!(out.steps, plain.steps),
        }
    }
    assert!(
        stopped_earlier,
        "early stopping should end some search before the reference"
    );
}
