//! Optimizer wrappers (`optim_wrapper`, as `mmengine.optim`) and the torch
//! optimizers they wrap (`optim_wrapper.optimizer`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::models::common::AnyObject;
use crate::registry::refs::OptimizerCfg;

fn lr_1e3() -> f64 {
    1e-3
}
fn eps_1e8() -> f64 {
    1e-8
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}

/// Kind of gradient clipping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClipType {
    /// `clip_grad_norm_`: rescale so the total norm is at most `max_norm`.
    Norm,
    /// `clip_grad_value_`: clamp each gradient to `[-clip_value, clip_value]`.
    Value,
}

/// The string `inf`, for an infinity norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InfNorm {
    /// The infinity (max) norm.
    #[serde(rename = "inf")]
    Inf,
}

/// A norm order: a number (2 is Euclidean) or `inf`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum NormType {
    /// The p of the p-norm.
    P(#[schemars(extend("exclusiveMinimum" = 0))] f64),
    /// The infinity norm.
    Inf(InfNorm),
}

/// An optimizer wrapper's `clip_grad`: `{max_norm: 35, norm_type: 2}` or `{type: value, clip_value: 1}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipGradConfig {
    /// `norm` (the default) or `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<ClipType>,
    /// Largest allowed total gradient norm (`norm` clipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub max_norm: Option<f64>,
    /// Order of the norm (`norm` clipping); 2 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_type: Option<NormType>,
    /// Raise when the total norm is NaN or infinite (`norm` clipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_if_nonfinite: Option<bool>,
    /// `clip_grad_norm_` through torch's multi-tensor (`foreach`) kernels
    /// when true, one gradient at a time when false; when null, the
    /// multi-tensor kernels for CUDA gradients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreach: Option<bool>,
    /// Largest allowed absolute gradient value (`value` clipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub clip_value: Option<f64>,
}

/// `paramwise_cfg` of the default optimizer-wrapper constructor: per-parameter
/// learning-rate and weight-decay multipliers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamwiseConfig {
    /// Per-name-substring settings, e.g. `{backbone: {lr_mult: 0.1, decay_mult: 1.0}}`; the longest matching key wins.
    #[serde(default)]
    pub custom_keys: Option<AnyObject>,
    /// Learning-rate multiplier of biases.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub bias_lr_mult: Option<f64>,
    /// Weight-decay multiplier of biases.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub bias_decay_mult: Option<f64>,
    /// Weight-decay multiplier of normalisation weights and biases.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub norm_decay_mult: Option<f64>,
    /// Weight-decay multiplier of depthwise conv weights.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub dwconv_decay_mult: Option<f64>,
    /// Weight-decay multiplier of one-dimensional parameters.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub flat_decay_mult: Option<f64>,
    /// Skip parameters already added through another module instead of raising.
    #[serde(default)]
    pub bypass_duplicate: bool,
    /// Learning-rate multiplier of deformable-conv offsets.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub dcn_offset_lr_mult: Option<f64>,
}

/// `OptimWrapper`: steps the optimizer, with optional gradient accumulation and
/// clipping (`mmengine.optim.OptimWrapper`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimWrapperConfig {
    /// The optimizer, e.g. `{type: SGD, lr: 0.02, momentum: 0.9, weight_decay: 0.0001}`.
    pub optimizer: OptimizerCfg,
    /// Accumulate gradients over this many iterations before each step.
    #[serde(default = "super::super::models::common::uint::<1>")]
    #[schemars(range(min = 1))]
    pub accumulative_counts: u32,
    /// Gradient clipping; none when null.
    #[serde(default)]
    pub clip_grad: Option<ClipGradConfig>,
    /// Per-parameter multipliers, read by the optimizer-wrapper constructor.
    #[serde(default)]
    pub paramwise_cfg: Option<ParamwiseConfig>,
    /// Optimizer-wrapper constructor; `DefaultOptimWrapperConstructor` when null.
    #[serde(default)]
    pub constructor: Option<String>,
}

/// The string `dynamic`, for dynamic loss scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DynamicLossScale {
    /// Grow and shrink the scale with `torch.cuda.amp.GradScaler`'s defaults.
    #[serde(rename = "dynamic")]
    Dynamic,
}

/// Loss scaling of mixed-precision training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum LossScale {
    /// `dynamic`.
    Dynamic(DynamicLossScale),
    /// A fixed scale.
    Static(#[schemars(extend("exclusiveMinimum" = 0))] f64),
    /// Keyword arguments of `GradScaler` (`init_scale`, `growth_interval`, …).
    Kwargs(AnyObject),
}

fn default_dynamic() -> LossScale {
    LossScale::Dynamic(DynamicLossScale::Dynamic)
}

/// Autocast dtype of mixed-precision training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AmpDtype {
    /// Half precision.
    Float16,
    /// Brain float (no loss scaling needed).
    Bfloat16,
    /// Single precision (autocast off in effect).
    Float32,
    /// Double precision.
    Float64,
}

/// `AmpOptimWrapper`: `OptimWrapper` with automatic mixed precision and loss scaling
/// (`mmengine.optim.AmpOptimWrapper`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmpOptimWrapperConfig {
    /// The optimizer, e.g. `{type: AdamW, lr: 0.0001}`.
    pub optimizer: OptimizerCfg,
    /// `dynamic`, a fixed scale, or `GradScaler` keyword arguments.
    #[serde(default = "default_dynamic")]
    pub loss_scale: LossScale,
    /// Autocast dtype; float16 when null.
    #[serde(default)]
    pub dtype: Option<AmpDtype>,
    /// Use the FSDP-aware grad scaler.
    #[serde(default)]
    pub use_fsdp: bool,
    /// Accumulate gradients over this many iterations before each step.
    #[serde(default = "super::super::models::common::uint::<1>")]
    #[schemars(range(min = 1))]
    pub accumulative_counts: u32,
    /// Gradient clipping; none when null.
    #[serde(default)]
    pub clip_grad: Option<ClipGradConfig>,
    /// Per-parameter multipliers, read by the optimizer-wrapper constructor.
    #[serde(default)]
    pub paramwise_cfg: Option<ParamwiseConfig>,
    /// Optimizer-wrapper constructor; `DefaultOptimWrapperConstructor` when null.
    #[serde(default)]
    pub constructor: Option<String>,
}

// --------------------------------------------------------------------------
// Optimizers (torch.optim)

/// `SGD`: stochastic gradient descent with momentum (`torch.optim.SGD`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SGDConfig {
    /// Learning rate.
    #[serde(default = "lr_1e3")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub lr: f64,
    /// Momentum factor.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub momentum: f64,
    /// Dampening of the momentum.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub dampening: f64,
    /// L2 penalty.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and no dampening).
    #[serde(default)]
    pub nesterov: bool,
    /// Maximise instead of minimise.
    #[serde(default)]
    pub maximize: bool,
    /// torch's multi-tensor (`foreach`) updates when true, the single-tensor
    /// ones when false; when null, the multi-tensor ones for CUDA parameters.
    #[serde(default)]
    pub foreach: Option<bool>,
    /// Allow autograd through the step.
    #[serde(default)]
    pub differentiable: bool,
    /// Must be null or false: torch's fused kernels are not built into detc
    /// (CUDA parameters take the multi-tensor `foreach` path, as torch's default).
    #[serde(default)]
    #[schemars(extend("enum" = [null, false]))]
    pub fused: Option<bool>,
}

/// `Adam` (Kingma and Ba, 2015) with L2 weight decay (`torch.optim.Adam`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate.
    #[serde(default = "lr_1e3")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    #[serde(default = "default_betas")]
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub betas: [f64; 2],
    /// Added to the denominator for numerical stability.
    #[serde(default = "eps_1e8")]
    #[schemars(range(min = 0.0))]
    pub eps: f64,
    /// L2 penalty.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub weight_decay: f64,
    /// Use the AMSGrad variant.
    #[serde(default)]
    pub amsgrad: bool,
    /// Maximise instead of minimise.
    #[serde(default)]
    pub maximize: bool,
    /// torch's multi-tensor (`foreach`) updates when true, the single-tensor
    /// ones when false; when null, the multi-tensor ones for CUDA parameters.
    #[serde(default)]
    pub foreach: Option<bool>,
    /// Keep the step count on the device (CUDA graphs).
    #[serde(default)]
    pub capturable: bool,
    /// Allow autograd through the step.
    #[serde(default)]
    pub differentiable: bool,
    /// Must be null or false: torch's fused kernels are not built into detc
    /// (CUDA parameters take the multi-tensor `foreach` path, as torch's default).
    #[serde(default)]
    #[schemars(extend("enum" = [null, false]))]
    pub fused: Option<bool>,
}

fn wd_1e2() -> f64 {
    1e-2
}

/// `AdamW`: Adam with decoupled weight decay (Loshchilov and Hutter, 2019), `torch.optim.AdamW`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate.
    #[serde(default = "lr_1e3")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    #[serde(default = "default_betas")]
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub betas: [f64; 2],
    /// Added to the denominator for numerical stability.
    #[serde(default = "eps_1e8")]
    #[schemars(range(min = 0.0))]
    pub eps: f64,
    /// Decoupled weight decay.
    #[serde(default = "wd_1e2")]
    #[schemars(range(min = 0.0))]
    pub weight_decay: f64,
    /// Use the AMSGrad variant.
    #[serde(default)]
    pub amsgrad: bool,
    /// Maximise instead of minimise.
    #[serde(default)]
    pub maximize: bool,
    /// torch's multi-tensor (`foreach`) updates when true, the single-tensor
    /// ones when false; when null, the multi-tensor ones for CUDA parameters.
    #[serde(default)]
    pub foreach: Option<bool>,
    /// Keep the step count on the device (CUDA graphs).
    #[serde(default)]
    pub capturable: bool,
    /// Allow autograd through the step.
    #[serde(default)]
    pub differentiable: bool,
    /// Must be null or false: torch's fused kernels are not built into detc
    /// (CUDA parameters take the multi-tensor `foreach` path, as torch's default).
    #[serde(default)]
    #[schemars(extend("enum" = [null, false]))]
    pub fused: Option<bool>,
}
