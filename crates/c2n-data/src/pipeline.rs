//! Reading → cleaning → tokenizing → features, in parallel over chunks, with bounded memory.
//!
//! Lines are read sequentially in chunks of [`PipelineOptions::chunk_lines`]; each chunk is
//! parsed, cleaned and tokenized with rayon, and the results are consumed in line order, so
//! the output equals a sequential run. Only one chunk of lines and one shard of features are
//! in memory at a time.

use std::path::Path;

use rayon::prelude::*;

use crate::clean::{CleanConfig, CleanReport, Cleaner, DropReason};
use crate::error::{DataError, Result};
use crate::example::Example;
use crate::features::{featurize, Feature, FeatureConfig};
use crate::reader::{
    finish_file, handle_read_failure, parse_line, JsonlLines, LineProblem, RawLine, ReadReport,
    Strictness,
};
use crate::tokenizer::RobertaTokenizer;

/// Knobs of the parallel pipeline that do not change its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Lines per parallel chunk.
    pub chunk_lines: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { chunk_lines: 8192 }
    }
}

/// What the pipeline settings are (everything that changes the output).
///
/// Default: the reference's lengths (256 / 128, [`Stage::Train`](crate::Stage::Train)), no
/// cleaning filter, and bad lines skipped and counted ([`Strictness::Lenient`]); the
/// reference itself stops at a bad line, which is [`PipelineConfig::strict_unfiltered`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Lengths and stage.
    pub features: FeatureConfig,
    /// Cleaning filters.
    pub clean: CleanConfig,
    /// Bad-line policy.
    pub strictness: Strictness,
}

impl PipelineConfig {
    /// `features` of every line, as the reference reads a file: no cleaning filter, and a bad
    /// line is an error (file and line) rather than a count.
    pub fn strict_unfiltered(features: FeatureConfig) -> Self {
        PipelineConfig {
            features,
            clean: CleanConfig::none(),
            strictness: Strictness::Strict,
        }
    }
}

/// Counts from one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PipelineReport {
    /// Reading.
    pub read: ReadReport,
    /// Cleaning.
    pub clean: CleanReport,
}

enum Outcome {
    Bad(LineProblem),
    Dropped {
        reason: DropReason,
        lone_surrogate: bool,
    },
    Kept {
        feature: Feature,
        url: Option<String>,
        stripped: usize,
        lone_surrogate: bool,
    },
}

fn process_line(line: &RawLine, tok: &RobertaTokenizer, cfg: &PipelineConfig) -> Result<Outcome> {
    let mut parsed = match parse_line(&line.bytes) {
        Ok(p) => p,
        Err(problem) => return Ok(Outcome::Bad(problem)),
    };
    let stripped = match Cleaner::check(&cfg.clean, &mut parsed.record) {
        Ok(n) => n,
        Err(reason) => {
            return Ok(Outcome::Dropped {
                reason,
                lone_surrogate: parsed.had_lone_surrogate,
            })
        }
    };
    let example = Example::from_record(line.index, &parsed.record);
    let feature = featurize(tok, &example, &cfg.features)?;
    Ok(Outcome::Kept {
        feature,
        url: parsed.record.url,
        stripped,
        lone_surrogate: parsed.had_lone_surrogate,
    })
}

/// Runs the pipeline over one file, handing each kept feature to `sink` in line order.
///
/// `progress` is called after each chunk with the number of lines read so far.
pub fn run_file(
    path: &Path,
    tok: &RobertaTokenizer,
    cfg: &PipelineConfig,
    options: PipelineOptions,
    sink: &mut dyn FnMut(Feature) -> Result<()>,
    progress: &mut dyn FnMut(usize),
) -> Result<PipelineReport> {
    cfg.features.validate()?;
    let mut lines = JsonlLines::open(path)?;
    let mut report = PipelineReport::default();
    let mut cleaner = Cleaner::new(cfg.clean.clone());
    let mut chunk = Vec::with_capacity(options.chunk_lines);
    loop {
        let more = match lines.next_chunk(options.chunk_lines.max(1), &mut chunk) {
            Ok(more) => more,
            Err(failure) => {
                // Lines read before the failure are in `chunk`; process them, then account
                // for the failure.
                consume(path, &chunk, tok, cfg, &mut cleaner, &mut report, sink)?;
                handle_read_failure(path, failure, cfg.strictness, &mut report.read)?;
                progress(report.read.lines);
                break;
            }
        };
        consume(path, &chunk, tok, cfg, &mut cleaner, &mut report, sink)?;
        progress(report.read.lines);
        if !more {
            break;
        }
    }
    finish_file(path, cfg.strictness, &mut report.read)?;
    Ok(report)
}

fn consume(
    path: &Path,
    chunk: &[RawLine],
    tok: &RobertaTokenizer,
    cfg: &PipelineConfig,
    cleaner: &mut Cleaner,
    report: &mut PipelineReport,
    sink: &mut dyn FnMut(Feature) -> Result<()>,
) -> Result<()> {
    let outcomes: Vec<Result<Outcome>> = chunk
        .par_iter()
        .map(|line| process_line(line, tok, cfg))
        .collect();
    for (line, outcome) in chunk.iter().zip(outcomes) {
        report.read.lines += 1;
        // A tokenizer or id error of one line names that line.
        let outcome = outcome.map_err(|e| DataError::InLine {
            path: path.to_path_buf(),
            line: line.index + 1,
            message: e.to_string(),
        })?;
        match outcome {
            Outcome::Bad(problem) => match cfg.strictness {
                Strictness::Strict => return Err(problem.into_error(path, line.index)),
                Strictness::Lenient => report.read.count_bad(problem.reason),
            },
            Outcome::Dropped {
                reason,
                lone_surrogate,
            } => {
                report.read.records += 1;
                report.read.lone_surrogate_lines += usize::from(lone_surrogate);
                report.clean.seen += 1;
                *report.clean.dropped.entry(reason).or_insert(0) += 1;
            }
            Outcome::Kept {
                feature,
                url,
                stripped,
                lone_surrogate,
            } => {
                report.read.records += 1;
                report.read.lone_surrogate_lines += usize::from(lone_surrogate);
                report.clean.seen += 1;
                match cleaner.admit(url.as_deref()) {
                    Ok(()) => {
                        report.clean.kept += 1;
                        report.clean.comment_tokens_stripped += stripped;
                        report.clean.records_with_comments_stripped += usize::from(stripped > 0);
                        sink(feature)?;
                    }
                    Err(reason) => *report.clean.dropped.entry(reason).or_insert(0) += 1,
                }
            }
        }
    }
    Ok(())
}

/// Runs the pipeline over one file and keeps every feature in memory (small files, tests).
pub fn features_in_memory(
    path: impl AsRef<Path>,
    tok: &RobertaTokenizer,
    cfg: &PipelineConfig,
) -> Result<(Vec<Feature>, PipelineReport)> {
    let mut out = Vec::new();
    let report = run_file(
        path.as_ref(),
        tok,
        cfg,
        PipelineOptions::default(),
        &mut |f| {
            out.push(f);
            Ok(())
        },
        &mut |_| {},
    )?;
    Ok((out, report))
}

/// Reads a file into examples (no cleaning, no tokenizing), sequentially.
pub fn read_examples(
    path: impl AsRef<Path>,
    strictness: Strictness,
) -> Result<(Vec<Example>, ReadReport)> {
    read_first_examples(path, strictness, None)
}

/// [`read_examples`] of the first `max_lines` lines only (`evaluate --limit`).
pub fn read_first_examples(
    path: impl AsRef<Path>,
    strictness: Strictness,
    max_lines: Option<usize>,
) -> Result<(Vec<Example>, ReadReport)> {
    let (records, report) =
        crate::reader::read_first_records(path.as_ref(), strictness, max_lines)?;
    let examples = records
        .iter()
        .map(|(idx, r)| Example::from_record(*idx, r))
        .collect();
    Ok((examples, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_reference_lengths_read_leniently_and_round_trips() {
        let config = PipelineConfig::default();
        assert_eq!(config.features, FeatureConfig::default());
        assert_eq!(config.strictness, Strictness::Lenient);
        let strict = PipelineConfig::strict_unfiltered(FeatureConfig::default());
        let text = serde_json::to_string(&strict).unwrap();
        assert_eq!(
            serde_json::from_str::<PipelineConfig>(&text).unwrap(),
            strict
        );
        // Missing keys take their defaults.
        let partial: PipelineConfig = serde_json::from_str(r#"{"strictness":"strict"}"#).unwrap();
        assert_eq!(partial, strict);
    }
}
