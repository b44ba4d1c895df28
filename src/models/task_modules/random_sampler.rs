//! `RandomSampler` (`mmdet/models/task_modules/samplers/random_sampler.py`).

use detc::registry::models::task_modules::RandomSamplerConfig;
use detc::registry::refs::SamplerCfg;
use tch::Tensor;

use super::{AssignResult, SamplingResult};
use crate::models::layers::ModelResult;

#[derive(Debug, Clone)]
pub struct RandomSampler {
    pub cfg: RandomSamplerConfig,
}

impl RandomSampler {
    /// Builds from a `sampler` config dict (`type: RandomSampler`).
    pub fn from_cfg(cfg: &SamplerCfg) -> ModelResult<Self> {
        let _ = cfg;
        todo!("issue 7: RandomSampler::from_cfg")
    }

    pub fn new(cfg: &RandomSamplerConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// `sample(assign_result, pred_instances, gt_instances)`: priors (P, 4),
    /// gt_bboxes (G, 4), gt_labels (G,). With `add_gt_as_proposals` the
    /// ground truths are put before the priors (`pos_is_gt`), as mmdet does;
    /// `avg_factor` counts positives and negatives (`avg_factor_with_neg`).
    pub fn sample(
        &self,
        assign: &AssignResult,
        priors: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
    ) -> ModelResult<SamplingResult> {
        let _ = (assign, priors, gt_bboxes, gt_labels);
        todo!("issue 7: RandomSampler::sample")
    }
}
