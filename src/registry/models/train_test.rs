//! The plain (type-less) training and testing dicts of the detectors:
//! `model.train_cfg` / `model.test_cfg` and the per-head `train_cfg` /
//! `test_cfg` that `TwoStageDetector` hands down (`train_cfg.rpn` to the RPN
//! head, `train_cfg.rcnn` to the RoI head, and so on).
//!
//! Keys a head reads with attribute access (`cfg.max_per_img`) are required;
//! keys it reads with `cfg.get(key, default)` carry that default.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{IntOrPair, Null, OneOrMany};
use crate::registry::refs::{AssignerCfg, NmsCfg, SamplerCfg};

fn minus_one() -> f64 {
    -1.0
}

/// `train_cfg.rpn` of a two-stage detector: how the RPN head assigns and samples anchors.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RpnTrainConfig {
    /// Assigns anchors to ground truths, e.g. `MaxIoUAssigner`.
    pub assigner: AssignerCfg,
    /// Samples the assigned anchors, e.g. `RandomSampler`; `PseudoSampler` when null.
    #[serde(default)]
    pub sampler: Option<SamplerCfg>,
    /// Anchors crossing the image border by more than this many pixels are ignored; negative keeps all.
    pub allowed_border: i64,
    /// Weight of positive samples in the classification loss; <= 0 means 1.
    pub pos_weight: f64,
    /// Unused (kept for MMDetection compatibility).
    #[serde(default)]
    pub debug: bool,
}

/// An empty `train_cfg` (`{}`): a head that assigns its own targets without
/// settings (FoveaBox's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyTrainConfig {}

/// `train_cfg` of a `RepPointsDetector`: the assignment of the initial
/// points (to the location points, `PointAssigner`, or to boxes around
/// them, `MaxIoUAssigner`) and of the refined ones (the boxes of the initial
/// points, `MaxIoUAssigner`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepPointsTrainConfig {
    /// The initial stage's assigner, sampler and positive weight.
    pub init: RpnTrainConfig,
    /// The refinement stage's; its labels train the scores.
    pub refine: RpnTrainConfig,
}

/// `train_cfg` of a `TOOD` detector: ATSS's assignment for the first
/// `initial_epoch` epochs, then task-aligned assignment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToodTrainConfig {
    /// Epochs trained with `initial_assigner` and `initial_loss_cls` before the task-aligned ones.
    pub initial_epoch: u32,
    /// The first epochs' assigner, `ATSSAssigner`.
    pub initial_assigner: AssignerCfg,
    /// The task-aligned assigner, `TaskAlignedAssigner`.
    pub assigner: AssignerCfg,
    /// Exponent of the classification score in the alignment metric.
    #[schemars(range(min = 0.0))]
    pub alpha: f64,
    /// Exponent of the IoU in the alignment metric.
    #[schemars(range(min = 0.0))]
    pub beta: f64,
    /// Anchors crossing the image border by more than this many pixels are ignored; negative keeps all.
    pub allowed_border: i64,
    /// Weight of positive samples in the classification loss; <= 0 means 1.
    pub pos_weight: f64,
    /// Unused (kept for MMDetection compatibility).
    #[serde(default)]
    pub debug: bool,
}

/// `train_cfg.rpn_proposal` / `test_cfg.rpn`: how the RPN turns scores into proposals.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalConfig {
    /// Top-scoring anchors kept per level before NMS; -1 keeps all.
    #[serde(default = "super::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub nms_pre: i64,
    /// Proposals kept per image after NMS.
    #[schemars(range(min = 1))]
    pub max_per_img: u32,
    /// NMS applied across levels, e.g. `{type: nms, iou_threshold: 0.7}`.
    pub nms: NmsCfg,
    /// Proposals with a side not larger than this are removed; negative disables the filter.
    #[serde(default = "minus_one")]
    pub min_bbox_size: f64,
}

/// `train_cfg.rcnn` (one dict, or one per stage for Sparse R-CNN and QueryInst):
/// how the RoI head assigns and samples proposals.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RcnnTrainConfig {
    /// Assigns proposals to ground truths, e.g. `MaxIoUAssigner` or `HungarianAssigner`.
    pub assigner: AssignerCfg,
    /// Samples the assigned proposals, e.g. `RandomSampler` or `PseudoSampler`.
    pub sampler: SamplerCfg,
    /// Weight of positive samples in the classification loss; <= 0 means 1.
    pub pos_weight: f64,
    /// Size of the mask targets, `s` or `(h, w)`; needed when the RoI head has a mask head.
    #[serde(default)]
    pub mask_size: Option<IntOrPair>,
    /// Use soft (unbinarised) mask targets.
    #[serde(default)]
    pub soft_mask_target: bool,
    /// Threshold on the mask logits that binarises a positive's predicted
    /// mask for its IoU target (Mask Scoring R-CNN's `MaskIoUHead`).
    #[serde(default)]
    pub mask_thr_binary: Option<f64>,
    /// Unused (kept for MMDetection compatibility).
    #[serde(default)]
    pub debug: bool,
}

/// `test_cfg.rcnn` of a two-stage detector: score threshold, NMS and mask binarisation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RcnnTestConfig {
    /// Detections scoring below this are dropped before NMS.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score_thr: f64,
    /// Per-class NMS, e.g. `{type: nms, iou_threshold: 0.5}`; null skips NMS.
    #[schemars(required)]
    pub nms: Option<NmsCfg>,
    /// Detections kept per image.
    #[schemars(range(min = 1))]
    pub max_per_img: u32,
    /// Threshold that binarises predicted mask probabilities; needed with a mask head.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub mask_thr_binary: Option<f64>,
}

/// `model.train_cfg` of `FasterRCNN` / `MaskRCNN`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoStageTrainConfig {
    /// Anchor assignment and sampling of the RPN head.
    pub rpn: RpnTrainConfig,
    /// Proposal generation during training; `test_cfg.rpn` when absent.
    #[serde(default)]
    pub rpn_proposal: Option<ProposalConfig>,
    /// Proposal assignment and sampling of the RoI head: one dict, or one per
    /// stage for `CascadeRoIHead`.
    pub rcnn: OneOrMany<RcnnTrainConfig>,
}

/// `model.test_cfg` of `FasterRCNN` / `MaskRCNN`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoStageTestConfig {
    /// Proposal generation of the RPN head at test time.
    pub rpn: ProposalConfig,
    /// Post-processing of the RoI head's detections.
    pub rcnn: RcnnTestConfig,
}

/// `model.train_cfg` of `RPN`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RpnOnlyTrainConfig {
    /// Anchor assignment and sampling of the RPN head.
    pub rpn: RpnTrainConfig,
}

/// `model.test_cfg` of `RPN`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RpnOnlyTestConfig {
    /// How the RPN head's scores become the proposals it is tested on.
    pub rpn: ProposalConfig,
}

/// `model.train_cfg` of `SparseRCNN` / `QueryInst`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparseTrainConfig {
    /// Must be null: `EmbeddingRPNHead` learns its proposals and has nothing to assign.
    #[schemars(required)]
    pub rpn: Null,
    /// One dict per stage (`num_stages` entries), each with a `HungarianAssigner` and a `PseudoSampler`.
    #[schemars(length(min = 1))]
    pub rcnn: Vec<RcnnTrainConfig>,
}

/// `test_cfg.rcnn` of `SparseRCNN` / `QueryInst`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparseRcnnTestConfig {
    /// Detections kept per image (top-k over proposals × classes).
    #[schemars(range(min = 1))]
    pub max_per_img: u32,
    /// Threshold that binarises predicted mask probabilities; needed with a mask head (QueryInst).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub mask_thr_binary: Option<f64>,
}

/// `model.test_cfg` of `SparseRCNN` / `QueryInst`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparseTestConfig {
    /// Must be null: `EmbeddingRPNHead` has no test-time settings.
    #[schemars(required)]
    pub rpn: Null,
    /// Post-processing of the last stage's detections.
    pub rcnn: SparseRcnnTestConfig,
}

/// `test_cfg` of a single-stage detector (`BaseDenseHead._predict_by_feat_single`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseTestConfig {
    /// Top-scoring (anchor, class) pairs kept per level before NMS; -1 keeps all.
    #[serde(default = "super::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub nms_pre: i64,
    /// Detections with a side not larger than this are removed; negative disables the filter.
    #[serde(default = "minus_one")]
    pub min_bbox_size: f64,
    /// Scores not above this are dropped before the top-k.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score_thr: f64,
    /// Per-class NMS, e.g. `{type: nms, iou_threshold: 0.5}`.
    pub nms: NmsCfg,
    /// Detections kept per image.
    #[schemars(range(min = 1))]
    pub max_per_img: u32,
}
