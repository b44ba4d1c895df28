//! `DetLocalVisualizer.add_datasample` for instances: the ground truth drawn
//! on the left copy of the image, the predictions scoring above the threshold
//! on the right, each as blended masks with a white border, box outlines in
//! the class colour and a `class: score` label on a dark plate.

use super::draw::{blend_mask, blend_rect, draw_box, draw_mask_border};
use super::font::{draw_text, text_size};
use super::palette::jitter;
use super::RgbImage;

/// Instances of one image in original-image pixels (ground truth or predictions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instances {
    /// `[x1, y1, x2, y2]` per instance.
    pub bboxes: Vec<[f32; 4]>,
    /// Contiguous labels: indices into the class names.
    pub labels: Vec<usize>,
    /// Scores (predictions only); the label shows `class: 87.5` when present.
    pub scores: Option<Vec<f32>>,
    /// One row-major mask of the image's size per instance (non-zero = inside).
    pub masks: Option<Vec<Vec<u8>>>,
}

impl Instances {
    /// The instances scoring strictly above `thr` (`pred_instances.scores > pred_score_thr`);
    /// all of them when there are no scores.
    pub fn above(&self, thr: f32) -> Instances {
        let Some(scores) = &self.scores else {
            return self.clone();
        };
        let keep: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] > thr).collect();
        Instances {
            bboxes: pick(&self.bboxes, &keep),
            labels: pick(&self.labels, &keep),
            scores: Some(pick(scores, &keep)),
            masks: self.masks.as_ref().map(|m| pick(m, &keep)),
        }
    }
}

/// The items of `v` at `keep` (indices past its end are skipped).
fn pick<T: Clone>(v: &[T], keep: &[usize]) -> Vec<T> {
    keep.iter().filter_map(|&i| v.get(i).cloned()).collect()
}

/// How instances are drawn: `DetLocalVisualizer`'s settings and the dataset's classes.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawStyle {
    /// Class names (`dataset_meta['classes']`); other labels read `class N`.
    pub classes: Vec<String>,
    /// Box colour per label (`bbox_color`, else the class palette).
    pub bbox_colors: Vec<[u8; 3]>,
    /// Mask colour per label before the per-instance jitter (`mask_color`, else the palette).
    pub mask_colors: Vec<[u8; 3]>,
    /// Label text colour per label (`text_color`, `(200, 200, 200)` by default).
    pub text_colors: Vec<[u8; 3]>,
    /// `line_width` of the visualizer: matplotlib points for the box strokes,
    /// image pixels for the label offset (MMDetection uses it as both).
    pub line_width: f64,
    /// Opacity of box strokes and masks.
    pub alpha: f32,
}

impl DrawStyle {
    fn color(colors: &[[u8; 3]], label: usize) -> [u8; 3] {
        colors
            .get(label % colors.len().max(1))
            .copied()
            .unwrap_or([255, 255, 255])
    }

    fn label_text(&self, label: usize, score: Option<f32>) -> String {
        let name = self
            .classes
            .get(label)
            .cloned()
            .unwrap_or_else(|| format!("class {label}"));
        match score {
            // `round(float(score) * 100, 1)` printed by Python: one decimal.
            Some(s) => format!("{name}: {:.1}", s as f64 * 100.0),
            None => name,
        }
    }
}

/// The stroke width in pixels MMEngine's `draw_bboxes` gives `line_width`
/// points on an image of `width x height`: clamped to `[1, font_size / 4]`
/// where `font_size = max(sqrt(h * w) // 90, 10)`, at matplotlib's 100 dpi.
pub fn stroke_pixels(line_width: f64, width: usize, height: usize) -> i64 {
    let font_size = ((height as f64 * width as f64).sqrt() / 90.0)
        .floor()
        .max(10.0);
    let points = line_width.max(1.0).min(font_size / 4.0);
    (points * 100.0 / 72.0).round().max(1.0) as i64
}

/// `_get_adaptive_scales`: labels of boxes under 30000 px² are drawn at half
/// size. MMDetection's 13-point and 6-point fonts become font scales 2 and 1.
fn font_scale(area: f32) -> usize {
    let scale = (0.5 + ((area as f64 - 800.0) / 29200.0).floor()).clamp(0.5, 1.0);
    if scale >= 1.0 {
        2
    } else {
        1
    }
}

/// Draws a label with its plate's top-left corner at `(x, y)`, moved left or
/// up as needed to keep the whole plate inside the image.
pub fn draw_label(img: &mut RgbImage, x: i64, y: i64, text: &str, color: [u8; 3], scale: usize) {
    let pad = scale as i64;
    let (tw, th) = text_size(text, scale);
    let (w, h) = (tw as i64 + 2 * pad, th as i64 + 2 * pad);
    let x = x.min(img.width as i64 - w).max(0);
    let y = y.min(img.height as i64 - h).max(0);
    // MMDetection's plate: black at alpha 0.8.
    blend_rect(img, x, y, x + w, y + h, [0, 0, 0], 0.8);
    draw_text(img, x + pad, y + pad, text, color, scale);
}

/// `_draw_instances`: masks (blended, white border), then box outlines, then labels.
pub fn draw_instances(image: &RgbImage, instances: &Instances, style: &DrawStyle) -> RgbImage {
    let mut img = image.clone();
    let plane = img.width * img.height;
    if let Some(masks) = &instances.masks {
        for (i, (mask, &label)) in masks.iter().zip(&instances.labels).enumerate() {
            if mask.len() != plane {
                continue; // a mask of another size cannot be placed (MMEngine asserts)
            }
            let color = jitter(DrawStyle::color(&style.mask_colors, label), i);
            blend_mask(&mut img, mask, color, style.alpha);
            draw_mask_border(&mut img, mask, [255, 255, 255], style.alpha);
        }
    }
    // MMDetection skips all-zero (dummy) boxes.
    if instances.bboxes.iter().flatten().sum::<f32>() <= 0.0 {
        return img;
    }
    let stroke = stroke_pixels(style.line_width, img.width, img.height);
    for (bbox, &label) in instances.bboxes.iter().zip(&instances.labels) {
        draw_box(
            &mut img,
            *bbox,
            DrawStyle::color(&style.bbox_colors, label),
            stroke,
            style.alpha,
        );
    }
    let offset = style.line_width;
    for (i, (bbox, &label)) in instances.bboxes.iter().zip(&instances.labels).enumerate() {
        let score = instances.scores.as_ref().and_then(|s| s.get(i).copied());
        let text = style.label_text(label, score);
        let area = (bbox[3] - bbox[1]) * (bbox[2] - bbox[0]);
        let (x, y) = (
            (bbox[0] as f64 + offset) as i64,
            (bbox[1] as f64 + offset) as i64,
        );
        draw_label(
            &mut img,
            x,
            y,
            &text,
            DrawStyle::color(&style.text_colors, label),
            font_scale(area),
        );
    }
    img
}

/// `add_datasample`: the ground truth on the left, the predictions above
/// `score_thr` on the right, side by side; either alone when the other is absent.
pub fn draw_det_sample(
    image: &RgbImage,
    gt: Option<&Instances>,
    pred: Option<&Instances>,
    score_thr: f32,
    style: &DrawStyle,
) -> RgbImage {
    let gt_img = gt.map(|g| draw_instances(image, g, style));
    let pred_img = pred.map(|p| draw_instances(image, &p.above(score_thr), style));
    match (gt_img, pred_img) {
        (Some(left), Some(right)) => left.beside(&right),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => image.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style() -> DrawStyle {
        DrawStyle {
            classes: vec!["rectangle".into(), "ellipse".into()],
            bbox_colors: vec![[220, 20, 60], [119, 11, 32]],
            mask_colors: vec![[220, 20, 60], [119, 11, 32]],
            text_colors: vec![[200, 200, 200]; 2],
            line_width: 3.0,
            alpha: 0.8,
        }
    }

    #[test]
    fn stroke_width_follows_mmengines_clamp() {
        // 2.5 points (font size 10 / 4) at 100 dpi.
        assert_eq!(stroke_pixels(3.0, 128, 128), 3);
        assert_eq!(stroke_pixels(3.0, 1333, 800), 4); // 11 / 4 = 2.75 pt
        assert_eq!(stroke_pixels(0.1, 128, 128), 1);
    }

    #[test]
    fn labels_read_class_and_score() {
        let s = style();
        assert_eq!(s.label_text(1, Some(0.875)), "ellipse: 87.5");
        assert_eq!(s.label_text(0, Some(0.9)), "rectangle: 90.0");
        assert_eq!(s.label_text(5, None), "class 5");
        assert_eq!(
            (font_scale(799.0), font_scale(29999.0), font_scale(30000.0)),
            (1, 1, 2)
        );
    }

    #[test]
    fn labels_stay_inside_the_image() {
        for (x, y) in [(-10, -10), (90, 0), (0, 50), (500, 500)] {
            let mut img = RgbImage::filled(100, 60, [255, 255, 255]);
            draw_label(&mut img, x, y, "rectangle: 99.9", [200, 200, 200], 1);
            let (tw, th) = text_size("rectangle: 99.9", 1);
            let dark = img.data.chunks(3).filter(|p| p[0] < 100).count();
            // The plate is drawn whole: (text + 2 px padding) on each axis, minus the ink.
            let ink = img.data.chunks(3).filter(|p| p == &[200, 200, 200]).count();
            assert_eq!(dark + ink, (tw + 2) * (th + 2), "at ({x}, {y})");
        }
    }

    #[test]
    fn ground_truth_left_predictions_above_the_threshold_right() {
        let image = RgbImage::filled(120, 30, [0, 0, 0]);
        let gt = Instances {
            bboxes: vec![[5.0, 5.0, 20.0, 20.0]],
            labels: vec![0],
            ..Default::default()
        };
        let pred = Instances {
            bboxes: vec![[5.0, 5.0, 20.0, 20.0], [25.0, 5.0, 35.0, 25.0]],
            labels: vec![1, 0],
            scores: Some(vec![0.3, 0.31]),
            masks: None,
        };
        let out = draw_det_sample(&image, Some(&gt), Some(&pred), 0.3, &style());
        assert_eq!((out.width, out.height), (240, 30));
        let edge = |c: [u8; 3]| [0, 1, 2].map(|i| super::super::draw::blend(0, c[i], 0.8));
        // The ground-truth box's left edge on the left half.
        assert_eq!(out.pixel(5, 12), edge([220, 20, 60]));
        // Score 0.3 is not above 0.3: the right half has no box there...
        assert_eq!(out.pixel(120 + 5, 12), [0, 0, 0]);
        // ...but the 0.31 one is drawn (its right edge, below its label).
        assert_eq!(out.pixel(120 + 35, 22), edge([220, 20, 60]));
    }

    #[test]
    fn masks_are_blended_in_their_class_colour() {
        let image = RgbImage::filled(8, 8, [0, 0, 0]);
        let mut mask = vec![0u8; 64];
        for y in 2..6 {
            for x in 2..6 {
                mask[y * 8 + x] = 1;
            }
        }
        let inst = Instances {
            bboxes: vec![[0.0; 4]],
            labels: vec![1],
            scores: None,
            masks: Some(vec![mask]),
        };
        let out = draw_instances(&image, &inst, &style());
        let color = jitter([119, 11, 32], 0);
        let inner = [0, 1, 2].map(|i| super::super::draw::blend(0, color[i], 0.8));
        assert_eq!(out.pixel(3, 3), inner);
        assert_eq!(
            out.pixel(2, 2),
            [0, 1, 2].map(|i| super::super::draw::blend(inner[i], 255, 0.8))
        );
        assert_eq!(out.pixel(0, 0), [0, 0, 0], "dummy boxes are not drawn");
    }
}
