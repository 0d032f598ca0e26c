//! Prepare CodeSearchNet features: read, (optionally) clean, tokenize, cache, print statistics.
//!
//! ```text
//! cargo run --release --example prepare -- --data ../shared/data/codesearchnet/ruby/valid.jsonl \
//!     --tokenizer ../shared/data/roberta-base --stage dev --cache-dir /tmp/c2n-cache
//! ```

use code2nl::out;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use code2nl::cli::prepare::PrepareArgs;
use code2nl::data::{
    self, CleanConfig, CommentStyle, FeatureConfig, PipelineConfig, PrepareRequest, Strictness,
    TokenizerFiles,
};
use code2nl::train::progress::Progress;

fn inputs(args: &PrepareArgs) -> Result<Vec<(String, String, PathBuf)>> {
    if let Some(file) = &args.data {
        // The stats row's labels: --lang/--split when given, else the reference layout's
        // `<lang>/<split>.jsonl` read off the path.
        let name = file.file_name().and_then(|s| s.to_str()).unwrap_or("data");
        let stem = name.trim_end_matches(".gz").trim_end_matches(".jsonl");
        let split = args.split.as_deref().unwrap_or(stem);
        let folder = file
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .unwrap_or("-");
        let lang = args.lang.as_deref().unwrap_or(folder);
        return Ok(vec![(lang.to_string(), split.to_string(), file.clone())]);
    }
    let (Some(dir), Some(lang)) = (&args.data_dir, &args.lang) else {
        bail!("give --data FILE or --data-dir DIR --lang L");
    };
    let splits: Vec<&str> = match &args.split {
        Some(s) => vec![s.as_str()],
        None => vec!["train", "valid", "test"],
    };
    let mut found = Vec::new();
    for split in splits {
        let plain = dir.join(lang).join(format!("{split}.jsonl"));
        let gz = dir.join(lang).join(format!("{split}.jsonl.gz"));
        if plain.is_file() {
            found.push((lang.clone(), split.to_string(), plain));
        } else if gz.is_file() {
            found.push((lang.clone(), split.to_string(), gz));
        } else if args.split.is_some() {
            bail!("{} not found (nor .gz)", plain.display());
        } else {
            eprintln!("note: no {split} split ({} nor .gz)", plain.display());
        }
    }
    if found.is_empty() {
        bail!("no split files under {}", dir.join(lang).display());
    }
    Ok(found)
}

fn main() -> std::process::ExitCode {
    code2nl::cli::finish(run())
}

fn run() -> Result<()> {
    code2nl::cli::end_quietly_on_closed_pipe();
    let args = PrepareArgs::parse();
    let clean = match args.clean.as_str() {
        "none" => CleanConfig::none(),
        "published" => CleanConfig::published(),
        other => bail!("--clean {other}: expected none or published"),
    };
    let clean = CleanConfig {
        strip_code_comments: match args.strip_comments.as_deref() {
            None => None,
            Some("hash") => Some(CommentStyle::Hash),
            Some("slash") => Some(CommentStyle::Slash),
            Some(other) => bail!("--strip-comments {other}: expected hash or slash"),
        },
        ..clean
    };
    let tokenizer = TokenizerFiles::resolve(&args.tokenizer)?;
    let features = FeatureConfig {
        max_source_len: args.max_source_len,
        max_target_len: args.max_target_len,
        stage: args.stage,
    };
    let inputs = inputs(&args)?;
    if args.dump_features.is_some() && inputs.len() > 1 {
        // One dump holds one split: idx values (line numbers) would collide across splits.
        bail!(
            "--dump-features writes one split, but {} were found: name one with --split",
            inputs.len()
        );
    }
    let mut rows = Vec::new();
    // A file is written aside and renamed at the end: an interrupted run leaves any earlier
    // dump intact. `-` is stdout, and the statistics table then goes to stderr.
    let dump_to_stdout = args.dump_features.as_deref() == Some(Path::new("-"));
    let mut dump = match &args.dump_features {
        Some(_) if dump_to_stdout => Some(FeatureDump::Stdout(std::io::BufWriter::new(
            std::io::stdout(),
        ))),
        Some(path) => Some(FeatureDump::File(
            code2nl::train::output_file::OutputFile::create(path)
                .with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    for (lang, split, path) in inputs {
        let mut req = PrepareRequest::new(&path, tokenizer.clone(), &args.cache_dir);
        req.pipeline = PipelineConfig {
            features,
            clean: clean.clone(),
            strictness: if args.strict {
                Strictness::Strict
            } else {
                Strictness::Lenient
            },
        };
        req.options.chunk_lines = args.chunk_lines;
        req.shard_examples = args.shard_examples;
        let bar = Progress::counting(None, &format!("read {}", path.display()), "lines");
        let started = std::time::Instant::now();
        let prepared = data::prepare(&req, &mut |event| match event {
            data::PrepareProgress::LinesRead(lines) => bar.set_position(lines as u64),
            data::PrepareProgress::WaitingForOtherBuild { lock } => bar.println(format!(
                "{}: another process is building this cache; waiting for it (lock {})",
                path.display(),
                lock.display()
            )),
        })?;
        bar.clear();
        eprintln!(
            "{}: {} in {:.3}s, {} features, cache {}",
            path.display(),
            prepared.status,
            started.elapsed().as_secs_f64(),
            prepared.store.len(),
            prepared.store.dir().display()
        );
        let read = &prepared.manifest.report.read;
        if read
            .bad_lines
            .contains_key(&data::BadLineReason::CorruptGzip)
        {
            // One count in the table, but everything after it is lost: say so plainly.
            eprintln!(
                "{}: warning: the gzip stream is damaged after line {}: reading stopped there, \
                 the rest of the file was not read",
                path.display(),
                read.lines.saturating_sub(1)
            );
        }
        if read.empty_files > 0 {
            // Lenient reading lets an empty file through (strict refuses it): never silently.
            eprintln!(
                "{}: warning: the file is empty (no line): nothing to prepare from it",
                path.display()
            );
        }
        if read.empty_files == 0 && prepared.store.is_empty() {
            eprintln!(
                "{}: warning: no example left of its {} line(s) (the table gives the reasons): \
                 nothing to prepare from it",
                path.display(),
                read.lines
            );
        }
        let surrogates = prepared.manifest.report.read.lone_surrogate_lines;
        if surrogates > 0 {
            eprintln!(
                "{}: {surrogates} line(s) with lone surrogate escapes, kept with U+FFFD in their place",
                path.display()
            );
        }
        if let Some((out, dump_path)) = dump.as_mut().zip(args.dump_features.as_ref()) {
            let writing = || format!("writing {}", dump_path.display());
            let out = out.writer();
            for i in 0..prepared.store.len() {
                let f = prepared.store.get(i);
                serde_json::to_writer(
                    &mut *out,
                    &serde_json::json!({
                        "idx": f.idx,
                        "source_ids": f.source_ids,
                        "target_ids": f.target_ids,
                    }),
                )
                .with_context(writing)?;
                out.write_all(b"\n").with_context(writing)?;
            }
        }
        rows.push(data::stats_row(
            &lang,
            &split,
            &prepared.store,
            &features,
            &prepared.manifest.report,
        ));
    }
    if let Some((out, dump_path)) = dump.zip(args.dump_features.as_ref()) {
        out.finish()
            .with_context(|| format!("writing {}", dump_path.display()))?;
    }
    if dump_to_stdout {
        eprint!("{}", data::markdown_table(&rows));
    } else {
        out!("{}", data::markdown_table(&rows))?;
    }
    Ok(())
}

/// Where `--dump-features` writes: a file written aside, or stdout (`-`).
enum FeatureDump {
    File(code2nl::train::output_file::OutputFile),
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

impl FeatureDump {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            FeatureDump::File(file) => file,
            FeatureDump::Stdout(out) => out,
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            FeatureDump::File(file) => file.commit(),
            FeatureDump::Stdout(mut out) => out.flush(),
        }
    }
}
