//! `LoadAnnotations` (`mmdet.datasets.transforms.LoadAnnotations`): boxes,
//! labels, ignore flags and instance masks of the sample's record.
//!
//! Masks follow `_process_masks`: polygons with fewer than 3 points or an
//! odd number of coordinates are dropped; an instance left without any, and
//! (with `poly2mask: false`) an RLE instance, becomes ignored with a fake
//! all-zero polygon. `poly2mask: true` rasterises polygons as pycocotools
//! does (`crate::evaluation::mask`). An instance without a segmentation is an
//! error here (MMDetection raises `KeyError: 'mask'`).
//!
//! Refused at build time: `with_seg` (semantic maps are not loaded) and box
//! types other than `hbox`. `with_keypoints` is ignored, as MMDetection's
//! transform ignores it.

use super::{sample_error, Site, Transform};
use crate::data::{DataResult, Masks, Sample, SampleRng, Segmentation};
use crate::evaluation::mask::Rle;
use crate::registry::data::LoadAnnotationsConfig;

const NAME: &str = "LoadAnnotations";

/// Loads the annotations of the sample's record into its `gt_*` fields.
#[derive(Debug, Clone)]
pub struct LoadAnnotations {
    with_bbox: bool,
    with_label: bool,
    with_mask: bool,
    poly2mask: bool,
}

impl LoadAnnotations {
    pub fn new(cfg: LoadAnnotationsConfig, at: Site<'_>) -> DataResult<Self> {
        if cfg.with_seg {
            return Err(at.error("`with_seg: true` is not supported: detc loads no semantic segmentation maps"));
        }
        if cfg.box_type != "hbox" {
            return Err(at.error(format!("box_type `{}` is not supported; use `hbox`", cfg.box_type)));
        }
        Ok(LoadAnnotations {
            with_bbox: cfg.with_bbox,
            with_label: cfg.with_label,
            with_mask: cfg.with_mask,
            poly2mask: cfg.poly2mask,
        })
    }
}

impl Transform for LoadAnnotations {
    fn apply(&self, mut sample: Sample, _rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let info = sample.info.clone();
        if self.with_bbox {
            sample.gt_bboxes = info.instances.iter().map(|i| i.bbox).collect();
            sample.gt_ignore_flags = info.instances.iter().map(|i| i.ignore_flag).collect();
        }
        if self.with_label {
            sample.gt_bboxes_labels = info.instances.iter().map(|i| i.bbox_label).collect();
        }
        if self.with_mask {
            let (masks, flags) = self.load_masks(&sample)?;
            sample.gt_masks = Some(masks);
            sample.gt_ignore_flags = flags;
        }
        Ok(Some(sample))
    }
}

/// One instance's mask after `_process_masks`.
enum Processed<'a> {
    Polygons(Vec<Vec<f64>>),
    Rle(&'a Rle),
}

/// The fake polygon MMDetection gives an instance it ignores (`np.zeros(6)`).
fn fake_polygon() -> Vec<Vec<f64>> {
    vec![vec![0.0; 6]]
}

impl LoadAnnotations {
    /// The masks (at `ori_shape`) and the re-computed ignore flags.
    fn load_masks(&self, sample: &Sample) -> DataResult<(Masks, Vec<bool>)> {
        let (h, w) = sample.ori_shape;
        let mut processed = Vec::with_capacity(sample.info.instances.len());
        let mut flags = Vec::with_capacity(sample.info.instances.len());
        for (i, inst) in sample.info.instances.iter().enumerate() {
            let mut ignore = inst.ignore_flag;
            let mask = match &inst.mask {
                None => {
                    return Err(sample_error(NAME, sample, format!(
                        "instance {i} has no segmentation; set `with_mask: false` or add `segmentation` to the annotation"
                    )))
                }
                Some(Segmentation::Polygons(polys)) => {
                    let kept: Vec<Vec<f64>> = polys.iter().filter(|p| p.len() % 2 == 0 && p.len() >= 6).cloned().collect();
                    if kept.is_empty() {
                        ignore = true;
                        Processed::Polygons(fake_polygon())
                    } else {
                        Processed::Polygons(kept)
                    }
                }
                Some(Segmentation::Rle(_)) if !self.poly2mask => {
                    ignore = true;
                    Processed::Polygons(fake_polygon())
                }
                Some(Segmentation::Rle(rle)) => {
                    if (rle.height as usize, rle.width as usize) != (h, w) {
                        return Err(sample_error(NAME, sample, format!(
                            "instance {i}: its RLE mask is {}x{} but the image is {h}x{w} (height x width)",
                            rle.height, rle.width
                        )));
                    }
                    Processed::Rle(rle)
                }
            };
            processed.push(mask);
            flags.push(ignore);
        }
        let masks = if self.poly2mask {
            let mut data = Vec::with_capacity(processed.len() * h * w);
            for m in &processed {
                match m {
                    Processed::Polygons(p) => data.extend(Rle::from_polygons(p, h as u32, w as u32).to_row_major()),
                    Processed::Rle(rle) => data.extend(rle.to_row_major()),
                }
            }
            Masks::Bitmap { data, count: processed.len(), height: h, width: w }
        } else {
            let polygons = processed
                .into_iter()
                .map(|m| match m {
                    Processed::Polygons(p) => p,
                    Processed::Rle(_) => fake_polygon(),
                })
                .collect();
            Masks::Polygons { polygons, height: h, width: w }
        };
        Ok((masks, flags))
    }
}
