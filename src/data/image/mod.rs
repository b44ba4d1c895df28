//! Images as OpenCV holds them (8-bit, HWC, BGR) and the operations MMCV's
//! transforms apply to them, bit-compatible with OpenCV 4.10:
//!
//! - [`decode`]: JPEG through libjpeg-turbo (what `cv2.imread` uses, so the
//!   pixels are identical), with `cv2`'s EXIF orientation handling;
//! - [`resize_linear`] / [`resize_nearest`]: `cv2.resize` with `INTER_LINEAR`
//!   (fixed-point, no antialias) and `INTER_NEAREST`; [`resize_linear_f64`]
//!   for float64 images;
//! - [`flip`], [`pad`]: `mmcv.imflip`, `mmcv.impad` (constant mode).
//!
//! Hand-written rather than `image`/`fast_image_resize`: those antialias when
//! shrinking and round differently, and MMDetection-trained models expect
//! OpenCV's pixels (see `shared/notes/ecosystem.md`).

mod decode;
mod exif;
mod resize;
mod resize_float;

pub use decode::{decode, read_image, ColorMode};
pub use resize::{resize_linear, resize_nearest, resize_nearest_planes};
pub use resize_float::resize_linear_f64;

use super::{Flip, Image};

/// `mmcv.imflip`: the image mirrored left-right, top-bottom or both.
pub fn flip(img: &Image, direction: Flip) -> Image {
    let mut out = img.clone();
    flip_in_place(&mut out, direction);
    out
}

/// [`flip`] without a copy.
pub fn flip_in_place(img: &mut Image, direction: Flip) {
    flip_planes(&mut img.data, img.height, img.width, img.channels, direction);
}

/// Flips, in place, every plane of `height x width` pixels of `channels`
/// bytes stored one after another in `data` (an image: one plane; bitmap
/// masks: one per instance).
pub fn flip_planes(data: &mut [u8], height: usize, width: usize, channels: usize, direction: Flip) {
    let row = width * channels;
    if row == 0 || height == 0 {
        return;
    }
    for plane in data.chunks_exact_mut(row * height) {
        match direction {
            Flip::Horizontal => plane.chunks_exact_mut(row).for_each(|r| reverse_pixels(r, channels)),
            Flip::Vertical => {
                for y in 0..height / 2 {
                    let (top, bottom) = plane.split_at_mut((height - 1 - y) * row);
                    top[y * row..(y + 1) * row].swap_with_slice(&mut bottom[..row]);
                }
            }
            // both at once: the pixels of the whole plane in reverse order
            Flip::Diagonal => reverse_pixels(plane, channels),
        }
    }
}

/// Reverses the order of the `channels`-byte pixels of `bytes`: reverse
/// every byte (vectorised), then restore each pixel's channel order.
fn reverse_pixels(bytes: &mut [u8], channels: usize) {
    bytes.reverse();
    match channels {
        1 => {}
        3 => bytes.chunks_exact_mut(3).for_each(|p| p.swap(0, 2)),
        c => bytes.chunks_exact_mut(c).for_each(|p| p.reverse()),
    }
}

/// `mmcv.impad(img, shape=(height, width), pad_val)` in constant mode: the
/// image at the top-left, the rest filled with `pad_val` (one value per
/// channel). A target smaller than the image leaves that side as it is, as
/// MMCV does.
pub fn pad(img: &Image, height: usize, width: usize, pad_val: &[u8]) -> Image {
    let (h, w, c) = (img.height.max(height), img.width.max(width), img.channels);
    let mut data = Vec::with_capacity(h * w * c);
    let fill: Vec<u8> = (0..w * c).map(|i| pad_val[(i % c) % pad_val.len().max(1)]).collect();
    let src_row = img.width * c;
    for y in 0..h {
        if y < img.height {
            data.extend_from_slice(&img.data[y * src_row..(y + 1) * src_row]);
            data.extend_from_slice(&fill[src_row..]);
        } else {
            data.extend_from_slice(&fill);
        }
    }
    Image { data, height: h, width: w, channels: c }
}

/// MMCV's `_scale_size`: `(w, h)` scaled by `(sx, sy)`, rounded half up
/// (`int(w * sx + 0.5)`).
pub fn scale_size(size: (usize, usize), factor: (f64, f64)) -> (usize, usize) {
    let round = |v: usize, f: f64| (v as f64 * f + 0.5).max(0.0) as usize;
    (round(size.0, factor.0), round(size.1, factor.1))
}

/// MMCV's `rescale_size` for a `(w, h)` image and a maximum scale: the largest
/// size that keeps the aspect ratio, with the long side at most
/// `max(scale)` and the short side at most `min(scale)`. Returns the new
/// `(w, h)` and the factor used.
pub fn rescale_size(size: (usize, usize), scale: (usize, usize)) -> ((usize, usize), f64) {
    let (w, h) = size;
    let (long, short) = (scale.0.max(scale.1) as f64, scale.0.min(scale.1) as f64);
    let factor = f64::min(long / w.max(h) as f64, short / w.min(h) as f64);
    (scale_size((w, h), (factor, factor)), factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rule_is_mmcv_s() {
        // mmcv.rescale_size((640, 480), (1333, 800)) == (1067, 800)
        assert_eq!(rescale_size((640, 480), (1333, 800)).0, (1067, 800));
        // a portrait image: the short side still becomes 800
        assert_eq!(rescale_size((480, 640), (1333, 800)).0, (800, 1067));
        assert_eq!(rescale_size((2000, 500), (1333, 800)).0, (1333, 333));
    }

    #[test]
    fn flips_and_pads() {
        let img = Image { data: (0..12).collect(), height: 2, width: 2, channels: 3 };
        let h = flip(&img, Flip::Horizontal);
        assert_eq!(h.data, vec![3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8]);
        let v = flip(&img, Flip::Vertical);
        assert_eq!(v.data, vec![6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5]);
        assert_eq!(flip(&flip(&img, Flip::Diagonal), Flip::Diagonal), img);
        let p = pad(&img, 3, 3, &[7, 8, 9]);
        assert_eq!((p.height, p.width), (3, 3));
        assert_eq!(&p.data[6..9], &[7, 8, 9]);
        assert_eq!(&p.data[18..27], &[7, 8, 9, 7, 8, 9, 7, 8, 9]);
    }
}
