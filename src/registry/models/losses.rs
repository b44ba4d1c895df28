//! Loss configs (`mmdet/models/losses`): `loss_cls`, `loss_bbox`,
//! `loss_iou`, `loss_mask` of the heads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Reduction;

fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn quarter() -> f64 {
    0.25
}
fn mean() -> Reduction {
    Reduction::Mean
}
fn eps_1e6() -> f64 {
    1e-6
}
fn eps_1e3() -> f64 {
    1e-3
}

/// `FocalLoss` (Lin et al., 2017), sigmoid form, as `mmdet.models.losses.FocalLoss`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FocalLossConfig {
    /// Sigmoid (per-class binary) focal loss; MMDetection supports only `true`.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub use_sigmoid: bool,
    /// Focusing parameter: how strongly easy examples are down-weighted.
    #[serde(default = "two")]
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// Weight of the positive class.
    #[serde(default = "quarter")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// Predictions are already probabilities (skip the sigmoid).
    #[serde(default)]
    pub activated: bool,
}

/// `QualityFocalLoss` (Li et al., "Generalized Focal Loss", 2020), as
/// `mmdet.models.losses.QualityFocalLoss`: a sigmoid cross-entropy against a
/// soft target (the IoU of a positive's box at its class, 0 elsewhere),
/// scaled by `|target - sigmoid(pred)| ^ beta`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityFocalLossConfig {
    /// Sigmoid (per-class binary) form; MMDetection supports only `true`.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub use_sigmoid: bool,
    /// Focusing parameter.
    #[serde(default = "two")]
    #[schemars(range(min = 0.0))]
    pub beta: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// Predictions are already probabilities (skip the sigmoid).
    #[serde(default)]
    pub activated: bool,
}

/// `VarifocalLoss` (Zhang et al., "VarifocalNet", 2021), as
/// `mmdet.models.losses.VarifocalLoss`: a sigmoid cross-entropy against the
/// IoU-aware target (a positive's IoU at its class, 0 elsewhere); positives
/// weighted by their target (`iou_weighted`) or 1, negatives by
/// `alpha * |sigmoid(pred) - target| ^ gamma`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VarifocalLossConfig {
    /// Sigmoid (per-class binary) form; MMDetection supports only `true`.
    #[serde(default = "super::common::yes")]
    #[schemars(extend("const" = true))]
    pub use_sigmoid: bool,
    /// Weight of the negatives' term.
    #[serde(default = "three_quarters")]
    #[schemars(range(min = 0.0))]
    pub alpha: f64,
    /// Focusing parameter of the negatives' term.
    #[serde(default = "two")]
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// Weight each positive by its IoU target (else by 1).
    #[serde(default = "super::common::yes")]
    pub iou_weighted: bool,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

fn three_quarters() -> f64 {
    0.75
}

/// `GaussianFocalLoss` (CornerNet, Law and Deng, 2018; CenterNet), as
/// `mmdet.models.losses.GaussianFocalLoss`: a focal loss on probabilities
/// against a Gaussian heatmap. Peaks (target 1, or the given positives)
/// count `-log(p) (1 - p) ^ alpha`; every other location is pushed down by
/// `-log(1 - p) p ^ alpha (1 - target) ^ gamma`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GaussianFocalLossConfig {
    /// Focusing exponent of the predictions.
    #[serde(default = "two")]
    #[schemars(range(min = 0.0))]
    pub alpha: f64,
    /// Exponent of `1 - target` that spares locations near a peak.
    #[serde(default = "four")]
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// Weight of the positives' term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub pos_weight: f64,
    /// Weight of the negatives' term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub neg_weight: f64,
}

fn four() -> f64 {
    4.0
}

/// `DistributionFocalLoss` (Li et al., 2020), as
/// `mmdet.models.losses.DistributionFocalLoss`: a side's distance, as a
/// discrete distribution over the integers, is pulled to the two integers
/// around its target, each by its closeness.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributionFocalLossConfig {
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

/// `CrossEntropyLoss`: softmax, sigmoid (binary per class) or mask cross-entropy.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossEntropyLossConfig {
    /// Binary cross-entropy on sigmoid outputs instead of softmax cross-entropy.
    #[serde(default)]
    pub use_sigmoid: bool,
    /// Per-pixel binary cross-entropy on the mask of the target class (mask heads).
    #[serde(default)]
    pub use_mask: bool,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Weight of each class; uniform when null.
    #[serde(default)]
    pub class_weight: Option<Vec<f64>>,
    /// Label ignored in the loss; null ignores none (-100 internally).
    #[serde(default)]
    pub ignore_index: Option<i64>,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// Average over non-ignored elements only.
    #[serde(default)]
    pub avg_non_ignore: bool,
}

/// `L1Loss`: mean absolute error.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct L1LossConfig {
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

/// `MSELoss`: mean squared error, as `mmdet.models.losses.MSELoss`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MSELossConfig {
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

/// `BalancedL1Loss` (Libra R-CNN, Pang et al., 2019), as
/// `mmdet.models.losses.BalancedL1Loss`: an L1 loss that promotes the
/// gradients of small errors (below `beta`) by a logarithmic segment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalancedL1LossConfig {
    /// Promotion of the small errors' gradients.
    #[serde(default = "half")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub alpha: f64,
    /// Bound of the regression error's gradient.
    #[serde(default = "one_and_half")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub gamma: f64,
    /// Error at which the loss turns linear.
    #[serde(default = "one")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub beta: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

fn half() -> f64 {
    0.5
}
fn one_and_half() -> f64 {
    1.5
}

/// `GHMC` (GHM, Li et al., 2019), as `mmdet.models.losses.GHMC`: a sigmoid
/// cross-entropy whose samples are weighted by the inverse density of their
/// gradient norm `|sigmoid(pred) - target|` over `bins` unit regions,
/// normalised by the number of valid samples (the head's `avg_factor` is
/// not used). With `momentum`, the densities are running averages kept in
/// the `acc_sum` buffer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GhmcConfig {
    /// Number of unit regions of the gradient norm.
    #[serde(default = "ten")]
    #[schemars(range(min = 1))]
    pub bins: u32,
    /// Running-average factor of the per-region counts; 0 counts each batch alone.
    #[serde(default)]
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1))]
    pub momentum: f64,
    /// Must be true: only the sigmoid (BCE) form exists.
    #[serde(default = "super::common::yes")]
    pub use_sigmoid: bool,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// `none` or `mean` (`sum` cannot take its valid-sample normaliser).
    #[serde(default = "mean")]
    pub reduction: Reduction,
}

/// `GHMR` (GHM, Li et al., 2019), as `mmdet.models.losses.GHMR`: the
/// Authentic Smooth L1 loss `sqrt(d² + mu²) - mu`, its samples weighted by
/// the inverse density of their gradient norm `|d| / sqrt(d² + mu²)`,
/// normalised by the sum of the regression weights.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GhmrConfig {
    /// The ASL1 loss's smoothing parameter.
    #[serde(default = "two_hundredths")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub mu: f64,
    /// Number of unit regions of the gradient norm.
    #[serde(default = "ten")]
    #[schemars(range(min = 1))]
    pub bins: u32,
    /// Running-average factor of the per-region counts; 0 counts each batch alone.
    #[serde(default)]
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1))]
    pub momentum: f64,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// `none` or `mean` (`sum` cannot take its valid-sample normaliser).
    #[serde(default = "mean")]
    pub reduction: Reduction,
}

fn ten() -> u32 {
    10
}
fn two_hundredths() -> f64 {
    0.02
}

/// `SmoothL1Loss`: Huber-style L1 loss, quadratic below `beta`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmoothL1LossConfig {
    /// Threshold between the quadratic and linear parts.
    #[serde(default = "one")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub beta: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

/// `GIoULoss`: generalized IoU loss (Rezatofighi et al., 2019).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GIoULossConfig {
    /// Added to unions and enclosing areas for numerical stability.
    #[serde(default = "eps_1e6")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

/// `DIoULoss` (Zheng et al., 2020): `1 - IoU + d² / c²` with `d` the
/// distance of the box centres and `c` the enclosing box's diagonal; also
/// `CIoULoss`, which adds an aspect-ratio term.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistanceIoULossConfig {
    /// Added to the union and to `c²` (CIoU: also to the heights) for numerical stability.
    #[serde(default = "eps_1e6")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

fn beta_0_2() -> f64 {
    0.2
}

/// `BoundedIoULoss` (Tychsen-Smith and Petersson, 2018): smooth-L1 of the
/// bounds on the IoU each of the centre offsets and the size ratios allows,
/// per coordinate.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundedIoULossConfig {
    /// Smooth-L1 threshold.
    #[serde(default = "beta_0_2")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub beta: f64,
    /// Added to the denominators.
    #[serde(default = "eps_1e3")]
    #[schemars(range(min = 0.0))]
    pub eps: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
}

/// How `IoULoss` turns IoU into a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IoULossMode {
    /// `1 - IoU`.
    Linear,
    /// `1 - IoU²`.
    Square,
    /// `-ln(IoU)`.
    Log,
}

fn default_iou_mode() -> IoULossMode {
    IoULossMode::Log
}

/// `IoULoss` (UnitBox, Yu et al., 2016).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IoULossConfig {
    /// Deprecated: same as `mode: linear`.
    #[serde(default)]
    pub linear: bool,
    /// Lower bound of the IoU for numerical stability.
    #[serde(default = "eps_1e6")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub eps: f64,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// `linear`, `square` or `log`.
    #[serde(default = "default_iou_mode")]
    pub mode: IoULossMode,
}

/// `DiceLoss` (V-Net, Milletari et al., 2016), used by QueryInst's mask heads.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiceLossConfig {
    /// Activate predictions with sigmoid (else softmax) when `activate` is set.
    #[serde(default = "super::common::yes")]
    pub use_sigmoid: bool,
    /// Apply the activation to the predictions first (false: they are probabilities already).
    #[serde(default = "super::common::yes")]
    pub activate: bool,
    /// `none`, `mean` or `sum`.
    #[serde(default = "mean")]
    pub reduction: Reduction,
    /// Use the plain V-Net dice (`2|A∩B| / (|A|+|B|)`) instead of squared denominators.
    #[serde(default)]
    pub naive_dice: bool,
    /// Multiplier of this loss term.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub loss_weight: f64,
    /// Added to numerator and denominator for numerical stability.
    #[serde(default = "eps_1e3")]
    #[schemars(range(min = 0.0))]
    pub eps: f64,
}
