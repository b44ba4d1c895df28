//! Non-maximum suppression (`torchvision.ops.nms` / `batched_nms`, which
//! `mmcv.ops.nms` / `batched_nms` equal for `offset=0`).

use tch::Tensor;

use crate::models::layers::ModelResult;

/// `torchvision.ops.nms`: boxes (N, 4) x1y1x2y2, scores (N,) -> int64 indices
/// of the kept boxes, by decreasing score.
pub fn nms(boxes: &Tensor, scores: &Tensor, iou_threshold: f64) -> ModelResult<Tensor> {
    let _ = (boxes, scores, iou_threshold);
    todo!("issue 7: nms")
}

/// `torchvision.ops.batched_nms`: NMS within each category of `idxs` (N,)
/// int64 -> int64 indices of the kept boxes, by decreasing score.
pub fn batched_nms(boxes: &Tensor, scores: &Tensor, idxs: &Tensor, iou_threshold: f64) -> ModelResult<Tensor> {
    let _ = (boxes, scores, idxs, iou_threshold);
    todo!("issue 7: batched_nms")
}
