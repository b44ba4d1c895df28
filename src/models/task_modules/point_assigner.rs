//! `PointAssigner` (`mmdet/models/task_modules/assigners/point_assigner.py`,
//! RepPoints): each ground truth gets the level `log2(sqrt(w * h) / scale)`
//! of the point strides (truncated, clamped to the levels there are) and,
//! on that level, its `pos_num` points nearest its centre, the distance
//! measured in units of its width and height. Ground truths go in order; a
//! point already nearer an earlier one stays with it.
//!
//! Shape shorthand: `P` points of one image (all levels), `G` ground truths.

use detc::registry::models::task_modules::PointAssignerConfig;
use detc::registry::refs::AssignerCfg;
use tch::{Kind, Tensor};

use super::AssignResult;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "PointAssigner";

#[derive(Debug, Clone)]
pub struct PointAssigner {
    scale: f64,
    pos_num: i64,
}

impl PointAssigner {
    /// Builds from an `assigner` config dict (`type: PointAssigner`).
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "assigner")? {
            NAME => {
                let c: PointAssignerConfig = parse_cfg(&cfg.0, NAME)?;
                Ok(PointAssigner { scale: c.scale as f64, pos_num: c.pos_num as i64 })
            }
            other => Err(ModelError::new("assigner", format!("expected PointAssigner, got {other:?}"))),
        }
    }

    /// `assign`: points (P, 3) `(x, y, stride)`, gt_bboxes (G, 4), gt_labels (G,).
    pub fn assign(&self, points: &Tensor, gt_bboxes: &Tensor, gt_labels: &Tensor) -> ModelResult<AssignResult> {
        let (num_points, num_gts) = (points.size()[0], gt_bboxes.size()[0]);
        let device = points.device();
        let long = (Kind::Int64, device);
        if num_gts == 0 || num_points == 0 {
            return Ok(AssignResult {
                num_gts,
                gt_inds: Tensor::f_zeros([num_points], long)?,
                labels: Tensor::f_full([num_points], -1, long)?,
                max_overlaps: None,
                matches: None,
            });
        }
        let xy = points.f_narrow(1, 0, 2)?;
        let point_lvl = points.f_select(1, 2)?.f_log2()?.f_to_kind(Kind::Int)?;
        let gt = gt_bboxes.f_to_kind(points.kind())?;
        let gt_xy = gt.f_narrow(1, 0, 2)?.f_add(&gt.f_narrow(1, 2, 2)?)?.f_div_scalar(2.0)?;
        let gt_wh = gt.f_narrow(1, 2, 2)?.f_sub(&gt.f_narrow(1, 0, 2)?)?.f_clamp_min(1e-6)?;
        let per_side = gt_wh.f_div_scalar(self.scale)?.f_log2()?;
        let gt_lvl = per_side.f_select(1, 0)?.f_add(&per_side.f_select(1, 1)?)?.f_div_scalar(2.0)?.f_to_kind(Kind::Int)?;
        let (lo, hi) = (point_lvl.f_min()?.int64_value(&[]), point_lvl.f_max()?.int64_value(&[]));
        // One read of every ground truth's level: the loop below is over objects, as MMDetection's.
        let gt_lvl = Vec::<i64>::try_from(gt_lvl.f_clamp(lo, hi)?.f_to_kind(Kind::Int64)?.f_to_device(tch::Device::Cpu)?)?;
        let mut gt_inds = Tensor::f_zeros([num_points], long)?;
        let mut best = Tensor::f_full([num_points], f64::INFINITY, (points.kind(), device))?;
        for (g, &lvl) in gt_lvl.iter().enumerate() {
            let on_level = point_lvl.f_eq(lvl)?.f_nonzero()?.f_view([-1])?;
            let g = g as i64;
            let dist = xy
                .f_index_select(0, &on_level)?
                .f_sub(&gt_xy.f_narrow(0, g, 1)?)?
                .f_div(&gt_wh.f_narrow(0, g, 1)?)?
                .f_norm_scalaropt_dim(2, [1], false)?;
            let k = self.pos_num.min(dist.size()[0]);
            let (min_dist, idx) = dist.f_topk(k, 0, false, true)?;
            let chosen = on_level.f_index_select(0, &idx)?;
            let nearer = min_dist.f_lt_tensor(&best.f_index_select(0, &chosen)?)?.f_nonzero()?.f_view([-1])?;
            let chosen = chosen.f_index_select(0, &nearer)?;
            gt_inds = gt_inds.f_index_fill(0, &chosen, g + 1)?;
            best = best.f_index_copy(0, &chosen, &min_dist.f_index_select(0, &nearer)?)?;
        }
        let positive = gt_inds.f_gt(0)?;
        let labels = gt_labels
            .f_to_kind(Kind::Int64)?
            .f_index_select(0, &gt_inds.f_sub_scalar(1)?.f_clamp_min(0)?)?
            .f_where_self(&positive, &Tensor::f_full([1], -1, long)?)?;
        Ok(AssignResult { num_gts, gt_inds, labels, max_overlaps: None, matches: None })
    }
}
