//! Data preprocessor configs (`mmdet/models/data_preprocessors`): batching,
//! normalisation and padding done on the device before the backbone.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::refs::BatchAugmentCfg;

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
    /// Batch-level augmentations applied in training after padding, e.g. `BatchFixedSizePad`.
    #[serde(default)]
    pub batch_augments: Option<Vec<BatchAugmentCfg>>,
}

fn uint_255() -> u32 {
    255
}

/// `BatchFixedSizePad`: pads a training batch bottom/right to a fixed `size`
/// `(h, w)` and sets every sample's `batch_input_shape` and `pad_shape` to
/// it, as the large-scale-jitter configs do after their 1024 px crop
/// (`mmdet.models.data_preprocessors.BatchFixedSizePad`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchFixedSizePadConfig {
    /// `(h, w)` of the padded batch; a side already as large is left as is.
    pub size: (u32, u32),
    /// Value of the padded image pixels (after normalisation).
    #[serde(default)]
    pub img_pad_value: f64,
    /// Pad the ground-truth masks to `size` too.
    #[serde(default)]
    pub pad_mask: bool,
    /// Value of the padded mask pixels.
    #[serde(default)]
    #[schemars(range(min = 0, max = 255))]
    pub mask_pad_value: u32,
    /// Must be false: detc loads no semantic segmentation maps.
    #[serde(default)]
    #[schemars(extend("const" = false))]
    pub pad_seg: bool,
    /// Value of padded segmentation pixels (unused without `pad_seg`).
    #[serde(default = "uint_255")]
    pub seg_pad_value: u32,
}
