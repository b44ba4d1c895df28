//! Parameter schedulers (`param_scheduler`, as `mmengine.optim.scheduler`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn one() -> f64 {
    1.0
}
fn third() -> f64 {
    1.0 / 3.0
}
fn tenth() -> f64 {
    0.1
}

/// MMEngine's "until the end" for a scheduler's `end` (`INF = int(1e9)`).
pub const SCHEDULER_INF: u64 = 1_000_000_000;

fn inf() -> u64 {
    SCHEDULER_INF
}

/// `LinearLR`: scales the learning rate linearly from `start_factor` to
/// `end_factor` over `[begin, end)` (warm-up), `mmengine.optim.LinearLR`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearLRConfig {
    /// Multiplier of the base learning rate at `begin`.
    #[serde(default = "third")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub start_factor: f64,
    /// Multiplier of the base learning rate at `end`.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub end_factor: f64,
    /// First step (epoch or iteration) the scheduler acts on.
    #[serde(default)]
    pub begin: u64,
    /// Step at which it stops (exclusive).
    #[serde(default = "inf")]
    pub end: u64,
    /// Index of the last step when resuming; -1 starts fresh.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub last_step: i64,
    /// `begin`/`end` count epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Give `begin`/`end` in epochs but update every iteration.
    #[serde(default)]
    pub convert_to_iter_based: bool,
    /// Log each value set (`Adjusting parameter value of group i to v.`).
    #[serde(default)]
    pub verbose: bool,
}

/// `MultiStepLR`: multiplies the learning rate by `gamma` at each milestone,
/// `mmengine.optim.MultiStepLR`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiStepLRConfig {
    /// Steps (epochs or iterations) at which the rate decays, increasing.
    pub milestones: Vec<u64>,
    /// Decay factor.
    #[serde(default = "tenth")]
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// First step the scheduler acts on.
    #[serde(default)]
    pub begin: u64,
    /// Step at which it stops (exclusive).
    #[serde(default = "inf")]
    pub end: u64,
    /// Index of the last step when resuming; -1 starts fresh.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub last_step: i64,
    /// `milestones`, `begin` and `end` count epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Give steps in epochs but update every iteration.
    #[serde(default)]
    pub convert_to_iter_based: bool,
    /// Log each value set (`Adjusting parameter value of group i to v.`).
    #[serde(default)]
    pub verbose: bool,
}

/// `CosineAnnealingLR`: cosine decay from the base rate to `eta_min` over
/// `T_max` steps (SGDR without restarts), `mmengine.optim.CosineAnnealingLR`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineAnnealingLRConfig {
    /// Length of the cosine half-period; `end - begin` when null.
    #[serde(rename = "T_max", default)]
    #[schemars(range(min = 1))]
    pub t_max: Option<u64>,
    /// Final learning rate; set this or `eta_min_ratio` (0 when both are null).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub eta_min: Option<f64>,
    /// Final learning rate as a fraction of the base rate.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub eta_min_ratio: Option<f64>,
    /// First step the scheduler acts on.
    #[serde(default)]
    pub begin: u64,
    /// Step at which it stops (exclusive).
    #[serde(default = "inf")]
    pub end: u64,
    /// Index of the last step when resuming; -1 starts fresh.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub last_step: i64,
    /// Steps count epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Give steps in epochs but update every iteration.
    #[serde(default)]
    pub convert_to_iter_based: bool,
    /// Log each value set (`Adjusting parameter value of group i to v.`).
    #[serde(default)]
    pub verbose: bool,
}

/// `ConstantLR`: multiplies the learning rate by a constant `factor` until `end`,
/// `mmengine.optim.ConstantLR`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstantLRConfig {
    /// Multiplier of the base learning rate.
    #[serde(default = "third")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub factor: f64,
    /// First step the scheduler acts on.
    #[serde(default)]
    pub begin: u64,
    /// Step at which the factor is removed (exclusive).
    #[serde(default = "inf")]
    pub end: u64,
    /// Index of the last step when resuming; -1 starts fresh.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub last_step: i64,
    /// Steps count epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Give steps in epochs but update every iteration.
    #[serde(default)]
    pub convert_to_iter_based: bool,
    /// Log each value set (`Adjusting parameter value of group i to v.`).
    #[serde(default)]
    pub verbose: bool,
}

/// `StepLR`: multiplies the learning rate by `gamma` every `step_size` steps
/// after `begin`, `mmengine.optim.StepLR`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepLRConfig {
    /// Period of the decay, in steps (epochs or iterations).
    #[schemars(range(min = 1))]
    pub step_size: u64,
    /// Decay factor.
    #[serde(default = "tenth")]
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// First step the scheduler acts on.
    #[serde(default)]
    pub begin: u64,
    /// Step at which it stops (exclusive).
    #[serde(default = "inf")]
    pub end: u64,
    /// Index of the last step when resuming; -1 starts fresh.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub last_step: i64,
    /// `step_size`, `begin` and `end` count epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Give steps in epochs but update every iteration.
    #[serde(default)]
    pub convert_to_iter_based: bool,
    /// Log each value set (`Adjusting parameter value of group i to v.`).
    #[serde(default)]
    pub verbose: bool,
}

/// `ExponentialLR`: multiplies the learning rate by `gamma` at every step in
/// `[begin, end)`, `mmengine.optim.ExponentialLR`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExponentialLRConfig {
    /// Decay factor per step.
    #[schemars(range(min = 0.0))]
    pub gamma: f64,
    /// First step the scheduler acts on.
    #[serde(default)]
    pub begin: u64,
    /// Step at which it stops (exclusive).
    #[serde(default = "inf")]
    pub end: u64,
    /// Index of the last step when resuming; -1 starts fresh.
    #[serde(default = "super::super::models::common::int::<-1>")]
    #[schemars(range(min = -1))]
    pub last_step: i64,
    /// Steps count epochs (true) or iterations (false).
    #[serde(default = "super::super::models::common::yes")]
    pub by_epoch: bool,
    /// Give steps in epochs but update every iteration.
    #[serde(default)]
    pub convert_to_iter_based: bool,
    /// Log each value set (`Adjusting parameter value of group i to v.`).
    #[serde(default)]
    pub verbose: bool,
}
