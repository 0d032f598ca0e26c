//! `prepare-data`: tokenize the ruby files once, where `../shared` exists, into the small
//! folder a device run carries (the device's copy of the repository has no `../shared`).
//!
//! Writes unpadded features as JSON lines `{"idx","source_ids","target_ids"}`:
//! - `ruby_valid_train_features.jsonl`: ruby `valid.jsonl`, train stage (real targets),
//!   source ≤ 256, target ≤ 128: the training benchmark's batches (file order);
//! - `ruby_test_features.jsonl`: ruby `test.jsonl`, test stage: the decoding benchmark's
//!   sources (all 1 261 examples);
//! - `manifest.json`: where they came from.

use anyhow::{Context, Result};
use code2nl::data::{
    features_in_memory, Feature, FeatureConfig, PipelineConfig, RobertaTokenizer, Stage,
};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const TRAIN_FEATURES: &str = "ruby_valid_train_features.jsonl";
pub const TEST_FEATURES: &str = "ruby_test_features.jsonl";

#[derive(clap::Args, Debug)]
pub struct PrepareArgs {
    /// The shared folder holding `data/codesearchnet/ruby/` and `data/roberta-base/`.
    #[arg(long, default_value = "../shared")]
    shared: PathBuf,
    #[arg(long, default_value = "build/device/data")]
    out: PathBuf,
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    #[arg(long, default_value_t = 128)]
    max_target_len: usize,
}

fn write_features(path: &Path, features: &[Feature]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for f in features {
        let line = json!({"idx": f.idx, "source_ids": f.source_ids, "target_ids": f.target_ids});
        writeln!(out, "{line}").with_context(|| format!("writing {}", path.display()))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

pub fn prepare(args: &PrepareArgs) -> Result<()> {
    let ruby = args.shared.join("data/codesearchnet/ruby");
    let vocab = args.shared.join("data/roberta-base");
    let tokenizer = RobertaTokenizer::load(&vocab.display().to_string())
        .with_context(|| format!("tokenizer from {}", vocab.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut files = Vec::new();
    for (split, stage, name) in [
        ("valid", Stage::Train, TRAIN_FEATURES),
        ("test", Stage::Test, TEST_FEATURES),
    ] {
        let source = ruby.join(format!("{split}.jsonl"));
        let cfg = PipelineConfig::strict_unfiltered(FeatureConfig {
            max_source_len: args.max_source_len,
            max_target_len: args.max_target_len,
            stage,
        });
        let (features, _) = features_in_memory(&source, &tokenizer, &cfg)
            .with_context(|| format!("features of {}", source.display()))?;
        write_features(&args.out.join(name), &features)?;
        files.push(json!({"file": name, "from": source.display().to_string(),
                          "stage": format!("{stage:?}"), "examples": features.len()}));
    }
    let manifest = json!({
        "written_by": "cargo run --example device -- prepare-data",
        "tokenizer": vocab.display().to_string(),
        "max_source_len": args.max_source_len,
        "max_target_len": args.max_target_len,
        "files": files,
    });
    let path = args.out.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    crate::common::emit("prepare_data", manifest);
    Ok(())
}
