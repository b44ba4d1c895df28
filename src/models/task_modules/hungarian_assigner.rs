//! `HungarianAssigner` (`mmdet/models/task_modules/assigners/hungarian_assigner.py`):
//! one-to-one matching of predictions to ground truths that minimises the
//! sum of the configured match costs. The summed (P, G) cost is copied to
//! host memory as f64 and solved by [`linear_sum_assignment`] on the CPU,
//! as mmdet does with scipy (one host sync per batch, per image in mmdet).
//!
//! Shape shorthand: `P` predictions, `G` ground truths, `C` classes.

use detc::registry::models::task_modules::HungarianAssignerConfig;
use detc::registry::refs::{AssignerCfg, MatchCostCfg};
use tch::{Device, Kind, Tensor};

use super::hungarian::linear_sum_assignment;
use super::match_costs::{CostInputs, ImageRows, MatchCost, MatchInputs};
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
    /// The positives as (prior, ground truth) index pairs, ascending by
    /// prior, where the assigner made them on the host (the Hungarian
    /// matching): every other prior is background. The pseudo sampler then
    /// indexes without `nonzero`, a device synchronisation each.
    pub matches: Option<Vec<(i64, i64)>>,
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
        self.summed_cost(&CostInputs::one(x))
    }

    /// The summed (ΣP, ΣG) cost of every prediction of the batch against
    /// every ground truth.
    fn summed_cost(&self, x: &CostInputs) -> ModelResult<Tensor> {
        let costs = self
            .match_costs
            .iter()
            .map(|c| c.cost_of(x))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(Tensor::f_stack(&costs, 0)?.f_sum_dim_intlist(0, false, None::<Kind>)?)
    }

    /// Assigns each prediction of one image to at most one ground truth.
    pub fn assign(&self, x: &MatchInputs) -> ModelResult<AssignResult> {
        let mut one = self.assign_all(std::slice::from_ref(x))?;
        Ok(one.pop().expect("one assignment per image"))
    }

    /// [`Self::assign`] for each image of a batch. The costs of the images
    /// that have predictions and ground truths are computed together (every
    /// prediction against every ground truth of the batch, each element as
    /// one image's own computation gives it) and each image's own block is
    /// copied to the host in one go: one device synchronisation per batch,
    /// and each operation launched once, where mmdet computes and copies
    /// image by image.
    pub fn assign_all(&self, images: &[MatchInputs]) -> ModelResult<Vec<AssignResult>> {
        let rows: Vec<ImageRows> = images.iter().map(ImageRows::of).collect();
        let has_costs = |r: &ImageRows| r.preds > 0 && r.gts > 0;
        let active: Vec<&MatchInputs> = images.iter().zip(&rows).filter(|(_, r)| has_costs(r)).map(|(x, _)| x).collect();
        let host = self.own_costs(&active)?;
        let mut offset = 0;
        images
            .iter()
            .zip(rows)
            .map(|(x, r)| {
                let len = if has_costs(&r) { (r.preds * r.gts) as usize } else { 0 };
                let cost = &host[offset..offset + len];
                offset += len;
                Self::solve(x, cost, r.preds, r.gts)
            })
            .collect()
    }

    /// Each image's (P, G) cost, row-major, concatenated in image order on
    /// the host: computed for the batch at once and copied in one go.
    pub fn own_costs(&self, images: &[&MatchInputs]) -> ModelResult<Vec<f64>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let inputs = CostInputs::batch(images)?;
        let cost = self.summed_cost(&inputs)?.f_detach()?;
        let own = own_blocks(&cost, &inputs.images)?;
        Ok(Vec::<f64>::try_from(&own.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)?)
    }

    /// One image's assignment from its (P, G) cost on the host (row-major).
    fn solve(x: &MatchInputs, cost: &[f64], num_preds: i64, num_gts: i64) -> ModelResult<AssignResult> {
        let device = x.gt_labels.device();
        let opts = (Kind::Int64, device);
        if num_gts == 0 || num_preds == 0 {
            let fill = if num_gts == 0 { 0 } else { -1 };
            return Ok(AssignResult {
                num_gts,
                gt_inds: Tensor::f_full([num_preds], fill, opts)?,
                labels: Tensor::f_full([num_preds], -1, opts)?,
                max_overlaps: None,
                matches: Some(Vec::new()),
            });
        }
        let (rows, cols) = linear_sum_assignment(cost, num_preds as usize, num_gts as usize)
            .map_err(|e| ModelError::new("HungarianAssigner", e.to_string()))?;
        let mut matches: Vec<(i64, i64)> = rows.into_iter().zip(cols).map(|(r, c)| (r as i64, c as i64)).collect();
        matches.sort_unstable();
        let rows: Vec<i64> = matches.iter().map(|m| m.0).collect();
        let cols: Vec<i64> = matches.iter().map(|m| m.1).collect();
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
        Ok(AssignResult { num_gts, gt_inds, labels, max_overlaps: None, matches: Some(matches) })
    }
}

/// Each image's own (P, G) block of the batch's (ΣP, ΣG) cost, flattened
/// row-major and concatenated in image order: the entries are picked by
/// indices laid out on the host (one upload, one gather).
fn own_blocks(cost: &Tensor, images: &[ImageRows]) -> ModelResult<Tensor> {
    let flat = cost.f_reshape([-1])?;
    if images.len() == 1 {
        return Ok(flat);
    }
    let width: i64 = images.iter().map(|r| r.gts).sum();
    let (mut index, mut row0, mut col0) = (Vec::new(), 0i64, 0i64);
    for r in images {
        for p in row0..row0 + r.preds {
            index.extend((col0..col0 + r.gts).map(|g| p * width + g));
        }
        row0 += r.preds;
        col0 += r.gts;
    }
    Ok(flat.f_index_select(0, &upload(&index, cost.device())?)?)
}
