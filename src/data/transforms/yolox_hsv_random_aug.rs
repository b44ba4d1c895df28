//! `YOLOXHSVRandomAug` (`mmdet.datasets.transforms.YOLOXHSVRandomAug`, from
//! YOLOX's `augment_hsv`): shifts hue, saturation and value by random gains.
//!
//! MMDetection draws `np.random.uniform(-1, 1, 3) * [hue, sat, val deltas]`,
//! zeroes each with `np.random.randint(0, 2, 3)` and truncates to int16
//! (so a gain lies in `(-delta, delta)`); it converts the image with
//! `cv2.cvtColor(COLOR_BGR2HSV)` (hue in `0..180`), adds the hue gain modulo
//! 180 and clips saturation and value to `0..=255`, then converts back with
//! `COLOR_HSV2BGR`. detc draws the same gains in the same order from the
//! sample's stream, and reproduces OpenCV 4.10's 8-bit conversions to the bit
//! (`imgproc/src/color_hsv.simd.hpp`, checked against `cv2` on every HSV
//! triple and by the fixture of `tests/data/hsv_reference.py`):
//!
//! - BGR to HSV is integer arithmetic with OpenCV's 12-bit reciprocal tables;
//! - HSV to BGR is float32 arithmetic whose `1 - s*h` terms the opencv-python
//!   wheels compute with a fused multiply-add; OpenCV's AVX2 kernel (what
//!   those wheels run on x86-64) *truncates* the result for whole blocks of 32
//!   pixels of a row, and its scalar tail (the last `width % 32` pixels)
//!   rounds to nearest. detc follows that x86-64 AVX2 behaviour, the machine
//!   MMDetection trains on.
//!
//! Only 3-channel (BGR) images are accepted, as `cv2.cvtColor` accepts.

use std::sync::OnceLock;

use rand::Rng;

use super::{need_image, sample_error, Site, Transform};
use crate::data::{DataResult, Image, Sample, SampleRng};
use crate::registry::data::YOLOXHSVRandomAugConfig;

const NAME: &str = "YOLOXHSVRandomAug";

/// Random hue, saturation and value shifts.
#[derive(Debug, Clone)]
pub struct YOLOXHSVRandomAug {
    /// Hue, saturation and value deltas.
    deltas: [i32; 3],
}

impl YOLOXHSVRandomAug {
    pub fn new(cfg: YOLOXHSVRandomAugConfig, at: Site<'_>) -> DataResult<Self> {
        let deltas = [
            ("hue_delta", cfg.hue_delta),
            ("saturation_delta", cfg.saturation_delta),
            ("value_delta", cfg.value_delta),
        ];
        for (key, d) in deltas {
            if !(0..=255).contains(&d) {
                return Err(at.error(format!("{key} {d} is not in 0..=255 (the gain is drawn in (-{key}, {key}))")));
            }
        }
        Ok(YOLOXHSVRandomAug { deltas: [cfg.hue_delta as i32, cfg.saturation_delta as i32, cfg.value_delta as i32] })
    }

    /// `_get_hsv_gains`: `uniform(-1, 1, 3) * deltas * randint(0, 2, 3)`, truncated.
    pub fn gains(&self, rng: &mut SampleRng) -> [i16; 3] {
        let uniform: [f64; 3] = std::array::from_fn(|_| -1.0 + 2.0 * rng.random::<f64>());
        let keep: [u8; 3] = std::array::from_fn(|_| rng.random_range(0..2u8));
        std::array::from_fn(|i| (uniform[i] * self.deltas[i] as f64 * keep[i] as f64) as i16)
    }
}

impl Transform for YOLOXHSVRandomAug {
    fn apply(&self, mut sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let channels = need_image(NAME, &sample)?.channels;
        if channels != 3 {
            return Err(sample_error(NAME, &sample, format!(
                "the image has {channels} channel(s); HSV needs a 3-channel BGR image (`LoadImageFromFile` with `color_type: color`)"
            )));
        }
        let gains = self.gains(rng);
        if let Some(img) = sample.img.as_mut() {
            augment_hsv_in_place(img, gains);
        }
        Ok(Some(sample))
    }
}

/// The image with hue, saturation and value shifted by `gains`, as
/// MMDetection's `transform` computes it once the gains are drawn. The image
/// must have 3 channels (BGR).
pub fn augment_hsv(img: &Image, gains: [i16; 3]) -> Image {
    let mut out = img.clone();
    augment_hsv_in_place(&mut out, gains);
    out
}

fn augment_hsv_in_place(img: &mut Image, gains: [i16; 3]) {
    let row = img.width * 3;
    if row == 0 || img.channels != 3 {
        return;
    }
    // OpenCV's AVX2 HSV->BGR kernel takes 4 x 8 pixels at a time.
    let simd = img.width / 32 * 32;
    let tables = tables();
    let [dh, ds, dv] = gains.map(i32::from);
    for line in img.data.chunks_exact_mut(row) {
        for (x, px) in line.chunks_exact_mut(3).enumerate() {
            let [h, s, v] = bgr_to_hsv([px[0], px[1], px[2]], tables);
            // int16 arithmetic in MMDetection: `%` of numpy is Euclidean for a positive divisor.
            let h = (h as i32 + dh).rem_euclid(180) as u8;
            let s = (s as i32 + ds).clamp(0, 255) as u8;
            let v = (v as i32 + dv).clamp(0, 255) as u8;
            px.copy_from_slice(&hsv_to_bgr([h, s, v], x < simd));
        }
    }
}

/// OpenCV's `sdiv_table` (`255 << 12 / v`) and `hdiv_table180` (`180 << 12 / (6 * diff)`).
struct Tables {
    sdiv: [i32; 256],
    hdiv: [i32; 256],
}

const HSV_SHIFT: i32 = 12;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = Tables { sdiv: [0; 256], hdiv: [0; 256] };
        for i in 1..256 {
            // saturate_cast<int>(double): round half to even.
            t.sdiv[i] = ((255 << HSV_SHIFT) as f64 / i as f64).round_ties_even() as i32;
            t.hdiv[i] = ((180 << HSV_SHIFT) as f64 / (6.0 * i as f64)).round_ties_even() as i32;
        }
        t
    })
}

/// `RGB2HSV_b` with `hrange = 180`: hue in `0..180`, saturation and value in `0..=255`.
fn bgr_to_hsv([b, g, r]: [u8; 3], t: &Tables) -> [u8; 3] {
    let (b, g, r) = (b as i32, g as i32, r as i32);
    let v = b.max(g).max(r);
    let diff = v - b.min(g).min(r);
    let half = 1 << (HSV_SHIFT - 1);
    let s = (diff * t.sdiv[v as usize] + half) >> HSV_SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * t.hdiv[diff as usize] + half) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h.clamp(0, 255) as u8, s as u8, v as u8]
}

/// `HSV2RGB_b` with `hrange = 180`, in float32 as OpenCV computes it;
/// `truncate`: the AVX2 kernel's conversion back to bytes (else rounding).
fn hsv_to_bgr([h, s, v]: [u8; 3], truncate: bool) -> [u8; 3] {
    let hscale = 6.0f32 / 180.0;
    let s = s as f32 * (1.0f32 / 255.0);
    let v = v as f32 * (1.0f32 / 255.0);
    let h = h as f32 * hscale;
    let sector = h.floor();
    let h = h - sector;
    let tab = [
        v,
        v * (1.0 - s),
        // The wheels' compiler fuses `1 - s*h` into one rounding.
        v * (-s).mul_add(h, 1.0),
        v * (-s).mul_add(1.0 - h, 1.0),
    ];
    const SECTORS: [[usize; 3]; 6] = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]];
    let pick = SECTORS[(sector as usize) % 6];
    pick.map(|k| {
        let x = tab[k] * 255.0;
        let x = if truncate { x.trunc() } else { x.round_ties_even() };
        x.clamp(0.0, 255.0) as u8
    })
}

#[cfg(test)]
#[path = "yolox_hsv_random_aug_tests.rs"]
mod tests;
