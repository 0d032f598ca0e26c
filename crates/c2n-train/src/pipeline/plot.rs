//! Training curves as a PNG without any text (no font is needed): the legend lives in the
//! Markdown report ([`LEGEND`]).

use crate::metrics::MetricRecord;
use crate::{Result, TrainError};
use plotters::prelude::*;
use std::path::Path;

/// What the curves of [`training_curves_png`] mean.
pub const LEGEND: &str = "Left panel: training loss (blue) and dev loss (red) against updates. \
Right panel: dev BLEU on the dev subset (green) against updates. Each panel's axes start at \
zero and end at the largest value shown.";

/// Writes an RGB buffer as a PNG file.
pub fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| TrainError::parse(path, e))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| TrainError::parse(path, e))
}

fn draw_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::InvalidInput(format!("drawing the plot: {e}"))
}

/// One panel: series of `(x, y)` points with their colours, axes from 0 to the maxima.
pub fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[(&[(f64, f64)], RGBColor)],
) -> Result<()> {
    let max_x = series
        .iter()
        .flat_map(|(s, _)| s.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let max_y = series
        .iter()
        .flat_map(|(s, _)| s.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(1e-9f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .build_cartesian_2d(0.0..max_x * 1.02, 0.0..max_y * 1.05)
        .map_err(draw_err)?;
    // Axis lines only: labels would need a font.
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (max_x * 1.02, 0.0)],
            BLACK.stroke_width(2),
        )))
        .map_err(draw_err)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, max_y * 1.05)],
            BLACK.stroke_width(2),
        )))
        .map_err(draw_err)?;
    for (points, colour) in series {
        let finite: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(finite.clone(), colour.stroke_width(2)))
            .map_err(draw_err)?;
        chart
            .draw_series(finite.iter().map(|p| Circle::new(*p, 3, colour.filled())))
            .map_err(draw_err)?;
    }
    Ok(())
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
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (left, right) = root.split_horizontally(width / 2);
        draw_panel(&left, &[(&train_loss, BLUE), (&dev_loss, RED)])?;
        draw_panel(&right, &[(&dev_bleu, GREEN)])?;
        root.present().map_err(draw_err)?;
    }
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
    }
}
