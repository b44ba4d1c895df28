//! `PackDetInputs` (`mmdet.datasets.transforms.PackDetInputs`): the image as
//! `inputs` and a `DetDataSample`: instances split by `gt_ignore_flags` into
//! `gt_instances` and `ignored_instances`, and the `meta_keys` copied into
//! the meta information.
//!
//! MMDetection copies a meta key only when the sample holds it, so unknown
//! names pass silently; detc refuses a name it cannot hold at build time
//! (a typo would otherwise silently drop a key the model needs).
//! `scale_factor` is copied once a resize transform ran (as MMDetection,
//! where only `Resize` sets it), `pad_shape` once `Pad` ran; `flip` and
//! `flip_direction` are always copied (`false`/`None` when no `RandomFlip`
//! ran, where MMDetection would leave them out).

use super::{masks, sample_error, Site};
use crate::data::{DataResult, PackedInstances, PackedSample, Sample, SampleMeta};
use crate::registry::data::PackDetInputsConfig;

/// The meta keys a detc sample holds.
pub const META_KEYS: &[&str] =
    &["img_id", "img_path", "ori_shape", "img_shape", "pad_shape", "scale_factor", "flip", "flip_direction"];

/// Packs a sample for the model.
#[derive(Debug, Clone)]
pub struct PackDetInputs {
    meta_keys: Vec<String>,
}

impl PackDetInputs {
    pub fn new(cfg: PackDetInputsConfig, at: Site<'_>) -> DataResult<Self> {
        if let Some(bad) = cfg.meta_keys.iter().find(|k| !META_KEYS.contains(&k.as_str())) {
            return Err(at.error(format!("unknown meta key `{bad}` (detc samples hold {})", META_KEYS.join(", "))));
        }
        Ok(PackDetInputs { meta_keys: cfg.meta_keys })
    }

    /// The packed sample.
    pub fn pack(&self, mut sample: Sample) -> DataResult<PackedSample> {
        let meta = self.meta(&sample);
        let n = sample.gt_bboxes.len().max(sample.gt_bboxes_labels.len()).max(sample.gt_ignore_flags.len());
        let flags = &sample.gt_ignore_flags;
        let (valid, ignored): (Vec<usize>, Vec<usize>) =
            if flags.len() == n { (0..n).partition(|&i| !flags[i]) } else { ((0..n).collect(), Vec::new()) };
        let ignored_instances = instances(&sample, &ignored);
        let gt_instances = if ignored.is_empty() {
            // Nothing to split off: move the instances instead of copying the masks.
            PackedInstances {
                bboxes: std::mem::take(&mut sample.gt_bboxes),
                labels: std::mem::take(&mut sample.gt_bboxes_labels),
                masks: sample.gt_masks.take(),
            }
        } else {
            instances(&sample, &valid)
        };
        let inputs = match sample.img {
            Some(img) => img,
            None => {
                return Err(sample_error("PackDetInputs", &sample, "no image loaded: put `LoadImageFromFile` first"))
            }
        };
        Ok(PackedSample { inputs, meta, gt_instances, ignored_instances })
    }

    fn meta(&self, s: &Sample) -> SampleMeta {
        let mut m = SampleMeta::default();
        for key in &self.meta_keys {
            match key.as_str() {
                "img_id" => m.img_id = Some(s.info.img_id),
                "img_path" => m.img_path = Some(s.info.img_path.clone()),
                "ori_shape" => m.ori_shape = Some(s.ori_shape),
                "img_shape" => m.img_shape = Some(s.img_shape),
                "pad_shape" => m.pad_shape = s.pad_shape,
                "scale_factor" => m.scale_factor = s.scale.map(|_| s.scale_factor),
                "flip" => m.flip = Some(s.flip),
                "flip_direction" => m.flip_direction = Some(s.flip_direction),
                _ => {} // refused when built
            }
        }
        m
    }
}

/// The instances `keep` of the sample.
fn instances(s: &Sample, keep: &[usize]) -> PackedInstances {
    PackedInstances {
        bboxes: keep.iter().filter_map(|&i| s.gt_bboxes.get(i).copied()).collect(),
        labels: keep.iter().filter_map(|&i| s.gt_bboxes_labels.get(i).copied()).collect(),
        masks: s.gt_masks.as_ref().map(|m| masks::select(m, keep)),
    }
}
