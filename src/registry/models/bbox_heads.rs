//! Box head configs (`mmdet/models/roi_heads/bbox_heads`).
//!
//! `Shared2FCBBoxHead` and `DIIHead` forward their extra keyword arguments to
//! `BBoxHead`; the keys they fix themselves (`num_shared_fcs`,
//! `reg_class_agnostic`, …) would be duplicate arguments there, so they are
//! not fields here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, IntOrPair, Null, OneOrMany};
use super::layers::{default_linear_predictor, LinearPredictorConfig};
use crate::registry::refs::{ActivationCfg, BBoxCoderCfg, ConvCfg, InitCfg, LossCfg, NormCfg};

fn default_rcnn_coder() -> BBoxCoderCfg {
    BBoxCoderCfg(serde_json::json!({
        "type": "DeltaXYWHBBoxCoder",
        "clip_border": true,
        "target_means": [0.0, 0.0, 0.0, 0.0],
        "target_stds": [0.1, 0.1, 0.2, 0.2]
    }))
}

fn default_ce() -> LossCfg {
    LossCfg(serde_json::json!({"type": "CrossEntropyLoss", "use_sigmoid": false, "loss_weight": 1.0}))
}

fn default_smooth_l1() -> LossCfg {
    LossCfg(serde_json::json!({"type": "SmoothL1Loss", "beta": 1.0, "loss_weight": 1.0}))
}

fn default_giou() -> LossCfg {
    LossCfg(serde_json::json!({"type": "GIoULoss", "loss_weight": 2.0}))
}

fn default_roi_feat_size() -> IntOrPair {
    IntOrPair::Int(7)
}

fn default_hbox() -> String {
    "hbox".into()
}

/// `Shared2FCBBoxHead`: two shared fully connected layers, then a classifier and a
/// box regressor (Faster/Mask R-CNN), as `mmdet.models.roi_heads.Shared2FCBBoxHead`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Shared2FCBBoxHeadConfig {
    /// Width of the two shared fully connected layers.
    #[serde(default = "uint::<1024>")]
    #[schemars(range(min = 1))]
    pub fc_out_channels: u32,
    /// Width of the 3x3 convs (`Shared2FCBBoxHead` has none).
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub conv_out_channels: u32,
    /// Convolution layer of the convs (`ConvWS`: weight standardisation); `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the convs (e.g. `GN`); none when null.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// The `BBoxHead` settings.
    #[serde(flatten)]
    pub head: BBoxHeadConfig,
}

/// `BBoxHead`: a classifier and a box regressor directly on the (average
/// pooled) RoI feature, as `mmdet.models.roi_heads.BBoxHead` (the box head of
/// the C4 configs, after their `ResLayer` shared head).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BBoxHeadConfig {
    /// Average-pool the RoI feature before the fully connected layers.
    #[serde(default)]
    pub with_avg_pool: bool,
    /// Build the classification branch.
    #[serde(default = "super::common::yes")]
    pub with_cls: bool,
    /// Build the regression branch.
    #[serde(default = "super::common::yes")]
    pub with_reg: bool,
    /// Side of the pooled RoI feature (the extractor's `output_size`).
    #[serde(default = "default_roi_feat_size")]
    pub roi_feat_size: IntOrPair,
    /// Channels of the pooled RoI feature.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Number of object classes (without background).
    #[serde(default = "uint::<80>")]
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Encodes regression targets, e.g. `DeltaXYWHBBoxCoder` with stds `[0.1, 0.1, 0.2, 0.2]`.
    #[serde(default = "default_rcnn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Box type of the predictions (`hbox`).
    #[serde(default = "default_hbox")]
    pub predict_box_type: String,
    /// Regress one box for all classes instead of one per class.
    #[serde(default)]
    pub reg_class_agnostic: bool,
    /// Apply the box loss to decoded boxes (IoU-style losses) instead of deltas.
    #[serde(default)]
    pub reg_decoded_bbox: bool,
    /// Layer of the box regressor.
    #[serde(default = "default_linear_predictor")]
    pub reg_predictor_cfg: LinearPredictorConfig,
    /// Layer of the classifier.
    #[serde(default = "default_linear_predictor")]
    pub cls_predictor_cfg: LinearPredictorConfig,
    /// Classification loss.
    #[serde(default = "default_ce")]
    pub loss_cls: LossCfg,
    /// Box regression loss.
    #[serde(default = "default_smooth_l1")]
    pub loss_bbox: LossCfg,
    /// Weight initialisation; MMDetection's Xavier/Normal scheme when null.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// `Shared4Conv1FCBBoxHead`: four shared 3x3 `ConvModule`s (with `conv_cfg`
/// and `norm_cfg`) and one shared fully connected layer, then a classifier and
/// a box regressor, as `mmdet.models.roi_heads.Shared4Conv1FCBBoxHead` (the
/// box head of MMDetection's `gn/` and `gn+ws/` configs).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Shared4Conv1FCBBoxHeadConfig {
    /// The head's settings, as `Shared2FCBBoxHead`'s.
    #[serde(flatten)]
    pub head: Shared2FCBBoxHeadConfig,
}

/// `ConvFCBBoxHead`: shared 3x3 `ConvModule`s and fully connected layers,
/// then separate classification and regression branches of their own convs
/// and fcs, as `mmdet.models.roi_heads.ConvFCBBoxHead` (of which
/// `Shared2FCBBoxHead` and `Shared4Conv1FCBBoxHead` are two settings).
/// Branch convs need `num_shared_fcs: 0`, and at least one layer is needed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ConvFCBBoxHeadConfig {
    /// Shared 3x3 convs.
    #[serde(default)]
    pub num_shared_convs: u32,
    /// Shared fully connected layers, after the shared convs.
    #[serde(default)]
    pub num_shared_fcs: u32,
    /// 3x3 convs of the classification branch.
    #[serde(default)]
    pub num_cls_convs: u32,
    /// Fully connected layers of the classification branch.
    #[serde(default)]
    pub num_cls_fcs: u32,
    /// 3x3 convs of the regression branch.
    #[serde(default)]
    pub num_reg_convs: u32,
    /// Fully connected layers of the regression branch.
    #[serde(default)]
    pub num_reg_fcs: u32,
    /// The head's other settings, as `Shared2FCBBoxHead`'s.
    #[serde(flatten)]
    pub head: Shared2FCBBoxHeadConfig,
}

fn default_dii_dynamic_conv() -> ConvCfg {
    ConvCfg(serde_json::json!({
        "type": "DynamicConv",
        "in_channels": 256,
        "feat_channels": 64,
        "out_channels": 256,
        "input_feat_shape": 7,
        "act_cfg": {"type": "ReLU", "inplace": true},
        "norm_cfg": {"type": "LN"}
    }))
}

fn default_ffn_act() -> ActivationCfg {
    ActivationCfg(serde_json::json!({"type": "ReLU", "inplace": true}))
}

/// `DIIHead`: the dynamic instance interactive head of Sparse R-CNN (Sun et al.,
/// 2021): self-attention over proposals, a `DynamicConv` with the RoI feature, an
/// FFN, then classification and box refinement, as `mmdet.models.roi_heads.DIIHead`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DIIHeadConfig {
    /// Number of object classes (without background).
    #[serde(default = "uint::<80>")]
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Fully connected layers of the FFN.
    #[serde(default = "uint::<2>")]
    #[schemars(range(min = 1))]
    pub num_ffn_fcs: u32,
    /// Attention heads of the proposal self-attention.
    #[serde(default = "uint::<8>")]
    #[schemars(range(min = 1))]
    pub num_heads: u32,
    /// Fully connected layers of the classification branch.
    #[serde(default = "uint::<1>")]
    pub num_cls_fcs: u32,
    /// Fully connected layers of the regression branch.
    #[serde(default = "uint::<3>")]
    pub num_reg_fcs: u32,
    /// Hidden width of the FFN.
    #[serde(default = "uint::<2048>")]
    #[schemars(range(min = 1))]
    pub feedforward_channels: u32,
    /// Channels of the proposal features.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Dropout probability in attention, dynamic conv and FFN.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub dropout: f64,
    /// Activation of the FFN.
    #[serde(default = "default_ffn_act")]
    pub ffn_act_cfg: ActivationCfg,
    /// The instance-interactive convolution, `{type: DynamicConv, …}`.
    #[serde(default = "default_dii_dynamic_conv")]
    pub dynamic_conv_cfg: ConvCfg,
    /// IoU loss on the decoded boxes.
    #[serde(default = "default_giou")]
    pub loss_iou: LossCfg,
    /// Classification loss (Sparse R-CNN uses sigmoid `FocalLoss`).
    #[serde(default = "default_ce")]
    pub loss_cls: LossCfg,
    /// L1 loss on the normalised decoded boxes.
    #[serde(default = "default_smooth_l1")]
    pub loss_bbox: LossCfg,
    /// Decodes the box deltas, e.g. `DeltaXYWHBBoxCoder` with `clip_border: false`.
    #[serde(default = "default_rcnn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Side of the pooled RoI feature (the extractor's `output_size`).
    #[serde(default = "default_roi_feat_size")]
    pub roi_feat_size: IntOrPair,
    /// Average-pool the RoI feature (unused by DIIHead).
    #[serde(default)]
    pub with_avg_pool: bool,
    /// Build the classification branch.
    #[serde(default = "super::common::yes")]
    pub with_cls: bool,
    /// Build the regression branch.
    #[serde(default = "super::common::yes")]
    pub with_reg: bool,
    /// Box type of the predictions (`hbox`).
    #[serde(default = "default_hbox")]
    pub predict_box_type: String,
    /// Layer of the box regressor (unused by DIIHead).
    #[serde(default = "default_linear_predictor")]
    pub reg_predictor_cfg: LinearPredictorConfig,
    /// Layer of the classifier (unused by DIIHead).
    #[serde(default = "default_linear_predictor")]
    pub cls_predictor_cfg: LinearPredictorConfig,
    /// Must be null (MMDetection asserts it, to keep its own initialisation).
    #[serde(default)]
    pub init_cfg: Null,
}
