//! RoI head and RoI extractor configs (`mmdet/models/roi_heads`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, Null, OneOrMany};
use super::train_test::{RcnnTestConfig, RcnnTrainConfig, SparseRcnnTestConfig};
use crate::registry::refs::{BBoxHeadCfg, InitCfg, MaskHeadCfg, NormCfg, PluginCfg, RoiExtractorCfg, RoiLayerCfg, SharedHeadCfg};

// --------------------------------------------------------------------------
// RoI extractors

/// `SingleRoIExtractor`: pools each RoI from the one FPN level that matches its
/// scale (`mmdet.models.roi_heads.roi_extractors.SingleRoIExtractor`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SingleRoIExtractorConfig {
    /// The RoI pooling op, e.g. `{type: RoIAlign, output_size: 7, sampling_ratio: 0}`.
    pub roi_layer: RoiLayerCfg,
    /// Channels of the input feature maps (and of the pooled features).
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// Stride of each input feature level, e.g. `[4, 8, 16, 32]`.
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub featmap_strides: Vec<u32>,
    /// RoIs of side about `finest_scale` go to the finest level; each doubling moves up a level.
    #[serde(default = "uint::<56>")]
    #[schemars(range(min = 1))]
    pub finest_scale: u32,
    /// Weight initialisation.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// `GenericRoIExtractor` (GRoIE, Rossi et al., 2020;
/// `mmdet.models.roi_heads.roi_extractors.GenericRoIExtractor`): pools every
/// RoI from every level, passes each level's pooled features through
/// `pre_cfg`'s module (one module for all levels), sums (or concatenates)
/// them, and passes the result through `post_cfg`'s module.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericRoIExtractorConfig {
    /// The RoI pooling op, e.g. `{type: RoIAlign, output_size: 7, sampling_ratio: 2}`.
    pub roi_layer: RoiLayerCfg,
    /// Channels of the pooled features (with `concat`, the levels' channels together).
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// Stride of each input feature level, e.g. `[4, 8, 16, 32]`.
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub featmap_strides: Vec<u32>,
    /// How the levels' pooled features combine: `sum` or `concat` (along channels).
    #[serde(default)]
    pub aggregation: RoiAggregation,
    /// Module applied to each level's pooled features (a plugin layer:
    /// `ConvModule` or `GeneralizedAttention`), under `pre_module`.
    #[serde(default)]
    pub pre_cfg: Option<PluginCfg>,
    /// Module applied to the aggregated features, under `post_module`.
    #[serde(default)]
    pub post_cfg: Option<PluginCfg>,
    /// Weight initialisation.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// How `GenericRoIExtractor` combines its levels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoiAggregation {
    /// Element-wise sum.
    #[default]
    Sum,
    /// Concatenation along channels.
    Concat,
}

// --------------------------------------------------------------------------
// RoI heads

/// `StandardRoIHead`: the single-stage RoI head of Faster and Mask R-CNN: a box
/// branch and an optional mask branch on pooled proposal features.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardRoIHeadConfig {
    /// Pools proposal features for the box head.
    #[serde(default)]
    pub bbox_roi_extractor: Option<RoiExtractorCfg>,
    /// Box classification and regression head, e.g. `Shared2FCBBoxHead`.
    #[serde(default)]
    pub bbox_head: Option<BBoxHeadCfg>,
    /// Pools proposal features for the mask head; the box extractor's features when null.
    #[serde(default)]
    pub mask_roi_extractor: Option<RoiExtractorCfg>,
    /// Mask head, e.g. `FCNMaskHead`; none for Faster R-CNN.
    #[serde(default)]
    pub mask_head: Option<MaskHeadCfg>,
    /// Head shared by the box and mask branches on the pooled RoI features
    /// (`ResLayer`: the backbone's last stage, as the C4 configs use it).
    #[serde(default)]
    pub shared_head: Option<SharedHeadCfg>,
    /// Training settings; the detector fills it from `model.train_cfg.rcnn`.
    #[serde(default)]
    pub train_cfg: Option<RcnnTrainConfig>,
    /// Test settings; the detector fills it from `model.test_cfg.rcnn`.
    #[serde(default)]
    pub test_cfg: Option<RcnnTestConfig>,
    /// Must be null: an initialiser over the whole head is not supported yet (its parts start as MMDetection's defaults).
    #[serde(default)]
    pub init_cfg: Null,
}

/// `MaskScoringRoIHead` (Mask Scoring R-CNN, Huang et al., 2019): a
/// `StandardRoIHead` with a mask head and a `mask_iou_head` that predicts
/// each mask's IoU; a detection's score is its class score times that IoU.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskScoringRoIHeadConfig {
    /// The mask-IoU head, `MaskIoUHead`.
    pub mask_iou_head: MaskHeadCfg,
    /// The `StandardRoIHead` settings (a `mask_head` is required).
    #[serde(flatten)]
    pub standard: StandardRoIHeadConfig,
}

/// `CascadeRoIHead` (Cai and Vasconcelos, 2018): `num_stages` box heads, each
/// trained on the boxes the previous one refined with a stricter IoU
/// threshold, their class scores averaged at test time; with mask heads,
/// Cascade Mask R-CNN (`mmdet.models.roi_heads.CascadeRoIHead`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CascadeRoIHeadConfig {
    /// Number of stages.
    #[schemars(range(min = 1))]
    pub num_stages: u32,
    /// Multiplier of each stage's losses, one per stage.
    #[schemars(length(min = 1))]
    pub stage_loss_weights: Vec<f64>,
    /// Pools proposal features for the box heads: one for every stage, or one per stage.
    pub bbox_roi_extractor: OneOrMany<RoiExtractorCfg>,
    /// The box head of every stage, or one per stage, e.g. `Shared2FCBBoxHead`.
    pub bbox_head: OneOrMany<BBoxHeadCfg>,
    /// Pools features for the mask heads; the box extractors when null.
    #[serde(default)]
    pub mask_roi_extractor: Option<OneOrMany<RoiExtractorCfg>>,
    /// The mask head of every stage, or one per stage, e.g. `FCNMaskHead`; none for Cascade R-CNN.
    #[serde(default)]
    pub mask_head: Option<OneOrMany<MaskHeadCfg>>,
    /// Must be null (MMDetection's cascade head supports no shared head).
    #[serde(default)]
    pub shared_head: Null,
    /// Training settings, one per stage; the detector fills it from `model.train_cfg.rcnn`.
    #[serde(default)]
    pub train_cfg: Option<Vec<RcnnTrainConfig>>,
    /// Test settings; the detector fills it from `model.test_cfg.rcnn`.
    #[serde(default)]
    pub test_cfg: Option<RcnnTestConfig>,
    /// Must be null: an initialiser over the whole head is not supported yet (its parts start as MMDetection's defaults).
    #[serde(default)]
    pub init_cfg: Null,
}

fn six_ones() -> Vec<f64> {
    vec![1.0; 6]
}

fn default_sparse_extractor() -> OneOrMany<RoiExtractorCfg> {
    OneOrMany::One(RoiExtractorCfg(serde_json::json!({
        "type": "SingleRoIExtractor",
        "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 2},
        "out_channels": 256,
        "featmap_strides": [4, 8, 16, 32]
    })))
}

// MMDetection 3.3.0's default passes `num_fcs` and `hidden_channels`, which
// DIIHead does not accept (a TypeError if the default were ever used); this
// default uses DIIHead's own names for the same values.
fn default_sparse_bbox_head() -> OneOrMany<BBoxHeadCfg> {
    OneOrMany::One(BBoxHeadCfg(serde_json::json!({
        "type": "DIIHead",
        "num_classes": 80,
        "num_ffn_fcs": 2,
        "num_heads": 8,
        "num_cls_fcs": 1,
        "num_reg_fcs": 3,
        "feedforward_channels": 2048,
        "in_channels": 256,
        "dropout": 0.0,
        "roi_feat_size": 7,
        "ffn_act_cfg": {"type": "ReLU", "inplace": true}
    })))
}

/// `SparseRoIHead`: the iterative multi-stage head of Sparse R-CNN and QueryInst;
/// each stage refines the proposal boxes and features of the previous one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SparseRoIHeadConfig {
    /// Number of refinement stages.
    #[serde(default = "uint::<6>")]
    #[schemars(range(min = 1))]
    pub num_stages: u32,
    /// Loss weight of each stage; exactly `num_stages` entries.
    #[serde(default = "six_ones")]
    #[schemars(length(min = 1), inner(range(min = 0.0)))]
    pub stage_loss_weights: Vec<f64>,
    /// Channels of the proposal features (the RPN head's `proposal_feature_channel`).
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub proposal_feature_channel: u32,
    /// Box RoI extractor: one shared by all stages, or one per stage.
    #[serde(default = "default_sparse_extractor")]
    pub bbox_roi_extractor: OneOrMany<RoiExtractorCfg>,
    /// Mask RoI extractor (QueryInst): one shared by all stages, or one per stage.
    #[serde(default)]
    pub mask_roi_extractor: Option<OneOrMany<RoiExtractorCfg>>,
    /// Box head (`DIIHead`): one config for all stages, or one per stage.
    #[serde(default = "default_sparse_bbox_head")]
    pub bbox_head: OneOrMany<BBoxHeadCfg>,
    /// Mask head (`DynamicMaskHead`, QueryInst): one config for all stages, or one per stage.
    #[serde(default)]
    pub mask_head: Option<OneOrMany<MaskHeadCfg>>,
    /// Training settings, one per stage; the detector fills it from `model.train_cfg.rcnn`.
    #[serde(default)]
    pub train_cfg: Option<Vec<RcnnTrainConfig>>,
    /// Test settings; the detector fills it from `model.test_cfg.rcnn`.
    #[serde(default)]
    pub test_cfg: Option<SparseRcnnTestConfig>,
    /// Must be null: an initialiser over the whole head is not supported yet (its parts start as MMDetection's defaults).
    #[serde(default)]
    pub init_cfg: Null,
}

fn stage_three() -> u32 {
    3
}

fn stride_two() -> u32 {
    2
}

fn dilation_one() -> u32 {
    1
}

/// `ResLayer`: one stage of a ResNet (`layer{stage + 1}`, e.g. `layer4` for
/// `stage: 3`) run on the pooled RoI features as the `shared_head` of a
/// `StandardRoIHead`, as `mmdet.models.roi_heads.ResLayer` (the C4 configs:
/// the backbone stops after `layer3`, RoIs are pooled from its output and
/// `layer4` runs per RoI). Its input has `64 * 2^(stage - 1) * 4` channels,
/// its output `64 * 2^stage * 4`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResLayerConfig {
    /// Depth of the ResNet the stage is taken from: 50, 101 or 152.
    #[schemars(extend("enum" = [50, 101, 152]))]
    pub depth: u32,
    /// Index of the stage (0-based: 3 is `layer4`).
    #[serde(default = "stage_three")]
    #[schemars(range(max = 3))]
    pub stage: u32,
    /// Stride of the stage's first block.
    #[serde(default = "stride_two")]
    #[schemars(range(min = 1))]
    pub stride: u32,
    /// Dilation of the 3x3 convs.
    #[serde(default = "dilation_one")]
    #[schemars(range(min = 1))]
    pub dilation: u32,
    /// Where the stride-2 conv sits in a bottleneck.
    #[serde(default = "super::backbones::default_style")]
    pub style: super::backbones::ResNetStyle,
    /// Normalization layer config.
    #[serde(default = "super::backbones::default_bn")]
    pub norm_cfg: NormCfg,
    /// Keep BatchNorm layers in eval mode (frozen statistics) while training.
    #[serde(default = "super::common::yes")]
    pub norm_eval: bool,
    /// Must be false: gradient checkpointing is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub with_cp: bool,
    /// Must be null: deformable convolutions are not supported yet.
    #[serde(default)]
    pub dcn: Null,
    /// Deprecated: use `init_cfg: {type: Pretrained, checkpoint: ...}`.
    #[serde(default)]
    pub pretrained: Option<String>,
    /// Weight initialisation: `Pretrained` loads the checkpoint's
    /// `layer{stage + 1}.*` (a ResNet checkpoint); null is Kaiming convs and
    /// norms 1.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}
