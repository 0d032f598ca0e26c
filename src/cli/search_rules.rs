//! The beam-search rules beyond the reference that `evaluate` and `predict` can switch on.

use crate::model::generation::GenerationOverrides;
use clap::Args;

/// Non-reference decoding rules (all off by default: the reference's beam search).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct SearchRuleArgs {
    /// Rank finished hypotheses by score / length^ALPHA instead of the summed log-probability
    /// (not in the reference; default: off).
    #[arg(long, value_name = "ALPHA", allow_hyphen_values = true)]
    pub length_penalty: Option<f32>,
    /// Forbid `</s>` until this many tokens were generated (not in the reference; default: off).
    #[arg(long, value_name = "TOKENS")]
    pub min_length: Option<usize>,
    /// Forbid repeating any n-gram of this size within a hypothesis (not in the reference;
    /// default: off).
    #[arg(long, value_name = "N")]
    pub no_repeat_ngram: Option<usize>,
    /// Stop an example once beam-size hypotheses finished, even if the best row has not (not
    /// in the reference).
    #[arg(long)]
    pub early_stopping: bool,
    /// Greedy decoding: one row per example, the argmax at each step (beam size 1).
    #[arg(long)]
    pub greedy: bool,
}

impl SearchRuleArgs {
    /// The rules as changes to a generation config (`None`: as configured).
    pub fn overrides(&self) -> GenerationOverrides {
        GenerationOverrides {
            length_penalty: self.length_penalty,
            min_length: self.min_length,
            no_repeat_ngram_size: self.no_repeat_ngram,
            early_stopping: self.early_stopping.then_some(true),
            greedy: self.greedy.then_some(true),
            ..Default::default()
        }
    }
}
