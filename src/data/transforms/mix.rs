//! Multi-image transforms (`CachedMosaic`, `CachedMixUp`): where their other
//! images ("partners") come from.
//!
//! MMDetection keeps, in each dataloader worker, a cache of the last samples
//! that reached the transform and draws partners from it. What a sample is
//! mixed with then depends on the number of workers, on which worker gets it
//! and on timing, and a resumed run cannot repeat it. detc instead draws
//! each partner uniformly from the records of the sample's own dataset
//! ([`Records`]) with the sample's random stream, and runs it through the
//! transforms *before* the mixing one, as the cached results MMDetection
//! mixes in went through them (a `CachedMixUp` partner also goes through an
//! earlier `CachedMosaic`, with its own partners). Each partner gets its own
//! stream, seeded by a number drawn from the sample's. Augmentation stays a
//! function of (seed, epoch, index) on any worker count.
//!
//! The price is loading: a partner costs its image reads and transforms
//! (RTMDet's pipeline reads 4 images for the mosaic and 4 more for the
//! mix-up partner's own mosaic), where MMDetection reuses cached ones.

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use super::{masks, run_steps, sample_error, Site, Step};
use crate::data::coco::CocoDataset;
use crate::data::{DataError, DataInfo, DataResult, Image, Masks, Sample, SampleRng};
use crate::registry::data::MixPadVal;

/// The records partners are drawn from: the sample's own dataset (one
/// `CocoDataset`, not the wrapper around it).
pub trait Records {
    /// Number of records.
    fn len(&self) -> usize;
    /// Record `index` (below [`Records::len`]).
    fn get(&self, index: usize) -> Arc<DataInfo>;

    /// Whether there are no records.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Records for CocoDataset {
    fn len(&self) -> usize {
        CocoDataset::len(self)
    }

    fn get(&self, index: usize) -> Arc<DataInfo> {
        CocoDataset::get(self, index)
    }
}

impl Records for Vec<Arc<DataInfo>> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn get(&self, index: usize) -> Arc<DataInfo> {
        Arc::clone(&self[index])
    }
}

/// A pipeline step that mixes the sample with others drawn from [`Partners`].
pub trait MixTransform: Send + Sync {
    /// The mixed sample, or `None` when the sample is dropped.
    fn apply(&self, sample: Sample, rng: &mut SampleRng, partners: &Partners<'_>) -> DataResult<Option<Sample>>;
}

/// How many records may be drawn for one partner before giving up, when the
/// transforms before the mixing one keep dropping them (MMEngine's default
/// `max_refetch`).
const MAX_DRAWS: usize = 1000;

/// Partners for the mixing transform at one place of the pipeline: records
/// drawn from `records` and run through the `earlier` steps.
pub struct Partners<'a> {
    pub(super) earlier: &'a [Step],
    pub(super) records: &'a dyn Records,
    /// The mixing transform, for errors.
    pub(super) name: &'a str,
}

impl Partners<'_> {
    /// A partner: a record drawn uniformly with `rng`, loaded through the
    /// earlier transforms with a stream seeded from `rng`. Records those
    /// transforms drop are replaced by new draws.
    pub fn draw(&self, rng: &mut SampleRng) -> DataResult<Sample> {
        let n = self.records.len();
        if self.records.is_empty() {
            return Err(DataError::new(format!("{}: the dataset has no records to mix in", self.name)));
        }
        for _ in 0..MAX_DRAWS {
            let index = rng.random_range(0..n);
            let mut partner_rng = SampleRng::seed_from_u64(rng.random::<u64>());
            let partner = Sample::new(self.records.get(index), index);
            if let Some(partner) = run_steps(self.earlier, partner, &mut partner_rng, Some(self.records))? {
                return Ok(partner);
            }
        }
        Err(DataError::new(format!(
            "{}: the transforms before it dropped {MAX_DRAWS} records drawn in a row as partners; \
             check that they keep most images (e.g. `RandomCrop` with `allow_negative_crop`, `FilterAnnotations`)",
            self.name
        )))
    }
}

// --------------------------------------------------------------------------
// Shared by `CachedMosaic` and `CachedMixUp`.

/// A mixing transform's `pad_val`, one value per channel (or one for all).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MixPad {
    values: Vec<f64>,
    /// Written as a float (`114.0`): numpy then computes `CachedMixUp`'s canvas in float64.
    pub float: bool,
}

impl MixPad {
    pub fn new(pad_val: &MixPadVal, at: Site<'_>) -> DataResult<Self> {
        let numbers: Vec<&serde_json::Number> = match pad_val {
            MixPadVal::One(n) => vec![n],
            MixPadVal::PerChannel(ns) => ns.iter().collect(),
        };
        if numbers.is_empty() {
            return Err(at.error("`pad_val` is an empty list; give one number, or one per channel"));
        }
        let mut values = Vec::with_capacity(numbers.len());
        for n in &numbers {
            match n.as_f64() {
                Some(v) if (0.0..=255.0).contains(&v) => values.push(v),
                _ => return Err(at.error(format!("pad_val {n} is not in [0, 255] (images are 8-bit)"))),
            }
        }
        Ok(MixPad { values, float: numbers.iter().any(|n| n.is_f64()) })
    }

    /// The values for an image of `channels` channels, or why they do not fit it.
    pub fn per_channel(&self, channels: usize) -> Result<Vec<f64>, String> {
        match self.values.len() {
            1 => Ok(vec![self.values[0]; channels]),
            n if n == channels => Ok(self.values.clone()),
            n => Err(format!("pad_val has {n} values for an image of {channels} channel(s)")),
        }
    }

    /// [`MixPad::per_channel`] cast to bytes as numpy casts to `uint8` (truncating).
    pub fn bytes(&self, channels: usize) -> Result<Vec<u8>, String> {
        Ok(self.per_channel(channels)?.into_iter().map(|v| v as u8).collect())
    }
}

/// Checks that `sample` has one label and one ignore flag per box, and bitmap
/// masks (one per box) if any: what the mixing transforms concatenate.
pub(super) fn check_instances(name: &str, sample: &Sample) -> DataResult<()> {
    let n = sample.gt_bboxes.len();
    if sample.gt_bboxes_labels.len() != n || sample.gt_ignore_flags.len() != n {
        return Err(sample_error(
            name,
            sample,
            format!(
                "{n} boxes with {} labels and {} ignore flags: put `LoadAnnotations` (with `with_bbox` and \
             `with_label`) before it",
                sample.gt_bboxes_labels.len(),
                sample.gt_ignore_flags.len()
            ),
        ));
    }
    match &sample.gt_masks {
        None => Ok(()),
        Some(Masks::Polygons { .. }) => Err(sample_error(
            name,
            sample,
            "polygon masks cannot be mixed (detc mixes bitmap masks only); load bitmap masks: \
             `LoadAnnotations(poly2mask=True)`",
        )),
        Some(Masks::Bitmap { count, .. }) if *count != n => {
            Err(sample_error(name, sample, format!("{count} masks for {n} boxes")))
        }
        Some(_) => Ok(()),
    }
}

/// The instances the mixing transforms gather, in MMDetection's order.
#[derive(Debug, Default)]
pub(super) struct Gathered {
    pub boxes: Vec<[f32; 4]>,
    pub labels: Vec<i64>,
    pub flags: Vec<bool>,
    /// Mask planes of `height x width`, one per box, when the sample has masks.
    pub masks: Option<Vec<u8>>,
}

impl Gathered {
    /// Clips the boxes to `(h, w)` (`HorizontalBoxes.clip_`).
    pub fn clip(&mut self, (h, w): (usize, usize)) {
        let (w, h) = (w as f32, h as f32);
        for b in &mut self.boxes {
            *b = [b[0].clamp(0.0, w), b[1].clamp(0.0, h), b[2].clamp(0.0, w), b[3].clamp(0.0, h)];
        }
    }

    /// Writes the instances whose boxes reach into `(h, w)`
    /// (`HorizontalBoxes.is_inside`) into `sample`.
    pub fn keep_inside(self, sample: &mut Sample, (h, w): (usize, usize)) {
        let keep: Vec<usize> = (0..self.boxes.len())
            .filter(|&i| {
                let b = self.boxes[i];
                b[0] < w as f32 && b[1] < h as f32 && b[2] > 0.0 && b[3] > 0.0
            })
            .collect();
        sample.gt_bboxes = keep.iter().map(|&i| self.boxes[i]).collect();
        sample.gt_bboxes_labels = keep.iter().map(|&i| self.labels[i]).collect();
        sample.gt_ignore_flags = keep.iter().map(|&i| self.flags[i]).collect();
        sample.gt_masks = self.masks.map(|data| {
            let all = Masks::Bitmap { count: data.len() / (h * w).max(1), data, height: h, width: w };
            masks::select(&all, &keep)
        });
    }
}

/// The bitmap mask planes of `masks` placed on an `(out_h, out_w)` canvas
/// with their pixel `(y, x)` at `(y + dy, x + dx)`; what falls outside is cut
/// and the rest of the canvas is 0 (`BitmapMasks.translate` of an integer offset).
pub(super) fn place_masks(masks: &Masks, (out_h, out_w): (usize, usize), (dx, dy): (i64, i64)) -> Vec<u8> {
    let Masks::Bitmap { data, count, height, width } = masks else {
        return Vec::new();
    };
    let mut out = vec![0u8; count * out_h * out_w];
    // Destination columns (and rows) that have a source pixel.
    let span = |n: usize, out_n: usize, d: i64| {
        (d.max(0).min(out_n as i64) as usize, (n as i64 + d).clamp(0, out_n as i64) as usize)
    };
    let (x0, x1) = span(*width, out_w, dx);
    let (y0, y1) = span(*height, out_h, dy);
    if x0 >= x1 || y0 >= y1 {
        return out;
    }
    for (src, dst) in data.chunks_exact((height * width).max(1)).zip(out.chunks_exact_mut((out_h * out_w).max(1))) {
        for y in y0..y1 {
            let sy = (y as i64 - dy) as usize;
            let sx = (x0 as i64 - dx) as usize;
            dst[y * out_w + x0..y * out_w + x1].copy_from_slice(&src[sy * width + sx..sy * width + sx + (x1 - x0)]);
        }
    }
    out
}

/// `BitmapMasks.rescale(scale)` for a float `scale`: MMCV's `rescale_size`
/// rounds each side half up (`int(w * scale + 0.5)`), nearest-neighbour.
pub(super) fn rescale_masks(m: &Masks, scale: f64) -> Masks {
    let (h, w) = masks::shape(m);
    let (new_w, new_h) = crate::data::image::scale_size((w, h), (scale, scale));
    masks::resize(m, new_h.max(1), new_w.max(1))
}

/// `img[y1:y2, x1:x2]` of `src` written at `(x, y)` of `dst` (same channels).
pub(super) fn paste(
    dst: &mut Image,
    src: &Image,
    (x, y): (usize, usize),
    (x1, y1, x2, y2): (usize, usize, usize, usize),
) {
    let c = src.channels;
    for (k, sy) in (y1..y2).enumerate() {
        let from = &src.data[(sy * src.width + x1) * c..(sy * src.width + x2) * c];
        let at = ((y + k) * dst.width + x) * c;
        dst.data[at..at + from.len()].copy_from_slice(from);
    }
}
