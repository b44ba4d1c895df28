//! Drawing primitives on an [`RgbImage`]: alpha-blended rectangles, box
//! outlines and binary masks, with MMEngine's blend formula
//! `img * (1 - alpha) + color * alpha` (`Visualizer.draw_binary_masks`, which
//! calls `cv2.addWeighted` in float and rounds half to even).

use super::RgbImage;

/// `cv2.addWeighted(img, 1 - alpha, color, alpha, 0)` on one 8-bit value:
/// float arithmetic, rounded to the nearest (ties to even) and saturated.
pub fn blend(value: u8, color: u8, alpha: f32) -> u8 {
    let mixed = value as f32 * (1.0 - alpha) + color as f32 * alpha;
    mixed.round_ties_even().clamp(0.0, 255.0) as u8
}

/// Blends `color` into the pixel at `(x, y)`; outside the image it does nothing.
pub fn blend_pixel(img: &mut RgbImage, x: i64, y: i64, color: [u8; 3], alpha: f32) {
    if x < 0 || y < 0 || x >= img.width as i64 || y >= img.height as i64 {
        return;
    }
    let at = (y as usize * img.width + x as usize) * 3;
    for (c, &value) in img.data[at..at + 3].iter_mut().zip(&color) {
        *c = blend(*c, value, alpha);
    }
}

/// Blends `color` into the pixels `x0..x1` x `y0..y1`, clipped to the image.
pub fn blend_rect(
    img: &mut RgbImage,
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
    color: [u8; 3],
    alpha: f32,
) {
    let (x0, x1) = (x0.max(0), x1.min(img.width as i64));
    let (y0, y1) = (y0.max(0), y1.min(img.height as i64));
    for y in y0..y1 {
        for x in x0..x1 {
            blend_pixel(img, x, y, color, alpha);
        }
    }
}

/// The pixels `start..start + width` of a stroke `width` pixels wide centred
/// on the coordinate `edge` (pixel `i` covers `[i, i + 1)`, as the image
/// extent MMEngine gives matplotlib).
fn stroke(edge: f32, width: i64) -> std::ops::Range<i64> {
    let start = (edge - width as f32 / 2.0).round() as i64;
    start..start + width
}

/// The outline of the box `[x1, y1, x2, y2]`, `width` pixels wide and centred
/// on the box edges, blended with `color`; each pixel is blended once, also
/// where the four strokes overlap.
pub fn draw_box(img: &mut RgbImage, bbox: [f32; 4], color: [u8; 3], width: i64, alpha: f32) {
    let width = width.max(1);
    let (left, right) = (stroke(bbox[0], width), stroke(bbox[2], width));
    let (top, bottom) = (stroke(bbox[1], width), stroke(bbox[3], width));
    let (x_span, y_span) = (
        left.start..right.end.max(left.end),
        top.start..bottom.end.max(top.end),
    );
    let y_range = y_span.start.max(0)..y_span.end.min(img.height as i64);
    for y in y_range {
        if top.contains(&y) || bottom.contains(&y) {
            blend_rect(img, x_span.start, y, x_span.end, y + 1, color, alpha);
        } else if left.end >= right.start {
            blend_rect(
                img,
                left.start,
                y,
                right.end.max(left.end),
                y + 1,
                color,
                alpha,
            );
        } else {
            blend_rect(img, left.start, y, left.end, y + 1, color, alpha);
            blend_rect(img, right.start, y, right.end, y + 1, color, alpha);
        }
    }
}

/// Blends `color` into every pixel where the row-major `mask` (the image's
/// size) is non-zero: `img * (1 - alpha) + color * alpha`, the rest unchanged.
pub fn blend_mask(img: &mut RgbImage, mask: &[u8], color: [u8; 3], alpha: f32) {
    for (pixel, _) in img
        .data
        .chunks_exact_mut(3)
        .zip(mask)
        .filter(|(_, m)| **m != 0)
    {
        for (c, &value) in pixel.iter_mut().zip(&color) {
            *c = blend(*c, value, alpha);
        }
    }
}

/// Blends `color` into the mask's boundary: its pixels with a 4-neighbour
/// outside the mask (or outside the image). MMDetection strokes the contours
/// `cv2.findContours` finds, in white; a one-pixel border inside the mask
/// separates touching instances the same way.
pub fn draw_mask_border(img: &mut RgbImage, mask: &[u8], color: [u8; 3], alpha: f32) {
    let (w, h) = (img.width, img.height);
    let inside = |x: usize, y: usize| mask.get(y * w + x).is_some_and(|&m| m != 0);
    for y in 0..h {
        for x in 0..w {
            let border = inside(x, y)
                && (x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || !inside(x - 1, y)
                    || !inside(x + 1, y)
                    || !inside(x, y - 1)
                    || !inside(x, y + 1));
            if border {
                blend_pixel(img, x as i64, y as i64, color, alpha);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: [u8; 3] = [255, 0, 0];

    /// `(x, y)` of the pixels that differ from the fill `[0, 0, 0]`.
    fn drawn(img: &RgbImage) -> Vec<(usize, usize)> {
        let mut out = vec![];
        for y in 0..img.height {
            for x in 0..img.width {
                if img.pixel(x, y) != [0, 0, 0] {
                    out.push((x, y));
                }
            }
        }
        out
    }

    #[test]
    fn a_box_outline_is_a_ring_of_the_line_width_centred_on_the_edges() {
        let mut img = RgbImage::filled(20, 16, [0, 0, 0]);
        draw_box(&mut img, [4.0, 3.0, 14.0, 11.0], RED, 2, 1.0);
        // 2-pixel strokes centred on x = 4 and 14, y = 3 and 11: columns
        // 3, 4 and 13, 14; rows 2, 3 and 10, 11.
        let ring = |x: usize, y: usize| {
            let (xs, ys) = ((3..=14).contains(&x), (2..=11).contains(&y));
            xs && ys && (x <= 4 || x >= 13 || y <= 3 || y >= 10)
        };
        for y in 0..16 {
            for x in 0..20 {
                let want = if ring(x, y) { RED } else { [0, 0, 0] };
                assert_eq!(img.pixel(x, y), want, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn box_strokes_blend_each_pixel_once_and_clip_at_the_edges() {
        let mut img = RgbImage::filled(10, 10, [0, 0, 0]);
        // A box larger than the image, and one thinner than its strokes.
        draw_box(&mut img, [-5.0, -5.0, 8.0, 8.0], [200, 100, 50], 3, 0.5);
        draw_box(&mut img, [6.0, 6.0, 7.0, 7.0], [200, 100, 50], 3, 0.5);
        let once = [blend(0, 200, 0.5), blend(0, 100, 0.5), blend(0, 50, 0.5)];
        let twice = [
            blend(once[0], 200, 0.5),
            blend(once[1], 100, 0.5),
            blend(once[2], 50, 0.5),
        ];
        assert_eq!(img.pixel(8, 0), once);
        assert_eq!(img.pixel(0, 8), once);
        assert_eq!(
            img.pixel(6, 6),
            once,
            "the tiny box's four strokes overlap: blended once"
        );
        assert_eq!(img.pixel(7, 7), twice, "the two boxes overlap here");
        assert!(drawn(&img).iter().all(|&(x, y)| x < 10 && y < 10));
    }

    #[test]
    fn mask_blend_is_mmengines_formula() {
        // img * (1 - alpha) + color * alpha, rounded: 100 * 0.2 + 220 * 0.8 = 196.
        assert_eq!(blend(100, 220, 0.8), 196);
        assert_eq!(blend(0, 255, 0.8), 204);
        assert_eq!(blend(255, 0, 0.8), 51);
        let mut img = RgbImage::filled(3, 2, [10, 20, 30]);
        let mask = [0, 1, 0, 1, 1, 0];
        blend_mask(&mut img, &mask, [220, 20, 60], 0.8);
        assert_eq!(img.pixel(0, 0), [10, 20, 30]);
        assert_eq!(img.pixel(1, 0), [178, 20, 54]);
        assert_eq!(img.pixel(0, 1), [178, 20, 54]);
        assert_eq!(img.pixel(2, 1), [10, 20, 30]);
    }

    /// Values from OpenCV (the reference MMEngine blends with):
    /// `.venv-test/bin/python -c "import cv2, numpy as np; img = np.arange(0, 256, 15, dtype=np.uint8).reshape(1, -1, 1).repeat(3, 2); print(cv2.addWeighted(img, 1 - 0.8, np.full_like(img, (220, 20, 60)), 0.8, 0)[0].tolist())"`
    #[test]
    fn mask_blend_rounds_as_cv2_add_weighted() {
        #[rustfmt::skip]
        let cv2: [[u8; 3]; 18] = [
            [176, 16, 48], [179, 19, 51], [182, 22, 54], [185, 25, 57], [188, 28, 60], [191, 31, 63],
            [194, 34, 66], [197, 37, 69], [200, 40, 72], [203, 43, 75], [206, 46, 78], [209, 49, 81],
            [212, 52, 84], [215, 55, 87], [218, 58, 90], [221, 61, 93], [224, 64, 96], [227, 67, 99],
        ];
        for (i, want) in cv2.iter().enumerate() {
            let v = (i * 15) as u8;
            let got = [blend(v, 220, 0.8), blend(v, 20, 0.8), blend(v, 60, 0.8)];
            assert_eq!(&got, want, "value {v}");
        }
    }

    #[test]
    fn a_mask_border_is_its_outermost_ring() {
        let mut img = RgbImage::filled(5, 5, [0, 0, 0]);
        let mut mask = [0u8; 25];
        for y in 1..4 {
            for x in 1..4 {
                mask[y * 5 + x] = 1;
            }
        }
        draw_mask_border(&mut img, &mask, [255, 255, 255], 1.0);
        let ring: Vec<(usize, usize)> = (1..4)
            .flat_map(|y| (1..4).map(move |x| (x, y)))
            .filter(|&p| p != (2, 2))
            .collect();
        assert_eq!(drawn(&img), ring);
    }
}
