//! RoI heads (`mmdet/models/roi_heads`): the RoI extractor, the per-stage box
//! and mask heads, and `SparseRoIHead`, the iterative head of Sparse R-CNN and
//! QueryInst.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod bbox_heads;
pub mod cascade_roi_head;
pub mod roi_extractors;
pub mod mask_heads;
pub mod res_layer;
pub mod sparse_roi_head;
pub mod standard_roi_head;

#[cfg(test)]
mod mask_scoring_tests;

pub use sparse_roi_head::{DetInstances, SparseRoIHead};
pub use cascade_roi_head::CascadeRoIHead;
pub use standard_roi_head::StandardRoIHead;

use detc::registry::models::common::OneOrMany;

use crate::models::data_preprocessors::{DetDataSample, MaskTensors};
use crate::models::layers::{ModelError, ModelResult};

/// A multi-stage head's `n` configs of `what`: one repeated for every stage,
/// or a list of one per stage; `owner` names the head in the error.
pub fn per_stage<'a, T>(cfgs: &'a OneOrMany<T>, n: usize, what: &str, owner: &str) -> ModelResult<Vec<&'a T>> {
    match cfgs {
        OneOrMany::One(c) => Ok(vec![c; n]),
        OneOrMany::Many(cs) if cs.len() == n => Ok(cs.iter().collect()),
        OneOrMany::Many(cs) => Err(ModelError::new(owner, format!("{what} lists {} configs for num_stages {n}", cs.len()))),
    }
}

/// `stage_loss_weights` must have one weight per stage.
pub fn check_stage_weights(weights: &[f64], n: usize, owner: &str) -> ModelResult<()> {
    if weights.len() != n {
        return Err(ModelError::new(owner, format!("stage_loss_weights has {} entries for num_stages {n}", weights.len())));
    }
    Ok(())
}

/// Each image's ground-truth masks, which a mask head trains on; `owner`
/// names the RoI head in the error when the pipeline loaded none.
pub fn gt_masks<'a>(samples: &'a [DetDataSample], owner: &str) -> ModelResult<Vec<&'a MaskTensors>> {
    samples
        .iter()
        .map(|s| {
            s.gt_instances.masks.as_ref().ok_or_else(|| {
                ModelError::new(owner, "the mask head needs gt masks (LoadAnnotations with_mask: true)")
            })
        })
        .collect()
}
