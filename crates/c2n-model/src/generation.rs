//! Generation settings: beam size, length, and the (off by default) non-reference options.
//!
//! [`GenerationConfig::default()`] is the reference decoding of CodeBERT `code2nl`: beam 10,
//! at most 128 steps, `<s>` = 0, EOS = `</s>` = 2, ranking by the raw sum of
//! log-probabilities, stop when the top row ended and K hypotheses finished. Per-call
//! changes go through [`GenerationOverrides`] (fields left `None` keep the configured value),
//! in the style of rust-bert's generate options:
//!
//! ```
//! use c2n_model::generation::{GenerationConfig, GenerationOverrides};
//!
//! let config: GenerationConfig = serde_json::from_str(r#"{"beam_size": 4}"#).unwrap();
//! assert_eq!((config.beam_size, config.max_length), (4, 128));
//! assert!(config.is_reference());
//!
//! let call = config.with_overrides(&GenerationOverrides {
//!     max_length: Some(32),
//!     no_repeat_ngram_size: Some(3),
//!     ..Default::default()
//! });
//! assert_eq!((call.beam_size, call.max_length), (4, 32));
//! assert!(!call.is_reference());
//! ```

use serde::{Deserialize, Serialize};

use crate::beam::{BeamRules, TieOrder};
use crate::{ModelError, Result};

/// How to decode. The defaults are the reference (reference-semantics §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Rows per example (K). Reference: 10.
    pub beam_size: usize,
    /// Maximum number of decoding steps, also the width of the padded output rows. Reference: 128.
    pub max_length: usize,
    /// Start token every row begins with (`<s>` = 0).
    pub sos_id: u32,
    /// End token (`</s>` = 2).
    pub eos_id: u32,
    /// Non-reference: rank hypotheses by `score / len^α`. 0.0 = off.
    pub length_penalty: f32,
    /// Non-reference: stop once K hypotheses finished, even if the top row has not.
    pub early_stopping: bool,
    /// Non-reference: EOS is forbidden until this many tokens were generated. 0 = off.
    pub min_length: usize,
    /// Non-reference: forbid repeating any n-gram of this size within a row. 0 = off.
    pub no_repeat_ngram_size: usize,
    /// Non-reference: greedy decoding, i.e. a beam of one row (argmax at every step).
    pub greedy: bool,
    /// Order of exactly equal candidates, which the reference leaves to `torch.topk`
    /// ([`TieOrder`]; default `auto`: as torch on the CPU when decoding on the CPU).
    pub tie_order: TieOrder,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            beam_size: 10,
            max_length: 128,
            sos_id: 0,
            eos_id: 2,
            length_penalty: 0.0,
            early_stopping: false,
            min_length: 0,
            no_repeat_ngram_size: 0,
            greedy: false,
            tie_order: TieOrder::Auto,
        }
    }
}

/// Per-call changes to a [`GenerationConfig`]; `None` keeps the configured value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationOverrides {
    pub beam_size: Option<usize>,
    pub max_length: Option<usize>,
    pub sos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub length_penalty: Option<f32>,
    pub early_stopping: Option<bool>,
    pub min_length: Option<usize>,
    pub no_repeat_ngram_size: Option<usize>,
    pub greedy: Option<bool>,
    pub tie_order: Option<TieOrder>,
}

impl GenerationConfig {
    /// This configuration with every `Some` field of `overrides` replacing its value.
    ///
    /// A decoding session is laid out for one beam size: build it with the result's
    /// [`effective_beam_size`](Self::effective_beam_size), not the base configuration's
    /// ([`crate::beam::beam_search`] refuses a session of another layout).
    pub fn with_overrides(&self, overrides: &GenerationOverrides) -> Self {
        Self {
            beam_size: overrides.beam_size.unwrap_or(self.beam_size),
            max_length: overrides.max_length.unwrap_or(self.max_length),
            sos_id: overrides.sos_id.unwrap_or(self.sos_id),
            eos_id: overrides.eos_id.unwrap_or(self.eos_id),
            length_penalty: overrides.length_penalty.unwrap_or(self.length_penalty),
            early_stopping: overrides.early_stopping.unwrap_or(self.early_stopping),
            min_length: overrides.min_length.unwrap_or(self.min_length),
            no_repeat_ngram_size: overrides
                .no_repeat_ngram_size
                .unwrap_or(self.no_repeat_ngram_size),
            greedy: overrides.greedy.unwrap_or(self.greedy),
            tie_order: overrides.tie_order.unwrap_or(self.tie_order),
        }
    }

    /// Rows per example actually used: 1 when greedy, else `beam_size`.
    pub fn effective_beam_size(&self) -> usize {
        if self.greedy {
            1
        } else {
            self.beam_size
        }
    }

    /// The beam rules these settings switch on.
    pub fn rules(&self) -> BeamRules {
        BeamRules {
            min_length: self.min_length,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            length_penalty: self.length_penalty,
            early_stopping: self.early_stopping,
        }
    }

    /// True when decoding follows the reference exactly (no non-reference option is on).
    pub fn is_reference(&self) -> bool {
        !self.greedy && self.rules().is_reference()
    }

    /// Checks the values that would make decoding meaningless.
    pub fn validate(&self) -> Result<()> {
        let problem = if self.effective_beam_size() == 0 {
            Some("beam_size must be at least 1")
        } else if self.max_length == 0 {
            Some("max_length must be at least 1")
        } else if !self.length_penalty.is_finite() {
            Some("length_penalty must be finite")
        } else {
            None
        };
        match problem {
            Some(message) => Err(ModelError::Config {
                path: None,
                message: message.to_string(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_settings() {
        let config = GenerationConfig::default();
        assert_eq!((config.beam_size, config.max_length), (10, 128));
        assert_eq!((config.sos_id, config.eos_id), (0, 2));
        assert!(config.is_reference());
        assert!(config.validate().is_ok());
        let from_empty: GenerationConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(from_empty, config);
    }

    #[test]
    fn overrides_replace_only_given_fields() {
        let base = GenerationConfig {
            beam_size: 5,
            ..Default::default()
        };
        let overrides: GenerationOverrides =
            serde_json::from_str(r#"{"greedy": true, "min_length": 3}"#).unwrap();
        let merged = base.with_overrides(&overrides);
        assert_eq!(merged.beam_size, 5);
        assert!(merged.greedy);
        assert_eq!(merged.min_length, 3);
        assert_eq!(merged.effective_beam_size(), 1);
        assert!(!merged.is_reference());
        assert_eq!(base.with_overrides(&GenerationOverrides::default()), base);
    }

    #[test]
    fn invalid_values_and_unknown_fields_are_rejected() {
        let zero_beam = GenerationConfig {
            beam_size: 0,
            ..Default::default()
        };
        assert!(zero_beam.validate().is_err());
        let zero_length = GenerationConfig {
            max_length: 0,
            ..Default::default()
        };
        assert!(zero_length.validate().is_err());
        assert!(serde_json::from_str::<GenerationConfig>(r#"{"beam": 3}"#).is_err());
    }
}
