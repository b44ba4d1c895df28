//! Data preprocessor configs (`mmdet/models/data_preprocessors`): batching,
//! normalisation and padding done on the device before the backbone.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::AnyObject;

/// `DetDataPreprocessor`: normalises, converts BGR/RGB, pads images (and masks)
/// to a common, divisible size and stacks them into a batch.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetDataPreprocessorConfig {
    /// Per-channel mean subtracted from the images (1 or 3 values); no normalisation when null.
    #[serde(default)]
    #[schemars(extend("anyOf" = [
        {"type": "null"},
        {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 1},
        {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
    ]))]
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation the images are divided by (1 or 3 values).
    #[serde(default)]
    #[schemars(extend("anyOf" = [
        {"type": "null"},
        {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 1},
        {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
    ]))]
    pub std: Option<Vec<f64>>,
    /// Pad height and width up to a multiple of this.
    #[serde(default = "super::common::uint::<1>")]
    #[schemars(range(min = 1))]
    pub pad_size_divisor: u32,
    /// Value of padded image pixels.
    #[serde(default)]
    pub pad_value: f64,
    /// Pad the ground-truth masks to the batch size too (instance segmentation).
    #[serde(default)]
    pub pad_mask: bool,
    /// Value of padded mask pixels.
    #[serde(default)]
    pub mask_pad_value: i64,
    /// Pad the semantic segmentation maps too.
    #[serde(default)]
    pub pad_seg: bool,
    /// Value of padded segmentation pixels.
    #[serde(default = "super::common::int::<255>")]
    pub seg_pad_value: i64,
    /// Convert BGR (as loaded by OpenCV) to RGB.
    #[serde(default)]
    pub bgr_to_rgb: bool,
    /// Convert RGB to BGR.
    #[serde(default)]
    pub rgb_to_bgr: bool,
    /// Convert box-type ground truths to plain tensors.
    #[serde(default = "super::common::yes")]
    pub boxtype2tensor: bool,
    /// Copy host-to-device without blocking.
    #[serde(default)]
    pub non_blocking: Option<bool>,
    /// Batch-level augmentations (e.g. `BatchSyncRandomResize`); not supported by detc, must be null or empty.
    #[serde(default)]
    pub batch_augments: Option<Vec<AnyObject>>,
}
