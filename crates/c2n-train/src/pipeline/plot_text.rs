//! Text on the PNG plots: tick values, axis names and panel titles, drawn with the bitmap
//! fonts built into `embedded-graphics` onto the RGB buffer plotters drew into. Plotters' own
//! text needs a font file or the system's font stack; neither is there on a bare server, and
//! a committed font would be a file to license and keep.

use embedded_graphics::mono_font::ascii::{FONT_7X13, FONT_7X13_BOLD};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};

/// Where a label's anchor point sits on the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Right end, vertically centred: y-axis tick values left of the axis.
    Right,
    /// Top centre: x-axis tick values below the axis.
    Top,
    /// Left end, top: panel titles.
    TopLeft,
}

/// One piece of text at a pixel of the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub text: String,
    pub x: i32,
    pub y: i32,
    pub anchor: Anchor,
    pub bold: bool,
}

impl Label {
    pub fn new(text: impl Into<String>, (x, y): (i32, i32), anchor: Anchor) -> Self {
        Self {
            text: text.into(),
            x,
            y,
            anchor,
            bold: false,
        }
    }

    pub fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
}

/// An RGB8 buffer (row-major, 3 bytes a pixel) as an `embedded-graphics` draw target.
struct RgbCanvas<'a> {
    rgb: &'a mut [u8],
    width: u32,
    height: u32,
}

impl OriginDimensions for RgbCanvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for RgbCanvas<'_> {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, colour) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) else {
                continue;
            };
            if x >= self.width || y >= self.height {
                continue;
            }
            let at = 3 * (y as usize * self.width as usize + x as usize);
            if let Some(pixel) = self.rgb.get_mut(at..at + 3) {
                pixel.copy_from_slice(&[colour.r(), colour.g(), colour.b()]);
            }
        }
        Ok(())
    }
}

/// Draws `labels` in black onto a `width × height` RGB8 buffer; text past the edges is cut.
pub fn draw_labels(rgb: &mut [u8], width: u32, height: u32, labels: &[Label]) {
    let mut canvas = RgbCanvas { rgb, width, height };
    for label in labels {
        let font = if label.bold {
            &FONT_7X13_BOLD
        } else {
            &FONT_7X13
        };
        let style = MonoTextStyle::new(font, Rgb888::BLACK);
        let (alignment, baseline) = match label.anchor {
            Anchor::Right => (Alignment::Right, Baseline::Middle),
            Anchor::Top => (Alignment::Center, Baseline::Top),
            Anchor::TopLeft => (Alignment::Left, Baseline::Top),
        };
        let layout = TextStyleBuilder::new()
            .alignment(alignment)
            .baseline(baseline)
            .build();
        // Infallible: the canvas clips instead of failing.
        let _ = Text::with_text_style(&label.text, Point::new(label.x, label.y), style, layout)
            .draw(&mut canvas);
    }
}

/// Tick values from 0 to at most `max`, a round step apart (1, 2 or 5 × 10^k), about
/// `target` of them: `nice_ticks(7.3, 5)` is 0, 2, 4, 6.
pub fn nice_ticks(max: f64, target: usize) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0];
    }
    let step = nice_step(max, target);
    let count = (max / step + 1e-9).floor() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// The round step of [`nice_ticks`].
pub fn nice_step(max: f64, target: usize) -> f64 {
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A tick value with as many decimals as its step needs (`0.25` for step 0.05, `600` for 100).
pub fn tick_text(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().max(0.0) as usize
    };
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_stay_within_the_range() {
        assert_eq!(nice_ticks(7.3, 5), vec![0.0, 2.0, 4.0, 6.0]);
        assert_eq!(
            nice_ticks(600.0, 6),
            vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
        );
        let small = nice_ticks(0.37, 4);
        assert_eq!(small.len(), 4, "{small:?}");
        assert!((small[3] - 0.3).abs() < 1e-12, "{small:?}");
        assert_eq!(nice_ticks(0.0, 5), vec![0.0]);
        assert_eq!(nice_ticks(f64::NAN, 5), vec![0.0]);
        assert_eq!(tick_text(0.30000000000000004, 0.1), "0.3");
        assert_eq!(tick_text(0.25, 0.05), "0.25");
        assert_eq!(tick_text(600.0, 100.0), "600");
    }

    #[test]
    fn labels_become_dark_pixels_where_they_are_anchored() {
        let (w, h) = (120u32, 40u32);
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        draw_labels(
            &mut rgb,
            w,
            h,
            &[Label::new("7.29", (60, 20), Anchor::Right)],
        );
        let dark = |x0: u32, x1: u32| {
            (0..h)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| rgb[3 * (y * w + x) as usize] < 128)
                .count()
        };
        // Right-aligned at x = 60: ink left of it, none right of it.
        assert!(dark(60 - 4 * 7, 60) > 20, "{}", dark(32, 60));
        assert_eq!(dark(61, w), 0);
        // Text past the edge is cut, not a panic.
        draw_labels(&mut rgb, w, h, &[Label::new("far", (500, -9), Anchor::Top)]);
    }
}
