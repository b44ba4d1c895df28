//! `CachedMixUp` (`mmdet.datasets.transforms.CachedMixUp`): blends the
//! sample half and half with a partner image. Up to `max_iters` partners
//! are drawn until one has boxes (without, the sample passes unchanged).
//! The partner is resized by `s = min(h / h_p, w / w_p)` (`img_scale = (w,
//! h)`) and pasted top left on a `(h, w)` canvas of `pad_val`; the canvas is
//! resized by a jitter `j` drawn from `ratio_range` (`s *= j`), flipped
//! horizontally when a uniform draw exceeds `flip_ratio`, padded to at least
//! the sample's size and cropped to it at a random offset. The image is
//! `0.5 * sample + 0.5 * partner` in float32, truncated to 8 bits. The
//! partner's boxes are scaled by `s`, clipped to the jittered canvas,
//! flipped, shifted by the offset and clipped to the sample; they follow the
//! sample's boxes, and every box left outside the image is removed with its
//! label, ignore flag and mask. With probability `1 - prob` the sample
//! passes unchanged.
//!
//! As in MMDetection, a float `pad_val` (the default `114.0`) makes numpy
//! build the canvas in float64: the jitter then resizes in floating point
//! and the result is truncated to 8 bits; an integer `pad_val` keeps it
//! 8-bit (OpenCV's fixed-point resize).
//!
//! Differs from MMDetection:
//! - the partner is drawn from the sample's dataset, not from a per-worker
//!   cache (see [`super::mix`]); `max_cached_images` (still checked to be at
//!   least 2) and `random_pop` change nothing, and there is no cache
//!   warm-up;
//! - the partner's masks follow its image: they are flipped across the
//!   jittered canvas and cut from the crop window. MMDetection flips them
//!   across their own width (misplaced when the partner does not fill
//!   `img_scale`) and cuts them to the sample's size *before* shifting them
//!   by the crop offset (blanking a strip as wide as the offset when the
//!   jittered partner is larger than the sample). Both agree where the
//!   padded partner fills `img_scale` and is not larger than the sample, as
//!   in RTMDet's pipelines;
//! - a `pad_val` of integers per channel, with which OpenCV cannot resize
//!   MMDetection's int64 canvas (it fails when the jitter changes its size),
//!   resizes in 8 bits as an integer `pad_val` does;
//! - polygon masks are refused; load bitmap masks with `poly2mask: true`.

use rand::Rng;

use super::mix::{check_instances, paste, place_masks, rescale_masks, Gathered, MixPad, MixTransform, Partners};
use super::{need_image, sample_error, Site};
use crate::data::image::{flip_in_place, resize_linear, resize_linear_f64};
use crate::data::{DataResult, Flip, Image, Masks, Sample, SampleRng};
use crate::registry::data::CachedMixUpConfig;

const NAME: &str = "CachedMixUp";

/// Blends in a partner image.
#[derive(Debug, Clone)]
pub struct CachedMixUp {
    /// `(w, h)` the partner is rescaled into.
    img_scale: (usize, usize),
    ratio_range: (f64, f64),
    flip_ratio: f64,
    pad: MixPad,
    max_iters: usize,
    bbox_clip_border: bool,
    prob: f64,
}

/// The random choices of one mix-up after the partner, in MMDetection's order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixUpDraws {
    /// Scale jitter `j`.
    pub jit_factor: f64,
    /// Flip the partner horizontally.
    pub flip: bool,
}

impl CachedMixUp {
    pub fn new(cfg: CachedMixUpConfig, at: Site<'_>) -> DataResult<Self> {
        let (w, h) = cfg.img_scale;
        if w == 0 || h == 0 {
            return Err(at.error(format!("img_scale ({w}, {h}): width and height must be positive")));
        }
        let (lo, hi) = cfg.ratio_range;
        if !(lo > 0.0 && hi > 0.0 && lo.is_finite() && hi.is_finite()) {
            return Err(at.error(format!("ratio_range ({lo}, {hi}): the jitter ratios must be positive")));
        }
        for (key, p) in [("prob", cfg.prob), ("flip_ratio", cfg.flip_ratio)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(at.error(format!("{key} {p} is not in [0, 1]")));
            }
        }
        if cfg.max_iters < 1 {
            return Err(at.error(format!("max_iters {} must be at least 1", cfg.max_iters)));
        }
        if cfg.max_cached_images < 2 {
            return Err(at.error(format!(
                "max_cached_images {} must be at least 2, as MMDetection asserts (it changes nothing in detc, which draws from the whole dataset)",
                cfg.max_cached_images
            )));
        }
        Ok(CachedMixUp {
            img_scale: (w as usize, h as usize),
            ratio_range: (lo, hi),
            flip_ratio: cfg.flip_ratio,
            pad: MixPad::new(&cfg.pad_val, at)?,
            max_iters: cfg.max_iters as usize,
            bbox_clip_border: cfg.bbox_clip_border,
            prob: cfg.prob,
        })
    }

    /// MMDetection's `transform` once the partner (with boxes) and `draws`
    /// are chosen; `offset` picks the crop `(y, x)` from the margins `(y, x)`
    /// the padded partner has around the sample (MMDetection draws each
    /// below its margin, y first).
    pub fn mix(
        &self,
        mut sample: Sample,
        partner: &Sample,
        draws: MixUpDraws,
        offset: impl FnOnce((usize, usize)) -> (usize, usize),
    ) -> DataResult<Sample> {
        check_instances(NAME, &sample)?;
        check_instances(NAME, partner)?;
        let target = three_channels(&sample)?;
        let canvas = self.partner_canvas(partner, draws)?;
        let (th, tw) = (target.height, target.width);
        let (oh, ow) = (canvas.height, canvas.width);
        let pad = self.pad.bytes(3).map_err(|e| sample_error(NAME, &sample, e))?;
        let mut padded = Image {
            data: pad.iter().copied().cycle().take(oh.max(th) * ow.max(tw) * 3).collect(),
            height: oh.max(th),
            width: ow.max(tw),
            channels: 3,
        };
        paste(&mut padded, &canvas, (0, 0), (0, 0, ow, oh));
        let (y_off, x_off) = offset((padded.height - th, padded.width - tw));
        let (y_off, x_off) = (y_off.min(padded.height - th), x_off.min(padded.width - tw));

        // 8. mix up: `0.5 * a + 0.5 * b` is exact in float32; `astype(uint8)` truncates.
        let mut mixed = target.clone();
        for (y, row) in mixed.data.chunks_exact_mut(tw * 3).enumerate() {
            let from = ((y + y_off) * padded.width + x_off) * 3;
            for (a, &b) in row.iter_mut().zip(&padded.data[from..from + tw * 3]) {
                *a = ((u16::from(*a) + u16::from(b)) / 2) as u8;
            }
        }

        // 6., 7. the partner's boxes (and masks) go where its pixels went.
        let at = Placement {
            scale: self.scale(partner)? * draws.jit_factor,
            flip: draws.flip,
            canvas: (oh, ow),
            target: (th, tw),
            offset: (x_off, y_off),
        };
        let mut gathered = Gathered {
            boxes: std::mem::take(&mut sample.gt_bboxes),
            labels: std::mem::take(&mut sample.gt_bboxes_labels),
            flags: std::mem::take(&mut sample.gt_ignore_flags),
            masks: None,
        };
        gathered.boxes.extend(self.partner_boxes(partner, &at));
        gathered.labels.extend(&partner.gt_bboxes_labels);
        gathered.flags.extend(&partner.gt_ignore_flags);
        if sample.gt_masks.is_some() {
            gathered.masks = Some(masks(&sample, partner, &at)?);
        }
        gathered.keep_inside(&mut sample, (th, tw));
        sample.img = Some(mixed);
        sample.img_shape = (th, tw);
        Ok(sample)
    }

    /// The partner's boxes scaled, clipped to the jittered canvas, flipped,
    /// shifted by the crop offset and clipped to the sample (float32).
    fn partner_boxes(&self, partner: &Sample, at: &Placement) -> Vec<[f32; 4]> {
        let s = at.scale as f32;
        let mut moved = Gathered {
            boxes: partner.gt_bboxes.iter().map(|b| [b[0] * s, b[1] * s, b[2] * s, b[3] * s]).collect(),
            ..Gathered::default()
        };
        if self.bbox_clip_border {
            moved.clip(at.canvas);
        }
        if at.flip {
            let w = at.canvas.1 as f32;
            moved.boxes.iter_mut().for_each(|b| *b = [w - b[2], b[1], w - b[0], b[3]]);
        }
        let (dx, dy) = (at.offset.0 as f32, at.offset.1 as f32);
        moved.boxes.iter_mut().for_each(|b| *b = [b[0] - dx, b[1] - dy, b[2] - dx, b[3] - dy]);
        if self.bbox_clip_border {
            moved.clip(at.target);
        }
        moved.boxes
    }

    /// `min(h / h_p, w / w_p)` for the partner's image.
    fn scale(&self, partner: &Sample) -> DataResult<f64> {
        let img = need_image(NAME, partner)?;
        let (w, h) = self.img_scale;
        Ok(f64::min(h as f64 / img.height as f64, w as f64 / img.width as f64))
    }

    /// Steps 1 to 4: the partner resized into `img_scale`, pasted on the
    /// padded canvas, jittered and maybe flipped, as 8-bit pixels.
    fn partner_canvas(&self, partner: &Sample, draws: MixUpDraws) -> DataResult<Image> {
        let img = three_channels(partner)?;
        let (w, h) = self.img_scale;
        let scale = self.scale(partner)?;
        let (rw, rh) = ((img.width as f64 * scale) as usize, (img.height as f64 * scale) as usize);
        let (jw, jh) = ((w as f64 * draws.jit_factor) as usize, (h as f64 * draws.jit_factor) as usize);
        if rw == 0 || rh == 0 || jw == 0 || jh == 0 {
            return Err(sample_error(
                NAME,
                partner,
                format!(
                    "the {}x{} image rescaled into {w}x{h} and jittered by {} is empty",
                    img.width, img.height, draws.jit_factor
                ),
            ));
        }
        let resized = if (rw, rh) == (img.width, img.height) { img.clone() } else { resize_linear(img, rw, rh) };
        let pad = self.pad.per_channel(3).map_err(|e| sample_error(NAME, partner, e))?;
        let mut canvas = if self.pad.float {
            jittered_f64(&resized, &pad, self.img_scale, (jw, jh))
        } else {
            jittered_u8(&resized, &pad, self.img_scale, (jw, jh))
        };
        if draws.flip {
            flip_in_place(&mut canvas, Flip::Horizontal);
        }
        Ok(canvas)
    }
}

/// `resized` pasted top left on a `(w, h)` canvas of `pad` in float64 (numpy's
/// `np.ones(uint8) * 114.0`) and resized to `(jw, jh)` there, truncated to 8
/// bits as assigning into MMDetection's uint8 `padded_img` does.
fn jittered_f64(resized: &Image, pad: &[f64], (w, h): (usize, usize), (jw, jh): (usize, usize)) -> Image {
    let rw = resized.width;
    let mut data: Vec<f64> = pad.iter().copied().cycle().take(w * h * 3).collect();
    for (y, src) in resized.data.chunks_exact(rw * 3).enumerate() {
        data[y * w * 3..y * w * 3 + rw * 3].iter_mut().zip(src).for_each(|(d, &s)| *d = f64::from(s));
    }
    let data = resize_linear_f64(&data, (h, w, 3), jw, jh);
    Image { data: data.into_iter().map(|v| v as u8).collect(), height: jh, width: jw, channels: 3 }
}

/// [`jittered_f64`] for an integer `pad`: the canvas stays 8-bit (OpenCV's fixed-point resize).
fn jittered_u8(resized: &Image, pad: &[f64], (w, h): (usize, usize), (jw, jh): (usize, usize)) -> Image {
    let bytes: Vec<u8> = pad.iter().map(|&v| v as u8).collect();
    let mut canvas =
        Image { data: bytes.iter().copied().cycle().take(w * h * 3).collect(), height: h, width: w, channels: 3 };
    paste(&mut canvas, resized, (0, 0), (0, 0, resized.width, resized.height));
    if (jw, jh) == (w, h) {
        canvas
    } else {
        resize_linear(&canvas, jw, jh)
    }
}

/// Where the partner's pixels went: scaled by `scale` (jitter included),
/// flipped across the jittered `canvas` `(h, w)` when `flip`, and cut at
/// `offset` `(x, y)` to the `target` `(h, w)`.
struct Placement {
    scale: f64,
    flip: bool,
    canvas: (usize, usize),
    target: (usize, usize),
    offset: (usize, usize),
}

/// The sample's masks followed by the partner's, placed as its pixels
/// (`at`): mask planes of the target size.
fn masks(sample: &Sample, partner: &Sample, at: &Placement) -> DataResult<Vec<u8>> {
    let (th, tw) = at.target;
    let Some(Masks::Bitmap { data, height, width, .. }) = &sample.gt_masks else {
        return Err(sample_error(
            NAME,
            sample,
            "bitmap masks are needed; load them with `LoadAnnotations(poly2mask=True)`",
        ));
    };
    if (*height, *width) != (th, tw) {
        return Err(sample_error(
            NAME,
            sample,
            format!("the masks are {height}x{width} but the image {th}x{tw} (height x width)"),
        ));
    }
    let theirs = partner
        .gt_masks
        .as_ref()
        .ok_or_else(|| sample_error(NAME, partner, "no masks loaded while the sample it is mixed into has some"))?;
    let mut theirs = rescale_masks(theirs, at.scale);
    if at.flip {
        // Across the jittered canvas, as the image and boxes.
        let (mh, _) = super::masks::shape(&theirs);
        let count = if let Masks::Bitmap { count, .. } = theirs { count } else { 0 };
        let ow = at.canvas.1;
        theirs = Masks::Bitmap { data: place_masks(&theirs, (mh, ow), (0, 0)), count, height: mh, width: ow };
        super::masks::flip(&mut theirs, Flip::Horizontal);
    }
    let mut out = data.clone();
    let (x_off, y_off) = at.offset;
    out.extend(place_masks(&theirs, (th, tw), (-(x_off as i64), -(y_off as i64))));
    Ok(out)
}

/// The sample's image, which must have three channels (MMDetection pads to 3).
fn three_channels(sample: &Sample) -> DataResult<&Image> {
    let img = need_image(NAME, sample)?;
    if img.channels != 3 {
        return Err(sample_error(
            NAME,
            sample,
            format!("the image has {} channel(s); mix-up needs 3 (BGR)", img.channels),
        ));
    }
    Ok(img)
}

impl MixTransform for CachedMixUp {
    fn apply(&self, sample: Sample, rng: &mut SampleRng, partners: &Partners<'_>) -> DataResult<Option<Sample>> {
        // MMDetection's order: `prob`, the partner (`get_indexes`), the
        // jitter, the flip, then the crop offset (y before x).
        if rng.random::<f64>() > self.prob {
            return Ok(Some(sample));
        }
        three_channels(&sample)?;
        check_instances(NAME, &sample)?;
        let mut partner = partners.draw(rng)?;
        for _ in 1..self.max_iters {
            if !partner.gt_bboxes.is_empty() {
                break;
            }
            partner = partners.draw(rng)?;
        }
        if partner.gt_bboxes.is_empty() {
            return Ok(Some(sample));
        }
        let (lo, hi) = self.ratio_range;
        let jit_factor = lo + (hi - lo) * rng.random::<f64>();
        let flip = rng.random::<f64>() > self.flip_ratio;
        // numpy's `randint(0, margin)`: the margin itself is never drawn.
        let offset = |(my, mx): (usize, usize)| {
            let y = if my > 0 { rng.random_range(0..my) } else { 0 };
            let x = if mx > 0 { rng.random_range(0..mx) } else { 0 };
            (y, x)
        };
        self.mix(sample, &partner, MixUpDraws { jit_factor, flip }, offset).map(Some)
    }
}

#[cfg(test)]
#[path = "cached_mix_up_tests.rs"]
mod tests;
