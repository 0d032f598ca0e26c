//! Summarize one piece of code: read it from stdin (or `--file`), print the best summary,
//! or the n-best list with scores.
//!
//! ```text
//! echo 'def add ( a , b ) a + b end' | cargo run --release --example predict -- \
//!     --checkpoint /tmp/c2n-run/checkpoint-last --tokenizer ../shared/data/roberta-base --nbest 3
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use code2nl::cli::predict::PredictArgs;
use code2nl::data::{featurize, Example, FeatureConfig, Padding, RobertaTokenizer, Stage};
use code2nl::model::beam::cut_at_first_zero;
use code2nl::model::generation::GenerationConfig;
use code2nl::train::device::select_device;
use code2nl::train::evaluate::{decode, EvalBatching};
use std::io::{IsTerminal, Read};

fn main() -> Result<()> {
    code2nl::cli::end_quietly_on_closed_pipe();
    let args = PredictArgs::parse();
    let code = match &args.file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading code from standard input; end it with Ctrl-D (or give --file)");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            text
        }
    };
    if code.trim().is_empty() {
        bail!("no code to summarize: pass it on stdin or with --file");
    }
    let device = select_device(&args.device)?;
    let model = code2nl::model::load_checkpoint(&args.model.checkpoint, &device)?;
    let tokenizer = RobertaTokenizer::load(&args.model.tokenizer)?;
    code2nl::train::model_setup::check_tokenizer_fits(&tokenizer, &model)?;
    // The code is normalized like a `code_tokens` join: newlines become spaces, runs collapse.
    let example = Example::from_tokens(0, &[code.as_str()], &[""]);
    let cfg = FeatureConfig {
        max_source_len: args.max_source_len,
        max_target_len: args.max_target_len,
        stage: Stage::Test,
    };
    let feature = featurize(&tokenizer, &example, &cfg)?;
    let k = args.nbest.unwrap_or(1);
    if k > args.beam_size {
        bail!(
            "--nbest {k} exceeds --beam-size {}: a beam keeps only beam-size hypotheses",
            args.beam_size
        );
    }
    let generation = GenerationConfig {
        beam_size: args.beam_size,
        max_length: args.max_target_len,
        tie_order: args.tie_order.into(),
        ..Default::default()
    };
    generation.validate()?;
    let batching = EvalBatching {
        batch_size: 1,
        padding: Padding::Dynamic,
        max_source_len: args.max_source_len,
        max_target_len: args.max_target_len,
    };
    let outputs = decode(&model, &[feature], &batching, &generation, |_| {})?;
    let output = outputs.first().context("no output")?;
    // Texts as `evaluate` writes them: cut at the first id 0, decoded untrimmed.
    match args.nbest {
        None => println!("{}", tokenizer.decode(output.prediction())),
        Some(k) => {
            for h in output.hypotheses.iter().take(k) {
                println!(
                    "{}\t{}",
                    h.score,
                    tokenizer.decode(cut_at_first_zero(&h.ids))
                );
            }
        }
    }
    Ok(())
}
