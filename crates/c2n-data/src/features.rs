//! Features per spec §3: truncation after BPE, `<s>`…`</s>`, test-stage target `None`.
//!
//! Features are stored **unpadded** (ids as `u16`, which holds RoBERTa's 50 265 ids); padding
//! with id 1 and mask 0 happens at batch time ([`crate::batch`]).

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::example::Example;
use crate::tokenizer::{RobertaTokenizer, BOS_ID, EOS_ID};

/// Which `convert_examples_to_features` stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Training data: real targets.
    #[default]
    Train,
    /// Full dev file for perplexity: real targets.
    Dev,
    /// Inference: the target is `tokenize("None")`.
    Test,
}

impl std::str::FromStr for Stage {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Stage> {
        match s {
            "train" => Ok(Stage::Train),
            "dev" => Ok(Stage::Dev),
            "test" => Ok(Stage::Test),
            other => Err(DataError::Config(format!(
                "unknown stage {other:?} (train, dev or test)"
            ))),
        }
    }
}

/// Lengths and stage. Lengths count `<s>` and `</s>`.
///
/// Default: the reference's 256 / 128, [`Stage::Train`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    /// `max_source_length` (README 256).
    pub max_source_len: usize,
    /// `max_target_length` (README 128).
    pub max_target_len: usize,
    /// Stage.
    pub stage: Stage,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            max_source_len: 256,
            max_target_len: 128,
            stage: Stage::Train,
        }
    }
}

impl FeatureConfig {
    /// Checks the lengths: at least 2 (room for `<s>` and `</s>`) and at most 512 (the
    /// RoBERTa position table).
    pub fn validate(&self) -> Result<()> {
        for (name, len) in [
            ("max_source_len", self.max_source_len),
            ("max_target_len", self.max_target_len),
        ] {
            if !(2..=512).contains(&len) {
                return Err(DataError::Config(format!(
                    "{name} = {len}: must be between 2 and 512"
                )));
            }
        }
        Ok(())
    }
}

/// One unpadded feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// The example's idx (0-based line number).
    pub idx: u64,
    /// `[0] + source BPE ids (truncated) + [2]`.
    pub source_ids: Vec<u16>,
    /// `[0] + target BPE ids (truncated) + [2]`; `[0, id("None"), 2]` in the test stage.
    pub target_ids: Vec<u16>,
    /// Source BPE length before truncation, without specials.
    pub source_bpe_len: u32,
    /// Target BPE length before truncation, without specials (that of `None` in the test stage).
    pub target_bpe_len: u32,
}

impl Feature {
    /// Whether the source lost tokens to truncation.
    pub fn source_truncated(&self) -> bool {
        self.source_bpe_len as usize + 2 > self.source_ids.len()
    }

    /// Whether the target lost tokens to truncation.
    pub fn target_truncated(&self) -> bool {
        self.target_bpe_len as usize + 2 > self.target_ids.len()
    }
}

/// A short content hash of a feature set (idx, source and target ids, in order): a resumed
/// training run checks that it sees the data its checkpoint was trained on.
pub fn features_fingerprint(features: &[Feature]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for f in features {
        hasher.update(f.idx.to_le_bytes());
        for ids in [&f.source_ids, &f.target_ids] {
            hasher.update((ids.len() as u64).to_le_bytes());
            for id in ids.iter() {
                hasher.update(id.to_le_bytes());
            }
        }
    }
    crate::tokenizer::hex(&hasher.finalize()[..8])
}

fn to_u16(id: u32) -> Result<u16> {
    u16::try_from(id).map_err(|_| DataError::IdOutOfRange { id })
}

/// `[<s>] + the first `max_tokens` ids + [</s>]`.
fn wrap(ids: &[u32], max_tokens: usize) -> Result<Vec<u16>> {
    let keep = ids.len().min(max_tokens);
    let mut out = Vec::with_capacity(keep + 2);
    out.push(to_u16(BOS_ID)?);
    for &id in &ids[..keep] {
        out.push(to_u16(id)?);
    }
    out.push(to_u16(EOS_ID)?);
    Ok(out)
}

/// Builds the feature of one example.
///
/// ```no_run
/// # fn main() -> c2n_data::Result<()> {
/// use c2n_data::{featurize, Example, FeatureConfig, RobertaTokenizer};
/// let tok = RobertaTokenizer::load("../shared/data/roberta-base")?;
/// let ex = Example::from_tokens(0, &["def", "f"], &["Returns", "the", "value", "."]);
/// let f = featurize(&tok, &ex, &FeatureConfig::default())?;
/// assert_eq!(f.target_ids, [0, 48826, 5, 923, 479, 2]);
/// # Ok(()) }
/// ```
pub fn featurize(
    tok: &RobertaTokenizer,
    example: &Example,
    cfg: &FeatureConfig,
) -> Result<Feature> {
    cfg.validate()?;
    let source = tok.encode(&example.source)?;
    // The test-stage placeholder is not truncated (§3): `[0, 29802, 2]` at any length.
    let (target, target_tokens) = match cfg.stage {
        Stage::Test => (tok.encode("None")?, usize::MAX),
        Stage::Train | Stage::Dev => (tok.encode(&example.target)?, cfg.max_target_len - 2),
    };
    Ok(Feature {
        idx: example.idx as u64,
        source_ids: wrap(&source, cfg.max_source_len - 2)?,
        target_ids: wrap(&target, target_tokens)?,
        source_bpe_len: source.len() as u32,
        target_bpe_len: target.len() as u32,
    })
}

/// Right-pads `ids` with `pad_id` to `len` and returns `(ids, mask)` as `u32`.
/// Sequences longer than `len` are cut (cannot happen for features built with the same `len`).
pub fn pad(ids: &[u16], len: usize, pad_id: u32) -> (Vec<u32>, Vec<u32>) {
    let mut out = Vec::with_capacity(len);
    let mut mask = Vec::with_capacity(len);
    for &id in ids.iter().take(len) {
        out.push(u32::from(id));
        mask.push(1);
    }
    out.resize(len, pad_id);
    mask.resize(len, 0);
    (out, mask)
}
