//! Configs of mmcv ops used by the detectors: `RoIAlign` (an extractor's
//! `roi_layer`) and `nms` / `soft_nms` (the `nms` dict of test configs).
//!
//! An `nms` dict is not built through a registry in MMCV: `batched_nms`
//! pops `type`, `class_agnostic`, `split_thr` and `max_num`, and passes the
//! rest to the op function, so the fields here are the union of those keys
//! and the op's keyword arguments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{IntOrPair, Null};

fn default_split_thr() -> u32 {
    10_000
}

fn default_max_num() -> i64 {
    -1
}

/// Pooling inside each RoIAlign bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// Average the samples (the default).
    Avg,
    /// Take the maximum sample.
    Max,
}

fn default_pool_mode() -> PoolMode {
    PoolMode::Avg
}

/// `RoIAlign` (Mask R-CNN, He et al. 2017), as `mmcv.ops.RoIAlign`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoIAlignConfig {
    /// Output size `h` or `(h, w)`, e.g. 7 for boxes, 14 for masks.
    pub output_size: IntOrPair,
    /// Must be null: the RoI extractor sets the scale of each level to
    /// `1 / featmap_stride` (MMDetection fails on a value here).
    #[serde(default)]
    pub spatial_scale: Null,
    /// Sampling points per bin side; 0 adapts to the RoI size.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub sampling_ratio: u32,
    /// `avg` or `max`.
    #[serde(default = "default_pool_mode")]
    pub pool_mode: PoolMode,
    /// Shift box coordinates by -0.5 pixel (the Detectron2 "aligned" variant).
    #[serde(default = "super::common::yes")]
    pub aligned: bool,
    /// Use torchvision's implementation instead of mmcv's.
    #[serde(default)]
    pub use_torchvision: bool,
}

/// `nms`: greedy non-maximum suppression (`mmcv.ops.nms` through `batched_nms`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NmsConfig {
    /// Boxes overlapping a kept box by more than this IoU are suppressed.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub iou_threshold: f64,
    /// Suppress across classes instead of within each class.
    #[serde(default)]
    pub class_agnostic: bool,
    /// Above this many boxes, run NMS per class to bound memory.
    #[serde(default = "default_split_thr")]
    #[schemars(range(min = 1))]
    pub split_thr: u32,
    /// Pixel offset in box width/height (0 or 1; 1 is the legacy convention).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub offset: u32,
    /// Drop boxes scoring below this before NMS.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub score_threshold: f64,
    /// Keep at most this many boxes; -1 keeps all.
    #[serde(default = "default_max_num")]
    #[schemars(range(min = -1))]
    pub max_num: i64,
}

/// Score decay of Soft-NMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SoftNmsMethod {
    /// Multiply by `1 - IoU` above the threshold.
    Linear,
    /// Multiply by `exp(-IoU²/sigma)`.
    Gaussian,
    /// Hard suppression (plain NMS).
    Naive,
}

fn default_soft_iou() -> f64 {
    0.3
}
fn default_sigma() -> f64 {
    0.5
}
fn default_min_score() -> f64 {
    1e-3
}
fn default_soft_method() -> SoftNmsMethod {
    SoftNmsMethod::Linear
}

/// `soft_nms`: Soft-NMS (Bodla et al., 2017), `mmcv.ops.soft_nms` through `batched_nms`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SoftNmsConfig {
    /// IoU above which scores decay.
    #[serde(default = "default_soft_iou")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub iou_threshold: f64,
    /// Gaussian decay width.
    #[serde(default = "default_sigma")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub sigma: f64,
    /// Boxes whose decayed score falls below this are dropped.
    #[serde(default = "default_min_score")]
    #[schemars(range(min = 0.0))]
    pub min_score: f64,
    /// `linear`, `gaussian` or `naive`.
    #[serde(default = "default_soft_method")]
    pub method: SoftNmsMethod,
    /// Pixel offset in box width/height (0 or 1).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub offset: u32,
    /// Suppress across classes instead of within each class.
    #[serde(default)]
    pub class_agnostic: bool,
    /// Above this many boxes, run per class to bound memory.
    #[serde(default = "default_split_thr")]
    #[schemars(range(min = 1))]
    pub split_thr: u32,
}
