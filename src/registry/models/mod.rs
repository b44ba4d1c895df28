//! Config structs of model components, grouped like `mmdet/models`.

pub mod backbones;
pub mod bbox_heads;
pub mod common;
pub mod data_preprocessors;
pub mod dense_heads;
pub mod detectors;
pub mod layers;
pub mod losses;
pub mod mask_heads;
pub mod necks;
pub mod ops;
pub mod roi_heads;
pub mod task_modules;
pub mod train_test;
pub mod weight_init;
