//! Decode a jsonl file with beam search, write CodeXGLUE `test.output`/`test.gold` (and
//! optionally `nbest.jsonl`), and print the reference smoothed BLEU-4 last.
//!
//! ```text
//! cargo run --release --example evaluate -- --checkpoint /tmp/c2n-run/checkpoint-last \
//!     --tokenizer ../shared/data/roberta-base --data ../shared/data/codesearchnet/ruby/test.jsonl \
//!     --limit 100 --beam-size 10 --output-dir /tmp/c2n-eval
//! # the same files from 2 thread ranks (each decodes half of the batches; rank 0 writes)
//! cargo run --release --example evaluate -- --backend threads --world-size 2 ...
//! ```

use anyhow::Result;
use clap::Parser;
use code2nl::cli::evaluate::EvaluateArgs;
use code2nl::data::RobertaTokenizer;
use code2nl::eval::python_repr;
use code2nl::model::generation::GenerationConfig;
use code2nl::outln;
use code2nl::train::comm::{self, Communicator};
use code2nl::train::device::select_device;
use code2nl::train::evaluate::{
    evaluate_file_sharded, EvaluateReport, EvaluateRequest, NBEST_FILE,
};
use code2nl::train::progress::Progress;
use code2nl::train::TrainError;

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let args = EvaluateArgs::parse();
    let spec = args.launch_spec()?;
    let (tokenizer_spec, tokenizer_note) = args.model.tokenizer_spec()?;
    if let Some(note) = tokenizer_note {
        eprintln!("{note}");
    }
    let tokenizer = RobertaTokenizer::load(&tokenizer_spec)?;
    let decoding = args.decoding.resolve(&args.model.checkpoint)?;
    if let Some(note) = decoding.note() {
        eprintln!("{note}");
    }
    let request = EvaluateRequest {
        data: args.data.clone(),
        limit: args.limit,
        generation: GenerationConfig {
            beam_size: decoding.beam_size,
            max_length: decoding.max_target_len,
            tie_order: args.tie_order.into(),
            ..Default::default()
        }
        .with_overrides(&args.search_rules.overrides()),
        max_source_len: decoding.max_source_len,
        batch_size: args.batch_size,
        padding: args.padding.into(),
        output_dir: args.output_dir.clone(),
        prefix: args.prefix.clone(),
        nbest: args.nbest,
    };
    // An earlier evaluation's n-best lists stay (the file may be another prefix's): say so.
    let stale_nbest = args.output_dir.join(NBEST_FILE);
    if args.nbest.is_none() && stale_nbest.is_file() {
        eprintln!(
            "note: {} is from an earlier evaluation; this one writes none (--nbest K)",
            stale_nbest.display()
        );
    }
    let report = comm::launch(&spec, |comm| {
        evaluate_rank(&args, &tokenizer, &request, comm)
    })?;
    if let Some(report) = report {
        eprintln!("Total: {}", report.bleu.matched);
        outln!(
            "{} examples in {:.1} s ({:.2} examples/s): {} {}",
            report.examples,
            report.seconds,
            report.examples as f64 / report.seconds.max(1e-9),
            report.output.display(),
            report.gold.display()
        )?;
        outln!("{}", python_repr(report.bleu.bleu))?;
    }
    Ok(())
}

/// One rank: its own model replica, its share of the batches; the report on rank 0.
fn evaluate_rank(
    args: &EvaluateArgs,
    tokenizer: &RobertaTokenizer,
    request: &EvaluateRequest,
    comm: &dyn Communicator,
) -> Result<Option<EvaluateReport>, TrainError> {
    let device = match comm.device() {
        Some(device) => device,
        None => select_device(&args.device)?,
    };
    let dtype = code2nl::train::device::apply_precision(args.precision.into(), &device);
    let model = code2nl::train::checkpoint_checksums::load_model(&args.model.checkpoint, &device)?
        .with_compute_dtype(dtype);
    // Rank 0 counts its own batches (with several ranks, its share of the file).
    let bar = if comm.is_main() {
        let what = if comm.world_size() > 1 {
            "decoded by rank 0"
        } else {
            "decoded"
        };
        Progress::examples(None, what)
    } else {
        Progress::hidden()
    };
    let report = evaluate_file_sharded(comm, &model, tokenizer, request, |n| bar.inc(n as u64));
    // The totals line only for work done: an input refused at once prints just its error.
    match report {
        Ok(_) => bar.finish(),
        Err(_) => bar.clear(),
    }
    report
}
