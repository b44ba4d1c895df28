//! Dense heads (`mmdet/models/dense_heads`): `EmbeddingRPNHead`, the learned
//! proposals of Sparse R-CNN and QueryInst; `RPNHead`; the single-stage
//! detectors' `RetinaHead` (and FreeAnchor's `FreeAnchorRetinaHead`),
//! `FCOSHead`, `ATSSHead`, `GFLHead`, VarifocalNet's `VFNetHead`, TOOD's
//! `TOODHead`, FoveaBox's `FoveaHead`, `RepPointsHead`, CenterNet's
//! `CenterNetUpdateHead` and RTMDet's `RTMDetSepBNHead`.

pub mod anchor_head;
pub mod atss_head;
pub mod base_dense_head;
pub mod centernet_update_head;
pub mod embedding_rpn_head;
pub mod fcos_head;
pub mod fovea_head;
pub mod free_anchor_retina_head;
pub mod gfl_head;
pub mod reppoints_head;
pub mod retina_head;
pub mod rpn_head;
pub mod rtmdet_head;
pub mod tood_head;
pub mod vfnet_head;

pub use atss_head::ATSSHead;
pub use centernet_update_head::CenterNetUpdateHead;
pub use embedding_rpn_head::{EmbeddingRPNHead, Proposals};
pub use fcos_head::FCOSHead;
pub use fovea_head::FoveaHead;
pub use free_anchor_retina_head::FreeAnchorRetinaHead;
pub use gfl_head::GFLHead;
pub use reppoints_head::RepPointsHead;
pub use retina_head::RetinaHead;
pub use rpn_head::RPNHead;
pub use rtmdet_head::RTMDetSepBNHead;
pub use tood_head::TOODHead;
pub use vfnet_head::VFNetHead;
