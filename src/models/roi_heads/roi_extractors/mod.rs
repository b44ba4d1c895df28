//! RoI extractors (`mmdet/models/roi_heads/roi_extractors`).

pub mod single_level_roi_extractor;

pub use single_level_roi_extractor::SingleRoIExtractor;
