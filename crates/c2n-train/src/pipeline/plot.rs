//! Training curves as a PNG: lines drawn by plotters, tick values and titles by
//! [`plot_text`](super::plot_text) (a built-in bitmap font: no font file needed). The
//! Markdown report repeats what the panels show ([`LEGEND`]).

use super::plot_text::{draw_labels, nice_step, nice_ticks, tick_text, Anchor, Label};
use crate::metrics::MetricRecord;
use crate::{Result, TrainError};
use plotters::prelude::*;
use std::path::Path;

/// What the curves of [`training_curves_png`] mean.
pub const LEGEND: &str = "Left panel: training loss (blue) and dev loss (red) against updates. \
Right panel: dev BLEU on the dev subset (green) against updates. Each panel's axes start at \
zero; grey lines mark the tick values written beside the axes.";

/// Light grey of the grid lines at the tick values.
pub const GRID: RGBColor = RGBColor(225, 225, 225);

/// Pixels left of a panel's plot for the y tick values, and below it for the x ones.
pub const LEFT_MARGIN: u32 = 58;
pub const BOTTOM_MARGIN: u32 = 26;
/// Pixels above a panel's plot for its title.
pub const TOP_MARGIN: u32 = 30;

/// Writes an RGB buffer as a PNG file.
pub fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    // Written aside and renamed: a rerun's plot replaces the earlier one whole or not at all.
    crate::output_file::write_aside(path, |file| {
        let mut encoder = png::Encoder::new(file, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}

fn draw_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::InvalidInput(format!("drawing the plot: {e}"))
}

/// One panel: series of `(x, y)` points with their colours, axes from 0 to the maxima, grid
/// lines at round values. Returns the panel's text (title, tick values) for [`draw_labels`],
/// in the backend's pixels.
pub fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[(&[(f64, f64)], RGBColor)],
) -> Result<Vec<Label>> {
    let max_x = series
        .iter()
        .flat_map(|(s, _)| s.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_y = series
        .iter()
        .flat_map(|(s, _)| s.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    // All zero (a BLEU of 0): a unit axis, not ticks of 1e-10.
    let max_y = if max_y > 1e-6 { max_y } else { 1.0 };
    let (x_end, y_end) = (max_x * 1.02, max_y * 1.05);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .margin_top(TOP_MARGIN)
        .margin_left(LEFT_MARGIN)
        .margin_bottom(BOTTOM_MARGIN)
        .build_cartesian_2d(0.0..x_end, 0.0..y_end)
        .map_err(draw_err)?;
    let (x_ticks, y_ticks) = (nice_ticks(max_x, 6), nice_ticks(max_y, 6));
    let (x_step, y_step) = (nice_step(max_x, 6), nice_step(max_y, 6));
    let grid = x_ticks
        .iter()
        .skip(1)
        .map(|&x| vec![(x, 0.0), (x, y_end)])
        .chain(y_ticks.iter().skip(1).map(|&y| vec![(0.0, y), (x_end, y)]));
    chart
        .draw_series(grid.map(|line| PathElement::new(line, GRID.stroke_width(1))))
        .map_err(draw_err)?;
    for line in [
        vec![(0.0, 0.0), (x_end, 0.0)],
        vec![(0.0, 0.0), (0.0, y_end)],
    ] {
        chart
            .draw_series(std::iter::once(PathElement::new(
                line,
                BLACK.stroke_width(2),
            )))
            .map_err(draw_err)?;
    }
    for (points, colour) in series {
        let finite: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(finite.clone(), colour.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(finite.iter().map(|p| Circle::new(*p, 3, colour.filled())))
            .map_err(draw_err)?;
    }
    let (left, top) = area.get_base_pixel();
    let mut labels = vec![Label::new(title, (left + 12, top + 10), Anchor::TopLeft).bold()];
    for &y in &y_ticks {
        let (px, py) = chart.backend_coord(&(0.0, y));
        labels.push(Label::new(
            tick_text(y, y_step),
            (px - 6, py),
            Anchor::Right,
        ));
    }
    for &x in &x_ticks {
        let (px, py) = chart.backend_coord(&(x, 0.0));
        labels.push(Label::new(tick_text(x, x_step), (px, py + 6), Anchor::Top));
    }
    Ok(labels)
}

/// Training loss, dev loss and dev BLEU from `metrics.jsonl` records, as a 1000×400 PNG.
pub fn training_curves_png(records: &[MetricRecord], path: &Path) -> Result<()> {
    let mut train_loss = Vec::new();
    let mut dev_loss = Vec::new();
    let mut dev_bleu = Vec::new();
    for r in records {
        match r {
            MetricRecord::Train {
                global_step, loss, ..
            } => train_loss.push((*global_step as f64, *loss)),
            MetricRecord::Eval {
                global_step,
                dev_loss: loss,
                dev_bleu: bleu,
                ..
            } => {
                dev_loss.push((*global_step as f64, *loss));
                if let Some(b) = bleu {
                    dev_bleu.push((*global_step as f64, *b));
                }
            }
        }
    }
    let (width, height) = (1000u32, 400u32);
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    let mut labels;
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (left, right) = root.split_horizontally(width / 2);
        labels = draw_panel(
            &left,
            "loss by update: training (blue), dev (red)",
            &[(&train_loss, BLUE), (&dev_loss, RED)],
        )?;
        labels.extend(draw_panel(
            &right,
            "dev BLEU by update (green)",
            &[(&dev_bleu, GREEN)],
        )?);
        root.present().map_err(draw_err)?;
    }
    draw_labels(&mut rgb, width, height, &labels);
    write_png(path, &rgb, width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_become_a_png_with_coloured_pixels() {
        let records = vec![
            MetricRecord::Train {
                global_step: 10,
                epoch: 0,
                loss: 5.0,
                lr: 1e-3,
                samples_per_s: 1.0,
                tokens_per_s: 1.0,
            },
            MetricRecord::Eval {
                global_step: 10,
                epoch: 0,
                train_loss: 5.0,
                dev_loss: 4.0,
                dev_ppl: 54.6,
                dev_bleu: Some(3.0),
                saved: vec![],
            },
            MetricRecord::Train {
                global_step: 20,
                epoch: 0,
                loss: 3.0,
                lr: 1e-3,
                samples_per_s: 1.0,
                tokens_per_s: 1.0,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        training_curves_png(&records, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (1000, 400));
        let blue = buf[..info.buffer_size()]
            .chunks(3)
            .filter(|p| p[2] > 200 && p[0] < 50 && p[1] < 50)
            .count();
        assert!(
            blue > 50,
            "the training-loss line is drawn ({blue} blue pixels)"
        );
        // Titles and tick values: black pixels above each panel's plot and left of its y axis.
        let black_in = |x0: usize, x1: usize, y0: usize, y1: usize| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| buf[3 * (y * 1000 + x)..3 * (y * 1000 + x) + 3] == [0, 0, 0])
                .count()
        };
        assert!(black_in(0, 500, 0, 28) > 100, "left title");
        assert!(black_in(500, 1000, 0, 28) > 100, "right title");
        // Left of the y axis (x 57..59) and below the x axis (y 372..374): text only.
        assert!(black_in(0, 55, 40, 360) > 50, "y tick values");
        assert!(black_in(70, 500, 378, 400) > 50, "x tick values");
    }
}
