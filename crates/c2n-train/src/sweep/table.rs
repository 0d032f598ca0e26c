//! The sweep's results: a table sorted by dev BLEU (Markdown and JSON) and a PNG.

use super::runner::{PointResult, PointStatus};
use crate::pipeline::plot::{write_png, BOTTOM_MARGIN, GRID, LEFT_MARGIN, TOP_MARGIN};
use crate::pipeline::plot_text::{draw_labels, nice_step, nice_ticks, tick_text, Anchor, Label};
use crate::{Result, TrainError};
use plotters::prelude::*;
use std::fmt::Write;
use std::path::Path;

/// What the bars of [`results_png`] mean.
pub const PLOT_LEGEND: &str = "One pair of bars per finished run, numbered by its rank in the \
table (best dev BLEU first): dev BLEU (blue) and test BLEU (green), from zero; grey lines mark \
the BLEU values written beside the axis.";

/// Finished runs by dev BLEU (highest first; ties by lower dev perplexity), then failed
/// ones, each group otherwise in point order.
pub fn sorted(results: &[PointResult]) -> Vec<PointResult> {
    let mut rows = results.to_vec();
    let ppl = |r: &PointResult| {
        r.report
            .as_ref()
            .map_or(f64::INFINITY, |rep| rep.dev.perplexity)
    };
    rows.sort_by(|a, b| match (a.dev_bleu(), b.dev_bleu()) {
        (Some(x), Some(y)) => y.total_cmp(&x).then(ppl(a).total_cmp(&ppl(b))),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    rows
}

/// The Markdown table of sorted results, with a warning below it when finished runs decoded
/// nothing but empty predictions (their BLEU, about 0.4 whatever the gold, ranks nothing:
/// the order then comes from the dev perplexity).
pub fn markdown(rows: &[PointResult]) -> String {
    let mut md = String::from(
        "| rank | run | dev BLEU | test BLEU | dev ppl | empty outputs dev / test | train s | status |\n\
         |---:|---|---:|---:|---:|---:|---:|---|\n",
    );
    let all_empty: Vec<&str> = rows
        .iter()
        .filter(|r| {
            r.report.as_ref().is_some_and(|rep| {
                [&rep.dev, &rep.test]
                    .iter()
                    .all(|s| s.examples > 0 && s.empty_predictions == s.examples)
            })
        })
        .map(|r| r.name.as_str())
        .collect();
    for (i, r) in rows.iter().enumerate() {
        let status = match &r.status {
            PointStatus::Done => "done".to_string(),
            PointStatus::Skipped => "done earlier".to_string(),
            PointStatus::Stopped { .. } => "stopped (the same sweep continues it)".to_string(),
            PointStatus::Failed {
                exit_code,
                log_tail,
            } => format!(
                "**failed** (exit {}): {}",
                exit_code.map_or_else(|| "–".into(), |c| c.to_string()),
                log_tail.lines().last().unwrap_or("").replace('|', "\\|")
            ),
        };
        match &r.report {
            Some(rep) => {
                let train_s = rep
                    .stages
                    .iter()
                    .find(|s| s.name == "train")
                    .map_or(0.0, |s| s.seconds);
                let _ = writeln!(
                    md,
                    "| {} | `{}` | {:.2} | {:.2} | {:.3} | {}/{} · {}/{} | {:.0} | {} |",
                    i + 1,
                    r.name,
                    rep.dev.bleu_2dp,
                    rep.test.bleu_2dp,
                    rep.dev.perplexity,
                    rep.dev.empty_predictions,
                    rep.dev.examples,
                    rep.test.empty_predictions,
                    rep.test.examples,
                    train_s,
                    status
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| {} | `{}` | – | – | – | – | – | {} |",
                    i + 1,
                    r.name,
                    status
                );
            }
        }
    }
    if !all_empty.is_empty() {
        let _ = writeln!(
            md,
            "\n**Every prediction is empty** in {} of the finished runs ({}): their BLEU \
             ranks nothing (the order among them is the dev perplexity's); train longer \
             (more `train_steps`) for text.",
            all_empty.len(),
            all_empty
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    md
}

/// Dev and test BLEU bars of the finished rows of [`sorted`] rows, numbered by their rank
/// in the table, with tick values and a title (see [`PLOT_LEGEND`]).
pub fn results_png(rows: &[PointResult], path: &Path) -> Result<()> {
    let scores: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.report.as_ref().map(|rep| (rep.dev.bleu, rep.test.bleu)))
        .collect();
    let (width, height) = (800u32, 400u32);
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    let err =
        |e: &dyn std::fmt::Display| TrainError::InvalidInput(format!("drawing the plot: {e}"));
    let mut labels = vec![Label::new(
        "BLEU per run, by table rank: dev (blue), test (green)",
        (12, 10),
        Anchor::TopLeft,
    )
    .bold()];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let max = scores
            .iter()
            .flat_map(|(d, t)| [*d, *t])
            .fold(0.0f64, f64::max);
        // All zero: a unit axis, not ticks of 1e-10.
        let max = if max > 1e-6 { max } else { 1.0 };
        let n = scores.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .margin_top(TOP_MARGIN)
            .margin_left(LEFT_MARGIN)
            .margin_bottom(BOTTOM_MARGIN)
            .build_cartesian_2d(0.0..n, 0.0..max * 1.05)
            .map_err(|e| err(&e))?;
        let (ticks, step) = (nice_ticks(max, 6), nice_step(max, 6));
        chart
            .draw_series(
                ticks
                    .iter()
                    .skip(1)
                    .map(|&y| PathElement::new(vec![(0.0, y), (n, y)], GRID.stroke_width(1))),
            )
            .map_err(|e| err(&e))?;
        for (i, (dev, test)) in scores.iter().enumerate() {
            let x = i as f64;
            chart
                .draw_series([
                    Rectangle::new([(x + 0.1, 0.0), (x + 0.45, *dev)], BLUE.filled()),
                    Rectangle::new([(x + 0.55, 0.0), (x + 0.9, *test)], GREEN.filled()),
                ])
                .map_err(|e| err(&e))?;
            let (px, py) = chart.backend_coord(&(x + 0.5, 0.0));
            labels.push(Label::new((i + 1).to_string(), (px, py + 6), Anchor::Top));
        }
        for line in [
            vec![(0.0, 0.0), (n, 0.0)],
            vec![(0.0, 0.0), (0.0, max * 1.05)],
        ] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    line,
                    BLACK.stroke_width(2),
                )))
                .map_err(|e| err(&e))?;
        }
        for &y in &ticks {
            let (px, py) = chart.backend_coord(&(0.0, y));
            labels.push(Label::new(tick_text(y, step), (px - 6, py), Anchor::Right));
        }
        root.present().map_err(|e| err(&e))?;
    }
    draw_labels(&mut rgb, width, height, &labels);
    write_png(path, &rgb, width, height)
}
