//! `StandardRoIHead` (`mmdet/models/roi_heads/standard_roi_head.py`): the
//! box branch and the optional mask branch of Faster and Mask R-CNN.

use detc::registry::models::roi_heads::StandardRoIHeadConfig;
use detc::registry::models::train_test::{RcnnTestConfig, RcnnTrainConfig};
use indexmap::IndexMap;
use tch::{nn, Tensor};

use super::DetInstances;
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::ModelResult;

#[derive(Debug)]
pub struct StandardRoIHead {}

impl StandardRoIHead {
    /// Builds under `p` (`roi_head`): `bbox_head.*` and `mask_head.*`.
    /// `train_cfg` is the detector's `train_cfg.rcnn`, `test_cfg` its `test_cfg.rcnn`.
    pub fn new(
        cfg: &StandardRoIHeadConfig,
        train_cfg: Option<&RcnnTrainConfig>,
        test_cfg: Option<&RcnnTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let _ = (cfg, train_cfg, test_cfg, p);
        todo!("issue 7: StandardRoIHead::new")
    }

    /// Whether a mask branch is configured (Mask R-CNN).
    pub fn with_mask(&self) -> bool {
        todo!("issue 7: StandardRoIHead::with_mask")
    }

    /// `loss(x, rpn_results_list, batch_data_samples)`: `loss_cls`, `acc`,
    /// `loss_bbox` and, with a mask head, `loss_mask`. `proposals`: per image
    /// (P, 4) detached boxes from the RPN.
    pub fn loss(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let _ = (x, proposals, samples);
        todo!("issue 7: StandardRoIHead::loss")
    }

    /// `predict(x, rpn_results_list, batch_data_samples, rescale)`: per
    /// image the detections after `test_cfg` (score_thr, per-class NMS,
    /// max_per_img) and, with a mask head, their binary masks.
    pub fn predict(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
        rescale: bool,
    ) -> ModelResult<Vec<DetInstances>> {
        let _ = (x, proposals, samples, rescale);
        todo!("issue 7: StandardRoIHead::predict")
    }
}
