//! `Resize` (`mmdet.datasets.transforms.Resize` over `mmcv.transforms.Resize`):
//! resizes the image to `scale` (or by `scale_factor`), then boxes and masks
//! by the factor the image actually got.
//!
//! - `keep_ratio: true`: MMCV's `rescale_size`, the largest size within
//!   `scale` (long side ≤ max, short side ≤ min) rounded half up; the factor
//!   is then `new / old` per axis, as MMCV records it.
//! - With `scale_factor` instead of `scale`, the target is
//!   `int(w * f + 0.5), int(h * f + 0.5)`, and with `keep_ratio` that size
//!   is again treated as a bound, as MMCV does.
//! - Boxes are multiplied in float32 (as `HorizontalBoxes.rescale_`) and
//!   clipped to the new image with `clip_object_border`.
//! - Bitmap masks are resized nearest-neighbour (`BitmapMasks.rescale` with
//!   `keep_ratio`, else `.resize(img_shape)`); polygons are scaled.
//!
//! Refused at build time: the `pillow` backend and interpolations other than
//! `bilinear` and `nearest`.

use super::{masks, need_image, Site, Transform};
use crate::data::image::{rescale_size, resize_linear, resize_nearest, scale_size};
use crate::data::{DataResult, Sample, SampleRng};
use crate::registry::data::{Interpolation, ResizeBackend, ResizeConfig};
use crate::registry::models::common::{FloatOrPair, IntOrPair};

/// How a resize transform resizes once its target `scale` is known; shared
/// by `Resize`, `RandomResize` and `RandomChoiceResize`.
#[derive(Debug, Clone)]
pub(super) struct ResizeOp {
    pub keep_ratio: bool,
    pub clip_object_border: bool,
    pub nearest: bool,
}

impl ResizeOp {
    pub fn new(
        backend: ResizeBackend,
        interpolation: Interpolation,
        keep_ratio: bool,
        clip: bool,
        at: Site<'_>,
    ) -> DataResult<Self> {
        if backend != ResizeBackend::Cv2 {
            return Err(at.error("the `pillow` backend is not supported; use `cv2`"));
        }
        let nearest = match interpolation {
            Interpolation::Bilinear => false,
            Interpolation::Nearest => true,
            other => {
                return Err(at.error(format!("interpolation `{other:?}` is not supported; use `bilinear` or `nearest`")))
            }
        };
        Ok(ResizeOp { keep_ratio, clip_object_border: clip, nearest })
    }

    /// Resizes the sample for target `scale` `(w, h)` (MMCV's `results['scale']`).
    pub fn resize(&self, name: &str, mut sample: Sample, scale: (usize, usize)) -> DataResult<Sample> {
        let img = need_image(name, &sample)?;
        let (h, w) = (img.height, img.width);
        let (new_w, new_h) = if self.keep_ratio { rescale_size((w, h), scale).0 } else { scale };
        if new_w == 0 || new_h == 0 || w == 0 || h == 0 {
            return Err(super::sample_error(
                name,
                &sample,
                format!("resizing the {w}x{h} image to scale {scale:?} gives an empty image"),
            ));
        }
        let resized = if self.nearest { resize_nearest(img, new_w, new_h) } else { resize_linear(img, new_w, new_h) };
        let factor = (new_w as f64 / w as f64, new_h as f64 / h as f64);
        sample.img = Some(resized);
        sample.img_shape = (new_h, new_w);
        sample.scale = Some(scale);
        sample.scale_factor = factor;
        sample.keep_ratio = self.keep_ratio;
        let (fx, fy) = (factor.0 as f32, factor.1 as f32);
        let (max_x, max_y) = (new_w as f32, new_h as f32);
        for b in &mut sample.gt_bboxes {
            *b = [b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy];
            if self.clip_object_border {
                *b = [b[0].clamp(0.0, max_x), b[1].clamp(0.0, max_y), b[2].clamp(0.0, max_x), b[3].clamp(0.0, max_y)];
            }
        }
        if let Some(m) = &sample.gt_masks {
            let resized = if self.keep_ratio { masks::rescale(m, scale) } else { masks::resize(m, new_h, new_w) };
            sample.gt_masks = Some(resized);
        }
        Ok(sample)
    }
}

/// Resizes to a fixed `scale` or by a fixed `scale_factor`.
#[derive(Debug, Clone)]
pub struct Resize {
    scale: Option<(usize, usize)>,
    scale_factor: (f64, f64),
    op: ResizeOp,
}

impl Resize {
    pub fn new(cfg: ResizeConfig, at: Site<'_>) -> DataResult<Self> {
        let scale = cfg.scale.map(|s| match s {
            IntOrPair::Int(v) => (v as usize, v as usize),
            IntOrPair::Pair((w, h)) => (w as usize, h as usize),
        });
        let scale_factor = match cfg.scale_factor {
            Some(FloatOrPair::Float(f)) => (f, f),
            Some(FloatOrPair::Pair(p)) => p,
            None if scale.is_some() => (1.0, 1.0),
            None => return Err(at.error("set `scale` or `scale_factor`")),
        };
        let op = ResizeOp::new(cfg.backend, cfg.interpolation, cfg.keep_ratio, cfg.clip_object_border, at)?;
        Ok(Resize { scale, scale_factor, op })
    }
}

impl Transform for Resize {
    fn apply(&self, sample: Sample, _rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let scale = match self.scale {
            Some(s) => s,
            None => {
                let img = need_image("Resize", &sample)?;
                scale_size((img.width, img.height), self.scale_factor)
            }
        };
        self.op.resize("Resize", sample, scale).map(Some)
    }
}
