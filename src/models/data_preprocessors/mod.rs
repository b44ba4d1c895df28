//! Data preprocessors (`mmdet/models/data_preprocessors`): turn the loader's
//! packed samples into a normalised, padded batch on the model's device.

// The train and test loops consume these; until they land nothing in the
// binary reads them.
#[allow(dead_code)]
pub mod det_data_preprocessor;

#[allow(unused_imports)]
pub use det_data_preprocessor::{DetBatch, DetDataPreprocessor, DetDataSample, InstanceTensors, MaskTensors};
