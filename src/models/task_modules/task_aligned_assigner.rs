//! `TaskAlignedAssigner` (`mmdet/models/task_modules/assigners/task_aligned_assigner.py`,
//! TOOD, Feng et al., 2021). Each prediction's alignment with a ground
//! truth is `score ^ alpha * IoU ^ beta`: its score at the object's class
//! and its predicted box's IoU. Per ground truth, the `topk` predictions of
//! highest alignment (over all levels) are candidates, positive when the
//! alignment is above 0 and the prior's centre lies more than 0.01 inside
//! the box. A prediction positive for several ground truths takes the one
//! its box overlaps most (the first on ties).
//!
//! Shape shorthand: `P` priors of one image (all levels), `G` ground
//! truths, `K` classes, `T` candidates per ground truth.

use detc::registry::models::task_modules::TaskAlignedAssignerConfig;
use detc::registry::refs::AssignerCfg;
use tch::{Kind, Tensor};

use super::AssignResult;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{bbox_overlaps, OverlapMode};

const NAME: &str = "TaskAlignedAssigner";
/// mmdet's `INF`: the overlap of a prediction that is not a positive candidate.
const INF: f64 = 100000000.0;

#[derive(Debug, Clone)]
pub struct TaskAlignedAssigner {
    topk: i64,
}

/// An assignment with what TOOD's targets read of it.
#[derive(Debug)]
pub struct TaskAlignedAssignment {
    pub result: AssignResult,
    /// (P,) each positive's alignment with its ground truth, 0 elsewhere.
    pub assign_metrics: Tensor,
    /// (P,) each positive's IoU with its ground truth (-INF elsewhere, 0 without ground truths).
    pub max_overlaps: Tensor,
}

impl TaskAlignedAssigner {
    /// Builds from an `assigner` config dict (`type: TaskAlignedAssigner`).
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "assigner")? {
            NAME => {
                let c: TaskAlignedAssignerConfig = parse_cfg(&cfg.0, NAME)?;
                if c.iou_calculator.dtype.is_some() {
                    return Err(ModelError::new(NAME, "iou_calculator.dtype is not supported here (set it to null)"));
                }
                Ok(TaskAlignedAssigner { topk: c.topk as i64 })
            }
            other => Err(ModelError::new("assigner", format!("expected TaskAlignedAssigner, got {other:?}"))),
        }
    }

    /// `assign`: priors (P, 4), the predictions' (P, K) scores and (P, 4)
    /// boxes (both detached here), gt_bboxes (G, 4), gt_labels (G,).
    pub fn assign(
        &self,
        priors: &Tensor,
        scores: &Tensor,
        bboxes: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
        alpha: f64,
        beta: f64,
    ) -> ModelResult<TaskAlignedAssignment> {
        let priors = priors.f_narrow(1, 0, 4)?;
        let (num_gts, num_priors) = (gt_bboxes.size()[0], priors.size()[0]);
        let device = priors.device();
        let long = (Kind::Int64, device);
        if num_gts == 0 || num_priors == 0 {
            let zeros = Tensor::f_zeros([num_priors], (priors.kind(), device))?;
            return Ok(TaskAlignedAssignment {
                result: AssignResult {
                    num_gts,
                    gt_inds: Tensor::f_zeros([num_priors], long)?,
                    labels: Tensor::f_full([num_priors], -1, long)?,
                    max_overlaps: None,
                    matches: None,
                },
                assign_metrics: zeros.f_zeros_like()?,
                max_overlaps: zeros,
            });
        }
        let gt_bboxes = gt_bboxes.f_to_kind(priors.kind())?;
        let gt_labels = gt_labels.f_to_kind(Kind::Int64)?;
        let overlaps = bbox_overlaps(&bboxes.f_detach()?, &gt_bboxes, OverlapMode::Iou, false)?; // (P, G)
        let gt_scores = scores.f_detach()?.f_index_select(1, &gt_labels)?; // (P, G)
        let alignment = gt_scores.f_pow_tensor_scalar(alpha)?.f_mul(&overlaps.f_pow_tensor_scalar(beta)?)?;
        let k = self.topk.min(num_priors);
        let (candidate_metrics, candidates) = alignment.f_topk(k, 0, true, true)?; // (T, G)
        let mut is_pos = candidate_metrics.f_gt(0.0)?;
        // The candidate prior's centre inside its ground truth by more than 0.01.
        let centre = |a: i64, b: i64| -> ModelResult<Tensor> {
            Ok(priors.f_select(1, a)?.f_add(&priors.f_select(1, b)?)?.f_div_scalar(2.0)?)
        };
        let (pcx, pcy) = (centre(0, 2)?, centre(1, 3)?);
        let flat = candidates.f_view([-1])?;
        let cx = pcx.f_index_select(0, &flat)?.f_view_as(&candidates)?;
        let cy = pcy.f_index_select(0, &flat)?.f_view_as(&candidates)?;
        let g = |i: i64| -> ModelResult<Tensor> { Ok(gt_bboxes.f_select(1, i)?.f_unsqueeze(0)?) };
        let inside = Tensor::f_stack(&[cx.f_sub(&g(0)?)?, cy.f_sub(&g(1)?)?, g(2)?.f_sub(&cx)?, g(3)?.f_sub(&cy)?], 0)?
            .f_amin([0], false)?
            .f_gt(0.01)?;
        is_pos = is_pos.f_logical_and(&inside)?;
        // (P, G): a positive candidate's IoU, -INF elsewhere; each prediction
        // takes its best ground truth (torch's max: the first on ties).
        let kept = overlaps.f_gather(0, &candidates, false)?.f_masked_fill(&is_pos.f_logical_not()?, -INF)?;
        let overlaps_inf = Tensor::f_full([num_priors, num_gts], -INF, (overlaps.kind(), device))?.f_scatter(0, &candidates, &kept)?;
        let (max_overlaps, argmax) = overlaps_inf.f_max_dim(1, false)?;
        let positive = max_overlaps.f_ne(-INF)?;
        let gt_inds = argmax.f_add_scalar(1)?.f_where_self(&positive, &Tensor::f_zeros([1], long)?)?;
        let metrics = alignment.f_gather(1, &argmax.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
        let assign_metrics = metrics.f_where_self(&positive, &metrics.f_zeros_like()?)?;
        let labels = gt_labels.f_index_select(0, &argmax)?.f_where_self(&positive, &Tensor::f_full([1], -1, long)?)?;
        Ok(TaskAlignedAssignment {
            result: AssignResult { num_gts, gt_inds, labels, max_overlaps: None, matches: None },
            assign_metrics,
            max_overlaps,
        })
    }
}
