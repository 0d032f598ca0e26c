//! Summarize code: one piece read from stdin (or `--file`), or every function of a `--jsonl`
//! file, batched; print the best summary, or the n-best list with scores.
//!
//! ```text
//! echo 'def add ( a , b ) a + b end' | cargo run --release --example predict -- \
//!     --checkpoint /tmp/c2n-run/checkpoint-last --tokenizer ../shared/data/roberta-base --nbest 3
//! # one summary per line of a jsonl file (`code_tokens` or `code`), as `idx<TAB>summary`
//! cargo run --release --example predict -- --checkpoint /tmp/c2n-run/checkpoint-last \
//!     --tokenizer ../shared/data/roberta-base --jsonl functions.jsonl --output summaries.txt
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use code2nl::cli::predict::PredictArgs;
use code2nl::data::{
    code_features, read_code_examples, read_code_examples_from_reader, Example, Padding,
    RobertaTokenizer,
};
use code2nl::model::beam::{cut_at_first_zero, BeamOutput};
use code2nl::model::generation::GenerationConfig;
use code2nl::train::device::select_device;
use code2nl::train::evaluate::{decode, EvalBatching};
use code2nl::train::output_file::OutputFile;
use code2nl::train::progress::Progress;
use std::io::{BufWriter, IsTerminal, Read, Write};

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    code2nl::cli::end_quietly_on_closed_pipe();
    let args = PredictArgs::parse().standard_streams_as_defaults();
    let decoding = args.decoding.resolve(&args.model.checkpoint)?;
    if let Some(note) = decoding.note() {
        eprintln!("{note}");
    }
    let generation = GenerationConfig {
        beam_size: decoding.beam_size,
        max_length: decoding.max_target_len,
        tie_order: args.tie_order.into(),
        ..Default::default()
    }
    .with_overrides(&args.search_rules.overrides());
    generation.validate()?;
    if let Some(k) = args.nbest {
        let rows = generation.effective_beam_size();
        if k > rows {
            let what = if args.search_rules.greedy {
                "greedy decoding keeps one hypothesis".to_string()
            } else {
                format!("--beam-size is {rows}: a beam keeps only beam-size hypotheses")
            };
            bail!("--nbest {k} exceeds what the search keeps: {what}");
        }
    }
    let examples = match &args.jsonl {
        Some(path) if path.as_os_str() == "-" => {
            read_code_examples_from_reader("<stdin>", std::io::stdin())?
        }
        Some(path) => read_code_examples(path)?,
        None => vec![single_example(&args)?],
    };
    // Opened before the long part, so that a bad --output path fails at once; written
    // aside and renamed at the end, so an interrupted run leaves any earlier file intact.
    let mut file = match &args.output {
        Some(path) => {
            Some(OutputFile::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => None,
    };
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let device = select_device(&args.device)?;
    let dtype = code2nl::train::device::apply_precision(args.precision.into(), &device);
    let model = code2nl::train::checkpoint_checksums::load_model(&args.model.checkpoint, &device)?
        .with_compute_dtype(dtype);
    let (tokenizer_spec, tokenizer_note) = args.model.tokenizer_spec()?;
    if let Some(note) = tokenizer_note {
        eprintln!("{note}");
    }
    let tokenizer = RobertaTokenizer::load(&tokenizer_spec)?;
    code2nl::train::model_setup::check_tokenizer_fits(&tokenizer, &model)?;
    let features = code_features(&tokenizer, &examples, decoding.max_source_len)?;
    let batching = EvalBatching {
        batch_size: args.batch_size,
        padding: Padding::Dynamic,
        max_source_len: decoding.max_source_len,
        max_target_len: decoding.max_target_len,
    };
    let bar = if args.jsonl.is_some() {
        Progress::examples(Some(features.len() as u64), "summarizing")
    } else {
        Progress::hidden()
    };
    let outputs = decode(&model, &features, &batching, &generation, |n| {
        bar.inc(n as u64)
    })?;
    bar.finish();
    let batch = args.jsonl.is_some();
    let writing = match &args.output {
        Some(path) => format!("writing the summaries to {}", path.display()),
        None => "writing the summaries to standard output".to_string(),
    };
    let out: &mut dyn Write = match file.as_mut() {
        Some(file) => file,
        None => &mut stdout,
    };
    for (example, output) in examples.iter().zip(&outputs) {
        // Texts as `evaluate` writes them: cut at the first id 0, decoded untrimmed.
        let idx = if batch {
            format!("{}\t", example.idx)
        } else {
            String::new()
        };
        write_summaries(out, &idx, &tokenizer, output, args.nbest)
            .with_context(|| writing.clone())?;
    }
    out.flush().with_context(|| writing.clone())?;
    if let (Some(file), Some(path)) = (file, &args.output) {
        file.commit().with_context(|| writing.clone())?;
        eprintln!("{} summaries written to {}", outputs.len(), path.display());
    }
    Ok(())
}

/// The code of `--file` or stdin as one example, normalized like a `code_tokens` join
/// (newlines become spaces, runs collapse).
fn single_example(args: &PredictArgs) -> Result<Example> {
    let code = match &args.file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "reading code from standard input; end it with Ctrl-D (or give --file or --jsonl)"
                );
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            text
        }
    };
    if code.trim().is_empty() {
        bail!("no code to summarize: pass it on stdin, with --file or with --jsonl");
    }
    Ok(Example::from_tokens(0, &[code.as_str()], &[""]))
}

/// The best summary, or the `nbest` best with their scores, each line after `prefix`.
fn write_summaries(
    out: &mut dyn Write,
    prefix: &str,
    tokenizer: &RobertaTokenizer,
    output: &BeamOutput,
    nbest: Option<usize>,
) -> Result<()> {
    match nbest {
        None => writeln!(out, "{prefix}{}", tokenizer.decode(output.prediction()))?,
        Some(k) => {
            for h in output.hypotheses.iter().take(k) {
                let text = tokenizer.decode(cut_at_first_zero(&h.ids));
                writeln!(out, "{prefix}{}\t{text}", h.score)?;
            }
        }
    }
    Ok(())
}
