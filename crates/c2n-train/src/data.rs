//! Training and dev sets as the trainer uses them (spec §3, §8.1, §8.2).

use crate::evaluate::test_features;
use crate::pyrandom::dev_bleu_subset;
use crate::{Result, TrainError};
use c2n_data::{
    features_in_memory, read_examples, CleanConfig, Feature, FeatureConfig, PipelineConfig,
    RobertaTokenizer, Stage, Strictness,
};
use std::path::Path;

/// Features of a jsonl file at `stage`, in file order (every line must parse).
pub fn load_features(
    path: &Path,
    tokenizer: &RobertaTokenizer,
    max_source_len: usize,
    max_target_len: usize,
    stage: Stage,
) -> Result<Vec<Feature>> {
    let cfg = PipelineConfig {
        features: FeatureConfig {
            max_source_len,
            max_target_len,
            stage,
        },
        clean: CleanConfig::none(),
        strictness: Strictness::Strict,
    };
    let (features, _) = features_in_memory(path, tokenizer, &cfg)?;
    if features.is_empty() {
        return Err(TrainError::InvalidInput(format!(
            "{}: no example",
            path.display()
        )));
    }
    Ok(features)
}

/// The dev file as the reference's evaluation uses it.
#[derive(Debug, Clone)]
pub struct DevSet {
    /// Stage-`dev` features of the whole file, for perplexity.
    pub loss_features: Vec<Feature>,
    /// Stage-`test` features of the seeded BLEU subset, in sample order.
    pub bleu_features: Vec<Feature>,
    /// Line numbers of the subset, in sample order.
    pub bleu_idx: Vec<u64>,
    /// Normalized targets of the subset (the `dev.gold` texts).
    pub bleu_golds: Vec<String>,
}

impl DevSet {
    /// Reads `path`; the BLEU subset is `random.seed(seed); random.sample(examples,
    /// min(subset_size, N))`, as the reference draws it (§8.5).
    pub fn load(
        path: &Path,
        tokenizer: &RobertaTokenizer,
        max_source_len: usize,
        max_target_len: usize,
        subset_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let loss_features =
            load_features(path, tokenizer, max_source_len, max_target_len, Stage::Dev)?;
        let (examples, _) = read_examples(path, Strictness::Strict)?;
        let chosen: Vec<_> = dev_bleu_subset(examples.len(), subset_size, seed)
            .into_iter()
            .map(|i| examples[i].clone())
            .collect();
        Ok(Self {
            loss_features,
            bleu_features: test_features(tokenizer, &chosen, max_source_len, max_target_len)?,
            bleu_idx: chosen.iter().map(|e| e.idx as u64).collect(),
            bleu_golds: chosen.into_iter().map(|e| e.target).collect(),
        })
    }
}
