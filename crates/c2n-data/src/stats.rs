//! Per-language, per-split statistics, printable as a Markdown table.

use serde::{Deserialize, Serialize};

use crate::clean::DropReason;
use crate::features::{FeatureConfig, Stage};
use crate::pipeline::PipelineReport;
use crate::shard::FeatureSet;

/// Summary of a list of lengths. Percentiles are nearest-rank: the value at position
/// `ceil(p/100 · n)` (1-based) of the sorted list, so p50 of an odd count is the median.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthSummary {
    /// Number of values.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// 50th percentile.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th percentile.
    pub p99: u32,
    /// Largest value.
    pub max: u32,
}

impl LengthSummary {
    /// Summarizes `values` (sorted in place).
    pub fn from_values(values: &mut [u32]) -> LengthSummary {
        if values.is_empty() {
            return LengthSummary::default();
        }
        values.sort_unstable();
        let n = values.len();
        let pick = |p: usize| values[(p * n).div_ceil(100).max(1) - 1];
        LengthSummary {
            count: n,
            mean: values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64,
            p50: pick(50),
            p90: pick(90),
            p99: pick(99),
            max: values[n - 1],
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    /// Language (e.g. `ruby`).
    pub language: String,
    /// Split (e.g. `test`).
    pub split: String,
    /// Read and clean counts.
    pub report: PipelineReport,
    /// Features kept.
    pub examples: usize,
    /// The stage the features were built for (test: the target is the `None` placeholder).
    #[serde(default)]
    pub stage: Stage,
    /// Source BPE lengths before truncation, without specials.
    pub source: LengthSummary,
    /// Target BPE lengths before truncation, without specials.
    pub target: LengthSummary,
    /// Sources longer than `max_source_len − 2`.
    pub truncated_sources: usize,
    /// Targets longer than `max_target_len − 2`.
    pub truncated_targets: usize,
}

/// Computes the statistics of a prepared feature set.
pub fn stats_row<S: FeatureSet + ?Sized>(
    language: &str,
    split: &str,
    set: &S,
    features: &FeatureConfig,
    report: &PipelineReport,
) -> StatsRow {
    let n = set.len();
    let mut source = Vec::with_capacity(n);
    let mut target = Vec::with_capacity(n);
    for i in 0..n {
        let f = set.get(i);
        source.push(f.source_bpe_len);
        target.push(f.target_bpe_len);
    }
    let over = |v: &[u32], max: usize| v.iter().filter(|&&l| l as usize + 2 > max).count();
    StatsRow {
        language: language.to_string(),
        split: split.to_string(),
        report: report.clone(),
        examples: n,
        stage: features.stage,
        truncated_sources: over(&source, features.max_source_len),
        truncated_targets: over(&target, features.max_target_len),
        source: LengthSummary::from_values(&mut source),
        target: LengthSummary::from_values(&mut target),
    }
}

fn dropped_cell(row: &StatsRow) -> String {
    let mut parts: Vec<String> = row
        .report
        .read
        .bad_lines
        .iter()
        .map(|(r, n)| format!("{}: {n}", r.name()))
        .collect();
    parts.extend(
        row.report
            .clean
            .dropped
            .iter()
            .map(|(r, n): (&DropReason, &usize)| format!("{}: {n}", r.name())),
    );
    if parts.is_empty() {
        "0".to_string()
    } else {
        parts.join(", ")
    }
}

/// Renders rows as a GitHub-flavoured Markdown table.
pub fn markdown_table(rows: &[StatsRow]) -> String {
    let mut out = String::from(
        "| lang | split | lines | examples | dropped (by reason) | src BPE mean / p50 / p90 / p99 / max | tgt BPE mean / p50 / p90 / p99 / max | truncated src | truncated tgt |\n\
         |---|---|---:|---:|---|---:|---:|---:|---:|\n",
    );
    let summary = |s: &LengthSummary| {
        format!(
            "{:.1} / {} / {} / {} / {}",
            s.mean, s.p50, s.p90, s.p99, s.max
        )
    };
    for row in rows {
        // Test-stage targets are the `None` placeholder: their lengths say nothing.
        let (target_summary, truncated_targets) = if row.stage == Stage::Test {
            ("— (test stage: `None`)".to_string(), "—".to_string())
        } else {
            (summary(&row.target), row.truncated_targets.to_string())
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.language,
            row.split,
            row.report.read.lines,
            row.examples,
            dropped_cell(row),
            summary(&row.source),
            target_summary,
            row.truncated_sources,
            truncated_targets,
        ));
    }
    out
}
