//! `SingleRoIExtractor`: pools each RoI from the one FPN level its scale maps
//! to (`floor(log2(sqrt(wh) / finest_scale + 1e-6))`, clamped). Its RoI layers
//! have no parameters, so it adds nothing to the state dict.

use detc::registry::models::ops::RoIAlignConfig;
use detc::registry::models::roi_heads::SingleRoIExtractorConfig;
use detc::registry::refs::RoiExtractorCfg;
use tch::Tensor;

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{multi_level_roi_align, RoIAlign};

const NAME: &str = "SingleRoIExtractor";

#[derive(Debug, Clone)]
pub struct SingleRoIExtractor {
    pub op: RoIAlign,
    pub featmap_strides: Vec<i64>,
    pub finest_scale: f64,
    pub out_channels: i64,
}

impl SingleRoIExtractor {
    /// Builds from a `bbox_roi_extractor` / `mask_roi_extractor` config dict.
    pub fn from_cfg(cfg: &RoiExtractorCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "roi_extractor")? {
            NAME => Self::new(&parse_cfg(&cfg.0, NAME)?),
            other => Err(ModelError::new(
                "roi_extractor",
                format!("expected {NAME}, got {other:?}"),
            )),
        }
    }

    pub fn new(cfg: &SingleRoIExtractorConfig) -> ModelResult<Self> {
        let layer = &cfg.roi_layer.0;
        let op = match cfg_type(layer, "roi_layer")? {
            "RoIAlign" => RoIAlign::new(&parse_cfg::<RoIAlignConfig>(layer, "RoIAlign")?),
            other => {
                return Err(ModelError::new(
                    NAME,
                    format!("roi_layer {other:?} is not supported (only RoIAlign)"),
                ))
            }
        };
        Ok(SingleRoIExtractor {
            op,
            featmap_strides: cfg.featmap_strides.iter().map(|&s| s as i64).collect(),
            finest_scale: cfg.finest_scale as f64,
            out_channels: cfg.out_channels as i64,
        })
    }

    /// `num_inputs`: how many of the neck's levels it reads.
    pub fn num_inputs(&self) -> usize {
        self.featmap_strides.len()
    }

    /// feats: the neck's levels (N, C, Hi, Wi) (the first `num_inputs` are
    /// used); rois (R, 5) `[batch_idx, x1, y1, x2, y2]` -> (R, C, S, S).
    pub fn forward(&self, feats: &[Tensor], rois: &Tensor) -> ModelResult<Tensor> {
        let n = self.num_inputs();
        if feats.len() < n {
            return Err(ModelError::new(
                NAME,
                format!(
                    "{} featmap_strides but the neck gives {} levels",
                    n,
                    feats.len()
                ),
            ));
        }
        multi_level_roi_align(
            &feats[..n],
            rois,
            &self.op,
            &self.featmap_strides,
            self.finest_scale,
        )
    }
}
