//! Runtime component configs, as MMEngine (and MMDetection's engine parts)
//! declare them: optimizer wrappers and optimizers ([`optim`]), parameter
//! schedulers ([`schedulers`]), hooks ([`hooks`]), and here loops,
//! visualizers, visualization backends and the log processor.

pub mod hooks;
pub mod optim;
pub mod schedulers;

pub use hooks::*;
pub use optim::*;
pub use schedulers::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::models::common::{Color, OneOrMany};
use super::refs::VisBackendCfg;

// --------------------------------------------------------------------------
// Loops

/// `EpochBasedTrainLoop`: trains for `max_epochs` epochs, validating every
/// `val_interval` epochs from `val_begin` (`mmengine.runner.EpochBasedTrainLoop`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EpochBasedTrainLoopConfig {
    /// Number of training epochs.
    #[schemars(range(min = 1))]
    pub max_epochs: u32,
    /// First epoch after which validation runs.
    #[serde(default = "super::models::common::uint::<1>")]
    pub val_begin: u32,
    /// Validate every this many epochs.
    #[serde(default = "super::models::common::uint::<1>")]
    #[schemars(range(min = 1))]
    pub val_interval: u32,
    /// `(from_epoch, new_val_interval)` pairs that change `val_interval` during training.
    #[serde(default)]
    pub dynamic_intervals: Option<Vec<(u32, u32)>>,
}

/// `IterBasedTrainLoop`: trains for `max_iters` iterations over an endless data
/// stream (`mmengine.runner.IterBasedTrainLoop`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IterBasedTrainLoopConfig {
    /// Number of training iterations.
    #[schemars(range(min = 1))]
    pub max_iters: u64,
    /// First iteration after which validation runs.
    #[serde(default = "super::models::common::uint::<1>")]
    pub val_begin: u32,
    /// Validate every this many iterations.
    #[serde(default = "super::models::common::uint::<1000>")]
    #[schemars(range(min = 1))]
    pub val_interval: u32,
    /// `(from_iter, new_val_interval)` pairs that change `val_interval` during training.
    #[serde(default)]
    pub dynamic_intervals: Option<Vec<(u64, u32)>>,
}

/// `ValLoop`: runs the model over `val_dataloader` and evaluates with `val_evaluator`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValLoopConfig {
    /// Must be false: evaluation in fp16 autocast is not supported yet (it runs in float32).
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub fp16: bool,
}

/// `TestLoop`: runs the model over `test_dataloader` and evaluates with `test_evaluator`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestLoopConfig {
    /// Must be false: evaluation in fp16 autocast is not supported yet (it runs in float32).
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub fp16: bool,
}

// --------------------------------------------------------------------------
// Visualizers and backends

fn default_visualizer_name() -> String {
    "visualizer".into()
}

fn default_text_color() -> Option<Color> {
    Some(Color::Rgb([200, 200, 200]))
}

fn default_line_width() -> f64 {
    3.0
}

fn default_alpha() -> f64 {
    0.8
}

/// `DetLocalVisualizer`: draws boxes, masks and labels, and forwards scalars and
/// images to its backends (`mmdet.visualization.DetLocalVisualizer`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetLocalVisualizerConfig {
    /// Instance name (the visualizer is a global singleton by name).
    #[serde(default = "default_visualizer_name")]
    pub name: String,
    /// Storage backends for scalars and images, e.g. `[{type: LocalVisBackend}]`.
    #[serde(default)]
    pub vis_backends: Option<OneOrMany<VisBackendCfg>>,
    /// Folder of the backends' files; the run's `vis_data` when null.
    #[serde(default)]
    pub save_dir: Option<String>,
    /// Box colour(s); the dataset palette when null.
    #[serde(default)]
    pub bbox_color: Option<Color>,
    /// Label text colour(s).
    #[serde(default = "default_text_color")]
    pub text_color: Option<Color>,
    /// Mask colour(s); the dataset palette when null.
    #[serde(default)]
    pub mask_color: Option<Color>,
    /// Box line width in pixels.
    #[serde(default = "default_line_width")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub line_width: f64,
    /// Opacity of masks.
    #[serde(default = "default_alpha")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: f64,
}

/// `LocalVisBackend`: writes scalars (`scalars.json`), the config and images to
/// the local `vis_data` folder (`mmengine.visualization.LocalVisBackend`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalVisBackendConfig {
    /// Name under which the visualizer keeps this backend; the type name when null.
    #[serde(default)]
    pub name: Option<String>,
    /// Root folder; the visualizer's `save_dir` when null.
    #[serde(default)]
    pub save_dir: Option<String>,
    /// Subfolder of the drawn images (`{name}_{step}.png`).
    #[serde(default = "default_img_save_dir")]
    pub img_save_dir: String,
    /// File name of the saved config: Python when it ends in `.py` (MMEngine's `Config.fromfile` reads it), JSON otherwise.
    #[serde(default = "default_config_save_file")]
    pub config_save_file: String,
    /// File name of the scalar log (one JSON object per line).
    #[serde(default = "default_scalar_save_file")]
    pub scalar_save_file: String,
}

fn default_img_save_dir() -> String {
    "vis_image".into()
}
fn default_config_save_file() -> String {
    "config.py".into()
}
fn default_scalar_save_file() -> String {
    "scalars.json".into()
}

/// `TensorboardVisBackend`: writes scalars, images and the config as TensorBoard event files
/// (`mmengine.visualization.TensorboardVisBackend`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorboardVisBackendConfig {
    /// Name under which the visualizer keeps this backend; the type name when null.
    #[serde(default)]
    pub name: Option<String>,
    /// Event file folder; the visualizer's `save_dir` when null.
    #[serde(default)]
    pub save_dir: Option<String>,
}

// --------------------------------------------------------------------------
// Log processor

/// Statistic a custom log entry reports over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogMethod {
    /// Average.
    Mean,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Latest value.
    Current,
}

/// A named smoothing window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowName {
    /// Since the start of the epoch.
    Epoch,
    /// Since the start of training.
    Global,
}

/// A smoothing window: a number of iterations, `epoch` or `global`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum WindowSize {
    /// The last this many iterations.
    Iters(#[schemars(range(min = 1))] u32),
    /// `epoch` or `global`.
    Named(WindowName),
}

/// One entry of `LogProcessor.custom_cfg`: how a logged value is smoothed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogCustomConfig {
    /// Name of the logged value, e.g. `loss`.
    pub data_src: String,
    /// Name to log it under; `data_src` when absent.
    #[serde(default)]
    pub log_name: Option<String>,
    /// `mean`, `min`, `max` or `current`.
    #[serde(default)]
    pub method_name: Option<LogMethod>,
    /// Window the statistic runs over.
    #[serde(default)]
    pub window_size: Option<WindowSize>,
}

fn default_mean_pattern() -> String {
    ".*(loss|time|data_time|grad_norm).*".into()
}

/// `LogProcessor`: formats the log lines and smooths the logged values over
/// `window_size` iterations (`mmengine.runner.LogProcessor`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogProcessorConfig {
    /// Smoothing window of the logged values.
    #[serde(default = "default_window")]
    pub window_size: WindowSize,
    /// Log lines show epochs (`Epoch(train) [e][i/n]`) or iterations.
    #[serde(default = "super::models::common::yes")]
    pub by_epoch: bool,
    /// Custom smoothing of individual values.
    #[serde(default)]
    pub custom_cfg: Option<Vec<LogCustomConfig>>,
    /// Significant digits of logged floats.
    #[serde(default = "super::models::common::uint::<4>")]
    pub num_digits: u32,
    /// Prefix logged names with their mode (`train/loss`) in the scalar backends.
    #[serde(default)]
    pub log_with_hierarchy: bool,
    /// Regex of value names averaged over the window by default.
    #[serde(default = "default_mean_pattern")]
    pub mean_pattern: String,
}

fn default_window() -> WindowSize {
    WindowSize::Iters(10)
}
