//! Decode a jsonl file with beam search, write CodeXGLUE `test.output`/`test.gold` (and
//! optionally `nbest.jsonl`), and print the reference smoothed BLEU-4 last.
//!
//! ```text
//! cargo run --release --example evaluate -- --checkpoint /tmp/c2n-run/checkpoint-last \
//!     --tokenizer ../shared/data/roberta-base --data ../shared/data/codesearchnet/ruby/test.jsonl \
//!     --limit 100 --beam-size 10 --output-dir /tmp/c2n-eval
//! ```

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use code2nl::data::{Padding, RobertaTokenizer};
use code2nl::eval::python_repr;
use code2nl::model::generation::GenerationConfig;
use code2nl::train::device::select_device;
use code2nl::train::evaluate::{evaluate_file, EvaluateRequest};
use std::path::PathBuf;

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PaddingArg {
    Reference,
    Dynamic,
}

#[derive(Parser, Debug)]
#[command(about = "Beam-search a jsonl file and score it with the reference smoothed BLEU-4")]
struct Args {
    /// Checkpoint directory (config.json + model.safetensors or pytorch_model.bin).
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value = "microsoft/codebert-base")]
    tokenizer: String,
    #[arg(long)]
    data: PathBuf,
    /// Only the first N examples.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 10)]
    beam_size: usize,
    #[arg(long, default_value_t = 256)]
    max_source_len: usize,
    /// Also the beam's maximum length.
    #[arg(long, default_value_t = 128)]
    max_target_len: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
    /// Write nbest.jsonl with K hypotheses per example.
    #[arg(long)]
    nbest: Option<usize>,
    /// Source padding: reference (max-source-len) or dynamic (longest in the batch).
    #[arg(long, value_enum, default_value = "dynamic")]
    padding: PaddingArg,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Data-parallel ranks (only 1 is supported here).
    #[arg(long, default_value_t = 1)]
    world_size: usize,
    #[arg(long, default_value = "single")]
    backend: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.world_size != 1 || args.backend != "single" {
        bail!("sharded evaluation (--world-size > 1) is not wired into this example yet");
    }
    let device = select_device(&args.device)?;
    let model = code2nl::model::load_checkpoint(&args.checkpoint, &device)?;
    let tokenizer = RobertaTokenizer::load(&args.tokenizer)?;
    let request = EvaluateRequest {
        data: args.data,
        limit: args.limit,
        generation: GenerationConfig {
            beam_size: args.beam_size,
            max_length: args.max_target_len,
            ..Default::default()
        },
        max_source_len: args.max_source_len,
        batch_size: args.batch_size,
        padding: match args.padding {
            PaddingArg::Reference => Padding::Reference,
            PaddingArg::Dynamic => Padding::Dynamic,
        },
        output_dir: args.output_dir,
        prefix: "test".into(),
        nbest: args.nbest,
    };
    let report = evaluate_file(&model, &tokenizer, &request, |_| {})?;
    eprintln!("Total: {}", report.bleu.matched);
    println!(
        "{} examples in {:.1} s ({:.2} examples/s): {} {}",
        report.examples,
        report.seconds,
        report.examples as f64 / report.seconds.max(1e-9),
        report.output.display(),
        report.gold.display()
    );
    println!("{}", python_repr(report.bleu.bleu));
    Ok(())
}
