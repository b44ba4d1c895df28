//! `MaxIoUAssigner` (`mmdet/models/task_modules/assigners/max_iou_assigner.py`).

use detc::registry::models::task_modules::MaxIoUAssignerConfig;
use detc::registry::refs::AssignerCfg;
use tch::Tensor;

use super::AssignResult;
use crate::models::layers::ModelResult;

#[derive(Debug, Clone)]
pub struct MaxIoUAssigner {
    pub cfg: MaxIoUAssignerConfig,
}

impl MaxIoUAssigner {
    /// Builds from an `assigner` config dict (`type: MaxIoUAssigner`).
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        let _ = cfg;
        todo!("issue 7: MaxIoUAssigner::from_cfg")
    }

    pub fn new(cfg: &MaxIoUAssignerConfig) -> ModelResult<Self> {
        Ok(Self { cfg: cfg.clone() })
    }

    /// `assign(pred_instances, gt_instances, gt_instances_ignore)`: priors
    /// (P, 4), gt_bboxes (G, 4), gt_labels (G,), ignored boxes (I, 4).
    pub fn assign(
        &self,
        priors: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes_ignore: Option<&Tensor>,
    ) -> ModelResult<AssignResult> {
        let _ = (priors, gt_bboxes, gt_labels, gt_bboxes_ignore);
        todo!("issue 7: MaxIoUAssigner::assign")
    }
}
