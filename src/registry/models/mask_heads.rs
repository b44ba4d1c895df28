//! Mask head configs (`mmdet/models/roi_heads/mask_heads`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, IntOrPair, Null};
use super::layers::{MaskUpsampleConfig, UpsampleMethod};
use super::common::OneOrMany;
use crate::registry::refs::{ConvCfg, InitCfg, LossCfg, NormCfg};

fn default_deconv() -> MaskUpsampleConfig {
    MaskUpsampleConfig { r#type: Some(UpsampleMethod::Deconv), scale_factor: Some(2) }
}

fn default_mask_roi_feat_size() -> IntOrPair {
    IntOrPair::Int(14)
}

fn default_predictor() -> ConvCfg {
    ConvCfg(serde_json::json!({"type": "Conv"}))
}

fn default_mask_ce() -> LossCfg {
    LossCfg(serde_json::json!({"type": "CrossEntropyLoss", "use_mask": true, "loss_weight": 1.0}))
}

fn default_dice() -> LossCfg {
    LossCfg(serde_json::json!({"type": "DiceLoss", "loss_weight": 8.0}))
}

fn default_mask_dynamic_conv() -> ConvCfg {
    ConvCfg(serde_json::json!({
        "type": "DynamicConv",
        "in_channels": 256,
        "feat_channels": 64,
        "out_channels": 256,
        "input_feat_shape": 14,
        "with_proj": false,
        "act_cfg": {"type": "ReLU", "inplace": true},
        "norm_cfg": {"type": "LN"}
    }))
}

/// `FCNMaskHead`: a small fully convolutional mask head (Mask R-CNN, He et al.,
/// 2017): convs, an upsampling layer, and per-class mask logits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FCNMaskHeadConfig {
    /// Number of 3x3 convs before upsampling.
    #[serde(default = "uint::<4>")]
    pub num_convs: u32,
    /// Side of the pooled RoI feature (the extractor's `output_size`).
    #[serde(default = "default_mask_roi_feat_size")]
    pub roi_feat_size: IntOrPair,
    /// Channels of the pooled RoI feature.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Kernel size of the convs.
    #[serde(default = "uint::<3>")]
    #[schemars(range(min = 1))]
    pub conv_kernel_size: u32,
    /// Channels of the convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub conv_out_channels: u32,
    /// Number of object classes (without background).
    #[serde(default = "uint::<80>")]
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Predict one mask for all classes instead of one per class.
    #[serde(default)]
    pub class_agnostic: bool,
    /// Upsampling of the conv output, `{type: deconv, scale_factor: 2}` by default.
    #[serde(default = "default_deconv")]
    pub upsample_cfg: MaskUpsampleConfig,
    /// Convolution layer config.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Layer producing the mask logits.
    #[serde(default = "default_predictor")]
    pub predictor_cfg: ConvCfg,
    /// Mask loss.
    #[serde(default = "default_mask_ce")]
    pub loss_mask: LossCfg,
    /// Must be null (MMDetection asserts it, to keep its own initialisation).
    #[serde(default)]
    pub init_cfg: Null,
}

/// `DynamicMaskHead`: QueryInst's mask head (Fang et al., 2021): a `DynamicConv`
/// conditioned on the proposal feature, then an FCN mask head.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamicMaskHeadConfig {
    /// Number of 3x3 convs before upsampling.
    #[serde(default = "uint::<4>")]
    pub num_convs: u32,
    /// Side of the pooled RoI feature (the extractor's `output_size`).
    #[serde(default = "default_mask_roi_feat_size")]
    pub roi_feat_size: IntOrPair,
    /// Channels of the pooled RoI feature.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Kernel size of the convs.
    #[serde(default = "uint::<3>")]
    #[schemars(range(min = 1))]
    pub conv_kernel_size: u32,
    /// Channels of the convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub conv_out_channels: u32,
    /// Number of object classes (without background).
    #[serde(default = "uint::<80>")]
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Must be false (MMDetection asserts it).
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub class_agnostic: bool,
    /// Upsampling of the conv output, `{type: deconv, scale_factor: 2}` by default.
    #[serde(default = "default_deconv")]
    pub upsample_cfg: MaskUpsampleConfig,
    /// Convolution layer config.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config of the convs.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// The instance-interactive convolution, `{type: DynamicConv, with_proj: false, …}`.
    #[serde(default = "default_mask_dynamic_conv")]
    pub dynamic_conv_cfg: ConvCfg,
    /// Mask loss.
    #[serde(default = "default_dice")]
    pub loss_mask: LossCfg,
    /// Layer producing the mask logits.
    #[serde(default = "default_predictor")]
    pub predictor_cfg: ConvCfg,
    /// Must be null (MMDetection asserts it, to keep its own initialisation).
    #[serde(default)]
    pub init_cfg: Null,
}

fn default_mse_half() -> LossCfg {
    LossCfg(serde_json::json!({"type": "MSELoss", "loss_weight": 0.5}))
}

/// MMDetection's default `init_cfg` of `MaskIoUHead`.
pub fn default_mask_iou_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::Many(vec![
        InitCfg(serde_json::json!({"type": "Kaiming", "override": {"name": "convs"}})),
        InitCfg(serde_json::json!({"type": "Caffe2Xavier", "override": {"name": "fcs"}})),
        InitCfg(serde_json::json!({"type": "Normal", "std": 0.01, "override": {"name": "fc_mask_iou"}})),
    ]))
}

/// `MaskIoUHead`: the mask-IoU branch of Mask Scoring R-CNN (Huang et al.,
/// 2019), as `mmdet.models.roi_heads.mask_heads.MaskIoUHead`: the RoI
/// features concatenated with the max-pooled sigmoid of the predicted mask
/// at its class, `num_convs` 3x3 convs (the last of stride 2), `num_fcs`
/// fully connected layers and `fc_mask_iou`, one IoU per class, trained by
/// `loss_iou` against the IoU of the binarised prediction with the ground
/// truth; at test time it rescales each detection's score.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskIoUHeadConfig {
    /// 3x3 convs (+ ReLU); the last has stride 2.
    #[serde(default = "uint::<4>")]
    #[schemars(range(min = 1))]
    pub num_convs: u32,
    /// Fully connected layers (+ ReLU) before `fc_mask_iou`.
    #[serde(default = "uint::<2>")]
    #[schemars(range(min = 1))]
    pub num_fcs: u32,
    /// Side of the RoI features (the mask extractor's `output_size`).
    #[serde(default = "uint::<14>")]
    #[schemars(range(min = 2))]
    pub roi_feat_size: u32,
    /// Channels of the RoI features.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the convs.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub conv_out_channels: u32,
    /// Width of the fully connected layers.
    #[serde(default = "uint::<1024>")]
    #[schemars(range(min = 1))]
    pub fc_out_channels: u32,
    /// Number of object classes (without background).
    #[serde(default = "uint::<80>")]
    #[schemars(range(min = 1))]
    pub num_classes: u32,
    /// Loss of the predicted IoUs of the positives, e.g. `{type: MSELoss, loss_weight: 0.5}`.
    #[serde(default = "default_mse_half")]
    pub loss_iou: LossCfg,
    /// MMDetection's: Kaiming on `convs`, Caffe2Xavier on `fcs`, N(0, 0.01)
    /// on `fc_mask_iou` (biases 0); null for torch's defaults.
    #[serde(default = "default_mask_iou_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}
