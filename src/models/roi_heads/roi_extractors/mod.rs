//! RoI extractors (`mmdet/models/roi_heads/roi_extractors`).

pub mod generic_roi_extractor;
pub mod single_level_roi_extractor;

pub use generic_roi_extractor::GenericRoIExtractor;
pub use single_level_roi_extractor::SingleRoIExtractor;

use detc::registry::refs::RoiExtractorCfg;
use tch::{nn, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

/// A `bbox_roi_extractor` / `mask_roi_extractor` of a two-stage RoI head.
#[derive(Debug)]
pub enum RoIExtractor {
    Single(SingleRoIExtractor),
    Generic(GenericRoIExtractor),
}

impl RoIExtractor {
    /// Builds a config dict's extractor under `p` (only GRoIE's modules
    /// have parameters).
    pub fn from_cfg(cfg: &RoiExtractorCfg, p: &nn::Path) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "roi_extractor")? {
            "SingleRoIExtractor" => Ok(RoIExtractor::Single(SingleRoIExtractor::from_cfg(cfg)?)),
            "GenericRoIExtractor" => Ok(RoIExtractor::Generic(GenericRoIExtractor::new(&parse_cfg(&cfg.0, "GenericRoIExtractor")?, p)?)),
            other => Err(ModelError::new("roi_extractor", format!("{other:?} is not supported (SingleRoIExtractor, GenericRoIExtractor)"))),
        }
    }

    /// The pooled `(S, S)` size.
    pub fn output_size(&self) -> (i64, i64) {
        match self {
            RoIExtractor::Single(e) => e.op.output_size,
            RoIExtractor::Generic(e) => e.op.output_size,
        }
    }

    /// The channels of the features it returns.
    pub fn out_channels(&self) -> i64 {
        match self {
            RoIExtractor::Single(e) => e.out_channels,
            RoIExtractor::Generic(e) => e.result_channels(),
        }
    }

    /// feats: the neck's levels (those of its `featmap_strides` are read); rois
    /// (R, 5) `[batch_idx, x1, y1, x2, y2]` -> (R, C, S, S).
    pub fn forward(&self, feats: &[Tensor], rois: &Tensor) -> ModelResult<Tensor> {
        match self {
            RoIExtractor::Single(e) => e.forward(feats, rois),
            RoIExtractor::Generic(e) => e.forward(feats, rois),
        }
    }
}
