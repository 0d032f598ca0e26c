//! Prepares a synthetic 1 000 000-example file (records of ruby valid repeated with distinct
//! urls) and reports cold-prepare throughput and warm-load time. Run it under
//! `/usr/bin/time -v` to see the peak RSS:
//!
//! ```text
//! cargo build --release --example bench_prepare_1m
//! /usr/bin/time -v target/release/examples/bench_prepare_1m --work-dir /tmp/c2n-1m
//! ```

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use code2nl::data::{prepare, CacheStatus, PrepareRequest, Stage, TokenizerFiles};

#[derive(Parser, Debug)]
struct Args {
    /// Examples to generate.
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// jsonl whose records are repeated.
    #[arg(long, default_value = "../shared/data/codesearchnet/ruby/valid.jsonl")]
    template: PathBuf,
    /// Tokenizer folder or hub id.
    #[arg(long, default_value = "../shared/data/roberta-base")]
    tokenizer: String,
    /// Where the synthetic file and the cache go (removed at the end unless --keep).
    #[arg(long, default_value = "/tmp/c2n-bench-1m")]
    work_dir: PathBuf,
    /// Keep the synthetic file and cache.
    #[arg(long)]
    keep: bool,
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`; 0 elsewhere).
/// Reported next to wall time because on a shared machine wall time depends on other load.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work_dir)?;
    let data = args.work_dir.join("synthetic.jsonl");
    let cache = args.work_dir.join("cache");
    let _ = std::fs::remove_dir_all(&cache);

    let started = Instant::now();
    let templates: Vec<serde_json::Value> = std::io::BufReader::new(
        std::fs::File::open(&args.template).with_context(|| args.template.display().to_string())?,
    )
    .lines()
    .map(|l| Ok(serde_json::from_str(&l?)?))
    .collect::<Result<_>>()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&data)?);
    for i in 0..args.n {
        let t = &templates[i % templates.len()];
        let record = serde_json::json!({
            "code_tokens": t["code_tokens"],
            "docstring_tokens": t["docstring_tokens"],
            "url": format!("{}#{i}", t["url"].as_str().unwrap_or("")),
        });
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    drop(out);
    let bytes = std::fs::metadata(&data)?.len();
    eprintln!(
        "generated {} examples ({:.0} MB) in {:.1}s",
        args.n,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let mut req = PrepareRequest::new(&data, TokenizerFiles::resolve(&args.tokenizer)?, &cache);
    req.pipeline.features.stage = Stage::Train;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let cold = prepare(&req, &mut |_| {})?;
    let cold_s = started.elapsed().as_secs_f64();
    let cold_cpu = cpu_seconds() - cpu_before;
    assert_eq!(cold.status, CacheStatus::Built);
    println!(
        "cold prepare: {} examples in {:.1}s wall = {:.0} examples/s ({} shards); \
         {:.1} CPU-s = {:.0} examples per CPU-second",
        cold.store.len(),
        cold_s,
        cold.store.len() as f64 / cold_s,
        cold.manifest.shards.len(),
        cold_cpu,
        cold.store.len() as f64 / cold_cpu.max(1e-9)
    );
    drop(cold);
    let started = Instant::now();
    let warm = prepare(&req, &mut |_| {})?;
    let warm_s = started.elapsed().as_secs_f64();
    assert_eq!(warm.status, CacheStatus::Hit);
    println!(
        "warm load (sha256 of {:.0} MB input + shards): {:.2}s",
        bytes as f64 / 1e6,
        warm_s
    );
    drop(warm);
    if !args.keep {
        std::fs::remove_dir_all(&args.work_dir)?;
    }
    Ok(())
}
