//! `ATSSAssigner` (`mmdet/models/task_modules/assigners/atss_assigner.py`):
//! adaptive training sample selection. Per ground truth, the `topk` priors
//! of each level whose centres are nearest the box centre are candidates;
//! a candidate is positive when its IoU reaches the candidates' mean plus
//! (unbiased) standard deviation and its centre lies more than 0.01 inside
//! the box. A prior positive for several ground truths takes the one it
//! overlaps most (the first on ties); every other prior is background, or
//! ignored when an ignored box covers it (IoF above `ignore_iof_thr`).
//!
//! Shape shorthand: `P` priors of one image (all levels), `G` ground
//! truths, `T` candidates per ground truth (`topk` per level, fewer on a
//! level with fewer priors). Everything stays on the priors' device.

use detc::registry::models::task_modules::ATSSAssignerConfig;
use detc::registry::refs::AssignerCfg;
use tch::{Kind, Tensor};

use super::AssignResult;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{bbox_overlaps, OverlapMode};

const NAME: &str = "ATSSAssigner";
/// mmdet's `INF`: the distance of an ignored prior, the overlap of a non-candidate.
const INF: f64 = 100000000.0;

#[derive(Debug, Clone)]
pub struct ATSSAssigner {
    topk: i64,
    ignore_iof_thr: f64,
}

impl ATSSAssigner {
    /// Builds from an `assigner` config dict (`type: ATSSAssigner`).
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "assigner")? {
            NAME => {
                let c: ATSSAssignerConfig = parse_cfg(&cfg.0, NAME)?;
                if c.iou_calculator.dtype.is_some() {
                    return Err(ModelError::new(NAME, "iou_calculator.dtype is not supported here (set it to null)"));
                }
                Ok(ATSSAssigner { topk: c.topk as i64, ignore_iof_thr: c.ignore_iof_thr })
            }
            other => Err(ModelError::new("assigner", format!("expected ATSSAssigner, got {other:?}"))),
        }
    }

    /// `assign`: priors (P, 4) of levels of `num_level_priors` each (in
    /// order), gt_bboxes (G, 4), gt_labels (G,), ignored boxes (I, 4).
    /// Returns gt_inds (P,) (0 background, -1 ignored, k + 1 ground truth k)
    /// and labels (P,) (-1 where not positive).
    pub fn assign(
        &self,
        priors: &Tensor,
        num_level_priors: &[i64],
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes_ignore: Option<&Tensor>,
    ) -> ModelResult<AssignResult> {
        let priors = priors.f_narrow(1, 0, 4)?;
        let num_gts = gt_bboxes.size()[0];
        let num_priors = priors.size()[0];
        let device = priors.device();
        let long = (Kind::Int64, device);
        let mut gt_inds = Tensor::f_zeros([num_priors], long)?;
        if num_gts == 0 || num_priors == 0 {
            return Ok(AssignResult { num_gts, gt_inds, labels: Tensor::f_full([num_priors], -1, long)?, max_overlaps: None, matches: None });
        }
        if num_level_priors.iter().sum::<i64>() != num_priors {
            return Err(ModelError::new(NAME, format!("{num_priors} priors for levels of {num_level_priors:?}")));
        }
        let gt_bboxes = gt_bboxes.f_to_kind(priors.kind())?;
        let overlaps = bbox_overlaps(&priors, &gt_bboxes, OverlapMode::Iou, false)?; // (P, G)
        let centre = |b: &Tensor| -> ModelResult<(Tensor, Tensor)> {
            Ok((
                b.f_select(1, 0)?.f_add(&b.f_select(1, 2)?)?.f_div_scalar(2.0)?,
                b.f_select(1, 1)?.f_add(&b.f_select(1, 3)?)?.f_div_scalar(2.0)?,
            ))
        };
        let (pcx, pcy) = centre(&priors)?;
        let (gcx, gcy) = centre(&gt_bboxes)?;
        let dx = pcx.f_unsqueeze(1)?.f_sub(&gcx.f_unsqueeze(0)?)?;
        let dy = pcy.f_unsqueeze(1)?.f_sub(&gcy.f_unsqueeze(0)?)?;
        let mut distances = dx.f_square()?.f_add(&dy.f_square()?)?.f_sqrt()?; // (P, G)
        if let Some(ignore) = gt_bboxes_ignore.filter(|i| i.numel() > 0 && self.ignore_iof_thr > 0.0) {
            let iof = bbox_overlaps(&priors, &ignore.f_to_kind(priors.kind())?, OverlapMode::Iof, false)?;
            let ignored = iof.f_amax([1], false)?.f_gt(self.ignore_iof_thr)?;
            distances = distances.f_masked_fill(&ignored.f_unsqueeze(1)?, INF)?;
            gt_inds = gt_inds.f_masked_fill(&ignored, -1)?;
        }
        // (T, G): the nearest `topk` priors of each level, as indices into all priors.
        let mut candidates = Vec::with_capacity(num_level_priors.len());
        let mut start = 0;
        for &n in num_level_priors {
            let k = self.topk.min(n);
            let (_, idx) = distances.f_narrow(0, start, n)?.f_topk(k, 0, false, true)?;
            candidates.push(idx.f_add_scalar(start)?);
            start += n;
        }
        let candidates = Tensor::f_cat(&candidates, 0)?;
        let candidate_overlaps = overlaps.f_gather(0, &candidates, false)?;
        let thr = candidate_overlaps
            .f_mean_dim(0, false, None)?
            .f_add(&candidate_overlaps.f_std_correction(0, 1, false)?)?;
        let mut is_pos = candidate_overlaps.f_ge_tensor(&thr.f_unsqueeze(0)?)?;
        // The candidate's centre inside its ground truth by more than 0.01.
        let cx = pcx.f_index_select(0, &candidates.f_view([-1])?)?.f_view_as(&candidates)?;
        let cy = pcy.f_index_select(0, &candidates.f_view([-1])?)?.f_view_as(&candidates)?;
        let g = |i: i64| -> ModelResult<Tensor> { Ok(gt_bboxes.f_select(1, i)?.f_unsqueeze(0)?) };
        let inside = Tensor::f_stack(&[cx.f_sub(&g(0)?)?, cy.f_sub(&g(1)?)?, g(2)?.f_sub(&cx)?, g(3)?.f_sub(&cy)?], 0)?
            .f_amin([0], false)?
            .f_gt(0.01)?;
        is_pos = is_pos.f_logical_and(&inside)?;
        // (P, G): a positive candidate's overlap, -INF elsewhere; each prior
        // takes its best ground truth (torch's max: the first on ties).
        let kept = candidate_overlaps.f_masked_fill(&is_pos.f_logical_not()?, -INF)?;
        // A column's candidates are distinct priors: a plain scatter.
        let overlaps_inf = Tensor::f_full([num_priors, num_gts], -INF, (overlaps.kind(), device))?.f_scatter(0, &candidates, &kept)?;
        let (max_overlaps, argmax) = overlaps_inf.f_max_dim(1, false)?;
        let positive = max_overlaps.f_ne(-INF)?;
        gt_inds = argmax.f_add_scalar(1)?.f_where_self(&positive, &gt_inds)?;
        let labels = gt_labels
            .f_to_kind(Kind::Int64)?
            .f_index_select(0, &argmax)?
            .f_where_self(&positive, &Tensor::f_full([1], -1, long)?)?;
        Ok(AssignResult { num_gts, gt_inds, labels, max_overlaps: None, matches: None })
    }
}
