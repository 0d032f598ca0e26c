//! Cold featurization speed on one file (ruby valid by default): what
//! `tools/bench_featurize_ratio.py` compares with the Python reference in the same run.
//!
//! Each repetition loads a fresh tokenizer (its word caches empty, as in a one-shot run), then
//! times, with wall and CPU time of the process:
//! * `featurize`: read + normalize + BPE + features, the tokenizer already loaded (the work the
//!   reference's timed section does);
//! * `cold_prepare`: a whole `prepare` into an empty cache folder (input and tokenizer hashed,
//!   tokenizer loaded, features, shards, manifest);
//! * `warm_load`: the same `prepare` again, served from the cache.
//!
//! It prints one JSON object with the best of each (the least disturbed by other load).
//!
//! ```text
//! cargo build --release --example bench_featurize
//! target/release/examples/bench_featurize --repeat 5
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use code2nl::data::{
    features_in_memory, prepare, FeatureConfig, PipelineConfig, PrepareRequest, RobertaTokenizer,
    Stage, TokenizerFiles,
};

#[derive(Parser, Debug)]
struct Args {
    /// The jsonl file to featurize.
    #[arg(long, default_value = "../shared/data/codesearchnet/ruby/valid.jsonl")]
    data: PathBuf,
    /// Tokenizer folder, tokenizer.json or hub id.
    #[arg(long, default_value = "../shared/data/roberta-base")]
    tokenizer: String,
    /// Repetitions; the best of each measurement is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

/// User + system CPU seconds of this process so far (all threads), in microseconds' precision.
/// Reported next to wall time: on a shared machine wall time depends on the other load.
fn cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            return secs(usage.ru_utime) + secs(usage.ru_stime);
        }
    }
    0.0
}

/// Wall and CPU seconds of `work`.
fn timed<T>(work: impl FnOnce() -> Result<T>) -> Result<(T, f64, f64)> {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let value = work()?;
    Ok((value, wall.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

fn pipeline() -> PipelineConfig {
    // The reference's lengths; the dev stage keeps the targets, as its timed section does.
    PipelineConfig::strict_unfiltered(FeatureConfig {
        max_source_len: 256,
        max_target_len: 128,
        stage: Stage::Dev,
    })
}

#[derive(Default)]
struct Best {
    wall: f64,
    cpu: f64,
}

impl Best {
    fn keep(&mut self, wall: f64, cpu: f64) {
        if self.wall == 0.0 || wall < self.wall {
            self.wall = wall;
        }
        if self.cpu == 0.0 || cpu < self.cpu {
            self.cpu = cpu;
        }
    }

    fn json(&self, examples: usize) -> serde_json::Value {
        serde_json::json!({
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "examples_per_s": examples as f64 / self.wall.max(1e-9),
            "examples_per_cpu_s": examples as f64 / self.cpu.max(1e-9),
        })
    }
}

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    let files = TokenizerFiles::resolve(&args.tokenizer)
        .with_context(|| format!("tokenizer {}", args.tokenizer))?;
    let scratch = tempfile::tempdir()?;
    let (mut load, mut featurize, mut cold, mut warm) = Default::default();
    let mut examples = 0;
    for round in 0..args.repeat {
        let (tok, wall, cpu) = timed(|| Ok(RobertaTokenizer::from_files(&files)?))?;
        Best::keep(&mut load, wall, cpu);
        let ((features, _), wall, cpu) =
            timed(|| Ok(features_in_memory(&args.data, &tok, &pipeline())?))?;
        Best::keep(&mut featurize, wall, cpu);
        examples = features.len();
        drop((tok, features));

        let mut req = PrepareRequest::new(
            &args.data,
            files.clone(),
            scratch.path().join(round.to_string()),
        );
        req.pipeline = pipeline();
        let (_, wall, cpu) = timed(|| Ok(prepare(&req, &mut |_| {})?))?;
        Best::keep(&mut cold, wall, cpu);
        let (_, wall, cpu) = timed(|| Ok(prepare(&req, &mut |_| {})?))?;
        Best::keep(&mut warm, wall, cpu);
    }
    let report = serde_json::json!({
        "data": args.data,
        "examples": examples,
        "threads": rayon_threads(),
        "repeat": args.repeat,
        "tokenizer_load": load.json(examples),
        "featurize": featurize.json(examples),
        "cold_prepare": cold.json(examples),
        "warm_load": warm.json(examples),
    });
    println!("{report}");
    Ok(())
}

/// The worker threads featurization runs on (`RAYON_NUM_THREADS`, else the cores).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
