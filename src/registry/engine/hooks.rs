//! Hooks (`default_hooks`, `custom_hooks`), as `mmengine.hooks` and
//! `mmdet.engine.hooks`. Every hook dict may carry a `priority`, which the
//! runner pops before building the hook.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::models::common::{AnyObject, BackendArgs, Null, OneOrMany, StrOrList};

/// A named hook priority of MMEngine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PriorityName {
    /// 0.
    Highest,
    /// 10.
    VeryHigh,
    /// 30.
    High,
    /// 40.
    AboveNormal,
    /// 50.
    Normal,
    /// 60.
    BelowNormal,
    /// 70.
    Low,
    /// 90.
    VeryLow,
    /// 100.
    Lowest,
}

/// A hook's `priority` (popped by the runner): 0 (first) to 100 (last), or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum Priority {
    /// 0 (highest) to 100 (lowest).
    Value(#[schemars(range(min = 0, max = 100))] u32),
    /// `HIGHEST`, `VERY_HIGH`, `HIGH`, `ABOVE_NORMAL`, `NORMAL`, `BELOW_NORMAL`, `LOW`, `VERY_LOW`, `LOWEST`.
    Name(PriorityName),
}

/// `IterTimerHook`: records `time` and `data_time` of each iteration and the ETA.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IterTimerHookConfig {
    /// Hook priority; `NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `ParamSchedulerHook`: steps the parameter schedulers after each iteration / epoch.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSchedulerHookConfig {
    /// Hook priority; `LOW` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `DistSamplerSeedHook`: sets the sampler's epoch so that shuffling differs per epoch.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistSamplerSeedHookConfig {
    /// Hook priority; `NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `RuntimeInfoHook`: publishes epoch, iteration, learning rate and metrics to the
/// message hub (registered by the runner even when not configured).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeInfoHookConfig {
    /// Hook priority; `VERY_HIGH` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `LoggerHook`: writes the training/validation log lines and `scalars.json`
/// every `interval` iterations (`mmengine.hooks.LoggerHook`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggerHookConfig {
    /// Log every this many iterations.
    #[serde(default = "super::super::models::common::uint::<10>")]
    #[schemars(range(min = 1))]
    pub interval: u32,
    /// Skip the last iterations of an epoch that do not fill an interval.
    #[serde(default = "super::super::models::common::yes")]
    pub ignore_last: bool,
    /// Log the experiment name every this many iterations.
    #[serde(default = "super::super::models::common::uint::<1000>")]
    #[schemars(range(min = 1))]
    pub interval_exp_name: u32,
    /// Must be null: copying the logs to another folder after training is not supported yet (they stay in the work dir).
    #[serde(default)]
    pub out_dir: Null,
    /// Suffixes of the log files copied to `out_dir`.
    #[serde(default = "default_log_suffix")]
    pub out_suffix: StrOrList,
    /// Keep the local copy after copying to `out_dir`.
    #[serde(default = "super::super::models::common::yes")]
    pub keep_local: bool,
    /// Deprecated FileClient arguments; use `backend_args`.
    #[serde(default)]
    pub file_client_args: Option<AnyObject>,
    /// Log validation metrics against the epoch (true) or the iteration.
    #[serde(default = "super::super::models::common::yes")]
    pub log_metric_by_epoch: bool,
    /// File backend arguments for `out_dir`.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
    /// Hook priority; `BELOW_NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

fn default_log_suffix() -> StrOrList {
    StrOrList::List([".json", ".log", ".py", "yaml"].into_iter().map(String::from).collect())
}

/// Comparison rule for `save_best`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BestRule {
    /// Larger is better (AP, accuracy).
    Greater,
    /// Smaller is better (loss).
    Less,
}

/// `CheckpointHook`: saves checkpoints every `interval` epochs or iterations and
/// keeps the newest `max_keep_ckpts` (`mmengine.hooks.CheckpointHook`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointHookConfig {
    /// Save every this many epochs (or iterations); -1 disables periodic saving.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(extend("anyOf" = [{"type": "integer", "const": -1}, {"type": "integer", "minimum": 1}]))]
    pub interval: i64,
    /// `interval` counts epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Include the optimizer state.
    #[serde(default = "super::super::models::common::yes")]
    pub save_optimizer: bool,
    /// Include the parameter scheduler state.
    #[serde(default = "super::super::models::common::yes")]
    pub save_param_scheduler: bool,
    /// Save here instead of the work dir.
    #[serde(default)]
    pub out_dir: Option<String>,
    /// Keep only the newest this many checkpoints; -1 keeps all.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(extend("anyOf" = [{"type": "integer", "const": -1}, {"type": "integer", "minimum": 1}]))]
    pub max_keep_ckpts: i64,
    /// Always save the last checkpoint.
    #[serde(default = "super::super::models::common::yes")]
    pub save_last: bool,
    /// Metric(s) whose best value is checkpointed (`auto` takes the first metric), e.g. `coco/bbox_mAP`.
    #[serde(default)]
    pub save_best: Option<StrOrList>,
    /// `greater` or `less` (one per `save_best` entry); inferred from the metric name when null.
    #[serde(default)]
    pub rule: Option<OneOrMany<BestRule>>,
    /// Extra metric-name substrings for which greater is better.
    #[serde(default)]
    pub greater_keys: Option<Vec<String>>,
    /// Extra metric-name substrings for which less is better.
    #[serde(default)]
    pub less_keys: Option<Vec<String>>,
    /// Deprecated FileClient arguments; use `backend_args`.
    #[serde(default)]
    pub file_client_args: Option<AnyObject>,
    /// Checkpoint file name template; `epoch_{}.pth` / `iter_{}.pth` when null.
    #[serde(default)]
    pub filename_tmpl: Option<String>,
    /// File backend arguments for `out_dir`.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
    /// Also publish the last / best checkpoint with only these keys (e.g. `meta`, `state_dict`).
    #[serde(default)]
    pub published_keys: Option<StrOrList>,
    /// First epoch (or iteration) at which periodic saving starts.
    #[serde(default)]
    pub save_begin: u64,
    /// Hook priority; `VERY_LOW` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `DetVisualizationHook`: draws predictions on validation/test images
/// (`mmdet.engine.hooks.DetVisualizationHook`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetVisualizationHookConfig {
    /// Draw at all (off by default): the first image of a validation batch, every
    /// test image, ground truth beside predictions, to the visualizer's backends
    /// (`vis_data/vis_image/val_img_{step}.png`) or `test_out_dir`.
    #[serde(default)]
    pub draw: bool,
    /// Draw when `iter + batch_idx` of a validation batch is a multiple of this.
    #[serde(default = "super::super::models::common::uint::<50>")]
    #[schemars(range(min = 1))]
    pub interval: u32,
    /// Draw only predictions scoring at least this.
    #[serde(default = "default_vis_score_thr")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score_thr: f64,
    /// Must be false: detc shows no window (`draw: true` or `detc test --show-dir` write the drawings to files).
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub show: bool,
    /// Seconds each shown image stays up.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub wait_time: f64,
    /// Write test-time drawings to this folder (under the run's log dir), as JPEG files named after the images.
    #[serde(default)]
    pub test_out_dir: Option<String>,
    /// File backend arguments for reading images.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
    /// Hook priority; `NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

fn default_vis_score_thr() -> f64 {
    0.3
}

/// `EmptyCacheHook`: releases cached CUDA memory at chosen points.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyCacheHookConfig {
    /// Empty the cache before each epoch.
    #[serde(default)]
    pub before_epoch: bool,
    /// Empty the cache after each epoch.
    #[serde(default = "super::super::models::common::yes")]
    pub after_epoch: bool,
    /// Empty the cache after each iteration.
    #[serde(default)]
    pub after_iter: bool,
    /// Hook priority; `NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// The averaged model of an `EMAHook` (`ema_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EmaType {
    /// MMEngine's: `avg += momentum * (param - avg)`.
    ExponentialMovingAverage,
    /// MMDetection's (YOLOX, RTMDet): the momentum
    /// `(1 - momentum) * exp(-(1 + steps) / gamma) + momentum`, large at first.
    ExpMomentumEMA,
    /// MMEngine's: the momentum `max(momentum, gamma / (gamma + steps))`.
    MomentumAnnealingEMA,
}

fn default_ema_type() -> EmaType {
    EmaType::ExponentialMovingAverage
}

fn default_ema_momentum() -> f64 {
    0.0002
}

fn one_u64() -> u64 {
    1
}

/// `EMAHook`: keeps an exponential moving average of the model's weights,
/// validates with it, and saves it as the checkpoint's `state_dict` (the
/// trained weights go to `ema_state_dict`, under `module.`), as
/// `mmengine.hooks.EMAHook`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EMAHookConfig {
    /// The averaging rule.
    #[serde(default = "default_ema_type")]
    pub ema_type: EmaType,
    /// Must be false: loading an `ema_state_dict` with missing keys is not reported.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub strict_load: bool,
    /// Average from this iteration on (the average copies the weights before).
    #[serde(default)]
    pub begin_iter: u64,
    /// Average from this epoch on; set it or `begin_iter`, not both.
    #[serde(default)]
    pub begin_epoch: u64,
    /// The weight of the new value, in (0, 1).
    #[serde(default = "default_ema_momentum")]
    #[schemars(extend("exclusiveMinimum" = 0, "exclusiveMaximum" = 1))]
    pub momentum: f64,
    /// `ExpMomentumEMA`'s (default 2000) or `MomentumAnnealingEMA`'s (default 100) annealing constant.
    #[serde(default)]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub gamma: Option<f64>,
    /// Average every `interval` updates.
    #[serde(default = "one_u64")]
    #[schemars(range(min = 1))]
    pub interval: u64,
    /// Average the buffers (BatchNorm statistics) too; else they are copied.
    #[serde(default)]
    pub update_buffers: bool,
    /// Must be null: the average lives on the model's device.
    #[serde(default)]
    pub device: Null,
    /// Hook priority; `NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// `PipelineSwitchHook`: from epoch `switch_epoch` (0-based, at the start of
/// that epoch) the training dataset runs `switch_pipeline` instead of its
/// own, as `mmdet.engine.hooks.PipelineSwitchHook` (RTMDet's and YOLOX's
/// last epochs without the mosaic).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSwitchHookConfig {
    /// The first epoch of the new pipeline.
    pub switch_epoch: u64,
    /// The new training pipeline, e.g. RTMDet's `train_pipeline_stage2`.
    pub switch_pipeline: Vec<crate::registry::refs::TransformCfg>,
    /// Hook priority; `NORMAL` when null.
    #[serde(default)]
    pub priority: Option<Priority>,
}
