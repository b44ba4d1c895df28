//! Dense (RPN) head configs (`mmdet/models/dense_heads`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, Null, OneOrMany};
use super::train_test::{DenseTestConfig, ProposalConfig, RpnTrainConfig};
use crate::registry::refs::{ActivationCfg, AnchorGeneratorCfg, BBoxCoderCfg, ConvCfg, InitCfg, LossCfg, NormCfg};

fn default_anchor_generator() -> AnchorGeneratorCfg {
    AnchorGeneratorCfg(serde_json::json!({
        "type": "AnchorGenerator",
        "scales": [8, 16, 32],
        "ratios": [0.5, 1.0, 2.0],
        "strides": [4, 8, 16, 32, 64]
    }))
}

fn default_rpn_coder() -> BBoxCoderCfg {
    BBoxCoderCfg(serde_json::json!({
        "type": "DeltaXYWHBBoxCoder",
        "clip_border": true,
        "target_means": [0.0, 0.0, 0.0, 0.0],
        "target_stds": [1.0, 1.0, 1.0, 1.0]
    }))
}

fn default_rpn_loss_cls() -> LossCfg {
    LossCfg(serde_json::json!({"type": "CrossEntropyLoss", "use_sigmoid": true, "loss_weight": 1.0}))
}

fn default_rpn_loss_bbox() -> LossCfg {
    LossCfg(serde_json::json!({"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0}))
}

fn default_rpn_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({"type": "Normal", "layer": "Conv2d", "std": 0.01}))))
}

/// `RPNHead`: region proposal network (Faster R-CNN, Ren et al., 2015), an anchor
/// head with one objectness class, as `mmdet.models.dense_heads.RPNHead`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RPNHeadConfig {
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Must be 1: RPN scores objectness only.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1, max = 1))]
    pub num_classes: u32,
    /// Channels of the shared 3x3 conv(s).
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Number of shared 3x3 convs before the classifier and regressor.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub num_convs: u32,
    /// Anchor generator, e.g. `AnchorGenerator`.
    #[serde(default = "default_anchor_generator")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Encodes regression targets, e.g. `DeltaXYWHBBoxCoder`.
    #[serde(default = "default_rpn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Apply the box loss to decoded boxes (IoU-style losses) instead of deltas.
    #[serde(default)]
    pub reg_decoded_bbox: bool,
    /// Objectness loss.
    #[serde(default = "default_rpn_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box regression loss.
    #[serde(default = "default_rpn_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Training settings; the detector fills it from `model.train_cfg.rpn`.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg.rpn`.
    #[serde(default)]
    pub test_cfg: Option<ProposalConfig>,
    /// Weight initialisation.
    #[serde(default = "default_rpn_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// `EmbeddingRPNHead`: learned proposal boxes and proposal features (Sparse R-CNN,
/// Sun et al., 2021), as `mmdet.models.dense_heads.EmbeddingRPNHead`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRPNHeadConfig {
    /// Number of learned proposals per image.
    #[serde(default = "uint::<100>")]
    #[schemars(range(min = 1))]
    pub num_proposals: u32,
    /// Channels of each proposal feature (the RoI head's `proposal_feature_channel`).
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub proposal_feature_channel: u32,
    /// Must be null (MMDetection asserts it, to keep its own initialisation).
    #[serde(default)]
    pub init_cfg: Null,
    /// Filled by the detector from `model.train_cfg.rpn`, which is null for this head.
    #[serde(default)]
    pub train_cfg: Null,
    /// Filled by the detector from `model.test_cfg.rpn`, which is null for this head.
    #[serde(default)]
    pub test_cfg: Null,
}

fn default_retina_anchors() -> AnchorGeneratorCfg {
    AnchorGeneratorCfg(serde_json::json!({
        "type": "AnchorGenerator",
        "octave_base_scale": 4,
        "scales_per_octave": 3,
        "ratios": [0.5, 1.0, 2.0],
        "strides": [8, 16, 32, 64, 128]
    }))
}

fn default_anchor_head_loss_cls() -> LossCfg {
    LossCfg(serde_json::json!({"type": "CrossEntropyLoss", "use_sigmoid": true, "loss_weight": 1.0}))
}

fn default_anchor_head_loss_bbox() -> LossCfg {
    LossCfg(serde_json::json!({"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0}))
}

fn default_retina_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "retina_cls", "std": 0.01, "bias_prob": 0.01}
    }))))
}

/// `RetinaHead`: the anchor head of RetinaNet (Lin et al., 2017): per level
/// `stacked_convs` 3x3 ConvModules for classification and as many for
/// regression, then per anchor `num_classes` sigmoid scores (`retina_cls`)
/// and box deltas (`retina_reg`), as `mmdet.models.dense_heads.RetinaHead`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetinaHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs; none when null.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Anchor generator: 3 scales per octave from 4, ratios 0.5-2, strides 8-128.
    #[serde(default = "default_retina_anchors")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Encodes regression targets, e.g. `DeltaXYWHBBoxCoder`.
    #[serde(default = "default_rpn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Apply the box loss to decoded boxes (IoU-style losses) instead of deltas.
    #[serde(default)]
    pub reg_decoded_bbox: bool,
    /// Classification loss, e.g. `FocalLoss` (sigmoid).
    #[serde(default = "default_anchor_head_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box regression loss.
    #[serde(default = "default_anchor_head_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Training settings; the detector fills it from `model.train_cfg`.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `retina_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_retina_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// The `auto` of a conv's `bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Auto {
    /// A bias exactly when the conv has no norm after it.
    Auto,
}

/// A conv's `bias`: `auto` or a bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ConvBias {
    Fixed(bool),
    Auto(Auto),
}

impl ConvBias {
    /// The bias a bool fixes; `None` for `auto` (a bias exactly without a norm).
    pub fn fixed(self) -> Option<bool> {
        match self {
            ConvBias::Fixed(b) => Some(b),
            ConvBias::Auto(_) => None,
        }
    }
}

pub(crate) fn auto_bias() -> ConvBias {
    ConvBias::Auto(Auto::Auto)
}

fn default_fcos_strides() -> Vec<u32> {
    vec![4, 8, 16, 32, 64]
}

fn default_regress_ranges() -> Vec<[f64; 2]> {
    vec![[-1.0, 64.0], [64.0, 128.0], [128.0, 256.0], [256.0, 512.0], [512.0, 1e8]]
}

fn default_fcos_loss_cls() -> LossCfg {
    LossCfg(serde_json::json!({"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0}))
}

fn default_fcos_loss_bbox() -> LossCfg {
    LossCfg(serde_json::json!({"type": "IoULoss", "loss_weight": 1.0}))
}

fn default_fcos_loss_centerness() -> LossCfg {
    LossCfg(serde_json::json!({"type": "CrossEntropyLoss", "use_sigmoid": true, "loss_weight": 1.0}))
}

fn default_fcos_coder() -> BBoxCoderCfg {
    BBoxCoderCfg(serde_json::json!({"type": "DistancePointBBoxCoder"}))
}

fn default_fcos_norm() -> Option<NormCfg> {
    Some(NormCfg(serde_json::json!({"type": "GN", "num_groups": 32, "requires_grad": true})))
}

fn default_fcos_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "conv_cls", "std": 0.01, "bias_prob": 0.01}
    }))))
}

/// `FCOSHead`: the anchor-free head of FCOS (Tian et al., 2019), as
/// `mmdet.models.dense_heads.FCOSHead`: per level `stacked_convs` 3x3
/// ConvModules (GroupNorm by default) for classification and as many for
/// regression, then per location `num_classes` sigmoid scores (`conv_cls`),
/// the distances to the box's four sides (`conv_reg`, through a learned
/// per-level `scales.{i}`) and a centerness logit (`conv_centerness`).
/// Each location is assigned to the smallest ground truth that contains it
/// (or its centre region with `center_sampling`) and whose largest distance
/// lies in the level's `regress_ranges`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FCOSHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Stride of each input level, e.g. `[8, 16, 32, 64, 128]`.
    #[serde(default = "default_fcos_strides")]
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub strides: Vec<u32>,
    /// Per level, the `[min, max]` of the largest distance to a box side
    /// that the level regresses (the last `1e8` for "no limit").
    #[serde(default = "default_regress_ranges")]
    pub regress_ranges: Vec<[f64; 2]>,
    /// Only locations within `center_sample_radius` strides of a box's
    /// centre are its positives.
    #[serde(default)]
    pub center_sampling: bool,
    /// Radius of the centre region, in strides.
    #[serde(default = "default_radius")]
    pub center_sample_radius: f64,
    /// Regress distances divided by the level's stride (ReLU instead of exp).
    #[serde(default)]
    pub norm_on_bbox: bool,
    /// Predict centerness from the regression branch instead of the classification one.
    #[serde(default)]
    pub centerness_on_reg: bool,
    /// The last conv of each branch is a modulated deformable conv (`DCNv2`).
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    /// Bias of the branch convs: `auto` (none with a norm) or a bool.
    #[serde(default = "auto_bias")]
    pub conv_bias: ConvBias,
    /// Classification loss, e.g. `FocalLoss` (sigmoid).
    #[serde(default = "default_fcos_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box loss on the decoded boxes, e.g. `IoULoss` or `GIoULoss`.
    #[serde(default = "default_fcos_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Centerness loss, a sigmoid `CrossEntropyLoss`.
    #[serde(default = "default_fcos_loss_centerness")]
    pub loss_centerness: LossCfg,
    /// Decodes the distances, `DistancePointBBoxCoder`.
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs; none when null.
    #[serde(default = "default_fcos_norm")]
    pub norm_cfg: Option<NormCfg>,
    /// Must be null: a normalised-conv classifier is not supported yet.
    #[serde(default)]
    pub cls_predictor_cfg: Null,
    /// Training settings; FCOS has none (`model.train_cfg` is null).
    #[serde(default)]
    pub train_cfg: Null,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `conv_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_fcos_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_radius() -> f64 {
    1.5
}

fn default_atss_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "atss_cls", "std": 0.01, "bias_prob": 0.01}
    }))))
}

/// `ATSSHead`: the anchor head of ATSS (Zhang et al., "Bridging the Gap
/// Between Anchor-based and Anchor-free Detection via Adaptive Training
/// Sample Selection", 2020), as `mmdet.models.dense_heads.ATSSHead`: per
/// level `stacked_convs` 3x3 ConvModules (with GroupNorm) for
/// classification and as many for regression, then per anchor sigmoid class
/// scores (`atss_cls`), box deltas scaled per level (`atss_reg`, `scales`)
/// and a centerness logit (`atss_centerness`). Anchors are assigned by
/// `ATSSAssigner`; the box loss (on decoded boxes) is weighted by the
/// centerness targets; test scores are multiplied by the centerness.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ATSSHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Kernel size of the three predictor convs (odd).
    #[serde(default = "uint::<3>")]
    #[schemars(range(min = 1))]
    pub pred_kernel_size: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs (GroupNorm of 32 groups); none when null.
    #[serde(default = "default_fcos_norm")]
    pub norm_cfg: Option<NormCfg>,
    /// Anchor generator (AnchorHead's default; ATSS configs use one square
    /// anchor of 8 strides per location).
    #[serde(default = "default_anchor_generator")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Encodes regression targets: `DeltaXYWHBBoxCoder`.
    #[serde(default = "default_rpn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Must be true: the box loss is on decoded boxes (an IoU loss).
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub reg_decoded_bbox: bool,
    /// Classification loss, e.g. `FocalLoss` (sigmoid).
    #[serde(default = "default_anchor_head_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box regression loss on decoded boxes, e.g. `GIoULoss`.
    #[serde(default = "default_anchor_head_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Centerness loss (sigmoid cross-entropy).
    #[serde(default = "default_fcos_loss_centerness")]
    pub loss_centerness: LossCfg,
    /// Training settings; the detector fills it from `model.train_cfg`.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `atss_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_atss_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_gfl_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "gfl_cls", "std": 0.01, "bias_prob": 0.01}
    }))))
}

fn default_loss_dfl() -> LossCfg {
    LossCfg(serde_json::json!({"type": "DistributionFocalLoss", "loss_weight": 0.25}))
}

/// `GFLHead`: the head of Generalized Focal Loss (Li et al., "Generalized
/// Focal Loss: Learning Qualified and Distributed Bounding Boxes for Dense
/// Object Detection", 2020), as `mmdet.models.dense_heads.GFLHead`: ATSS's
/// anchors and assignment, per location `num_classes` sigmoid scores trained
/// as IoU-quality estimates (`QualityFocalLoss`), and each side's distance
/// (in strides) as a distribution over `0..=reg_max` (`gfl_reg`, its
/// expectation the distance), trained by the box loss and
/// `DistributionFocalLoss`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GFLHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs (GroupNorm of 32 groups); none when null.
    #[serde(default = "default_fcos_norm")]
    pub norm_cfg: Option<NormCfg>,
    /// Anchor generator: one anchor per location (the GFL configs' one
    /// square anchor of 8 strides).
    #[serde(default = "default_anchor_generator")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Decodes side distances from the anchor centres: `DistancePointBBoxCoder`.
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// The largest distance, in strides, of the side distributions
    /// (`reg_max + 1` bins each).
    #[serde(default = "uint::<16>")]
    #[schemars(range(min = 1))]
    pub reg_max: u32,
    /// Unused by this head (its box loss is always on decoded boxes).
    #[serde(default)]
    pub reg_decoded_bbox: bool,
    /// Classification loss: `QualityFocalLoss`.
    #[serde(default = "default_anchor_head_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box loss on the decoded boxes (in strides), e.g. `GIoULoss`.
    #[serde(default = "default_anchor_head_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Distribution loss of the side distances: `DistributionFocalLoss`.
    #[serde(default = "default_loss_dfl")]
    pub loss_dfl: LossCfg,
    /// Training settings; the detector fills it from `model.train_cfg`.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `gfl_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_gfl_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_rtm_bn() -> NormCfg {
    NormCfg(serde_json::json!({"type": "BN", "momentum": 0.03, "eps": 0.001}))
}

fn default_rtm_silu() -> ActivationCfg {
    ActivationCfg(serde_json::json!({"type": "SiLU"}))
}

/// `RTMDetSepBNHead`: RTMDet's head (Lyu et al., 2022), as
/// `mmdet.models.dense_heads.RTMDetSepBNHead`: per level a classification
/// and a regression tower of `stacked_convs` ConvModules whose convs are
/// shared across levels (`share_conv`) but whose norms are not, then
/// `rtm_cls` (sigmoid scores) and `rtm_reg` (side distances in strides,
/// through `exp` with `exp_on_reg`). Trained with QualityFocalLoss on the
/// IoU of each positive and a box loss on decoded boxes, positives from
/// `DynamicSoftLabelAssigner`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RTMDetSepBNHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// One conv per tower position for all levels (each level keeps its own norm).
    #[serde(default = "super::common::yes")]
    pub share_conv: bool,
    /// Depthwise separable tower convs.
    #[serde(default)]
    pub use_depthwise: bool,
    /// Normalization layer of the tower convs.
    #[serde(default = "default_rtm_bn")]
    pub norm_cfg: NormCfg,
    /// Activation of the tower convs.
    #[serde(default = "default_rtm_silu")]
    pub act_cfg: ActivationCfg,
    /// Kernel size of `rtm_cls` and `rtm_reg` (odd).
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub pred_kernel_size: u32,
    /// Distances are `exp` of the regression output (times the stride).
    #[serde(default)]
    pub exp_on_reg: bool,
    /// Must be false: the objectness branch (`rtm_obj`) is not supported yet.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = false))]
    pub with_objectness: bool,
    /// Convs of each tower.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Channels of the tower convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Convolution layer of the tower convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Prior points: `MlvlPointGenerator` (RTMDet's: offset 0, strides 8, 16, 32).
    #[serde(default = "default_anchor_generator")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Decodes side distances from the points: `DistancePointBBoxCoder`.
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Must be true: the box loss is on decoded boxes.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub reg_decoded_bbox: bool,
    /// Classification loss: `QualityFocalLoss`.
    #[serde(default = "default_anchor_head_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box loss on decoded boxes, e.g. `GIoULoss`.
    #[serde(default = "default_anchor_head_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Unused (built by MMDetection's ATSSHead parent, never called).
    #[serde(default = "default_fcos_loss_centerness")]
    pub loss_centerness: LossCfg,
    /// Training settings; the detector fills it from `model.train_cfg`.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Unused: the head always starts from N(0, 0.01) convs, unit norms and
    /// `rtm_cls` biases from the prior probability 0.01 (its own `init_weights`).
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_fifty() -> u32 {
    50
}

fn default_free_anchor_thr() -> f64 {
    0.6
}

fn default_free_anchor_gamma() -> f64 {
    2.0
}

fn default_free_anchor_alpha() -> f64 {
    0.5
}

/// `FreeAnchorRetinaHead` (Zhang et al., "FreeAnchor: Learning to Match
/// Anchors for Visual Object Detection", 2019), as
/// `mmdet.models.dense_heads.FreeAnchorRetinaHead`: RetinaHead's branches
/// and test, trained without an assigner by a positive bag loss (per ground
/// truth, a mean-max of classification times localisation likelihood over
/// its `pre_anchor_topk` best-overlapping anchors) and a focal negative
/// bag loss.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeAnchorRetinaHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Must be null: plain convs.
    #[serde(default)]
    pub conv_cfg: Null,
    /// Must be null: no norm in the branches.
    #[serde(default)]
    pub norm_cfg: Null,
    /// Anchors of each ground truth's bag, by IoU.
    #[serde(default = "default_fifty")]
    #[schemars(range(min = 1))]
    pub pre_anchor_topk: u32,
    /// IoU at which an anchor's box starts to count as the object's.
    #[serde(default = "default_free_anchor_thr")]
    pub bbox_thr: f64,
    /// Focal exponent of the negative bag loss.
    #[serde(default = "default_free_anchor_gamma")]
    pub gamma: f64,
    /// Weight of the positive bag loss (the negative one takes `1 - alpha`).
    #[serde(default = "default_free_anchor_alpha")]
    pub alpha: f64,
    /// Anchor generator: 3 scales per octave from 4, ratios 0.5-2, strides 8-128.
    #[serde(default = "default_retina_anchors")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Encodes the localisation targets, `DeltaXYWHBBoxCoder`.
    #[serde(default = "default_rpn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Must be false: the localisation likelihood is on deltas.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub reg_decoded_bbox: bool,
    /// Sigmoid classification (`use_sigmoid: true`); its loss is not used,
    /// the bag losses replace it.
    #[serde(default = "default_anchor_head_loss_cls")]
    pub loss_cls: LossCfg,
    /// The localisation likelihood `exp(-loss_bbox)`, e.g. `SmoothL1Loss`.
    #[serde(default = "default_anchor_head_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Unused by the bag losses (RetinaNet's base config sets one).
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `retina_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_retina_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_vfnet_loss_cls() -> LossCfg {
    LossCfg(serde_json::json!({"type": "VarifocalLoss", "use_sigmoid": true, "alpha": 0.75, "gamma": 2.0, "iou_weighted": true, "loss_weight": 1.0}))
}

fn default_vfnet_loss_bbox() -> LossCfg {
    LossCfg(serde_json::json!({"type": "GIoULoss", "loss_weight": 1.5}))
}

fn default_vfnet_loss_bbox_refine() -> LossCfg {
    LossCfg(serde_json::json!({"type": "GIoULoss", "loss_weight": 2.0}))
}

fn default_vfnet_anchor_generator() -> AnchorGeneratorCfg {
    AnchorGeneratorCfg(serde_json::json!({
        "type": "AnchorGenerator", "ratios": [1.0], "octave_base_scale": 8, "scales_per_octave": 1,
        "center_offset": 0.0, "strides": [8, 16, 32, 64, 128]
    }))
}

fn default_vfnet_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "vfnet_cls", "std": 0.01, "bias_prob": 0.01}
    }))))
}

fn default_gradient_mul() -> f64 {
    0.1
}

/// How `VFNetHead` scales its initial side distances after `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BBoxNormType {
    /// By the level's regress-range bound (the last level's is twice the one before).
    RegDenom,
    /// By the level's stride.
    Stride,
}

/// `VFNetHead`: the head of VarifocalNet (Zhang et al., "VarifocalNet: An
/// IoU-aware Dense Object Detector", 2021), as
/// `mmdet.models.dense_heads.VFNetHead`: FCOS's towers, an initial box
/// (`vfnet_reg_conv`, `vfnet_reg`, `scales`), then a star-shaped deformable
/// conv whose nine taps sit on that box's sides and centre, feeding a
/// refined box (`vfnet_reg_refine_dconv`, `vfnet_reg_refine`,
/// `scales_refine`) and the IoU-aware class scores (`vfnet_cls_dconv`,
/// `vfnet_cls`). Positives come from ATSS (`use_atss`, on one anchor per
/// location) or FCOS's assignment; the scores learn the refined box's IoU
/// through `VarifocalLoss`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VFNetHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Stride of each input level (AnchorFreeHead's default is `[4, 8, 16, 32, 64]`).
    #[serde(default = "default_fcos_strides")]
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub strides: Vec<u32>,
    /// Per level, the `[min, max]` of the largest side distance it regresses
    /// (FCOS's assignment); the maxima also scale the initial boxes.
    #[serde(default = "default_regress_ranges")]
    pub regress_ranges: Vec<[f64; 2]>,
    /// FCOS's assignment (`use_atss: false`) only: positives within
    /// `center_sample_radius` strides of a box's centre.
    #[serde(default)]
    pub center_sampling: bool,
    /// Radius of the centre region, in strides.
    #[serde(default = "default_radius")]
    pub center_sample_radius: f64,
    /// Average the number of positives over the processes (with at least 1).
    #[serde(default = "super::common::yes")]
    pub sync_num_pos: bool,
    /// Share of the refinement's gradient that reaches the initial box through the offsets.
    #[serde(default = "default_gradient_mul")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub gradient_mul: f64,
    /// `reg_denom` or `stride`: what the initial distances are multiplied by.
    #[serde(default = "default_bbox_norm_type")]
    pub bbox_norm_type: BBoxNormType,
    /// Classification loss when `use_vfl` is false (sigmoid `FocalLoss`).
    #[serde(default = "default_fcos_loss_cls")]
    pub loss_cls_fl: LossCfg,
    /// Train the scores with `loss_cls` (`VarifocalLoss` on the refined
    /// boxes' IoUs) instead of `loss_cls_fl`.
    #[serde(default = "super::common::yes")]
    pub use_vfl: bool,
    /// Classification loss with `use_vfl`: `VarifocalLoss`.
    #[serde(default = "default_vfnet_loss_cls")]
    pub loss_cls: LossCfg,
    /// Loss of the initial boxes, e.g. `GIoULoss`, weighted by their IoU.
    #[serde(default = "default_vfnet_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Loss of the refined boxes, e.g. `GIoULoss`, weighted by their IoU.
    #[serde(default = "default_vfnet_loss_bbox_refine")]
    pub loss_bbox_refine: LossCfg,
    /// Decodes the distances: `DistancePointBBoxCoder`.
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs and `vfnet_reg_conv`
    /// (GroupNorm of 32 groups); none when null.
    #[serde(default = "default_fcos_norm")]
    pub norm_cfg: Option<NormCfg>,
    /// Bias of the branch convs: `auto` (none with a norm) or a bool.
    #[serde(default = "auto_bias")]
    pub conv_bias: ConvBias,
    /// The last conv of each branch is a modulated deformable conv (`DCNv2`).
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    /// Assign positives with ATSS on `anchor_generator`'s anchors; FCOS's
    /// assignment (`regress_ranges`, `center_sampling`) when false.
    #[serde(default = "super::common::yes")]
    pub use_atss: bool,
    /// Must be true: the box losses are on decoded boxes.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub reg_decoded_bbox: bool,
    /// The anchors ATSS assigns (one per location) and, by its
    /// `center_offset`, where the points sit with `use_atss`.
    #[serde(default = "default_vfnet_anchor_generator")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Training settings; the detector fills it from `model.train_cfg`.
    #[serde(default)]
    pub train_cfg: Option<RpnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every plain conv, `vfnet_cls`'s
    /// bias from the prior probability `bias_prob`; the deformable convs
    /// keep their own uniform init.
    #[serde(default = "default_vfnet_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_bbox_norm_type() -> BBoxNormType {
    BBoxNormType::RegDenom
}

/// Where `TOODHead` regresses boxes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToodAnchorType {
    /// Side distances (in strides, through `exp`) from the anchor centres.
    AnchorFree,
    /// Deltas decoded by `bbox_coder` on the anchors.
    AnchorBased,
}

fn default_tood_anchor_type() -> ToodAnchorType {
    ToodAnchorType::AnchorFree
}

fn default_tood_initial_loss_cls() -> LossCfg {
    LossCfg(serde_json::json!({"type": "FocalLoss", "use_sigmoid": true, "activated": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0}))
}

/// `TOODHead`: the task-aligned head of TOOD (Feng et al., "TOOD:
/// Task-aligned One-stage Object Detection", 2021), as
/// `mmdet.models.dense_heads.TOODHead` (on ATSSHead): per level
/// `stacked_convs` shared ConvModules (`inter_convs`, the first `num_dcn`
/// DCNv2 with 4 offset groups), whose concatenated outputs two task
/// decompositions (`cls_decomp`, `reg_decomp`: a layer attention weighing
/// a 1x1 reduction) turn into classification and regression features;
/// scores are the geometric mean of `tood_cls`'s and `cls_prob_module`'s
/// sigmoids, and boxes are resampled at offsets `reg_offset_module`
/// predicts. Trained with ATSS and `initial_loss_cls` for the first
/// `train_cfg.initial_epoch` epochs, then with `TaskAlignedAssigner` and
/// `loss_cls` on the alignment metric.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TOODHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// The first `num_dcn` of `inter_convs` are modulated deformable convs.
    #[serde(default)]
    pub num_dcn: u32,
    /// `anchor_free` (distances from the anchor centres) or `anchor_based` (deltas on the anchors).
    #[serde(default = "default_tood_anchor_type")]
    pub anchor_type: ToodAnchorType,
    /// 3x3 convs shared by both tasks (`inter_convs`).
    #[serde(default = "uint::<4>")]
    #[schemars(range(min = 1))]
    pub stacked_convs: u32,
    /// Channels of the convs (divisible by 4 and by the layer attention's `8 * stacked_convs` reduction).
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Unused by TOOD's layers (ATSSHead's predictor kernel).
    #[serde(default = "uint::<3>")]
    #[schemars(range(min = 1))]
    pub pred_kernel_size: u32,
    /// Convolution layer of the plain convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the convs and task decompositions (GroupNorm of 32 groups); none when null.
    #[serde(default = "default_fcos_norm")]
    pub norm_cfg: Option<NormCfg>,
    /// Anchor generator: one anchor per location.
    #[serde(default = "default_anchor_generator")]
    pub anchor_generator: AnchorGeneratorCfg,
    /// Decodes `anchor_based` deltas: `DeltaXYWHBBoxCoder`.
    #[serde(default = "default_rpn_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Must be true: the box loss is on decoded boxes.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub reg_decoded_bbox: bool,
    /// Classification loss of the first epochs: `FocalLoss` on probabilities (`activated: true`).
    #[serde(default = "default_tood_initial_loss_cls")]
    pub initial_loss_cls: LossCfg,
    /// Classification loss after them: `QualityFocalLoss` on probabilities against the alignment metric.
    #[serde(default = "default_anchor_head_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box loss on the decoded boxes (in strides), e.g. `GIoULoss`.
    #[serde(default = "default_anchor_head_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Unused by TOOD (ATSSHead builds it).
    #[serde(default = "default_fcos_loss_centerness")]
    pub loss_centerness: LossCfg,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Unused: TOODHead's own `init_weights` sets every layer (normal
    /// weights, std 0.01 or 0.001, the classifiers' bias from a 0.01 prior).
    #[serde(default = "default_atss_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_fovea_base_edges() -> Vec<f64> {
    vec![16.0, 32.0, 64.0, 128.0, 256.0]
}

fn default_fovea_scale_ranges() -> Vec<[f64; 2]> {
    vec![[8.0, 32.0], [16.0, 64.0], [32.0, 128.0], [64.0, 256.0], [128.0, 512.0]]
}

fn default_fovea_sigma() -> f64 {
    0.4
}

fn default_fovea_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "conv_cls", "std": 0.01, "bias_prob": 0.01}
    }))))
}

/// `FoveaHead`: the head of FoveaBox (Kong et al., "FoveaBox: Beyound
/// Anchor-Based Object Detection", 2020), as
/// `mmdet.models.dense_heads.FoveaHead` (an AnchorFreeHead): per level a
/// regression tower and `conv_reg` (the log of each side's distance in
/// units of the level's `base_edge_list` size), and a classification tower
/// and `conv_cls`. Each object trains the levels whose `scale_ranges` hold
/// the square root of its area, on the locations of its box's central
/// `sigma` part (its fovea), smaller objects over larger ones. With
/// `with_deform` the classification branch is a deformable conv whose
/// offsets come from the predicted box (`feature_adaption`), then two
/// ConvModules four times as wide.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FoveaHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// 3x3 convs of each branch (the regression one only, with `with_deform`).
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Stride of each input level (AnchorFreeHead's default is `[4, 8, 16, 32, 64]`).
    #[serde(default = "default_fcos_strides")]
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub strides: Vec<u32>,
    /// Per level, the size in pixels the side distances are measured in.
    #[serde(default = "default_fovea_base_edges")]
    #[schemars(inner(range(min = 1.0)))]
    pub base_edge_list: Vec<f64>,
    /// Per level, the `[min, max]` square root of an object's area that it trains.
    #[serde(default = "default_fovea_scale_ranges")]
    pub scale_ranges: Vec<[f64; 2]>,
    /// The central part of a box whose locations are its positives (0 to 1).
    #[serde(default = "default_fovea_sigma")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sigma: f64,
    /// Classify from features aligned to the predicted box by a deformable conv.
    #[serde(default)]
    pub with_deform: bool,
    /// Offset groups of that deformable conv.
    #[serde(default = "uint::<4>")]
    #[schemars(range(min = 1))]
    pub deform_groups: u32,
    /// The last conv of each branch is a modulated deformable conv (`DCNv2`).
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    /// Bias of the branch convs: `auto` (none with a norm) or a bool.
    #[serde(default = "auto_bias")]
    pub conv_bias: ConvBias,
    /// Classification loss, e.g. `FocalLoss` (sigmoid).
    #[serde(default = "default_fcos_loss_cls")]
    pub loss_cls: LossCfg,
    /// Loss of the log side distances, e.g. `SmoothL1Loss`.
    #[serde(default = "default_fcos_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Unused by this head (AnchorFreeHead's `DistancePointBBoxCoder`).
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs; none when null.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `conv_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_fovea_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// How `RepPointsHead` turns a point set into a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PointsTransform {
    /// The points' mean, plus and minus their standard deviation times a learned factor.
    Moment,
    /// The points' extent.
    Minmax,
    /// The extent of the first four points.
    PartialMinmax,
}

fn default_points_transform() -> PointsTransform {
    PointsTransform::Moment
}

fn default_reppoints_strides() -> Vec<u32> {
    vec![8, 16, 32, 64, 128]
}

fn default_reppoints_loss_init() -> LossCfg {
    LossCfg(serde_json::json!({"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 0.5}))
}

fn default_reppoints_loss_refine() -> LossCfg {
    LossCfg(serde_json::json!({"type": "SmoothL1Loss", "beta": 1.0 / 9.0, "loss_weight": 1.0}))
}

fn default_reppoints_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Normal", "layer": "Conv2d", "std": 0.01,
        "override": {"type": "Normal", "name": "reppoints_cls_out", "std": 0.01, "bias_prob": 0.01}
    }))))
}

fn default_moment_mul() -> f64 {
    0.01
}

/// `RepPointsHead`: the head of RepPoints (Yang et al., "RepPoints: Point
/// Set Representation for Object Detection", 2019), as
/// `mmdet.models.dense_heads.RepPointsHead` (an AnchorFreeHead): per level
/// classification and point towers; an initial set of `num_points` points
/// per location (`reppoints_pts_init_*`), which place the taps of two
/// deformable convs: one refines the points (`reppoints_pts_refine_*`), one
/// classifies (`reppoints_cls_*`). Point sets become boxes by
/// `transform_method`; with `use_grid_points` the head regresses boxes and
/// samples a grid in them instead.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepPointsHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the tower convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Channels of the point and classification convs after the towers.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub point_feat_channels: u32,
    /// 3x3 convs of each tower.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Points per set: an odd square (the deformable convs' kernel taps).
    #[serde(default = "uint::<9>")]
    #[schemars(range(min = 1))]
    pub num_points: u32,
    /// Share of the deformable convs' gradient that reaches the initial points.
    #[serde(default = "default_gradient_mul")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub gradient_mul: f64,
    /// Stride of each input level.
    #[serde(default = "default_reppoints_strides")]
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub point_strides: Vec<u32>,
    /// Size, in strides, that normalises the box losses (and of the initial boxes).
    #[serde(default = "uint::<4>")]
    #[schemars(range(min = 1))]
    pub point_base_scale: u32,
    /// Classification loss, e.g. `FocalLoss` (sigmoid).
    #[serde(default = "default_fcos_loss_cls")]
    pub loss_cls: LossCfg,
    /// Loss of the initial points' boxes, e.g. `SmoothL1Loss`.
    #[serde(default = "default_reppoints_loss_init")]
    pub loss_bbox_init: LossCfg,
    /// Loss of the refined points' boxes, e.g. `SmoothL1Loss`.
    #[serde(default = "default_reppoints_loss_refine")]
    pub loss_bbox_refine: LossCfg,
    /// Regress boxes and sample a grid of points in them.
    #[serde(default)]
    pub use_grid_points: bool,
    /// Start the points at the location (else on a square of `point_base_scale` strides).
    #[serde(default = "super::common::yes")]
    pub center_init: bool,
    /// `moment`, `minmax` or `partial_minmax`.
    #[serde(default = "default_points_transform")]
    pub transform_method: PointsTransform,
    /// Share of the moment factor's gradient that trains it.
    #[serde(default = "default_moment_mul")]
    pub moment_mul: f64,
    /// Strides of AnchorFreeHead (unused: `point_strides` rule).
    #[serde(default = "default_fcos_strides")]
    pub strides: Vec<u32>,
    /// Must be false: RepPoints' towers have no deformable last conv.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub dcn_on_last_conv: bool,
    /// Unused (the towers' bias follows the norm, as MMDetection's head builds them).
    #[serde(default = "auto_bias")]
    pub conv_bias: ConvBias,
    /// Unused by this head (AnchorFreeHead's).
    #[serde(default = "default_fcos_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Unused by this head (AnchorFreeHead's `DistancePointBBoxCoder`).
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// Convolution layer of the tower convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the tower convs; none when null.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `reppoints_cls_out`'s
    /// bias from the prior probability `bias_prob`.
    #[serde(default = "default_reppoints_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_centernet_ranges() -> Vec<[f64; 2]> {
    vec![[0.0, 80.0], [64.0, 160.0], [128.0, 320.0], [256.0, 640.0], [512.0, 1e9]]
}

fn default_centernet_loss_cls() -> LossCfg {
    LossCfg(serde_json::json!({"type": "GaussianFocalLoss", "pos_weight": 0.25, "neg_weight": 0.75, "loss_weight": 1.0}))
}

fn default_centernet_loss_bbox() -> LossCfg {
    LossCfg(serde_json::json!({"type": "GIoULoss", "loss_weight": 2.0}))
}

fn default_hm_min_overlap() -> f64 {
    0.8
}

fn default_more_pos_thresh() -> f64 {
    0.2
}

/// `CenterNetUpdateHead`: the head of CenterNet2's one-stage CenterNet (Zhou
/// et al., "Probabilistic two-stage detection", 2021), as
/// `mmdet.models.dense_heads.CenterNetUpdateHead` (an AnchorFreeHead): FCOS's
/// towers, `conv_cls` and `conv_reg` (side distances in strides, through a
/// learned per-level scale, clamped at 0). Scores learn a Gaussian heatmap
/// around each object's centre (`GaussianFocalLoss`), with extra positives
/// among the 3x3 cells around the centre whose predicted box fits best;
/// boxes train on the cells near the centre within the level's range.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CenterNetUpdateHeadConfig {
    /// Number of object classes (without background).
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Channels of the input feature maps (the neck's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the branch convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// 3x3 convs of each branch.
    #[serde(default = "uint::<4>")]
    pub stacked_convs: u32,
    /// Stride of each input level (AnchorFreeHead's default is `[4, 8, 16, 32, 64]`).
    #[serde(default = "default_fcos_strides")]
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub strides: Vec<u32>,
    /// Per level, the `[min, max]` half diagonal of the objects whose boxes it regresses.
    #[serde(default = "default_centernet_ranges")]
    pub regress_ranges: Vec<[f64; 2]>,
    /// The heatmap's least radius, in pixels.
    #[serde(default = "uint::<4>")]
    pub hm_min_radius: u32,
    /// Sets the heatmap's spread: `((1 - o) / (1 + o)) ^ 2 * 2 * area`.
    #[serde(default = "default_hm_min_overlap")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hm_min_overlap: f64,
    /// A 3x3 cell becomes a positive when its box loss is below this (and the `more_pos_topk`-th smallest).
    #[serde(default = "default_more_pos_thresh")]
    pub more_pos_thresh: f64,
    /// Rank of the box loss, among an object's 3x3 cells of every level, below which cells are positive.
    #[serde(default = "uint::<9>")]
    #[schemars(range(min = 1))]
    pub more_pos_topk: u32,
    /// Weight the box loss by the heatmap instead of 1.
    #[serde(default)]
    pub soft_weight_on_reg: bool,
    /// Classification loss: `GaussianFocalLoss`.
    #[serde(default = "default_centernet_loss_cls")]
    pub loss_cls: LossCfg,
    /// Box loss on the decoded boxes, e.g. `GIoULoss`.
    #[serde(default = "default_centernet_loss_bbox")]
    pub loss_bbox: LossCfg,
    /// Decodes the distances, `DistancePointBBoxCoder`.
    #[serde(default = "default_fcos_coder")]
    pub bbox_coder: BBoxCoderCfg,
    /// The last conv of each branch is a modulated deformable conv (`DCNv2`).
    #[serde(default)]
    pub dcn_on_last_conv: bool,
    /// Bias of the branch convs: `auto` (none with a norm) or a bool.
    #[serde(default = "auto_bias")]
    pub conv_bias: ConvBias,
    /// Convolution layer of the branch convs; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer of the branch convs (GroupNorm of 32 groups); none when null.
    #[serde(default = "default_fcos_norm")]
    pub norm_cfg: Option<NormCfg>,
    /// Training settings: none (`model.train_cfg` is null).
    #[serde(default)]
    pub train_cfg: Null,
    /// Test settings; the detector fills it from `model.test_cfg`.
    #[serde(default)]
    pub test_cfg: Option<DenseTestConfig>,
    /// Weight initialisation: N(0, 0.01) on every conv, `conv_cls`'s bias
    /// from the prior probability `bias_prob`.
    #[serde(default = "default_fcos_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}
