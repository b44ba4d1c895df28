//! Ops (`mmcv.ops` and `mmdet.structures.bbox`): RoIAlign and the box ops
//! the heads share.

// The RoI heads consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod boxes;
pub mod masks;
pub mod multiclass_nms;
pub mod nms;
pub mod roi_align;
pub mod soft_nms;
pub mod upload;

pub use boxes::{bbox2distance, bbox_overlaps, cxcywh_to_xyxy, distance2bbox, xyxy_to_cxcywh, DeltaXYWHBBoxCoder, OverlapMode};
pub use multiclass_nms::{multiclass_nms, Detections};
pub use nms::{batched_nms, nms};
pub use upload::{upload, upload_as, upload_repeated};
pub use roi_align::{map_roi_levels, multi_level_roi_align, roi_align, RoIAlign};
