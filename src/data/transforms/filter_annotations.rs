//! `FilterAnnotations` (`mmdet.datasets.transforms.FilterAnnotations`):
//! removes the instances whose box is not wider and higher than
//! `min_gt_bbox_wh` (compared in float32, as the box tensor) or whose mask
//! covers fewer than `min_gt_mask_area` pixels (a bitmap's set pixels, a
//! polygon's shoelace area). A sample without instances passes unchanged; one
//! left with none is dropped when `keep_empty` (MMDetection's name for it).

use super::{need_masks, select_instances, Site, Transform};
use crate::data::{DataResult, Masks, Sample, SampleRng};
use crate::registry::data::FilterAnnotationsConfig;

#[derive(Debug, Clone)]
pub struct FilterAnnotations {
    cfg: FilterAnnotationsConfig,
}

impl FilterAnnotations {
    pub fn new(cfg: FilterAnnotationsConfig, at: Site<'_>) -> DataResult<Self> {
        if !cfg.by_box && !cfg.by_mask {
            return Err(at.error("filters nothing: set `by_box` or `by_mask`"));
        }
        Ok(FilterAnnotations { cfg })
    }
}

impl Transform for FilterAnnotations {
    fn apply(&self, mut sample: Sample, _: &mut SampleRng) -> DataResult<Option<Sample>> {
        if sample.gt_bboxes.is_empty() {
            return Ok(Some(sample));
        }
        let mut keep = vec![true; sample.gt_bboxes.len()];
        if self.cfg.by_box {
            let (min_w, min_h) = (self.cfg.min_gt_bbox_wh.0 as f32, self.cfg.min_gt_bbox_wh.1 as f32);
            for (k, b) in keep.iter_mut().zip(&sample.gt_bboxes) {
                *k &= b[2] - b[0] > min_w && b[3] - b[1] > min_h;
            }
        }
        if self.cfg.by_mask {
            let areas = mask_areas(need_masks("FilterAnnotations", &sample)?);
            for (k, area) in keep.iter_mut().zip(areas) {
                *k &= area >= self.cfg.min_gt_mask_area;
            }
        }
        if !keep.contains(&true) && self.cfg.keep_empty {
            return Ok(None);
        }
        let kept: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
        select_instances(&mut sample, &kept);
        Ok(Some(sample))
    }
}

/// `BitmapMasks.areas` (set pixels) or `PolygonMasks.areas` (the shoelace
/// area of each polygon, summed per instance).
fn mask_areas(masks: &Masks) -> Vec<f64> {
    match masks {
        Masks::Bitmap { data, count, height, width } => data
            .chunks_exact((height * width).max(1))
            .take(*count)
            .map(|plane| plane.iter().map(|&v| v as f64).sum())
            .collect(),
        Masks::Polygons { polygons, .. } => {
            polygons.iter().map(|instance| instance.iter().map(|p| shoelace(p)).sum()).collect()
        }
    }
}

/// `0.5 * |x . roll(y, 1) - y . roll(x, 1)|` of a flat `[x0, y0, x1, y1, ...]`.
fn shoelace(flat: &[f64]) -> f64 {
    let n = flat.len() / 2;
    let (x, y) = (|i: usize| flat[2 * i], |i: usize| flat[2 * i + 1]);
    let (mut xy, mut yx) = (0.0, 0.0);
    for i in 0..n {
        let prev = (i + n - 1) % n;
        xy += x(i) * y(prev);
        yx += y(i) * x(prev);
    }
    0.5 * (xy - yx).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shoelace_of_a_square_and_a_triangle() {
        assert_eq!(shoelace(&[0.0, 0.0, 4.0, 0.0, 4.0, 3.0, 0.0, 3.0]), 12.0);
        assert_eq!(shoelace(&[0.0, 0.0, 4.0, 0.0, 0.0, 3.0]), 6.0);
    }
}
