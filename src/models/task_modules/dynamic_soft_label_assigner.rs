//! `DynamicSoftLabelAssigner` (RTMDet) as
//! `mmdet/models/task_modules/assigners/dynamic_soft_label_assigner.py`.
//!
//! Only priors whose point lies strictly inside some ground truth compete.
//! For those, against every ground truth, the cost is
//!
//! - a soft classification cost: the sigmoid BCE of the scores against the
//!   IoU as the label of the ground truth's class (0 elsewhere), times the
//!   squared gap between label and score, summed over classes;
//! - `-ln(IoU + 1e-7) * iou_weight`;
//! - a centre prior `10^(|point - centre| / stride - soft_center_radius)`.
//!
//! Each ground truth takes its `k` cheapest priors, `k` the integer part of
//! the sum of its `topk` highest IoUs (at least 1); a prior taken by several
//! keeps the cheapest ground truth of all. MMDetection picks each ground
//! truth's `k` in a host loop; here one sort by cost ranks every column at
//! once, so the matching needs no host synchronisation.
//!
//! Shape shorthand: `P` priors, `V` of them inside some box, `G` ground
//! truths, `K` classes.

use detc::registry::models::task_modules::DynamicSoftLabelAssignerConfig;
use detc::registry::refs::AssignerCfg;
use tch::{Kind, Reduction, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{bbox_overlaps, OverlapMode};

const NAME: &str = "DynamicSoftLabelAssigner";
/// MMDetection's `INF`: `max_overlaps` of priors left unassigned among the valid ones.
const INF: f64 = 100_000_000.0;
const EPS: f64 = 1.0e-7;

#[derive(Debug, Clone)]
pub struct DynamicSoftLabelAssigner {
    soft_center_radius: f64,
    topk: i64,
    iou_weight: f64,
}

/// What `assign` gives per prior.
#[derive(Debug)]
pub struct SoftAssignment {
    /// (P,) int64: 0 unassigned, `g + 1` for ground truth `g`.
    pub gt_inds: Tensor,
    /// (P,) float: the IoU of an assigned prior's box with its ground
    /// truth; -1e8 for the other priors inside a box, 0 for the rest.
    pub max_overlaps: Tensor,
    /// (P,) int64: the assigned class, -1 elsewhere.
    pub labels: Tensor,
}

impl DynamicSoftLabelAssigner {
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "assigner")? {
            NAME => {
                let c: DynamicSoftLabelAssignerConfig = parse_cfg(&cfg.0, NAME)?;
                if c.iou_calculator.dtype.is_some() || c.iou_calculator.scale != 1.0 {
                    return Err(ModelError::new(NAME, "iou_calculator.dtype and scale are not supported here (leave the defaults)"));
                }
                Ok(DynamicSoftLabelAssigner { soft_center_radius: c.soft_center_radius, topk: c.topk as i64, iou_weight: c.iou_weight })
            }
            other => Err(ModelError::new("assigner", format!("expected DynamicSoftLabelAssigner, got {other:?}"))),
        }
    }

    /// `assign`: priors (P, 4) `(x, y, stride_w, stride_h)`, the predicted
    /// boxes (P, 4) and class logits (P, K) (detached), gt_bboxes (G, 4),
    /// gt_labels (G,), and the ground truths' centres (G, 2) (their masks'
    /// centres of mass when given, else the boxes' centres).
    pub fn assign(
        &self,
        priors: &Tensor,
        bboxes: &Tensor,
        scores: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
        gt_centers: Option<&Tensor>,
    ) -> ModelResult<SoftAssignment> {
        let (p, g) = (bboxes.size()[0], gt_bboxes.size()[0]);
        let device = bboxes.device();
        let long = (Kind::Int64, device);
        let empty = |overlap: f64| -> ModelResult<SoftAssignment> {
            Ok(SoftAssignment {
                gt_inds: Tensor::f_zeros([p], long)?,
                max_overlaps: Tensor::f_full([p], overlap, (bboxes.kind(), device))?,
                labels: Tensor::f_full([p], -1, long)?,
            })
        };
        if g == 0 || p == 0 {
            return empty(0.0);
        }
        let points = priors.f_narrow(1, 0, 2)?;
        let lt = points.f_unsqueeze(1)?.f_sub(&gt_bboxes.f_narrow(1, 0, 2)?.f_unsqueeze(0)?)?;
        let rb = gt_bboxes.f_narrow(1, 2, 2)?.f_unsqueeze(0)?.f_sub(&points.f_unsqueeze(1)?)?;
        let is_in_gts = Tensor::f_cat(&[lt, rb], -1)?.f_amin([-1], false)?.f_gt(0.0)?;
        let valid = is_in_gts.f_any_dim(1, false)?.f_nonzero()?.f_view([-1])?;
        let v = valid.size()[0];
        if v == 0 {
            return empty(0.0);
        }
        let centers = match gt_centers {
            Some(c) => c.shallow_clone(),
            None => gt_bboxes.f_narrow(1, 0, 2)?.f_add(&gt_bboxes.f_narrow(1, 2, 2)?)?.f_div_scalar(2.0)?,
        };
        let valid_priors = priors.f_index_select(0, &valid)?;
        let strides = valid_priors.f_select(1, 2)?;
        let distance = valid_priors
            .f_narrow(1, 0, 2)?
            .f_unsqueeze(1)?
            .f_sub(&centers.f_unsqueeze(0)?)?
            .f_pow_tensor_scalar(2)?
            .f_sum_dim_intlist(-1, false, None::<Kind>)?
            .f_sqrt()?
            .f_div(&strides.f_unsqueeze(1)?)?;
        let center_prior = Tensor::f_full([], 10.0, (distance.kind(), device))?.f_pow(&distance.f_sub_scalar(self.soft_center_radius)?)?;
        let ious = bbox_overlaps(&bboxes.f_index_select(0, &valid)?, gt_bboxes, OverlapMode::Iou, false)?;
        let iou_cost = ious.f_add_scalar(EPS)?.f_log()?.f_mul_scalar(-self.iou_weight)?;
        let k = scores.size()[1];
        let valid_scores = scores.f_index_select(0, &valid)?.f_unsqueeze(1)?.f_expand([v, g, k], false)?;
        let soft_label = gt_labels
            .f_one_hot(k)?
            .f_to_kind(ious.kind())?
            .f_unsqueeze(0)?
            .f_mul(&ious.f_unsqueeze(-1)?)?;
        let gap = soft_label.f_sub(&valid_scores.f_sigmoid()?)?.f_abs()?.f_pow_tensor_scalar(2.0)?;
        let cls_cost = valid_scores
            .f_binary_cross_entropy_with_logits(&soft_label, None::<Tensor>, None::<Tensor>, Reduction::None)?
            .f_mul(&gap)?
            .f_sum_dim_intlist(-1, false, None::<Kind>)?;
        let cost = cls_cost.f_add(&iou_cost)?.f_add(&center_prior)?;
        let (matched_iou, matched_gt, fg) = self.dynamic_k_matching(&cost, &ious)?;
        let fg_inds = valid.f_masked_select(&fg)?;
        let matched_gt = matched_gt.f_masked_select(&fg)?;
        let matched_iou = matched_iou.f_masked_select(&fg)?;
        let gt_inds = Tensor::f_zeros([p], long)?.f_index_put(&[Some(fg_inds.shallow_clone())], &matched_gt.f_add_scalar(1)?, false)?;
        let labels = Tensor::f_full([p], -1, long)?.f_index_put(
            &[Some(fg_inds.shallow_clone())],
            &gt_labels.f_to_kind(Kind::Int64)?.f_index_select(0, &matched_gt)?,
            false,
        )?;
        // MMDetection: -INF everywhere, then the matched IoUs.
        let max_overlaps = Tensor::f_full([p], -INF, (Kind::Float, device))?.f_index_put(
            &[Some(fg_inds)],
            &matched_iou.f_to_kind(Kind::Float)?,
            false,
        )?;
        Ok(SoftAssignment { gt_inds, max_overlaps, labels })
    }

    /// `dynamic_k_matching` of cost and IoU (V, G): per valid prior its
    /// matched IoU and ground truth, and whether it matched at all (V,).
    fn dynamic_k_matching(&self, cost: &Tensor, ious: &Tensor) -> ModelResult<(Tensor, Tensor, Tensor)> {
        let (v, g) = (cost.size()[0], cost.size()[1]);
        let device = cost.device();
        let candidate_topk = self.topk.min(v);
        let (top_ious, _) = ious.f_topk(candidate_topk, 0, true, true)?;
        // `.int()` truncates toward zero, then at least 1.
        let dynamic_ks = top_ious.f_sum_dim_intlist(0, false, None::<Kind>)?.f_to_kind(Kind::Int)?.f_clamp_min(1)?.f_to_kind(Kind::Int64)?;
        // Each column's rank of every prior by cost; the first k_g are taken.
        let order = cost.f_argsort_stable(true, 0, false)?;
        let ranks = Tensor::f_arange(v, (Kind::Int64, device))?.f_unsqueeze(1)?.f_expand([v, g], false)?;
        let taken_sorted = ranks.f_lt_tensor(&dynamic_ks.f_unsqueeze(0)?)?;
        let mut matching = Tensor::f_zeros([v, g], (Kind::Bool, device))?.f_scatter(0, &order, &taken_sorted)?;
        // A prior taken by several ground truths keeps the cheapest of all.
        let multiple = matching.f_sum_dim_intlist(1, false, Kind::Int64)?.f_gt(1)?;
        let cheapest = cost.f_argmin(1, false)?.f_one_hot(g)?.f_to_kind(Kind::Bool)?;
        matching = cheapest.f_where_self(&multiple.f_unsqueeze(1)?, &matching)?;
        let fg = matching.f_any_dim(1, false)?;
        let matched_gt = matching.f_to_kind(Kind::Int64)?.f_argmax(1, false)?;
        let matched_iou = matching.f_to_kind(ious.kind())?.f_mul(ious)?.f_sum_dim_intlist(1, false, None::<Kind>)?;
        Ok((matched_iou, matched_gt, fg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
    use std::sync::OnceLock;

    fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/rtmdet_reference.py", "detc-rtmdet", "rtmdet.pth"))
    }

    fn assigner() -> DynamicSoftLabelAssigner {
        DynamicSoftLabelAssigner::from_cfg(&AssignerCfg(serde_json::json!({"type": NAME, "topk": 13}))).unwrap()
    }

    /// tests/models/rtmdet_reference.py's `dsl` case: three ground truths,
    /// two overlapping (priors claimed twice) and a tiny one; and `dsl0`,
    /// the same priors without ground truths.
    #[test]
    fn assignment_equals_mmdet() {
        let fx = |k: &str| tensor(fixture(), k);
        let got = assigner()
            .assign(&fx("dsl.priors"), &fx("dsl.bboxes"), &fx("dsl.scores"), &fx("dsl.gt_bboxes"), &fx("dsl.gt_labels"), None)
            .unwrap();
        assert_eq!(Vec::<i64>::try_from(&got.gt_inds).unwrap(), Vec::<i64>::try_from(&fx("dsl.gt_inds")).unwrap());
        assert_eq!(Vec::<i64>::try_from(&got.labels).unwrap(), Vec::<i64>::try_from(&fx("dsl.labels")).unwrap());
        assert_close(&got.max_overlaps, &fx("dsl.max_overlaps"), 1e-6, 1e-5, "max_overlaps");
        let none = assigner()
            .assign(&fx("dsl.priors"), &fx("dsl.bboxes"), &fx("dsl.scores"), &Tensor::zeros([0, 4], tch::kind::FLOAT_CPU), &Tensor::zeros([0], tch::kind::INT64_CPU), None)
            .unwrap();
        assert_eq!(Vec::<i64>::try_from(&none.gt_inds).unwrap(), Vec::<i64>::try_from(&fx("dsl0.gt_inds")).unwrap());
        assert_eq!(Vec::<i64>::try_from(&none.labels).unwrap(), Vec::<i64>::try_from(&fx("dsl0.labels")).unwrap());
        assert_close(&none.max_overlaps, &fx("dsl0.max_overlaps"), 0.0, 0.0, "max_overlaps without ground truths");
    }
}
