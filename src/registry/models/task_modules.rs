//! Task-module configs (`mmdet/models/task_modules`): anchor generators,
//! box coders, assigners, samplers and match costs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{uint, AnyObject, IntOrPair, OneOrMany};
use crate::registry::refs::MatchCostCfg;

fn one() -> f64 {
    1.0
}
fn minus_one() -> f64 {
    -1.0
}

// --------------------------------------------------------------------------
// Prior generators

/// `AnchorGenerator`: the standard 2D anchor generator of anchor-based heads
/// (`mmdet.models.task_modules.AnchorGenerator`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnchorGeneratorConfig {
    /// Stride of each feature level, an int or a `(w, h)` pair, e.g. `[4, 8, 16, 32, 64]`.
    #[schemars(length(min = 1))]
    pub strides: Vec<IntOrPair>,
    /// Height/width ratios of the anchors at each location.
    #[schemars(length(min = 1))]
    pub ratios: Vec<f64>,
    /// Anchor scales relative to `base_sizes`; set either this or `octave_base_scale` + `scales_per_octave`.
    #[serde(default)]
    pub scales: Option<Vec<f64>>,
    /// Base anchor size of each level; the strides when null.
    #[serde(default)]
    pub base_sizes: Option<Vec<u32>>,
    /// Enumerate scales before ratios (true) or ratios before scales.
    #[serde(default = "super::common::yes")]
    pub scale_major: bool,
    /// Base scale of the octave scales (RetinaNet-style), used with `scales_per_octave`.
    #[serde(default)]
    pub octave_base_scale: Option<f64>,
    /// Number of scales per octave, used with `octave_base_scale`.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub scales_per_octave: Option<u32>,
    /// Anchor centre of each level `(x, y)`; computed from `center_offset` when null.
    #[serde(default)]
    pub centers: Option<Vec<(f64, f64)>>,
    /// Offset of the anchor centre within a stride cell (0 to 1).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub center_offset: f64,
    /// Return `HorizontalBoxes` instead of tensors.
    #[serde(default)]
    pub use_box_type: bool,
}

// --------------------------------------------------------------------------
// Box coders

fn zeros4() -> [f64; 4] {
    [0.0; 4]
}
fn ones4() -> [f64; 4] {
    [1.0; 4]
}

/// `DeltaXYWHBBoxCoder`: encodes boxes as normalised `(dx, dy, dw, dh)` deltas
/// (R-CNN parameterisation).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaXYWHBBoxCoderConfig {
    /// Means subtracted from the deltas.
    #[serde(default = "zeros4")]
    pub target_means: [f64; 4],
    /// Standard deviations the deltas are divided by.
    #[serde(default = "ones4")]
    pub target_stds: [f64; 4],
    /// Clip decoded boxes to the image.
    #[serde(default = "super::common::yes")]
    pub clip_border: bool,
    /// Clamp the centre offset to `ctr_clamp` pixels when decoding.
    #[serde(default)]
    pub add_ctr_clamp: bool,
    /// Maximum centre offset in pixels when `add_ctr_clamp` is set.
    #[serde(default = "super::common::uint::<32>")]
    pub ctr_clamp: u32,
    /// Decode to `HorizontalBoxes` instead of tensors.
    #[serde(default)]
    pub use_box_type: bool,
}

/// `LegacyDeltaXYWHBBoxCoder`: MMDetection 1.x's deltas, with widths and
/// heights counted `x2 - x1 + 1` (pixels as cells) and decoded boxes clamped
/// to `[0, w - 1]` and `[0, h - 1]`, for the `legacy_1.x` configs and v1
/// checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyDeltaXYWHBBoxCoderConfig {
    /// Means subtracted from the deltas.
    #[serde(default = "zeros4")]
    pub target_means: [f64; 4],
    /// Standard deviations the deltas are divided by.
    #[serde(default = "ones4")]
    pub target_stds: [f64; 4],
    /// Decode to `HorizontalBoxes` instead of tensors.
    #[serde(default)]
    pub use_box_type: bool,
}

/// `DistancePointBBoxCoder`: a box as its distances (left, top, right,
/// bottom) from a point (FCOS), as `mmdet`'s coder of that name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistancePointBBoxCoderConfig {
    /// Clip decoded boxes to the image.
    #[serde(default = "super::common::yes")]
    pub clip_border: bool,
    /// Decode to `HorizontalBoxes` instead of tensors.
    #[serde(default)]
    pub use_box_type: bool,
}

// --------------------------------------------------------------------------
// Assigners

/// The `type` of an assigner's `iou_calculator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum IouCalculatorType {
    /// Axis-aligned IoU between two sets of boxes.
    BboxOverlaps2D,
}

/// An assigner's `iou_calculator`: `{type: BboxOverlaps2D}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IouCalculatorConfig {
    /// `BboxOverlaps2D`.
    pub r#type: IouCalculatorType,
    /// Scale applied to the boxes before computing (for fp16).
    #[serde(default = "one")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub scale: f64,
    /// Compute in this dtype (`fp16`) or the input's when null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
}

fn default_iou_calculator() -> IouCalculatorConfig {
    IouCalculatorConfig { r#type: IouCalculatorType::BboxOverlaps2D, scale: 1.0, dtype: None }
}

/// A negative-IoU threshold: below a value, or inside a `[low, high)` range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum NegIouThr {
    /// Negative when the max IoU is in `[0, value)`.
    Below(#[schemars(range(min = 0.0, max = 1.0))] f64),
    /// Negative when the max IoU is in `[low, high)`.
    Range((f64, f64)),
}

/// `MaxIoUAssigner`: each prior takes the ground truth it overlaps most
/// (positive above `pos_iou_thr`, negative below `neg_iou_thr`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxIoUAssignerConfig {
    /// IoU at or above which a prior is positive.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub pos_iou_thr: f64,
    /// IoU below which (or range in which) a prior is negative.
    pub neg_iou_thr: NegIouThr,
    /// Minimum IoU for a low-quality match (a ground truth's best prior).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_pos_iou: f64,
    /// Assign all priors tied for a ground truth's max IoU, not just one.
    #[serde(default = "super::common::yes")]
    pub gt_max_assign_all: bool,
    /// IoF with ignored boxes above which a prior is ignored; negative disables.
    #[serde(default = "minus_one")]
    #[schemars(range(max = 1.0))]
    pub ignore_iof_thr: f64,
    /// Compute IoF relative to the candidates (else to the ignored boxes).
    #[serde(default = "super::common::yes")]
    pub ignore_wrt_candidates: bool,
    /// Let each ground truth keep its best prior even below `pos_iou_thr` (Faster R-CNN RPN).
    #[serde(default = "super::common::yes")]
    pub match_low_quality: bool,
    /// Assign on CPU when an image has more ground truths than this; negative never.
    #[serde(default = "minus_one")]
    pub gpu_assign_thr: f64,
    /// How IoUs are computed.
    #[serde(default = "default_iou_calculator")]
    pub iou_calculator: IouCalculatorConfig,
    /// Permute repeated ground truths (`{iou_thr, perm_range}`); null disables.
    #[serde(default)]
    pub perm_repeat_gt_cfg: Option<AnyObject>,
}

/// `ATSSAssigner`: adaptive training sample selection (ATSS, Zhang et al.,
/// 2020): per ground truth, the `topk` priors of each level whose centres
/// are nearest its centre are candidates; those whose IoU reaches the
/// candidates' mean plus standard deviation and whose centre lies inside
/// the box are positive, each taking its highest-IoU such ground truth.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ATSSAssignerConfig {
    /// Candidates per level and ground truth (nearest centres).
    #[schemars(range(min = 1))]
    pub topk: u32,
    /// Must be null: the cost-weighted variant is DDOD's.
    #[serde(default)]
    pub alpha: super::common::Null,
    /// How IoUs are computed.
    #[serde(default = "default_iou_calculator")]
    pub iou_calculator: IouCalculatorConfig,
    /// IoF with ignored boxes above which a prior is ignored; negative disables.
    #[serde(default = "minus_one")]
    #[schemars(range(max = 1.0))]
    pub ignore_iof_thr: f64,
}

/// `TaskAlignedAssigner` (TOOD, Feng et al., 2021): per ground truth, the
/// `topk` predictions of highest alignment `score ^ alpha * IoU ^ beta` (the
/// predicted box's IoU, the score at the object's class) whose prior's
/// centre lies inside the box are positive, each taking its highest-IoU
/// such ground truth.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskAlignedAssignerConfig {
    /// Candidates per ground truth, over all levels.
    #[schemars(range(min = 1))]
    pub topk: u32,
    /// How IoUs are computed.
    #[serde(default = "default_iou_calculator")]
    pub iou_calculator: IouCalculatorConfig,
}

/// `PointAssigner` (RepPoints, Yang et al., 2019): each ground truth is
/// given the level `log2(sqrt(w * h) / scale)` (clamped to the levels) and,
/// on it, the `pos_num` points nearest its centre (distances in units of
/// its width and height), unless a point is already nearer another one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PointAssignerConfig {
    /// Object size, in strides, that maps to a level's stride.
    #[serde(default = "uint::<4>")]
    #[schemars(range(min = 1))]
    pub scale: u32,
    /// Points per ground truth.
    #[serde(default = "uint::<3>")]
    #[schemars(range(min = 1))]
    pub pos_num: u32,
}

/// `HungarianAssigner`: one-to-one bipartite matching of predictions to
/// ground truths minimising a weighted sum of match costs (DETR, Sparse R-CNN).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HungarianAssignerConfig {
    /// The match costs summed into the assignment cost, e.g. `FocalLossCost`, `BBoxL1Cost`, `IoUCost`.
    pub match_costs: OneOrMany<MatchCostCfg>,
}

// --------------------------------------------------------------------------
// Samplers

/// `RandomSampler`: samples `num` priors, at most `pos_fraction` of them positive.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomSamplerConfig {
    /// Number of samples per image.
    #[schemars(range(min = 1))]
    pub num: u32,
    /// Upper bound of the fraction of positive samples.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub pos_fraction: f64,
    /// Upper bound of negatives per positive; -1 for no bound.
    #[serde(default = "super::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub neg_pos_ub: i64,
    /// Add the ground-truth boxes to the proposals before sampling.
    #[serde(default = "super::common::yes")]
    pub add_gt_as_proposals: bool,
}

/// `CombinedSampler` (Libra R-CNN's `train_cfg.rcnn.sampler`): the
/// `RandomSampler` counts, its positives chosen by `pos_sampler` and its
/// negatives by `neg_sampler` (each built with these settings).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CombinedSamplerConfig {
    /// The sample counts (`num`, `pos_fraction`, `neg_pos_ub`, `add_gt_as_proposals`).
    #[serde(flatten)]
    pub sampling: RandomSamplerConfig,
    /// Chooses the positives: `InstanceBalancedPosSampler` or `RandomSampler`.
    pub pos_sampler: crate::registry::refs::SamplerCfg,
    /// Chooses the negatives: `IoUBalancedNegSampler` or `RandomSampler`.
    pub neg_sampler: crate::registry::refs::SamplerCfg,
}

/// A `CombinedSampler` part's own sampling counts: MMDetection builds the
/// part with the combined sampler's, so these are accepted and unused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct UnusedSamplerCounts {
    /// Unused (the combined sampler's).
    #[serde(default)]
    pub num: Option<u32>,
    /// Unused (the combined sampler's).
    #[serde(default)]
    pub pos_fraction: Option<f64>,
    /// Unused (the combined sampler's).
    #[serde(default)]
    pub neg_pos_ub: Option<i64>,
    /// Unused (the combined sampler's).
    #[serde(default)]
    pub add_gt_as_proposals: Option<bool>,
}

/// `InstanceBalancedPosSampler` (Libra R-CNN): positives spread evenly over
/// the ground truths they match (at most `round(num / G) + 1` each, drawn
/// at random), topped up at random. As a `CombinedSampler`'s `pos_sampler`
/// it takes that sampler's counts; its own keys are accepted and unused.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceBalancedPosSamplerConfig {
    /// The combined sampler's counts, accepted here and unused.
    #[serde(flatten)]
    pub counts: UnusedSamplerCounts,
}

/// `IoUBalancedNegSampler` (Libra R-CNN): negatives spread evenly over
/// `num_bins` IoU intervals (from `floor_thr` to the largest IoU), with
/// `floor_fraction` of them drawn below `floor_thr`. As a
/// `CombinedSampler`'s `neg_sampler` it takes that sampler's counts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IoUBalancedNegSamplerConfig {
    /// IoU below which negatives are drawn uniformly; -1 for none. As in
    /// MMDetection, -1 becomes 0 after the sampler's first draw.
    #[serde(default = "minus_one")]
    pub floor_thr: f64,
    /// Share of the negatives drawn below `floor_thr`.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub floor_fraction: f64,
    /// IoU intervals the other negatives are spread over (1: uniform).
    #[serde(default = "super::common::uint::<3>")]
    #[schemars(range(min = 1))]
    pub num_bins: u32,
    /// The combined sampler's counts, accepted here and unused.
    #[serde(flatten)]
    pub counts: UnusedSamplerCounts,
}

fn loss_cls_key() -> String {
    "loss_cls".into()
}

/// `OHEMSampler`: online hard example mining (Shrivastava et al., 2016): as
/// `RandomSampler`, but where there are more candidates than wanted it keeps
/// those the box head currently classifies worst (the highest `loss_cls`),
/// not a random draw (`mmdet.models.task_modules.samplers.OHEMSampler`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OHEMSamplerConfig {
    /// `RandomSampler`'s counts: `num`, `pos_fraction`, `neg_pos_ub`, `add_gt_as_proposals`.
    #[serde(flatten)]
    pub sampling: RandomSamplerConfig,
    /// The box head's loss term that ranks the candidates (`loss_cls`).
    #[serde(default = "loss_cls_key")]
    #[schemars(extend("enum" = ["loss_cls"]))]
    pub loss_key: String,
}

/// `PseudoSampler`: takes all assigned priors as samples (no sampling); required by
/// Sparse R-CNN and QueryInst.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// An explicit empty `properties` keeps the shape of every other component schema.
#[schemars(extend("properties" = {}))]
pub struct PseudoSamplerConfig {}

// --------------------------------------------------------------------------
// Match costs

/// `FocalLossCost`: focal-loss classification cost of matching a prediction to a label.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FocalLossCostConfig {
    /// Weight of the positive class.
    #[serde(default = "default_alpha")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: f64,
    /// Focusing parameter.
    #[serde(default = "default_gamma")]
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// Added inside the logarithms for numerical stability.
    #[serde(default = "default_cost_eps")]
    #[schemars(range(min = 0.0))]
    pub eps: f64,
    /// Inputs are binary masks (mask cost) rather than class logits.
    #[serde(default)]
    pub binary_input: bool,
    /// Multiplier of this cost.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
}

fn default_alpha() -> f64 {
    0.25
}
fn default_gamma() -> f64 {
    2.0
}
fn default_cost_eps() -> f64 {
    1e-12
}

/// Box layout the predictions of `BBoxL1Cost` are compared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BoxFormat {
    /// Corners `(x1, y1, x2, y2)`.
    Xyxy,
    /// Centre and size `(cx, cy, w, h)`.
    Xywh,
}

fn default_xyxy() -> BoxFormat {
    BoxFormat::Xyxy
}

/// `BBoxL1Cost`: L1 distance between normalised predicted and ground-truth boxes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BBoxL1CostConfig {
    /// `xyxy` or `xywh`.
    #[serde(default = "default_xyxy")]
    pub box_format: BoxFormat,
    /// Multiplier of this cost.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
}

/// Overlap measure of `IoUCost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IouMode {
    /// Intersection over union.
    Iou,
    /// Intersection over foreground (the first box).
    Iof,
    /// Generalized IoU.
    Giou,
}

fn default_giou() -> IouMode {
    IouMode::Giou
}

/// `IoUCost`: negative (G)IoU between predicted and ground-truth boxes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IoUCostConfig {
    /// `iou`, `iof` or `giou`.
    #[serde(default = "default_giou")]
    pub iou_mode: IouMode,
    /// Multiplier of this cost.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
}

/// `ClassificationCost`: negative softmax probability of the ground-truth class.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassificationCostConfig {
    /// Multiplier of this cost.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
}

fn half() -> f64 {
    0.5
}

/// `MlvlPointGenerator`: one prior point per feature-map location and level
/// (anchor-free heads), at `(x + offset) * stride`, as
/// `mmdet`'s generator of that name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlvlPointGeneratorConfig {
    /// Stride of each level: one number, or `(w, h)`.
    #[schemars(length(min = 1))]
    pub strides: Vec<IntOrPair>,
    /// Offset of the point within its cell, in strides (0: the cell's corner).
    #[serde(default = "half")]
    pub offset: f64,
}

fn three() -> f64 {
    3.0
}

fn thirteen() -> u32 {
    13
}

/// `DynamicSoftLabelAssigner` (RTMDet, Lyu et al., 2022): per ground truth
/// the `k` priors of lowest cost are positive, where the cost adds a soft
/// classification cost (BCE against the IoU as a soft label, weighted by
/// the squared gap), `-log(IoU) * iou_weight` and a centre prior
/// `10^(distance / stride - soft_center_radius)`, and `k` is the sum of the
/// `topk` highest IoUs; only priors inside some box compete, and a prior
/// claimed twice keeps its cheapest ground truth.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamicSoftLabelAssignerConfig {
    /// Radius, in strides, of the soft centre prior.
    #[serde(default = "three")]
    pub soft_center_radius: f64,
    /// Highest IoUs summed for each ground truth's number of positives.
    #[serde(default = "thirteen")]
    #[schemars(range(min = 1))]
    pub topk: u32,
    /// Weight of the `-log(IoU)` cost.
    #[serde(default = "three")]
    pub iou_weight: f64,
    /// How IoUs are computed.
    #[serde(default = "default_iou_calculator")]
    pub iou_calculator: IouCalculatorConfig,
}
