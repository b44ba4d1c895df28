//! Box heads (`mmdet/models/roi_heads/bbox_heads`).

pub mod bbox_head_loss;
pub mod bbox_head_predict;
pub mod convfc_bbox_head;
pub mod dii_head;
pub mod dii_head_loss;

pub use bbox_head_loss::BBoxTargets;
pub use bbox_head_predict::BoxTestCfg;
pub use convfc_bbox_head::{build_bbox_head, ConvFCBBoxHead, Layout};
pub use dii_head::{DIIHead, DIIOutput};
pub use dii_head_loss::{accuracy, DIITargets};
