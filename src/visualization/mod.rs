//! Detections drawn on images, as MMDetection's `DetLocalVisualizer` draws
//! them for `tools/test.py --show-dir`: ground truth left, predictions right,
//! boxes, masks and `class: score` labels in the class colours.
//!
//! Plain data in, pixels out (no tch): an RGB buffer, boxes, labels, scores
//! and row-major masks. The drawing is hand-written ([`draw`], a small bitmap
//! [`font`]) because the pictures need a few primitives only, while a drawing
//! crate with font rendering would be a heavy dependency for them; JPEG
//! encoding uses libjpeg-turbo, which the data pipeline already links.
//! Training curves ([`plot`], `detc plot`) are PNG ([`png`]), lossless for
//! their thin lines.

pub mod det_sample;
pub mod draw;
pub mod font;
pub mod palette;
pub mod plot;
pub mod png;
pub mod show_dir;

pub use det_sample::{draw_det_sample, draw_instances, DrawStyle, Instances};
pub use show_dir::{draw_sample, RecordsByPath, TestDrawing};

use crate::data::Image;

/// An 8-bit RGB image, row-major, channels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

impl RgbImage {
    /// A `width x height` image of one colour.
    pub fn filled(width: usize, height: usize, color: [u8; 3]) -> RgbImage {
        RgbImage {
            data: color.repeat(width * height),
            width,
            height,
        }
    }

    /// The RGB image of a decoded image (BGR as OpenCV holds it, or gray).
    pub fn from_bgr(img: &Image) -> RgbImage {
        let data = match img.channels {
            1 => img.data.iter().flat_map(|&v| [v, v, v]).collect(),
            c => img
                .data
                .chunks_exact(c)
                .flat_map(|p| [p[2], p[1], p[0]])
                .collect(),
        };
        RgbImage {
            data,
            width: img.width,
            height: img.height,
        }
    }

    /// The colour at `(x, y)` (panics outside the image, like a slice).
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) outside {}x{}",
            self.width,
            self.height
        );
        let at = (y * self.width + x) * 3;
        [self.data[at], self.data[at + 1], self.data[at + 2]]
    }

    /// `np.concatenate((self, right), axis=1)`: the two side by side (same height).
    pub fn beside(&self, right: &RgbImage) -> RgbImage {
        assert_eq!(
            self.height, right.height,
            "images side by side need one height"
        );
        let (lw, rw) = (self.width * 3, right.width * 3);
        let mut data = Vec::with_capacity(self.data.len() + right.data.len());
        for y in 0..self.height {
            data.extend_from_slice(&self.data[y * lw..(y + 1) * lw]);
            data.extend_from_slice(&right.data[y * rw..(y + 1) * rw]);
        }
        RgbImage {
            data,
            width: self.width + right.width,
            height: self.height,
        }
    }

    /// The image as a JPEG file (4:2:0 chroma, as `cv2.imwrite` writes).
    pub fn to_jpeg(&self, quality: i32) -> Result<Vec<u8>, String> {
        let image = turbojpeg::Image {
            pixels: self.data.as_slice(),
            width: self.width,
            pitch: self.width * 3,
            height: self.height,
            format: turbojpeg::PixelFormat::RGB,
        };
        turbojpeg::compress(image, quality, turbojpeg::Subsamp::Sub2x2)
            .map(|buf| buf.to_vec())
            .map_err(|e| format!("JPEG encoding: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_and_channel_order() {
        let bgr = Image {
            data: vec![1, 2, 3, 4, 5, 6],
            height: 1,
            width: 2,
            channels: 3,
        };
        let rgb = RgbImage::from_bgr(&bgr);
        assert_eq!(rgb.data, vec![3, 2, 1, 6, 5, 4]);
        let both = rgb.beside(&RgbImage::filled(1, 1, [9, 9, 9]));
        assert_eq!((both.width, both.height), (3, 1));
        assert_eq!(both.pixel(2, 0), [9, 9, 9]);
    }

    #[test]
    fn jpeg_round_trips_through_the_decoder() {
        let img = RgbImage::filled(16, 8, [200, 30, 40]);
        let jpeg = img.to_jpeg(95).unwrap();
        let back = crate::data::image::decode(&jpeg, crate::data::image::ColorMode::Color).unwrap();
        let back = RgbImage::from_bgr(&back);
        assert_eq!((back.width, back.height), (16, 8));
        let p = back.pixel(5, 5);
        for (a, b) in p.iter().zip([200, 30, 40]) {
            assert!((*a as i32 - b).abs() <= 3, "{p:?}");
        }
    }
}
