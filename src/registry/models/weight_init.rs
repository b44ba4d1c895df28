//! Weight initialisation configs (`init_cfg`), as `mmengine.model.weight_init`.
//!
//! Every initialiser except `Pretrained` shares MMEngine's `BaseInit` keys
//! (`bias`, `bias_prob`, `layer`) and the `override` key that
//! `initialize()` pops. Inside an `override` entry MMEngine also reads
//! `name` (the child module to initialise), so each struct declares it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{OneOrMany, StrOrList};
use crate::registry::refs::InitCfg;

fn one() -> f64 {
    1.0
}

fn default_map_location() -> Option<String> {
    Some("cpu".into())
}

/// Normal or uniform sampling, for `Xavier` and `Kaiming`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Sample from a normal distribution.
    Normal,
    /// Sample from a uniform distribution.
    Uniform,
}

/// Which fan Kaiming initialisation preserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FanMode {
    /// Preserve the variance of the forward pass.
    #[serde(rename = "fan_in")]
    FanIn,
    /// Preserve the variance of the backward pass.
    #[serde(rename = "fan_out")]
    FanOut,
}

/// `Constant`: fill weights with `val` and biases with `bias`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstantInitConfig {
    /// Value the weights are filled with.
    pub val: f64,
    /// Value the biases are filled with.
    #[serde(default)]
    pub bias: f64,
    /// Initialise biases so that sigmoid outputs start at this probability (overrides `bias`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bias_prob: Option<f64>,
    /// Layer class names to initialise, e.g. `Conv2d` or `[Conv2d, Linear]`; all layers when null.
    #[serde(default)]
    pub layer: Option<StrOrList>,
    /// Child modules initialised differently, each with a `name`.
    #[serde(default)]
    pub r#override: Option<OneOrMany<InitCfg>>,
    /// Inside `override` only: the attribute name of the child module.
    #[serde(default)]
    pub name: Option<String>,
}

/// `Xavier`: Glorot initialisation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XavierInitConfig {
    /// Scaling factor.
    #[serde(default = "one")]
    pub gain: f64,
    /// `normal` or `uniform`.
    #[serde(default = "default_normal")]
    pub distribution: Distribution,
    /// Value the biases are filled with.
    #[serde(default)]
    pub bias: f64,
    /// Initialise biases so that sigmoid outputs start at this probability (overrides `bias`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bias_prob: Option<f64>,
    /// Layer class names to initialise; all layers when null.
    #[serde(default)]
    pub layer: Option<StrOrList>,
    /// Child modules initialised differently, each with a `name`.
    #[serde(default)]
    pub r#override: Option<OneOrMany<InitCfg>>,
    /// Inside `override` only: the attribute name of the child module.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_normal() -> Distribution {
    Distribution::Normal
}

/// `Normal`: weights drawn from N(mean, std²).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NormalInitConfig {
    /// Mean of the distribution.
    #[serde(default)]
    pub mean: f64,
    /// Standard deviation of the distribution.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub std: f64,
    /// Value the biases are filled with.
    #[serde(default)]
    pub bias: f64,
    /// Initialise biases so that sigmoid outputs start at this probability (overrides `bias`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bias_prob: Option<f64>,
    /// Layer class names to initialise; all layers when null.
    #[serde(default)]
    pub layer: Option<StrOrList>,
    /// Child modules initialised differently, each with a `name`.
    #[serde(default)]
    pub r#override: Option<OneOrMany<InitCfg>>,
    /// Inside `override` only: the attribute name of the child module.
    #[serde(default)]
    pub name: Option<String>,
}

/// `Kaiming`: He initialisation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KaimingInitConfig {
    /// Negative slope of the rectifier after this layer (leaky_relu only).
    #[serde(default)]
    pub a: f64,
    /// `fan_in` or `fan_out`.
    #[serde(default = "default_fan_out")]
    pub mode: FanMode,
    /// Non-linearity name as in `torch.nn.init.calculate_gain`, e.g. `relu`, `leaky_relu`.
    #[serde(default = "default_relu")]
    pub nonlinearity: String,
    /// `normal` or `uniform`.
    #[serde(default = "default_normal")]
    pub distribution: Distribution,
    /// Value the biases are filled with.
    #[serde(default)]
    pub bias: f64,
    /// Initialise biases so that sigmoid outputs start at this probability (overrides `bias`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bias_prob: Option<f64>,
    /// Layer class names to initialise; all layers when null.
    #[serde(default)]
    pub layer: Option<StrOrList>,
    /// Child modules initialised differently, each with a `name`.
    #[serde(default)]
    pub r#override: Option<OneOrMany<InitCfg>>,
    /// Inside `override` only: the attribute name of the child module.
    #[serde(default)]
    pub name: Option<String>,
}

/// `Caffe2Xavier`: Caffe2's "Xavier", which is Kaiming uniform with `a = 1`,
/// fan-in, for `leaky_relu`: U(-b, b), b = sqrt(3 / fan_in) (HRFPN's default).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Caffe2XavierInitConfig {
    /// Value the biases are filled with.
    #[serde(default)]
    pub bias: f64,
    /// Initialise biases so that sigmoid outputs start at this probability (overrides `bias`).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bias_prob: Option<f64>,
    /// Layer class names to initialise; all layers when null.
    #[serde(default)]
    pub layer: Option<StrOrList>,
    /// Child modules initialised differently, each with a `name`.
    #[serde(default)]
    pub r#override: Option<OneOrMany<InitCfg>>,
    /// Inside `override` only: the attribute name of the child module.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_fan_out() -> FanMode {
    FanMode::FanOut
}

fn default_relu() -> String {
    "relu".into()
}

/// `Pretrained`: load weights from a checkpoint (a path, or a URL, `torchvision://NAME` or
/// `open-mmlab://NAME` read from torch's hub cache, where MMEngine downloads it).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainedInitConfig {
    /// Checkpoint path, URL, or `torchvision://resnet50` / `open-mmlab://resnext101_32x4d`-style model name.
    pub checkpoint: String,
    /// Load only the keys under this prefix (stripped), e.g. `backbone.`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Device the checkpoint is loaded to.
    #[serde(default = "default_map_location")]
    pub map_location: Option<String>,
    /// Inside `override` only: the attribute name of the child module.
    #[serde(default)]
    pub name: Option<String>,
}
