//! `CachedMosaic` (`mmdet.datasets.transforms.CachedMosaic`, over `Mosaic`):
//! four images in one `(2h, 2w)` canvas (`img_scale = (w, h)`) around a
//! random centre `(int(uniform(center_ratio_range) * w), ... * h)`: the
//! sample top left, three partners top right, bottom left and bottom right.
//! Each image is resized by `min(h / h_i, w / w_i)` to `(int(w_i * s),
//! int(h_i * s))` (bilinear, as `mmcv.imresize`), cut where it leaves its
//! quarter (`_mosaic_combine`) and pasted; the rest is `pad_val`. Boxes are
//! scaled and shifted in float32, clipped to the canvas with
//! `bbox_clip_border`, and those left outside it are removed with their
//! labels, ignore flags and masks. With probability `1 - prob` the sample
//! passes unchanged.
//!
//! Differs from MMDetection:
//! - the partners are drawn from the sample's dataset, not from a
//!   per-worker cache (see [`super::mix`]); `max_cached_images` (still
//!   checked to be at least 4) and `random_pop` change nothing, and there is
//!   no cache warm-up during which the first samples of each worker pass
//!   unchanged;
//! - masks are placed on the `(2h, 2w)` canvas, where MMDetection passes
//!   `(2w, 2h)` as the height and width of the translated masks (the same
//!   for the square `img_scale` of its configs);
//! - polygon masks are refused (MMDetection translates and clips polygons);
//!   load bitmap masks with `poly2mask: true`.

use rand::Rng;

use super::mix::{check_instances, paste, place_masks, rescale_masks, Gathered, MixPad, MixTransform, Partners};
use super::{need_image, sample_error, Site};
use crate::data::image::resize_linear;
use crate::data::{DataResult, Image, Sample, SampleRng};
use crate::registry::data::CachedMosaicConfig;

const NAME: &str = "CachedMosaic";

/// Four images in one.
#[derive(Debug, Clone)]
pub struct CachedMosaic {
    /// `(w, h)` of one quarter.
    img_scale: (usize, usize),
    center_ratio_range: (f64, f64),
    bbox_clip_border: bool,
    pad: MixPad,
    prob: f64,
}

impl CachedMosaic {
    pub fn new(cfg: CachedMosaicConfig, at: Site<'_>) -> DataResult<Self> {
        let (w, h) = cfg.img_scale;
        if w == 0 || h == 0 {
            return Err(at.error(format!("img_scale ({w}, {h}): width and height must be positive")));
        }
        let (lo, hi) = cfg.center_ratio_range;
        if !((0.0..=2.0).contains(&lo) && (0.0..=2.0).contains(&hi)) {
            return Err(at.error(format!(
                "center_ratio_range ({lo}, {hi}) must lie in [0, 2]: the centre is a ratio of `img_scale` on a canvas twice its size"
            )));
        }
        if !(0.0..=1.0).contains(&cfg.prob) {
            return Err(at.error(format!("prob {} is not in [0, 1]", cfg.prob)));
        }
        if cfg.max_cached_images < 4 {
            return Err(at.error(format!(
                "max_cached_images {} must be at least 4, as MMDetection asserts (it changes nothing in detc, which draws from the whole dataset)",
                cfg.max_cached_images
            )));
        }
        Ok(CachedMosaic {
            img_scale: (w as usize, h as usize),
            center_ratio_range: (lo, hi),
            bbox_clip_border: cfg.bbox_clip_border,
            pad: MixPad::new(&cfg.pad_val, at)?,
            prob: cfg.prob,
        })
    }

    /// `_mosaic_combine`: where the `(w, h)` image of quarter `loc` (top
    /// left, top right, bottom left, bottom right) is pasted, `(x1, y1, x2,
    /// y2)` on the canvas, and which part of it, `(x1, y1, x2, y2)` in it.
    fn combine(&self, loc: usize, (cx, cy): (usize, usize), (w, h): (usize, usize)) -> ([usize; 4], [usize; 4]) {
        let (max_x, max_y) = (2 * self.img_scale.0, 2 * self.img_scale.1);
        let paste = match loc {
            0 => [cx.saturating_sub(w), cy.saturating_sub(h), cx, cy],
            1 => [cx, cy.saturating_sub(h), (cx + w).min(max_x), cy],
            2 => [cx.saturating_sub(w), cy, cx, max_y.min(cy + h)],
            _ => [cx, cy, (cx + w).min(max_x), max_y.min(cy + h)],
        };
        let [x1, y1, x2, y2] = paste;
        let (pw, ph) = (x2 - x1, y2 - y1);
        let crop = match loc {
            0 => [w - pw, h - ph, w, h],
            1 => [0, h - ph, w.min(pw), h],
            2 => [w - pw, 0, w, ph.min(h)],
            _ => [0, 0, w.min(pw), ph.min(h)],
        };
        (paste, crop)
    }

    /// MMDetection's `transform` once its random draws are made: the mosaic
    /// of `sample` (top left) and `partners` (top right, bottom left, bottom
    /// right) around `center` `(x, y)` on the canvas.
    pub fn mosaic(&self, mut sample: Sample, partners: &[Sample; 3], center: (usize, usize)) -> DataResult<Sample> {
        let (sw, sh) = self.img_scale;
        let channels = need_image(NAME, &sample)?.channels;
        let pad = self.pad.bytes(channels).map_err(|e| sample_error(NAME, &sample, e))?;
        let mut canvas = Image {
            data: pad.iter().copied().cycle().take(4 * sw * sh * channels).collect(),
            height: 2 * sh,
            width: 2 * sw,
            channels,
        };
        let with_mask = sample.gt_masks.is_some();
        let mut gathered = Gathered { masks: with_mask.then(Vec::new), ..Gathered::default() };
        for (loc, patch) in std::iter::once(&sample).chain(partners).enumerate() {
            self.add(&mut canvas, &mut gathered, loc, patch, center)?;
        }
        if self.bbox_clip_border {
            gathered.clip((2 * sh, 2 * sw));
        }
        gathered.keep_inside(&mut sample, (2 * sh, 2 * sw));
        sample.img_shape = (canvas.height, canvas.width);
        sample.img = Some(canvas);
        Ok(sample)
    }

    /// Pastes `patch` as quarter `loc` of the mosaic around `center` and
    /// gathers its instances, moved as its pixels.
    fn add(
        &self,
        canvas: &mut Image,
        gathered: &mut Gathered,
        loc: usize,
        patch: &Sample,
        center: (usize, usize),
    ) -> DataResult<()> {
        let (sw, sh) = self.img_scale;
        check_instances(NAME, patch)?;
        let img = need_image(NAME, patch)?;
        if img.channels != canvas.channels {
            return Err(sample_error(
                NAME,
                patch,
                format!("the image has {} channel(s), the mosaic's first image {}", img.channels, canvas.channels),
            ));
        }
        // Keep-ratio resize into the quarter, sizes truncated as `int(w_i * s)`.
        let (h, w) = (img.height, img.width);
        let scale = f64::min(sh as f64 / h as f64, sw as f64 / w as f64);
        let (new_w, new_h) = ((w as f64 * scale) as usize, (h as f64 * scale) as usize);
        if new_w == 0 || new_h == 0 {
            return Err(sample_error(
                NAME,
                patch,
                format!("the {w}x{h} image rescaled by {scale} into a {sw}x{sh} quarter is empty"),
            ));
        }
        let resized;
        let img = if (new_w, new_h) == (w, h) {
            img
        } else {
            resized = resize_linear(img, new_w, new_h);
            &resized
        };
        let (p, c) = self.combine(loc, center, (new_w, new_h));
        paste(canvas, img, (p[0], p[1]), (c[0], c[1], c[2], c[3]));

        // `rescale_` then `translate_` in float32.
        let (dx, dy) = (p[0] as i64 - c[0] as i64, p[1] as i64 - c[1] as i64);
        let (s, fx, fy) = (scale as f32, dx as f32, dy as f32);
        gathered
            .boxes
            .extend(patch.gt_bboxes.iter().map(|b| [b[0] * s + fx, b[1] * s + fy, b[2] * s + fx, b[3] * s + fy]));
        gathered.labels.extend(&patch.gt_bboxes_labels);
        gathered.flags.extend(&patch.gt_ignore_flags);
        if let Some(out) = gathered.masks.as_mut() {
            let m = patch
                .gt_masks
                .as_ref()
                .ok_or_else(|| sample_error(NAME, patch, "no masks loaded while the mosaic's first image has some"))?;
            out.extend(place_masks(&rescale_masks(m, scale), (2 * sh, 2 * sw), (dx, dy)));
        }
        Ok(())
    }
}

impl MixTransform for CachedMosaic {
    fn apply(&self, sample: Sample, rng: &mut SampleRng, partners: &Partners<'_>) -> DataResult<Option<Sample>> {
        // MMDetection's order: `prob`, the three partners, then the centre.
        if rng.random::<f64>() > self.prob {
            return Ok(Some(sample));
        }
        need_image(NAME, &sample)?;
        check_instances(NAME, &sample)?;
        let patches = [partners.draw(rng)?, partners.draw(rng)?, partners.draw(rng)?];
        let (lo, hi) = self.center_ratio_range;
        let mut center = |side: usize| ((lo + (hi - lo) * rng.random::<f64>()) * side as f64) as usize;
        let (cx, cy) = (center(self.img_scale.0), center(self.img_scale.1));
        self.mosaic(sample, &patches, (cx, cy)).map(Some)
    }
}

#[cfg(test)]
#[path = "cached_mosaic_tests.rs"]
mod tests;
