//! Backbone configs (`mmdet/models/backbones`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::OneOrMany;
use crate::registry::refs::{ConvCfg, InitCfg, NormCfg, PluginCfg};

fn default_three() -> u32 { 3 }
fn default_64() -> u32 { 64 }
fn default_four() -> u32 { 4 }
fn default_strides() -> Vec<u32> { vec![1, 2, 2, 2] }
fn default_dilations() -> Vec<u32> { vec![1, 1, 1, 1] }
fn default_out_indices() -> Vec<u32> { vec![0, 1, 2, 3] }
pub(crate) fn default_style() -> ResNetStyle { ResNetStyle::Pytorch }
fn default_frozen() -> i64 { -1 }
fn default_true() -> bool { true }
fn default_stage_with_dcn() -> Vec<bool> { vec![false; 4] }
pub(crate) fn default_bn() -> NormCfg { NormCfg(serde_json::json!({"type": "BN", "requires_grad": true})) }

/// Where a plugin sits in a bottleneck: after the (norm and ReLU of the)
/// 1x1 reduction, the 3x3, or the (norm of the) 1x1 expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginPosition {
    AfterConv1,
    AfterConv2,
    AfterConv3,
}

/// One entry of a ResNet's `plugins` (`ResNet.make_stage_plugins`): the
/// module to insert into every bottleneck of the chosen stages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockPluginConfig {
    /// The plugin module, e.g. `{type: ContextBlock, ratio: 0.25}`; an extra
    /// `postfix` key is appended to its state-dict name (`context_block`),
    /// which two plugins of one type in a block need.
    pub cfg: PluginCfg,
    /// Which stages get it (one flag per stage); null for all.
    #[serde(default)]
    pub stages: Option<Vec<bool>>,
    /// Where in the bottleneck it goes.
    pub position: PluginPosition,
}

/// Where the stride-2 conv sits in a bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResNetStyle {
    /// Stride on the 3x3 conv (torchvision, MMDetection default).
    Pytorch,
    /// Stride on the first 1x1 conv (original Caffe models).
    Caffe,
}

/// `ResNet`: deep residual network (He et al., 2016), as `mmdet.models.backbones.ResNet`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Depth of the network: 18, 34, 50, 101 or 152.
    #[schemars(extend("enum" = [18, 34, 50, 101, 152]))]
    pub depth: u32,
    /// Number of input image channels.
    #[serde(default = "default_three")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the stem; `base_channels` when null.
    #[serde(default)]
    pub stem_channels: Option<u32>,
    /// Channels of the first stage; later stages double it.
    #[serde(default = "default_64")]
    #[schemars(range(min = 1))]
    pub base_channels: u32,
    /// Number of residual stages (1 to 4).
    #[serde(default = "default_four")]
    #[schemars(range(min = 1, max = 4))]
    pub num_stages: u32,
    /// Stride of the first block of each stage.
    #[serde(default = "default_strides")]
    pub strides: Vec<u32>,
    /// Dilation of each stage.
    #[serde(default = "default_dilations")]
    pub dilations: Vec<u32>,
    /// Stages whose outputs are returned (0-based).
    #[serde(default = "default_out_indices")]
    pub out_indices: Vec<u32>,
    /// `pytorch` or `caffe`.
    #[serde(default = "default_style")]
    pub style: ResNetStyle,
    /// Replace the 7x7 stem conv with three 3x3 convs.
    #[serde(default)]
    pub deep_stem: bool,
    /// Use AvgPool instead of a strided conv for downsampling.
    #[serde(default)]
    pub avg_down: bool,
    /// Stages to freeze (stop gradients and keep BN in eval); -1 freezes none.
    #[serde(default = "default_frozen")]
    #[schemars(range(min = -1, max = 4))]
    pub frozen_stages: i64,
    /// Convolution layer config; null means plain `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config.
    #[serde(default = "default_bn")]
    pub norm_cfg: NormCfg,
    /// Keep BatchNorm layers in eval mode (frozen statistics) while training.
    #[serde(default = "default_true")]
    pub norm_eval: bool,
    /// Deformable 3x3 convs in the bottlenecks of the stages `stage_with_dcn`
    /// marks: `{type: DCN}` (v1) or `{type: DCNv2}` (modulated), e.g.
    /// `{type: DCN, deform_groups: 1, fallback_on_stride: false}`; null for
    /// plain convs.
    #[serde(default)]
    pub dcn: Option<ConvCfg>,
    /// Which stages use `dcn` (one flag per stage).
    #[serde(default = "default_stage_with_dcn")]
    pub stage_with_dcn: Vec<bool>,
    /// Modules inserted into the bottlenecks of some stages, e.g. GCNet's
    /// `{cfg: {type: ContextBlock, ratio: 0.0625}, stages: [false, true, true,
    /// true], position: after_conv3}`; null for none.
    #[serde(default)]
    pub plugins: Option<Vec<BlockPluginConfig>>,
    /// Must be false: gradient checkpointing is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub with_cp: bool,
    /// Zero-initialise the last norm layer of each residual block.
    #[serde(default = "default_true")]
    pub zero_init_residual: bool,
    /// Deprecated: use `init_cfg: {type: Pretrained, checkpoint: ...}`.
    #[serde(default)]
    pub pretrained: Option<String>,
    /// Weight initialisation, e.g. `{type: Pretrained, checkpoint: torchvision://resnet50}`.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_one() -> u32 { 1 }

/// `ResNeXt`: ResNet with grouped 3x3 convolutions in its bottlenecks (Xie et
/// al., 2017), as `mmdet.models.backbones.ResNeXt`; `groups: 32, base_width: 4`
/// is ResNeXt-32x4d. Each bottleneck is `floor(planes * base_width /
/// base_channels) * groups` channels wide (`planes` with `groups: 1`). As in
/// MMDetection, `zero_init_residual` has no effect on it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ResNeXtConfig {
    /// Groups of the 3x3 convolutions (the cardinality).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub groups: u32,
    /// Channels per group in the first stage (for `base_channels: 64`).
    #[serde(default = "default_four")]
    #[schemars(range(min = 1))]
    pub base_width: u32,
    /// The ResNet settings (`depth` 50, 101 or 152: bottlenecks only).
    #[serde(flatten)]
    pub resnet: ResNetConfig,
}

fn default_radix() -> u32 { 2 }

/// `ResNeSt`: ResNet with split attention (Zhang et al., 2020), as
/// `mmdet.models.backbones.ResNeSt`: ResNetV1d (a deep stem of three 3x3
/// convs, average pooling before each strided shortcut; it sets `deep_stem`
/// and `avg_down` itself) whose bottlenecks' 3x3 conv is a split-attention
/// conv of `radix` splits. As in MMDetection, `zero_init_residual` has no
/// effect on it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResNeStConfig {
    /// Cardinal groups of the split-attention convs.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub groups: u32,
    /// Channels per group in the first stage (for `base_channels: 64`), with `groups > 1`.
    #[serde(default = "default_four")]
    #[schemars(range(min = 1))]
    pub base_width: u32,
    /// Splits per cardinal group.
    #[serde(default = "default_radix")]
    #[schemars(range(min = 1))]
    pub radix: u32,
    /// The attention's hidden channels are `max(channels * radix / reduction_factor, 32)`.
    #[serde(default = "default_four")]
    #[schemars(range(min = 1))]
    pub reduction_factor: u32,
    /// Stride with a 3x3 average pool after the split-attention conv instead of in it.
    #[serde(default = "default_true")]
    pub avg_down_stride: bool,
    /// The ResNet settings (`depth` 50, 101 or 152).
    #[serde(flatten)]
    pub resnet: ResNetConfig,
}

fn default_scales() -> u32 { 4 }
fn default_26() -> u32 { 26 }

/// `Res2Net`: ResNet with multi-scale bottlenecks (Gao et al., 2019), as
/// `mmdet.models.backbones.Res2Net`: ResNetV1d (it sets `deep_stem`,
/// `avg_down` and the `pytorch` style itself) whose bottlenecks split their
/// 3x3 stage into `scales` groups of `base_width` (for `base_channels: 64`)
/// channels with hierarchical residuals between them, e.g. Res2Net-101
/// 26w-4s. As in MMDetection, `zero_init_residual` has no effect on it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Res2NetConfig {
    /// Groups of the 3x3 stage (at least 2).
    #[serde(default = "default_scales")]
    #[schemars(range(min = 2))]
    pub scales: u32,
    /// Channels per group in the first stage (for `base_channels: 64`).
    #[serde(default = "default_26")]
    #[schemars(range(min = 1))]
    pub base_width: u32,
    /// The ResNet settings (`depth` 50, 101 or 152).
    #[serde(flatten)]
    pub resnet: ResNetConfig,
}

fn default_224() -> super::common::IntOrPair { super::common::IntOrPair::Int(224) }
fn default_96() -> u32 { 96 }
fn default_seven() -> u32 { 7 }
fn default_swin_depths() -> Vec<u32> { vec![2, 2, 6, 2] }
fn default_swin_heads() -> Vec<u32> { vec![3, 6, 12, 24] }
fn default_swin_strides() -> Vec<u32> { vec![4, 2, 2, 2] }
fn default_drop_path() -> f64 { 0.1 }
fn default_gelu() -> crate::registry::refs::ActivationCfg {
    crate::registry::refs::ActivationCfg(serde_json::json!({"type": "GELU"}))
}
fn default_ln() -> NormCfg { NormCfg(serde_json::json!({"type": "LN"})) }

/// `SwinTransformer`: the hierarchical vision transformer with shifted
/// windows (Liu et al., 2021), as `mmdet.models.backbones.SwinTransformer`
/// (the backbone of the `swin/` Mask R-CNN configs). `convert_weights: true`
/// loads a checkpoint of the original repository (`swin_tiny_patch4_window7_224.pth`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwinTransformerConfig {
    /// Image size of the pretraining (sizes `absolute_pos_embed`).
    #[serde(default = "default_224")]
    pub pretrain_img_size: super::common::IntOrPair,
    /// Number of input image channels.
    #[serde(default = "default_three")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the first stage (doubled at each patch merging).
    #[serde(default = "default_96")]
    #[schemars(range(min = 1))]
    pub embed_dims: u32,
    /// Side of the patches the image is cut into (`strides[0]`).
    #[serde(default = "default_four")]
    #[schemars(range(min = 1))]
    pub patch_size: u32,
    /// Side of the attention windows.
    #[serde(default = "default_seven")]
    #[schemars(range(min = 1))]
    pub window_size: u32,
    /// Hidden width of the FFNs over the embedding width.
    #[serde(default = "default_four")]
    #[schemars(range(min = 1))]
    pub mlp_ratio: u32,
    /// Blocks per stage.
    #[serde(default = "default_swin_depths")]
    pub depths: Vec<u32>,
    /// Attention heads per stage.
    #[serde(default = "default_swin_heads")]
    pub num_heads: Vec<u32>,
    /// Patch embedding stride, then each patch merging's.
    #[serde(default = "default_swin_strides")]
    pub strides: Vec<u32>,
    /// Stages whose (normalised) outputs are returned.
    #[serde(default = "default_out_indices")]
    pub out_indices: Vec<u32>,
    /// Learnable bias on query, key and value.
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// Scale of the query; `head_dims^-0.5` when null.
    #[serde(default)]
    pub qk_scale: Option<f64>,
    /// Layer norm after the patch embedding and in each patch merging.
    #[serde(default = "default_true")]
    pub patch_norm: bool,
    /// Dropout after the position embedding, in the attention projection and the FFN.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub drop_rate: f64,
    /// Dropout on the attention weights.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub attn_drop_rate: f64,
    /// Stochastic depth: the last block's drop-path rate (rising linearly from 0).
    #[serde(default = "default_drop_path")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub drop_path_rate: f64,
    /// Must be false: an absolute position embedding is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub use_abs_pos_embed: bool,
    /// Activation of the FFNs.
    #[serde(default = "default_gelu")]
    pub act_cfg: crate::registry::refs::ActivationCfg,
    /// Normalization layers (`LN`).
    #[serde(default = "default_ln")]
    pub norm_cfg: NormCfg,
    /// Must be false: gradient checkpointing is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub with_cp: bool,
    /// Deprecated: use `init_cfg: {type: Pretrained, checkpoint: ...}`.
    #[serde(default)]
    pub pretrained: Option<String>,
    /// The `Pretrained` checkpoint is one of the original Swin repository
    /// (its keys renamed and patch-merging weights reordered on loading).
    #[serde(default)]
    pub convert_weights: bool,
    /// Stages to freeze (-1: none; 0: the patch embedding).
    #[serde(default = "default_frozen")]
    #[schemars(range(min = -1))]
    pub frozen_stages: i64,
    /// Weight initialisation: `{type: Pretrained, checkpoint: ...}` or null
    /// (truncated normal std 0.02 on the linear layers, layer norms 1).
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_32() -> u32 { 32 }
fn default_regnet_strides() -> Vec<u32> { vec![2, 2, 2, 2] }

/// A RegNet design (Radosavovic et al., 2020): block widths `w0 + wa * j`
/// quantised to powers of `wm`, `depth` blocks, `group_w` channels per group.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegNetArch {
    /// Initial width (a multiple of 8).
    #[schemars(range(min = 8))]
    pub w0: u32,
    /// Slope of the widths.
    #[schemars(range(min = 0.0))]
    pub wa: f64,
    /// Quantisation factor of the widths (> 1).
    pub wm: f64,
    /// Channels per group of the 3x3 convs.
    #[schemars(range(min = 1))]
    pub group_w: u32,
    /// Number of blocks.
    #[schemars(range(min = 1))]
    pub depth: u32,
    /// Bottleneck ratio.
    pub bot_mul: f64,
}

/// `arch`: one of MMDetection's named RegNetX designs, or the parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RegNetArchCfg {
    /// `regnetx_400mf`, `regnetx_800mf`, `regnetx_1.6gf`, `regnetx_3.2gf`,
    /// `regnetx_4.0gf`, `regnetx_6.4gf`, `regnetx_8.0gf` or `regnetx_12gf`.
    #[schemars(extend("enum" = ["regnetx_400mf", "regnetx_800mf", "regnetx_1.6gf", "regnetx_3.2gf",
                                "regnetx_4.0gf", "regnetx_6.4gf", "regnetx_8.0gf", "regnetx_12gf"]))]
    Named(String),
    /// The design's parameters.
    Custom(RegNetArch),
}

/// `RegNet`: the RegNetX backbones (Radosavovic et al., "Designing Network
/// Design Spaces", 2020), as `mmdet.models.backbones.RegNet`: a 3x3
/// stride-2 stem, then stages of grouped bottlenecks without expansion,
/// under ResNet's names (`conv1`, `bn1`, `layer{i}.{j}.conv1`...).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegNetConfig {
    /// The design: a name (`regnetx_3.2gf`) or its parameters.
    pub arch: RegNetArchCfg,
    /// Number of input image channels.
    #[serde(default = "default_three")]
    #[schemars(range(min = 1))]
    pub in_channels: u32,
    /// Channels of the stem.
    #[serde(default = "default_32")]
    #[schemars(range(min = 1))]
    pub stem_channels: u32,
    /// Unused by RegNet (its widths come from `arch`).
    #[serde(default = "default_32")]
    pub base_channels: u32,
    /// Stride of the first block of each stage.
    #[serde(default = "default_regnet_strides")]
    pub strides: Vec<u32>,
    /// Dilation of each stage.
    #[serde(default = "default_dilations")]
    pub dilations: Vec<u32>,
    /// Stages whose outputs are returned (0-based).
    #[serde(default = "default_out_indices")]
    pub out_indices: Vec<u32>,
    /// `pytorch` or `caffe`.
    #[serde(default = "default_style")]
    pub style: ResNetStyle,
    /// Unused by RegNet (its stem is one 3x3 conv).
    #[serde(default)]
    pub deep_stem: bool,
    /// Use AvgPool instead of a strided conv for downsampling.
    #[serde(default)]
    pub avg_down: bool,
    /// Stages to freeze (stop gradients and keep BN in eval); -1 freezes none.
    #[serde(default = "default_frozen")]
    #[schemars(range(min = -1, max = 4))]
    pub frozen_stages: i64,
    /// Convolution layer config; null means plain `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config.
    #[serde(default = "default_bn")]
    pub norm_cfg: NormCfg,
    /// Keep BatchNorm layers in eval mode (frozen statistics) while training.
    #[serde(default = "default_true")]
    pub norm_eval: bool,
    /// Deformable 3x3 convs in the bottlenecks of the stages `stage_with_dcn`
    /// marks: `{type: DCN}` (v1) or `{type: DCNv2}` (modulated), e.g.
    /// `{type: DCN, deform_groups: 1, fallback_on_stride: false}`; null for
    /// plain convs.
    #[serde(default)]
    pub dcn: Option<ConvCfg>,
    /// Which stages use `dcn` (one flag per stage).
    #[serde(default = "default_stage_with_dcn")]
    pub stage_with_dcn: Vec<bool>,
    /// Modules inserted into the bottlenecks of some stages, e.g. GCNet's
    /// `{cfg: {type: ContextBlock, ratio: 0.0625}, stages: [false, true, true,
    /// true], position: after_conv3}`; null for none.
    #[serde(default)]
    pub plugins: Option<Vec<BlockPluginConfig>>,
    /// Must be false: gradient checkpointing is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub with_cp: bool,
    /// Zero-initialise the last norm layer of each residual block.
    #[serde(default = "default_true")]
    pub zero_init_residual: bool,
    /// Deprecated: use `init_cfg: {type: Pretrained, checkpoint: ...}`.
    #[serde(default)]
    pub pretrained: Option<String>,
    /// Weight initialisation, e.g. `{type: Pretrained, checkpoint: open-mmlab://regnetx_3.2gf}`.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

/// The residual block of an HRNet stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HRNetBlock {
    /// ResNet's `BasicBlock` (two 3x3 convs).
    #[serde(rename = "BASIC")]
    Basic,
    /// ResNet's `Bottleneck` (1x1, 3x3, 1x1 with 4x the channels).
    #[serde(rename = "BOTTLENECK")]
    Bottleneck,
}

/// One stage of an HRNet (`extra.stage{i}`): `num_modules` HRModules of
/// `num_branches` parallel resolutions, each branch `num_blocks[b]` blocks of
/// `num_channels[b]` (times the block's expansion) channels.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HRNetStageConfig {
    /// HRModules in the stage (each ends with a fusion across branches).
    #[schemars(range(min = 1))]
    pub num_modules: u32,
    /// Parallel branches (resolutions); stage `i` has `i` (1 to 4).
    #[schemars(range(min = 1, max = 4))]
    pub num_branches: u32,
    /// `BASIC` or `BOTTLENECK`.
    pub block: HRNetBlock,
    /// Blocks per branch (one entry per branch).
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub num_blocks: Vec<u32>,
    /// Channels per branch (one entry per branch), before the block's expansion.
    #[schemars(length(min = 1), inner(range(min = 1)))]
    pub num_channels: Vec<u32>,
}

/// `extra` of an HRNet: its four stages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HRNetExtra {
    /// The first stage: one branch of ResNet blocks at stride 4 (`layer1`).
    pub stage1: HRNetStageConfig,
    /// Two branches (strides 4 and 8).
    pub stage2: HRNetStageConfig,
    /// Three branches (strides 4 to 16).
    pub stage3: HRNetStageConfig,
    /// Four branches (strides 4 to 32): the backbone's outputs.
    pub stage4: HRNetStageConfig,
}

/// `HRNet`: the high-resolution network (Sun et al., "High-Resolution
/// Representations for Labeling Pixels and Regions", 2019), as
/// `mmdet.models.backbones.HRNet`: a stride-4 stem, then four stages that
/// keep 1 to 4 resolutions in parallel and exchange them at the end of every
/// HRModule; it returns the last stage's branches (strides 4, 8, 16, 32).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HRNetConfig {
    /// The stages, e.g. HRNetV2-W32: `stage4.num_channels: [32, 64, 128, 256]`.
    pub extra: HRNetExtra,
    /// Channels of the input image.
    #[serde(default = "default_three")]
    pub in_channels: u32,
    /// Convolution layer config; null means plain `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config.
    #[serde(default = "default_bn")]
    pub norm_cfg: NormCfg,
    /// Keep BatchNorm layers in eval mode (frozen statistics) while training.
    #[serde(default = "default_true")]
    pub norm_eval: bool,
    /// Must be false: gradient checkpointing is not supported yet.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub with_cp: bool,
    /// Has no effect: MMDetection's HRNet only reads it when it has no
    /// `init_cfg`, which it always has.
    #[serde(default)]
    pub zero_init_residual: bool,
    /// Return every branch of the last stage (false: only the first; its
    /// last HRModule then fuses into the first branch only).
    #[serde(default = "default_true")]
    pub multiscale_output: bool,
    /// Deprecated: use `init_cfg: {type: Pretrained, checkpoint: ...}`.
    #[serde(default)]
    pub pretrained: Option<String>,
    /// Weight initialisation, e.g. `{type: Pretrained, checkpoint: open-mmlab://msra/hrnetv2_w32}`.
    #[serde(default)]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}

fn default_cspnext_out_indices() -> Vec<u32> { vec![2, 3, 4] }
fn default_spp_kernels() -> Vec<u32> { vec![5, 9, 13] }
fn default_half() -> f64 { 0.5 }
fn default_unit() -> f64 { 1.0 }
fn default_csp_bn() -> NormCfg { NormCfg(serde_json::json!({"type": "BN", "momentum": 0.03, "eps": 0.001})) }
fn default_silu() -> crate::registry::refs::ActivationCfg {
    crate::registry::refs::ActivationCfg(serde_json::json!({"type": "SiLU"}))
}
fn default_csp_kaiming() -> Option<OneOrMany<InitCfg>> {
    Some(OneOrMany::One(InitCfg(serde_json::json!({
        "type": "Kaiming", "layer": "Conv2d", "a": 2.23606797749979, "distribution": "uniform",
        "mode": "fan_in", "nonlinearity": "leaky_relu"
    }))))
}

/// `arch` of a CSPNeXt: the stage settings of the P5 (four stages, outputs
/// at strides 8 to 32) or P6 (five, to stride 64) variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CspNextArch {
    /// Stages of 128, 256, 512 and 1024 channels (before `widen_factor`).
    P5,
    /// Stages of 128, 256, 512, 768 and 1024 channels.
    P6,
}

fn default_p5() -> CspNextArch { CspNextArch::P5 }

/// `CSPNeXt`: RTMDet's backbone (Lyu et al., 2022), as
/// `mmdet.models.backbones.CSPNeXt`: a stem of three 3x3 convs, then stages
/// of a stride-2 conv, an SPP block in the last one, and a CSP layer of
/// CSPNeXt blocks (with channel attention); depth and width scaled by
/// `deepen_factor` and `widen_factor`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CSPNeXtConfig {
    /// Stage settings: `P5` or `P6`.
    #[serde(default = "default_p5")]
    pub arch: CspNextArch,
    /// Multiplier of the blocks per stage (rounded, at least 1).
    #[serde(default = "default_unit")]
    #[schemars(range(min = 0.0))]
    pub deepen_factor: f64,
    /// Multiplier of the channels.
    #[serde(default = "default_unit")]
    #[schemars(range(min = 0.0))]
    pub widen_factor: f64,
    /// Outputs returned: 0 is the stem, `i` the end of stage `i`.
    #[serde(default = "default_cspnext_out_indices")]
    pub out_indices: Vec<u32>,
    /// Stem and stages up to this one are frozen (no gradient, eval-mode norms); -1 freezes none.
    #[serde(default = "default_frozen")]
    #[schemars(range(min = -1))]
    pub frozen_stages: i64,
    /// Depthwise separable convs in place of the stage and block 3x3 convs.
    #[serde(default)]
    pub use_depthwise: bool,
    /// Channels of a CSP layer's two paths as a fraction of its output.
    #[serde(default = "default_half")]
    pub expand_ratio: f64,
    /// Must be null: custom stage settings are not supported.
    #[serde(default)]
    pub arch_ovewrite: super::common::Null,
    /// Max-pool kernel sizes of the SPP block.
    #[serde(default = "default_spp_kernels")]
    pub spp_kernel_sizes: Vec<u32>,
    /// Channel attention (a gating 1x1 conv on the pooled features) in each CSP layer.
    #[serde(default = "default_true")]
    pub channel_attention: bool,
    /// Convolution layer config; null means plain `Conv2d`.
    #[serde(default)]
    pub conv_cfg: Option<ConvCfg>,
    /// Normalization layer config.
    #[serde(default = "default_csp_bn")]
    pub norm_cfg: NormCfg,
    /// Activation after every conv, e.g. `SiLU`.
    #[serde(default = "default_silu")]
    pub act_cfg: crate::registry::refs::ActivationCfg,
    /// Keep BatchNorm layers in eval mode (frozen statistics) while training.
    #[serde(default)]
    pub norm_eval: bool,
    /// Weight initialisation: Kaiming uniform on every conv (torch's default
    /// conv init, bias 0), or `{type: Pretrained, checkpoint: ...}` (e.g.
    /// with `prefix: backbone.`).
    #[serde(default = "default_csp_kaiming")]
    pub init_cfg: Option<OneOrMany<InitCfg>>,
}
