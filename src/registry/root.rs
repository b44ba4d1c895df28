//! The top-level sections of a config, as MMEngine's `Runner` reads them.
//! (Placeholder until the full section structs land.)

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::refs::DetectorCfg;

/// The sections of a config file's top level.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RootConfig {
    /// The detector.
    #[serde(default)]
    pub model: Option<DetectorCfg>,
}

/// Top-level helper variables MMDetection configs use.
pub const HELPER_VARIABLES: &[&str] = &["train_pipeline", "test_pipeline", "data_root", "dataset_type", "backend_args"];
