//! Mask head configs (`mmdet/models/roi_heads/mask_heads`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, IntOrPair, Null};
use super::layers::{MaskUpsampleConfig, UpsampleMethod};
use crate::registry::refs::{ConvCfg, LossCfg, NormCfg};

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
