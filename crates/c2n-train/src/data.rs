//! Training and dev sets as the trainer uses them (spec §3, §8.1, §8.2).

use crate::evaluate::test_features;
use crate::pyrandom::dev_bleu_subset;
use crate::{Result, TrainError};
use c2n_data::{
    features_in_memory, read_examples, Feature, FeatureConfig, PipelineConfig, PrepareRequest,
    RobertaTokenizer, Stage, Strictness, TokenizerFiles,
};
use std::path::{Path, PathBuf};

/// Where a run's features come from: tokenized in memory, or the memory-mapped shard cache
/// of `c2n_data::prepare` (built on the first run, mapped without tokenizing afterwards; the
/// same cache `prepare --cache-dir` and the pipeline's prepare stage write).
#[derive(Debug, Clone, Copy)]
pub struct FeatureSource<'a> {
    pub tokenizer: &'a RobertaTokenizer,
    /// The tokenizer's files and the cache root; `None`: tokenize in memory.
    pub cache: Option<(&'a TokenizerFiles, &'a Path)>,
}

impl FeatureSource<'_> {
    /// Features of a jsonl file at `stage`, in file order (every line must parse): the same
    /// features either way.
    pub fn load(
        &self,
        path: &Path,
        max_source_len: usize,
        max_target_len: usize,
        stage: Stage,
    ) -> Result<Vec<Feature>> {
        let Some((files, cache_dir)) = self.cache else {
            return load_features(path, self.tokenizer, max_source_len, max_target_len, stage);
        };
        let mut req = PrepareRequest::new(path, files.clone(), PathBuf::from(cache_dir));
        req.pipeline = strict_pipeline(max_source_len, max_target_len, stage);
        let features = c2n_data::prepare(&req, &mut |_| {})?.store.to_features();
        non_empty(path, features)
    }
}

/// Reference features: no cleaning, every line must parse.
fn strict_pipeline(max_source_len: usize, max_target_len: usize, stage: Stage) -> PipelineConfig {
    PipelineConfig::strict_unfiltered(FeatureConfig {
        max_source_len,
        max_target_len,
        stage,
    })
}

fn non_empty(path: &Path, features: Vec<Feature>) -> Result<Vec<Feature>> {
    if features.is_empty() {
        return Err(TrainError::InvalidInput(format!(
            "{}: no example",
            path.display()
        )));
    }
    Ok(features)
}

/// Features of a jsonl file at `stage`, in file order (every line must parse).
pub fn load_features(
    path: impl AsRef<Path>,
    tokenizer: &RobertaTokenizer,
    max_source_len: usize,
    max_target_len: usize,
    stage: Stage,
) -> Result<Vec<Feature>> {
    let path = path.as_ref();
    let cfg = strict_pipeline(max_source_len, max_target_len, stage);
    let (features, _) = features_in_memory(path, tokenizer, &cfg)?;
    non_empty(path, features)
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
        path: impl AsRef<Path>,
        tokenizer: &RobertaTokenizer,
        max_source_len: usize,
        max_target_len: usize,
        subset_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let path = path.as_ref();
        let source = FeatureSource {
            tokenizer,
            cache: None,
        };
        Self::load_from(
            &source,
            path,
            max_source_len,
            max_target_len,
            subset_size,
            seed,
        )
    }

    /// [`DevSet::load`] with the perplexity features from `source` (the BLEU subset is small
    /// and always tokenized in memory).
    pub fn load_from(
        source: &FeatureSource<'_>,
        path: &Path,
        max_source_len: usize,
        max_target_len: usize,
        subset_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let tokenizer = source.tokenizer;
        let loss_features = source.load(path, max_source_len, max_target_len, Stage::Dev)?;
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
