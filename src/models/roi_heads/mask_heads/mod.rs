//! Mask heads (`mmdet/models/roi_heads/mask_heads`): Mask R-CNN's
//! `FCNMaskHead`, Mask Scoring R-CNN's `MaskIoUHead` and QueryInst's
//! `DynamicMaskHead`.

pub mod dynamic_mask_head;
pub mod fcn_mask_head;
pub mod maskiou_head;

pub use dynamic_mask_head::DynamicMaskHead;
pub use fcn_mask_head::FCNMaskHead;
pub use maskiou_head::MaskIoUHead;

use tch::Tensor;

use crate::models::data_preprocessors::MaskTensors;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::masks::{mask_targets, PositivesOf};
use crate::models::task_modules::SamplingResult;

/// The `mask_size` targets of every image's positives (its sampling
/// result's boxes and assigned GT indices into its `gt_masks`), concatenated
/// in sampling-result order: mmdet's `mask_target` over the batch
/// ([`mask_targets`]: on a GPU without reading anything back).
pub(crate) fn positive_mask_targets(
    head: &str,
    sampling_results: &[SamplingResult],
    gt_masks: &[&MaskTensors],
    mask_size: (i64, i64),
) -> ModelResult<Tensor> {
    if gt_masks.len() != sampling_results.len() {
        return Err(ModelError::new(
            head,
            format!("{} images of gt masks for {} sampling results", gt_masks.len(), sampling_results.len()),
        ));
    }
    let images: Vec<PositivesOf> = sampling_results
        .iter()
        .zip(gt_masks)
        .map(|(res, masks)| PositivesOf {
            pos_proposals: &res.pos_priors,
            pos_assigned_gt_inds: &res.pos_assigned_gt_inds,
            gt_masks: masks,
        })
        .collect();
    mask_targets(&images, mask_size)
}
