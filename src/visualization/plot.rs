//! Training curves as a picture: one panel per logged key, stacked, each with
//! its axes, grid, tick labels and one line per run (MMDetection's
//! `tools/analysis_tools/analyze_logs.py plot_curve`, drawn without matplotlib).

use super::draw::blend_rect;
use super::font::{draw_text, text_size};
use super::RgbImage;

/// Matplotlib's `tab10` colours, one per run.
const LINE_COLORS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];
const PANEL_WIDTH: usize = 760;
const PANEL_HEIGHT: usize = 340;
/// The plot area inside a panel: left, top, right and bottom margins.
const MARGINS: (usize, usize, usize, usize) = (96, 40, 24, 52);
const TEXT: [u8; 3] = [30, 30, 30];
const FRAME: [u8; 3] = [90, 90, 90];
const GRID: [u8; 3] = [225, 225, 225];
const FONT_SCALE: usize = 2;

/// One line: a run's `(x, y)` points, in x order.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One key's panel.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub series: Vec<Series>,
}

/// The colour of the `i`th run's line.
pub fn line_color(i: usize) -> [u8; 3] {
    LINE_COLORS[i % LINE_COLORS.len()]
}

/// The plot area of the `index`th panel in image pixels: `(x0, y0, x1, y1)`.
pub fn plot_area(index: usize) -> (usize, usize, usize, usize) {
    let (left, top, right, bottom) = MARGINS;
    let y = index * PANEL_HEIGHT;
    (
        left,
        y + top,
        PANEL_WIDTH - right,
        y + PANEL_HEIGHT - bottom,
    )
}

/// The panels stacked top to bottom on white.
pub fn render(panels: &[Panel]) -> RgbImage {
    let mut img = RgbImage::filled(PANEL_WIDTH, PANEL_HEIGHT * panels.len().max(1), [255; 3]);
    for (index, panel) in panels.iter().enumerate() {
        draw_panel(&mut img, index, panel);
    }
    img
}

fn draw_panel(img: &mut RgbImage, index: usize, panel: &Panel) {
    let (x0, y0, x1, y1) = plot_area(index);
    let (x0, y0, x1, y1) = (x0 as i64, y0 as i64, x1 as i64, y1 as i64);
    let points = || panel.series.iter().flat_map(|s| s.points.iter());
    let (x_lo, x_hi) = range(points().map(|p| p.0), 0.0);
    let (y_lo, y_hi) = range(points().map(|p| p.1), 0.05);
    let to_px = |x: f64, y: f64| {
        let px = x0 as f64 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0) as f64;
        let py = y1 as f64 - (y - y_lo) / (y_hi - y_lo) * (y1 - y0) as f64;
        (px.round() as i64, py.round() as i64)
    };
    let text_h = text_size("0", FONT_SCALE).1 as i64;

    for (tick, label) in ticks(y_lo, y_hi) {
        let (_, py) = to_px(x_lo, tick);
        blend_rect(img, x0, py, x1, py + 1, GRID, 1.0);
        let w = text_size(&label, FONT_SCALE).0 as i64;
        draw_text(img, x0 - 8 - w, py - text_h / 2, &label, TEXT, FONT_SCALE);
    }
    for (tick, label) in ticks(x_lo, x_hi) {
        let (px, _) = to_px(tick, y_lo);
        blend_rect(img, px, y0, px + 1, y1, GRID, 1.0);
        let w = text_size(&label, FONT_SCALE).0 as i64;
        draw_text(img, px - w / 2, y1 + 8, &label, TEXT, FONT_SCALE);
    }
    // The frame.
    blend_rect(img, x0, y0, x1 + 1, y0 + 1, FRAME, 1.0);
    blend_rect(img, x0, y1, x1 + 1, y1 + 1, FRAME, 1.0);
    blend_rect(img, x0, y0, x0 + 1, y1 + 1, FRAME, 1.0);
    blend_rect(img, x1, y0, x1 + 1, y1 + 1, FRAME, 1.0);

    let panel_top = (index * PANEL_HEIGHT) as i64;
    draw_text(img, x0, panel_top + 12, &panel.title, TEXT, FONT_SCALE);
    let w = text_size(&panel.x_label, FONT_SCALE).0 as i64;
    draw_text(
        img,
        (x0 + x1 - w) / 2,
        y1 + 14 + text_h,
        &panel.x_label,
        TEXT,
        FONT_SCALE,
    );

    for (i, series) in panel.series.iter().enumerate() {
        let color = line_color(i);
        let pixels: Vec<(i64, i64)> = series.points.iter().map(|&(x, y)| to_px(x, y)).collect();
        for pair in pixels.windows(2) {
            draw_line(img, pair[0], pair[1], color);
        }
        // Few points (a metric per epoch): mark each.
        if pixels.len() <= 50 {
            for &(px, py) in &pixels {
                blend_rect(img, px - 3, py - 3, px + 4, py + 4, color, 1.0);
            }
        }
        // The legend, top right: a swatch and the run's label.
        let (w, _) = text_size(&series.label, FONT_SCALE);
        let (lx, ly) = (x1 - 12 - w as i64, y0 + 10 + i as i64 * (text_h + 6));
        blend_rect(
            img,
            lx - 22,
            ly + text_h / 2 - 2,
            lx - 6,
            ly + text_h / 2 + 2,
            color,
            1.0,
        );
        draw_text(img, lx, ly, &series.label, TEXT, FONT_SCALE);
    }
}

/// `[lo, hi]` of `values`, widened by `pad` of the span on each side; a
/// single value gets a unit-wide range around it.
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let half = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            0.5
        };
        return (lo - half, hi + half);
    }
    let margin = (hi - lo) * pad;
    (lo - margin, hi + margin)
}

/// Round tick values inside `[lo, hi]` (steps of 1, 2 or 5 times a power of
/// ten, about five of them) with their labels, as many decimals as the step needs.
fn ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        // The tolerances keep float noise (0.05 / 5 = 0.010000000000000009)
        // from skipping a step or an end tick.
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            (v, format!("{v:.decimals$}"))
        })
        .collect()
}

/// A line two pixels wide from `a` to `b`.
fn draw_line(img: &mut RgbImage, a: (i64, i64), b: (i64, i64), color: [u8; 3]) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let x = a.0 as f64 + t * (b.0 - a.0) as f64;
        let y = a.1 as f64 + t * (b.1 - a.1) as f64;
        let (x, y) = (x.round() as i64, y.round() as i64);
        blend_rect(img, x, y, x + 2, y + 2, color, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let labels = |lo, hi| ticks(lo, hi).into_iter().map(|t| t.1).collect::<Vec<_>>();
        assert_eq!(labels(0.0, 1.0), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        assert_eq!(labels(3.0, 2000.0), ["500", "1000", "1500", "2000"]);
        assert_eq!(
            labels(0.41, 0.46),
            ["0.41", "0.42", "0.43", "0.44", "0.45", "0.46"]
        );
    }

    #[test]
    fn a_line_is_drawn_through_its_points_in_the_plot_area() {
        let panel = Panel {
            title: "loss".into(),
            x_label: "iter".into(),
            series: vec![Series {
                label: "run".into(),
                points: vec![(0.0, 0.0), (10.0, 1.0)],
            }],
        };
        let img = render(&[panel]);
        let (x0, y0, x1, y1) = plot_area(0);
        let color = line_color(0);
        let at = |x: usize, y: usize| {
            let i = (y * img.width + x) * 3;
            [img.data[i], img.data[i + 1], img.data[i + 2]]
        };
        // The diagonal's middle, half way across the plot area.
        let (mx, my) = ((x0 + x1) / 2, (y0 + y1) / 2);
        let near = (my - 3..=my + 3).any(|y| (mx - 1..=mx + 1).any(|x| at(x, y) == color));
        assert!(near, "no line pixel near the middle of the plot");
    }
}
