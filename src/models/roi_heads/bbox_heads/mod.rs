//! Box heads (`mmdet/models/roi_heads/bbox_heads`).

pub mod dii_head;
pub mod dii_head_loss;

pub use dii_head::{DIIHead, DIIOutput};
pub use dii_head_loss::{accuracy, DIITargets};
