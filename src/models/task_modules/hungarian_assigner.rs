//! `HungarianAssigner` (`mmdet/models/task_modules/assigners/hungarian_assigner.py`):
//! one-to-one matching of predictions to ground truths that minimises the
//! sum of the configured match costs. The summed (P, G) cost is copied to
//! host memory as f64 and solved by [`linear_sum_assignment`] on the CPU,
//! as mmdet does with scipy (one host sync per image).
//!
//! Shape shorthand: `P` predictions, `G` ground truths, `C` classes.

use detc::registry::models::task_modules::HungarianAssignerConfig;
use detc::registry::refs::{AssignerCfg, MatchCostCfg};
use tch::{Device, Kind, Tensor};

use super::hungarian::linear_sum_assignment;
use super::match_costs::{MatchCost, MatchInputs};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::upload;

/// mmdet's `AssignResult` as the Hungarian assigner fills it.
#[derive(Debug)]
pub struct AssignResult {
    pub num_gts: i64,
    /// (P,) int64: 0 = background, k + 1 = matched to ground truth k
    /// (-1 everywhere when there are ground truths but no predictions, i.e. empty).
    pub gt_inds: Tensor,
    /// (P,) int64: the matched ground truth's label, -1 when unmatched.
    pub labels: Tensor,
    /// (P,) float: each prior's largest IoU with a ground truth (0 without
    /// any, -1 where ignored), from `MaxIoUAssigner`; what Libra R-CNN's
    /// `IoUBalancedNegSampler` reads. `None` from the other assigners.
    pub max_overlaps: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct HungarianAssigner {
    pub match_costs: Vec<MatchCost>,
}

impl HungarianAssigner {
    /// Builds from an `assigner` config dict (`type: HungarianAssigner`).
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "assigner")? {
            "HungarianAssigner" => Self::new(&parse_cfg(&cfg.0, "HungarianAssigner")?),
            other => Err(ModelError::new(
                "assigner",
                format!("expected HungarianAssigner, got {other:?}"),
            )),
        }
    }

    pub fn new(cfg: &HungarianAssignerConfig) -> ModelResult<Self> {
        let match_costs = cfg
            .match_costs
            .as_vec()
            .into_iter()
            .map(MatchCost::from_cfg)
            .collect::<ModelResult<Vec<_>>>()?;
        if match_costs.is_empty() {
            return Err(ModelError::new(
                "HungarianAssigner",
                "match_costs must not be an empty list",
            ));
        }
        Ok(HungarianAssigner { match_costs })
    }

    /// The summed (P, G) cost matrix (on the inputs' device).
    pub fn cost_matrix(&self, x: &MatchInputs) -> ModelResult<Tensor> {
        let costs = self
            .match_costs
            .iter()
            .map(|c| c.cost(x))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(Tensor::f_stack(&costs, 0)?.f_sum_dim_intlist(0, false, None::<Kind>)?)
    }

    /// Assigns each prediction of one image to at most one ground truth.
    pub fn assign(&self, x: &MatchInputs) -> ModelResult<AssignResult> {
        let num_gts = x.gt_labels.size().first().copied().unwrap_or(0);
        let num_preds = x.pred_bboxes.size().first().copied().unwrap_or(0);
        let device = x.gt_labels.device();
        let opts = (Kind::Int64, device);
        if num_gts == 0 || num_preds == 0 {
            let fill = if num_gts == 0 { 0 } else { -1 };
            return Ok(AssignResult {
                num_gts,
                gt_inds: Tensor::f_full([num_preds], fill, opts)?,
                labels: Tensor::f_full([num_preds], -1, opts)?,
                max_overlaps: None,
            });
        }
        let cost = self
            .cost_matrix(x)?
            .f_detach()?
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Double)?
            .f_contiguous()?;
        let host = Vec::<f64>::try_from(cost.f_flatten(0, -1)?)?;
        let (rows, cols) = linear_sum_assignment(&host, num_preds as usize, num_gts as usize)
            .map_err(|e| ModelError::new("HungarianAssigner", e.to_string()))?;
        let rows: Vec<i64> = rows.into_iter().map(|r| r as i64).collect();
        let cols: Vec<i64> = cols.into_iter().map(|c| c as i64).collect();
        let rows = upload(&rows, device)?;
        let cols = upload(&cols, device)?;
        let gt_inds = Tensor::f_zeros([num_preds], opts)?.f_index_put(
            &[Some(&rows)],
            &cols.f_add_scalar(1)?,
            false,
        )?;
        let matched_labels = x
            .gt_labels
            .f_to_kind(Kind::Int64)?
            .f_index_select(0, &cols)?;
        let labels = Tensor::f_full([num_preds], -1, opts)?.f_index_put(
            &[Some(&rows)],
            &matched_labels,
            false,
        )?;
        Ok(AssignResult { num_gts, gt_inds, labels, max_overlaps: None })
    }
}
