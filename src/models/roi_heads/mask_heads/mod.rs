//! Mask heads (`mmdet/models/roi_heads/mask_heads`): Mask R-CNN's
//! `FCNMaskHead`, Mask Scoring R-CNN's `MaskIoUHead` and QueryInst's
//! `DynamicMaskHead`.

pub mod dynamic_mask_head;
pub mod fcn_mask_head;
pub mod maskiou_head;

pub use dynamic_mask_head::DynamicMaskHead;
pub use fcn_mask_head::FCNMaskHead;
pub use maskiou_head::MaskIoUHead;
