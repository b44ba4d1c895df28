//! Mask heads (`mmdet/models/roi_heads/mask_heads`): QueryInst's `DynamicMaskHead`.

pub mod dynamic_mask_head;

pub use dynamic_mask_head::DynamicMaskHead;
