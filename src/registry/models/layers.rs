//! Layer configs: normalisation (`norm_cfg`), activation (`act_cfg`),
//! convolution (`conv_cfg`), MMDetection's `DynamicConv`, and the plain
//! `upsample_cfg` / predictor dicts of the heads.
//!
//! Norm, activation and conv types are registered by mmcv
//! (`mmcv/cnn/bricks/{norm,activation,conv,wrappers}.py`) around torch
//! layers; their keys are the torch constructor's keyword arguments plus
//! mmcv's own (`requires_grad`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, Null};
use crate::registry::refs::{ActivationCfg, NormCfg};

fn eps_1e5() -> f64 {
    1e-5
}

fn bn_momentum() -> Option<f64> {
    Some(0.1)
}

// --------------------------------------------------------------------------
// Norm

/// `BN`: `torch.nn.BatchNorm2d` (mmcv also registers `BN1d`, `BN2d`, `BN3d`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchNormConfig {
    /// Train the affine weight and bias (false freezes them).
    #[serde(default = "super::common::yes")]
    pub requires_grad: bool,
    /// Added to the variance for numerical stability.
    #[serde(default = "eps_1e5")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// Running-statistics update factor; null uses a cumulative average.
    #[serde(default = "bn_momentum")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub momentum: Option<f64>,
    /// Learnable affine weight and bias.
    #[serde(default = "super::common::yes")]
    pub affine: bool,
    /// Track running mean and variance.
    #[serde(default = "super::common::yes")]
    pub track_running_stats: bool,
}

/// `SyncBN`: `torch.nn.SyncBatchNorm`, batch statistics shared across processes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncBatchNormConfig {
    /// Train the affine weight and bias (false freezes them).
    #[serde(default = "super::common::yes")]
    pub requires_grad: bool,
    /// Added to the variance for numerical stability.
    #[serde(default = "eps_1e5")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// Running-statistics update factor; null uses a cumulative average.
    #[serde(default = "bn_momentum")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub momentum: Option<f64>,
    /// Learnable affine weight and bias.
    #[serde(default = "super::common::yes")]
    pub affine: bool,
    /// Track running mean and variance.
    #[serde(default = "super::common::yes")]
    pub track_running_stats: bool,
    /// Process group to synchronise over; null is the whole world (a Python object in MMCV, so only null here).
    #[serde(default)]
    pub process_group: Null,
}

/// `MMSyncBN`: MMCV's own `SyncBatchNorm`, batch statistics shared across
/// processes as its `stats_mode` says (MMDetection's heads use it because
/// it copes with a process whose batch is empty).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MmcvSyncBatchNormConfig {
    /// Train the affine weight and bias (false freezes them).
    #[serde(default = "super::common::yes")]
    pub requires_grad: bool,
    /// Added to the variance for numerical stability.
    #[serde(default = "eps_1e5")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// Running-statistics update factor; null uses a cumulative average.
    #[serde(default = "bn_momentum")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub momentum: Option<f64>,
    /// Learnable affine weight and bias.
    #[serde(default = "super::common::yes")]
    pub affine: bool,
    /// Track running mean and variance.
    #[serde(default = "super::common::yes")]
    pub track_running_stats: bool,
    /// Process group to synchronise over; null is the whole world (a Python object in MMCV, so only null here).
    #[serde(default)]
    pub group: Null,
    /// How the processes' statistics combine: `default` weighs each process equally, `N` by its number of samples.
    #[serde(default)]
    pub stats_mode: SyncStatsMode,
}

/// MMCV `SyncBatchNorm`'s `stats_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SyncStatsMode {
    /// Each process's statistics weigh the same, an empty batch's included.
    #[default]
    #[serde(rename = "default")]
    Default,
    /// Each process's statistics weigh by its number of samples.
    #[serde(rename = "N")]
    N,
}

/// `GN`: `torch.nn.GroupNorm`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupNormConfig {
    /// Number of channel groups; must divide the channel count.
    #[schemars(range(min = 1))]
    pub num_groups: u32,
    /// Train the affine weight and bias (false freezes them).
    #[serde(default = "super::common::yes")]
    pub requires_grad: bool,
    /// Added to the variance for numerical stability.
    #[serde(default = "eps_1e5")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// Learnable per-channel affine weight and bias.
    #[serde(default = "super::common::yes")]
    pub affine: bool,
}

/// `LN`: `torch.nn.LayerNorm` over the last (channel) dimension.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerNormConfig {
    /// Train the affine weight and bias (false freezes them).
    #[serde(default = "super::common::yes")]
    pub requires_grad: bool,
    /// Added to the variance for numerical stability.
    #[serde(default = "eps_1e5")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// Learnable affine weight and bias.
    #[serde(default = "super::common::yes")]
    pub elementwise_affine: bool,
    /// Learnable bias (torch >= 2.1); only with `elementwise_affine`.
    #[serde(default = "super::common::yes")]
    pub bias: bool,
}

// --------------------------------------------------------------------------
// Activation

/// `ReLU`: `torch.nn.ReLU`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReluConfig {
    /// Modify the input in place.
    #[serde(default)]
    pub inplace: bool,
}

/// `LeakyReLU`: `torch.nn.LeakyReLU`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakyReluConfig {
    /// Slope for negative inputs.
    #[serde(default = "default_negative_slope")]
    pub negative_slope: f64,
    /// Modify the input in place.
    #[serde(default)]
    pub inplace: bool,
}

fn default_negative_slope() -> f64 {
    0.01
}

/// `SiLU`: `torch.nn.SiLU` (swish).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiluConfig {
    /// Modify the input in place.
    #[serde(default)]
    pub inplace: bool,
}

/// `Swish`: MMCV's `x * sigmoid(x)` (the same function as `SiLU`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwishConfig {}

/// How `GELU` computes the Gaussian CDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GeluApproximate {
    /// The exact erf form.
    None,
    /// The tanh approximation.
    Tanh,
}

fn default_gelu_approx() -> GeluApproximate {
    GeluApproximate::None
}

/// `GELU`: `torch.nn.GELU`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeluConfig {
    /// `none` (exact) or `tanh`.
    #[serde(default = "default_gelu_approx")]
    pub approximate: GeluApproximate,
}

/// `Sigmoid`: `torch.nn.Sigmoid` (no arguments).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// An explicit empty `properties` keeps the shape of every other component schema.
#[schemars(extend("properties" = {}))]
pub struct SigmoidConfig {}

// --------------------------------------------------------------------------
// Convolution

/// Padding mode of a torch convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// Zero padding (the default).
    Zeros,
    /// Reflect at the border.
    Reflect,
    /// Repeat the border value.
    Replicate,
    /// Wrap around.
    Circular,
}

/// `Conv2d` / `Conv`: `torch.nn.Conv2d` as a `conv_cfg` or `predictor_cfg`. The
/// owner supplies channels, kernel size, stride and padding.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// Padding mode; `zeros` when null.
    #[serde(default)]
    pub padding_mode: Option<PaddingMode>,
}

/// `ConvWS`: MMCV's `ConvWS2d`, a `torch.nn.Conv2d` whose weight is
/// standardised per output channel before each convolution (weight
/// standardisation, Qiao et al., 2019), as the `gn+ws` configs use it. The
/// owner supplies channels, kernel size, stride and padding.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvWSConfig {
    /// Added to each output channel's weight std.
    #[serde(default = "eps_1e5")]
    #[schemars(range(min = 0.0))]
    pub eps: f64,
}

/// `DCN`: MMCV's `DeformConv2dPack`, a deformable convolution (Dai et al.,
/// 2017) whose per-tap sampling offsets a plain conv `conv_offset` predicts.
/// A backbone's `dcn` builds it; the owner supplies channels and geometry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeformConvConfig {
    /// Channel groups with offsets of their own.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub deform_groups: u32,
    /// MMCV's deprecated name of `deform_groups`, which it replaces (set one of the two).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub deformable_groups: Option<u32>,
    /// Must be false. MMDetection's bottleneck pops this key from the dict
    /// all blocks share, so `true` makes only the first block a plain conv.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub fallback_on_stride: bool,
    /// Images per im2col call of MMCV's kernel; the result does not depend on it.
    #[serde(default = "uint::<32>")]
    #[schemars(range(min = 1))]
    pub im2col_step: u32,
}

/// `DCNv2`: MMCV's `ModulatedDeformConv2dPack`, a deformable convolution
/// whose taps are also scaled by a predicted sigmoid mask (Zhu et al.,
/// 2019). A backbone's `dcn` builds it; the owner supplies channels and
/// geometry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModulatedDeformConvConfig {
    /// Channel groups with offsets and masks of their own.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub deform_groups: u32,
    /// MMCV's deprecated name of `deform_groups`, which it replaces (set one of the two).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub deformable_groups: Option<u32>,
    /// Must be false (see `DCN`).
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub fallback_on_stride: bool,
}

/// How `ContextBlock` pools its input into one context vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContextPooling {
    /// Softmax attention over the positions (`conv_mask`).
    Att,
    /// Global average pooling.
    Avg,
}

/// How `ContextBlock` fuses the transformed context into every position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContextFusion {
    /// Added (`channel_add_conv`).
    ChannelAdd,
    /// A sigmoid gate multiplied in (`channel_mul_conv`).
    ChannelMul,
}

/// A plugin's `postfix`: appended to its state-dict name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Postfix {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for Postfix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Postfix::Int(i) => write!(f, "{i}"),
            Postfix::Str(s) => f.write_str(s),
        }
    }
}

/// `ContextBlock`: GCNet's global context block (Cao et al., 2019, MMCV's
/// `mmcv.cnn.ContextBlock`), a ResNet plugin named `context_block`: it
/// pools the feature map into one context vector, transforms it through a
/// 1x1 bottleneck (`ratio` of the channels) with a LayerNorm, and adds it to
/// (or gates) every position. The owner supplies the channels.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextBlockConfig {
    /// Bottleneck channels over input channels, e.g. 0.0625 (GCNet's r16).
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub ratio: f64,
    /// Attention pooling (`att`) or global average pooling (`avg`).
    #[serde(default = "context_att")]
    pub pooling_type: ContextPooling,
    /// The fusions applied, in MMCV's order (a gate first, then the sum).
    #[serde(default = "context_add")]
    #[schemars(length(min = 1))]
    pub fusion_types: Vec<ContextFusion>,
    /// Appended to the name `context_block` (a ResNet plugin's own key).
    #[serde(default)]
    pub postfix: Option<Postfix>,
}

/// `GeneralizedAttention`: the spatial attention block of "An Empirical
/// Study of Spatial Attention Mechanisms in Deep Networks" (Zhu et al.,
/// 2019; MMCV's `mmcv.cnn.GeneralizedAttention`), a ResNet plugin named
/// `gen_attention_block`: multi-head attention over the (strided) feature
/// map whose logits sum the terms `attention_type` switches on, added to the
/// input through a learned scale that starts at 0. The owner supplies the
/// channels.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneralizedAttentionConfig {
    /// Input channels, set where the block stands alone (a `GenericRoIExtractor`'s
    /// `pre_cfg` / `post_cfg`); a ResNet plugin takes its stage's and leaves this unset.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub in_channels: Option<u32>,
    /// Must be -1 (no local constraint): the constrained form is not supported yet.
    #[serde(default = "minus_one_int")]
    pub spatial_range: i64,
    /// Attention heads (the channels are split among them).
    #[serde(default = "uint::<9>")]
    #[schemars(range(min = 1))]
    pub num_heads: u32,
    /// Channels of the sinusoidal position embedding (a multiple of 4); the
    /// input channels when not positive.
    #[serde(default = "minus_one_int")]
    pub position_embedding_dim: i64,
    /// Scale of the query-key offsets before the embedding.
    #[serde(default = "uint::<1>")]
    pub position_magnitude: u32,
    /// Stride of the keys and values (a subsampled map).
    #[serde(default = "uint::<2>")]
    #[schemars(range(min = 1))]
    pub kv_stride: u32,
    /// Stride of the queries (the output is upsampled back bilinearly).
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub q_stride: u32,
    /// Four 0/1 digits switching on the terms of the attention logits:
    /// query and key content, query content and relative position, key
    /// content alone, relative position alone (e.g. `'1111'`, `'0010'`).
    #[serde(default = "all_terms")]
    pub attention_type: String,
    /// Appended to the name `gen_attention_block` (a ResNet plugin's own key).
    #[serde(default)]
    pub postfix: Option<Postfix>,
}

fn minus_one_int() -> i64 { -1 }
fn all_terms() -> String { "1111".to_string() }

fn context_att() -> ContextPooling { ContextPooling::Att }
fn context_add() -> Vec<ContextFusion> { vec![ContextFusion::ChannelAdd] }

/// `DynamicConv`: the instance-interactive dynamic convolution of Sparse R-CNN
/// (`mmdet.models.layers.DynamicConv`): two 1x1 convs whose weights are generated
/// per proposal from its feature.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamicConvConfig {
    /// Channels of the proposal feature and of the RoI feature.
    #[serde(default = "uint::<256>")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Inner channels of the generated dynamic parameters.
    #[serde(default = "uint::<64>")]
    #[schemars(range(min = 1))]
    pub feat_channels: u32,
    /// Output channels; `in_channels` when null.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub out_channels: Option<u32>,
    /// Side of the square RoI feature (7 for boxes, 14 for masks).
    #[serde(default = "uint::<7>")]
    #[schemars(range(min = 1))]
    pub input_feat_shape: u32,
    /// Flatten and project the output to `out_channels` (false keeps the spatial map, as in DynamicMaskHead).
    #[serde(default = "super::common::yes")]
    pub with_proj: bool,
    /// Activation after each dynamic conv.
    #[serde(default = "default_relu_inplace")]
    pub act_cfg: Option<ActivationCfg>,
    /// Normalisation after each dynamic conv.
    #[serde(default = "default_ln")]
    pub norm_cfg: Option<NormCfg>,
    /// Must be null: `init_cfg` on `DynamicConv` is not supported yet (it starts as DIIHead's and DynamicMaskHead's defaults).
    #[serde(default)]
    pub init_cfg: Null,
}

/// `ConvModule` as a plugin layer (MMCV's `mmcv.cnn.ConvModule`, e.g. a
/// `GenericRoIExtractor`'s `pre_cfg`): a conv, an optional norm and an
/// activation, in that order; named `conv`, `bn`/`gn` inside.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvModuleConfig {
    /// Input channels.
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Output channels.
    #[schemars(range(min = 1))]
    pub out_channels: u32,
    /// Square kernel side.
    #[schemars(range(min = 1))]
    pub kernel_size: u32,
    /// Stride.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub stride: u32,
    /// Zero padding on each side.
    #[serde(default)]
    pub padding: u32,
    /// Dilation.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1))]
    pub dilation: u32,
    /// Must be 1: grouped ConvModules are not supported yet.
    #[serde(default = "uint::<1>")]
    #[schemars(range(min = 1, max = 1))]
    pub groups: u32,
    /// `auto` (a bias exactly when there is no norm) or a bool.
    #[serde(default = "super::dense_heads::auto_bias")]
    pub bias: super::dense_heads::ConvBias,
    /// Convolution layer config; null means `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<crate::registry::refs::ConvCfg>,
    /// Normalization layer config; null means none.
    #[serde(default)]
    pub norm_cfg: Option<NormCfg>,
    /// Activation after the conv (and norm); null means none.
    #[serde(default = "default_relu_inplace")]
    pub act_cfg: Option<ActivationCfg>,
    /// Whether the activation works in place (no effect on the arithmetic).
    #[serde(default = "super::common::yes")]
    pub inplace: bool,
}

/// `{type: ReLU, inplace: true}`, MMDetection's usual `act_cfg` default.
pub fn default_relu_inplace() -> Option<ActivationCfg> {
    Some(ActivationCfg(serde_json::json!({"type": "ReLU", "inplace": true})))
}

fn default_ln() -> Option<NormCfg> {
    Some(NormCfg(serde_json::json!({"type": "LN"})))
}

// --------------------------------------------------------------------------
// Plain (unregistered) dicts

/// How a mask head upsamples its RoI features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleMethod {
    /// Transposed convolution with kernel = stride = `scale_factor`.
    Deconv,
    /// Nearest-neighbour interpolation.
    Nearest,
    /// Bilinear interpolation.
    Bilinear,
    /// CARAFE content-aware upsampling (mmcv op; not supported by detc).
    Carafe,
}

/// A mask head's `upsample_cfg`: the method (`type`) and `scale_factor`.
/// A plain dict, not a registry lookup: the head interprets `type` itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskUpsampleConfig {
    /// Method: `deconv`, `nearest`, `bilinear`, `carafe`; null disables upsampling.
    #[schemars(required)]
    pub r#type: Option<UpsampleMethod>,
    /// Upsampling factor.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub scale_factor: Option<u32>,
}

/// The `type` of a bbox head's `cls_predictor_cfg` / `reg_predictor_cfg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LinearType {
    /// `torch.nn.Linear`.
    Linear,
    /// `mmdet.models.layers.NormedLinear` (cosine classifier).
    NormedLinear,
}

/// A bbox head's predictor layer: `{type: Linear}` or `{type: NormedLinear, tempearture: 20}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearPredictorConfig {
    /// `Linear` or `NormedLinear`.
    pub r#type: LinearType,
    /// NormedLinear only: logit temperature (MMDetection spells it `tempearture`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempearture: Option<f64>,
    /// NormedLinear only: exponent of the weight norm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<f64>,
    /// NormedLinear only: added to the norm for numerical stability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
}

/// `{type: Linear}`, `BBoxHead`'s predictor default.
pub fn default_linear_predictor() -> LinearPredictorConfig {
    LinearPredictorConfig { r#type: LinearType::Linear, tempearture: None, power: None, eps: None }
}
