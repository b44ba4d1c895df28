//! Neck configs (`mmdet/models/necks`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{FloatOrPair, OneOrMany};
use crate::registry::refs::{ActivationCfg, ConvCfg, InitCfg, NormCfg};

/// Where FPN's extra (stride-2) levels above the backbone's take their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtraConvsSource {
    /// The last backbone feature map (RetinaNet, Sparse R-CNN).
    OnInput,
    /// The last lateral (1x1 conv) output.
    OnLateral,
    /// The last FPN output.
    OnOutput,
}

/// FPN's `add_extra_convs`: `false` (max-pool extra levels), `true`
/// (convs on the input, the old meaning) or the source of the extra convs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum AddExtraConvs {
    /// `false`: extra levels by max pooling; `true`: same as `on_input`.
    Flag(bool),
    /// `on_input`, `on_lateral` or `on_output`.
    Source(ExtraConvsSource),
}

/// Interpolation mode of `F.interpolate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InterpolateMode {
    /// Nearest neighbour.
    Nearest,
    /// Nearest neighbour, exact (matches PIL / scikit-image).
    NearestExact,
    /// Bilinear.
    Bilinear,
    /// Bicubic.
    Bicubic,
    /// Area averaging.
    Area,
}

/// FPN's `upsample_cfg`: keyword arguments of `F.interpolate` for the top-down path.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterpolateConfig {
    /// Interpolation mode.
    #[serde(default = "default_nearest")]
    pub mode: InterpolateMode,
    /// Fixed scale factor; when null the upper level is resized to the lower level's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_factor: Option<FloatOrPair>,
    /// `align_corners` of `F.interpolate` (bilinear/bicubic only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align_corners: Option<bool>,
}

fn default_nearest() -> InterpolateMode {
    InterpolateMode::Nearest
}

fn default_upsample() -> InterpolateConfig {
    InterpolateConfig { mode: InterpolateMode::Nearest, scale_factor: None, align_corners: None }
}

fn default_add_extra_convs() -> AddExtraConvs {
    AddExtraConvs::Flag(false)
}

fn default_fpn_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Xavier", "layer": "Conv2d", "distribution": "uniform"
    }))))
}

/// `FPN`: feature pyramid network (Lin et al., 2017), as `mmdet.models.necks.FPN`;
/// also `PAFPN` (Liu et al., 2018, `mmdet.models.necks.PAFPN`), which adds a
/// bottom-up path (`downsample_convs`, `pafpn_convs`) and takes no `upsample_cfg`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FPNConfig {
    /// Channels of each backbone output used, e.g. `[256, 512, 1024, 2048]` for ResNet-50.
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub in_channels: Vec<u32>,
    /// Channels of every FPN output.
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// Number of output levels (inputs used plus extra levels).
    #[schemars(range(min = 1))]
    pub num_outs: u32,
    /// First backbone level used.
    #[serde(default)]
    pub start_level: u32,
    /// Last backbone level used (exclusive); -1 means the last one.
    #[serde(default = "super::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub end_level: i64,
    /// Extra levels: `false` (max pooling), `true`, `on_input`, `on_lateral` or `on_output`.
    #[serde(default = "default_add_extra_convs")]
    pub add_extra_convs: AddExtraConvs,
    /// Apply ReLU before each extra conv.
    #[serde(default)]
    pub relu_before_extra_convs: bool,
    /// Skip the norm layer on the lateral convs.
    #[serde(default)]
    pub no_norm_on_lateral: bool,
    /// Convolution layer config; null means `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config; null means none.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Activation after each conv; null means none.
    #[serde(default)]
    pub act_cfg: Option<ActivationCfg>,
    /// How the top-down path upsamples.
    #[serde(default = "default_upsample")]
    pub upsample_cfg: InterpolateConfig,
    /// Weight initialisation.
    #[serde(default = "default_fpn_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// How HRFPN pools its extra levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PoolingType {
    /// Average pooling.
    #[serde(rename = "AVG")]
    Avg,
    /// Max pooling.
    #[serde(rename = "MAX")]
    Max,
}

fn default_avg() -> PoolingType {
    PoolingType::Avg
}

fn default_hrfpn_init() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({"type": "Caffe2Xavier", "layer": "Conv2d"}))))
}

/// `HRFPN`: the HRNet feature pyramid (`mmdet.models.necks.HRFPN`): every
/// branch upsampled bilinearly to the first's size and concatenated, a 1x1
/// reduction conv, then the pyramid by pooling (kernel and stride `2^i`) and
/// a 3x3 conv per level.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HRFPNConfig {
    /// Channels of each backbone branch, e.g. `[32, 64, 128, 256]` for HRNetV2-W32.
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub in_channels: Vec<u32>,
    /// Channels of every output level.
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// Number of output levels.
    #[serde(default = "super::common::uint::<5>")]
    #[schemars(range(min = 1))]
    pub num_outs: u32,
    /// `AVG` or `MAX`.
    #[serde(default = "default_avg")]
    pub pooling_type: PoolingType,
    /// Convolution layer config; null means `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Has no effect: MMDetection's HRFPN stores it but builds its convs without a norm.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Must be false: gradient checkpointing is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub with_cp: bool,
    /// Stride of the 3x3 output convs.
    #[serde(default = "super::common::uint::<1>")]
    #[schemars(range(min = 1))]
    pub stride: u32,
    /// Weight initialisation: MMDetection's default, `Caffe2Xavier` on
    /// `Conv2d`, or null.
    #[serde(default = "default_hrfpn_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// How `BFP` refines the balanced feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BfpRefine {
    /// A 3x3 ConvModule.
    Conv,
    /// MMCV's `NonLocal2d` (embedded Gaussian, no channel reduction, unscaled).
    NonLocal,
}

/// `BFP`: the balanced feature pyramid of Libra R-CNN (Pang et al., 2019,
/// `mmdet.models.necks.BFP`): every level resized to `refine_level`'s size
/// (max pooling from finer levels, nearest upsampling from coarser),
/// averaged, refined, and resized back onto each level as a residual.
/// Libra's configs run it after an FPN (`neck: [FPN, BFP]`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BFPConfig {
    /// Channels of every level (the FPN's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Number of levels (the FPN's `num_outs`).
    #[schemars(range(min = 1))]
    pub num_levels: u32,
    /// The level whose size the levels are balanced at.
    #[serde(default = "super::common::uint::<2>")]
    pub refine_level: u32,
    /// `conv`, `non_local`, or null for no refinement.
    #[serde(default)]
    pub refine_type: Option<BfpRefine>,
    /// Convolution layer of the refinement; `Conv2d` when null.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization of the refinement (its output conv for `non_local`); none when null.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// MMDetection's default Xavier on `Conv2d`, which the refinement's own
    /// init then replaces (MMEngine runs a child's `init_weights` after its
    /// parent's); null leaves the refinement's own init too.
    #[serde(default = "default_fpn_init")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_three_blocks() -> u32 { 3 }
fn default_half() -> f64 { 0.5 }
fn default_upsample_x2() -> InterpolateConfig {
    InterpolateConfig { mode: InterpolateMode::Nearest, scale_factor: Some(FloatOrPair::Float(2.0)), align_corners: None }
}
fn default_csp_bn() -> NormCfg { NormCfg(serde_json::json!({"type": "BN", "momentum": 0.03, "eps": 0.001})) }
fn default_swish() -> ActivationCfg { ActivationCfg(serde_json::json!({"type": "Swish"})) }
fn default_csp_kaiming() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Kaiming", "layer": "Conv2d", "a": 2.23606797749979, "distribution": "uniform",
        "mode": "fan_in", "nonlinearity": "leaky_relu"
    }))))
}

/// `CSPNeXtPAFPN`: RTMDet's neck, as `mmdet.models.necks.CSPNeXtPAFPN`: a
/// top-down path (1x1 `reduce_layers`, 2x upsampling, CSP layers) and a
/// bottom-up path (stride-2 `downsamples`, CSP layers), then a 3x3
/// `out_convs` per level; as many outputs as inputs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CSPNeXtPAFPNConfig {
    /// Channels of each backbone output, e.g. `[256, 512, 1024]`.
    #[schemars(length(min = 2), inner(range(min = 1)))]
    pub in_channels: Vec<u32>,
    /// Channels of every output.
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// CSPNeXt blocks in each CSP layer.
    #[serde(default = "default_three_blocks")]
    #[schemars(range(min = 1))]
    pub num_csp_blocks: u32,
    /// Depthwise separable convs for the downsamples, the output convs and the blocks' first conv.
    #[serde(default)]
    pub use_depthwise: bool,
    /// Channels of a CSP layer's two paths as a fraction of its output.
    #[serde(default = "default_half")]
    pub expand_ratio: f64,
    /// The top-down upsampling: nearest, by a scale factor of 2.
    #[serde(default = "default_upsample_x2")]
    pub upsample_cfg: InterpolateConfig,
    /// Convolution layer config; null means plain `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config.
    #[serde(default = "default_csp_bn")]
    pub norm_cfg: NormCfg,
    /// Activation after every conv, e.g. `SiLU`.
    #[serde(default = "default_swish")]
    pub act_cfg: ActivationCfg,
    /// Weight initialisation: Kaiming uniform on every conv (torch's default conv init, bias 0).
    #[serde(default = "default_csp_kaiming")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_six() -> u32 { 6 }
fn yes() -> bool { true }

/// `DyHead`: Dynamic Head's attention blocks (Dai et al., "Dynamic Head:
/// Unifying Object Detection Heads with Attentions", 2021) as
/// `mmdet.models.necks.DyHead`, stacked after an FPN (a `neck` list): per
/// level a modulated deformable conv of the level and of its two
/// neighbours (offsets and masks from the level), weighed by a scale
/// attention, then a DyReLU task attention.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DyHeadConfig {
    /// Channels of each input level (the FPN's `out_channels`).
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of every output level.
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// DyHead blocks.
    #[serde(default = "default_six")]
    #[schemars(range(min = 1))]
    pub num_blocks: u32,
    /// Start the offset/mask conv at zero (regular sampling, masks of 0.5).
    #[serde(default = "yes")]
    pub zero_init_offset: bool,
    /// Must be null: MMDetection refuses an `init_cfg` here.
    #[serde(default)]
    pub init_cfg: super::common::Null,
}
