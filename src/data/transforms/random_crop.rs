//! `RandomCrop` (`mmdet.datasets.transforms.RandomCrop`): draws a crop size
//! as `crop_type` says (`_get_crop_size`) and an offset uniformly within the
//! margin (`_rand_offset`), then crops the image, shifts the boxes by the
//! offset in float32, clips them to the crop (`bbox_clip_border`) and keeps
//! the instances whose boxes still reach into it (`HorizontalBoxes.is_inside`),
//! with their labels, ignore flags and cropped masks (`_crop_data`). A crop
//! that keeps no box drops the sample unless `allow_negative_crop`; the
//! dataset then draws another, as MMDetection's does.
//!
//! Differs from MMDetection: polygon masks (`LoadAnnotations(poly2mask=False)`)
//! are refused, since MMDetection crops them with shapely's polygon clipping;
//! and a sample without annotations loaded counts as one with no boxes.

use rand::Rng;

use super::{masks, need_image, sample_error, select_instances, Site, Transform};
use crate::data::{DataResult, Image, Masks, Sample, SampleRng};
use crate::registry::data::{CropType, RandomCropConfig};

/// Crops a random window.
#[derive(Debug, Clone)]
pub struct RandomCrop {
    /// `(width, height)` as `crop_type` reads it.
    crop_size: (f64, f64),
    crop_type: CropType,
    allow_negative_crop: bool,
    recompute_bbox: bool,
    bbox_clip_border: bool,
}

impl RandomCrop {
    pub fn new(cfg: RandomCropConfig, at: Site<'_>) -> DataResult<Self> {
        let (a, b) = cfg.crop_size;
        match cfg.crop_type {
            CropType::Absolute | CropType::AbsoluteRange => {
                if a.fract() != 0.0 || b.fract() != 0.0 || a < 1.0 || b < 1.0 {
                    return Err(at.error(format!(
                        "crop_size ({a}, {b}): an absolute crop size is two positive integers"
                    )));
                }
                if cfg.crop_type == CropType::AbsoluteRange && a > b {
                    return Err(at.error(format!("crop_size ({a}, {b}): an absolute range needs min <= max")));
                }
            }
            CropType::Relative | CropType::RelativeRange => {
                if !(a > 0.0 && a <= 1.0 && b > 0.0 && b <= 1.0) {
                    return Err(at.error(format!("crop_size ({a}, {b}): relative sizes are in (0, 1]")));
                }
            }
        }
        Ok(RandomCrop {
            crop_size: cfg.crop_size,
            crop_type: cfg.crop_type,
            allow_negative_crop: cfg.allow_negative_crop,
            recompute_bbox: cfg.recompute_bbox,
            bbox_clip_border: cfg.bbox_clip_border,
        })
    }

    /// `_get_crop_size`: the `(height, width)` to crop from an image of `(h, w)`.
    pub fn crop_size(&self, (h, w): (usize, usize), rng: &mut SampleRng) -> (usize, usize) {
        let (a, b) = self.crop_size;
        // int(x + 0.5) of a positive x.
        let round = |x: f64| (x + 0.5) as usize;
        match self.crop_type {
            CropType::Absolute => ((b as usize).min(h), (a as usize).min(w)),
            CropType::AbsoluteRange => {
                let (lo, hi) = (a as usize, b as usize);
                let crop_h = rng.random_range(lo.min(h)..=hi.min(h));
                let crop_w = rng.random_range(lo.min(w)..=hi.min(w));
                (crop_h, crop_w)
            }
            CropType::Relative => (round(h as f64 * b), round(w as f64 * a)),
            CropType::RelativeRange => {
                // MMDetection holds the ratios in float32, the draws in float64.
                let (rh, rw) = (a as f32 as f64, b as f32 as f64);
                let crop_h = rh + rng.random::<f64>() * (1.0 - rh);
                let crop_w = rw + rng.random::<f64>() * (1.0 - rw);
                (round(h as f64 * crop_h), round(w as f64 * crop_w))
            }
        }
    }

    /// `_crop_data` with the window of `(height, width)` `crop` at `(y, x)`
    /// `offset`: the cropped sample, or `None` when it keeps no box and
    /// negative crops are not allowed.
    pub fn crop_at(
        &self,
        mut sample: Sample,
        crop: (usize, usize),
        offset: (usize, usize),
    ) -> DataResult<Option<Sample>> {
        let img = need_image("RandomCrop", &sample)?;
        let (y1, x1) = offset;
        let y2 = (y1 + crop.0).min(img.height);
        let x2 = (x1 + crop.1).min(img.width);
        let cropped = crop_image(img, y1.min(y2), y2, x1.min(x2), x2);
        let (h, w) = (cropped.height, cropped.width);
        sample.img = Some(cropped);
        sample.img_shape = (h, w);

        let (dx, dy) = (x1 as f32, y1 as f32);
        let mut keep = Vec::new();
        for (i, b) in sample.gt_bboxes.iter_mut().enumerate() {
            let mut moved = [b[0] - dx, b[1] - dy, b[2] - dx, b[3] - dy];
            if self.bbox_clip_border {
                for (k, v) in moved.iter_mut().enumerate() {
                    let limit = if k % 2 == 0 { w } else { h } as f32;
                    *v = v.clamp(0.0, limit);
                }
            }
            *b = moved;
            let inside = moved[0] < w as f32 && moved[1] < h as f32 && moved[2] > 0.0 && moved[3] > 0.0;
            if inside {
                keep.push(i);
            }
        }
        if keep.is_empty() && !self.allow_negative_crop {
            return Ok(None);
        }
        select_instances(&mut sample, &keep);
        if let Some(m) = sample.gt_masks.take() {
            if matches!(m, Masks::Polygons { .. }) {
                return Err(sample_error(
                    "RandomCrop",
                    &sample,
                    "polygon masks cannot be cropped (MMDetection clips them with shapely); load \
                     bitmap masks: `LoadAnnotations(poly2mask=True)`",
                ));
            }
            let m = masks::crop(&m, x1, y1, x2, y2);
            if self.recompute_bbox {
                sample.gt_bboxes = masks::bitmap_boxes(&m);
            }
            sample.gt_masks = Some(m);
        }
        Ok(Some(sample))
    }
}

/// Rows `y1..y2` and columns `x1..x2` of `img`.
fn crop_image(img: &Image, y1: usize, y2: usize, x1: usize, x2: usize) -> Image {
    let c = img.channels;
    let row = img.width * c;
    let mut data = Vec::with_capacity((y2 - y1) * (x2 - x1) * c);
    for y in y1..y2 {
        data.extend_from_slice(&img.data[y * row + x1 * c..y * row + x2 * c]);
    }
    Image { data, height: y2 - y1, width: x2 - x1, channels: c }
}

impl Transform for RandomCrop {
    fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let img = need_image("RandomCrop", &sample)?;
        let (h, w) = (img.height, img.width);
        let crop = self.crop_size((h, w), rng);
        let margin = (h.saturating_sub(crop.0), w.saturating_sub(crop.1));
        let offset = (rng.random_range(0..=margin.0), rng.random_range(0..=margin.1));
        self.crop_at(sample, crop, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sample_rng;

    fn crop(crop_type: CropType, crop_size: (f64, f64)) -> RandomCrop {
        let cfg = RandomCropConfig {
            crop_size,
            crop_type,
            allow_negative_crop: false,
            recompute_bbox: false,
            bbox_clip_border: true,
        };
        RandomCrop::new(cfg, Site { index: 0, name: "RandomCrop" }).unwrap()
    }

    /// The sizes MMDetection's `_get_crop_size` can give, each drawn.
    #[test]
    fn crop_sizes_cover_what_mmdetection_draws() {
        let mut rng = sample_rng(0, 0, 0);
        let range = crop(CropType::AbsoluteRange, (384.0, 600.0));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let (h, w) = range.crop_size((500, 700), &mut rng);
            assert!((384..=500).contains(&h) && (384..=600).contains(&w), "{h}x{w}");
            seen.insert((h == 384 || h == 500, w == 384 || w == 600));
        }
        assert_eq!(seen.len(), 4, "the ends of both ranges are drawn");
        // An image smaller than the range's minimum is kept whole.
        assert_eq!(range.crop_size((300, 200), &mut rng), (300, 200));
        assert_eq!(crop(CropType::Absolute, (100.0, 50.0)).crop_size((80, 90), &mut rng), (50, 90));
        assert_eq!(crop(CropType::Relative, (0.5, 0.25)).crop_size((101, 200), &mut rng), (25, 100));
        let relative = crop(CropType::RelativeRange, (0.5, 0.8));
        for _ in 0..1000 {
            let (h, w) = relative.crop_size((100, 200), &mut rng);
            assert!((50..=100).contains(&h) && (160..=200).contains(&w), "{h}x{w}");
        }
    }

    #[test]
    fn sizes_mmdetection_asserts_against_are_refused() {
        let at = Site { index: 2, name: "RandomCrop" };
        let cfg = |crop_type, crop_size| RandomCropConfig {
            crop_size,
            crop_type,
            allow_negative_crop: false,
            recompute_bbox: false,
            bbox_clip_border: true,
        };
        for (t, size) in [
            (CropType::Absolute, (384.5, 600.0)),
            (CropType::AbsoluteRange, (600.0, 384.0)),
            (CropType::Relative, (0.0, 0.5)),
            (CropType::RelativeRange, (0.5, 1.5)),
        ] {
            let err = RandomCrop::new(cfg(t, size), at).unwrap_err();
            assert!(err.message.contains("transform 2 (`RandomCrop`): crop_size"), "{err}");
        }
    }
}
