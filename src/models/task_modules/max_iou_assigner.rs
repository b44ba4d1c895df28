//! `MaxIoUAssigner` (`mmdet/models/task_modules/assigners/max_iou_assigner.py`):
//! each prior takes the ground truth it overlaps most; it is positive from
//! `pos_iou_thr` on, negative below `neg_iou_thr` (or inside a range),
//! ignored in between; with `match_low_quality` every ground truth also
//! claims its best prior(s) when their IoU reaches `min_pos_iou`. Priors
//! covered by an ignored box (IoF above `ignore_iof_thr`) are ignored.
//!
//! Shape shorthand: `P` priors (anchors, proposals), `G` ground truths,
//! `I` ignored boxes of one image. Everything stays on the priors' device
//! (no host sync) unless `gpu_assign_thr` moves a crowded image to the CPU.

use detc::registry::models::task_modules::{MaxIoUAssignerConfig, NegIouThr};
use detc::registry::refs::AssignerCfg;
use tch::{Device, Kind, Tensor};

use super::AssignResult;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{bbox_overlaps, OverlapMode};

const NAME: &str = "MaxIoUAssigner";

#[derive(Debug, Clone)]
pub struct MaxIoUAssigner {
    pub cfg: MaxIoUAssignerConfig,
}

impl MaxIoUAssigner {
    /// Builds from an `assigner` config dict (`type: MaxIoUAssigner`).
    pub fn from_cfg(cfg: &AssignerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "assigner")? {
            NAME => Self::new(&parse_cfg(&cfg.0, NAME)?),
            other => Err(ModelError::new(
                "assigner",
                format!("expected MaxIoUAssigner, got {other:?}"),
            )),
        }
    }

    pub fn new(cfg: &MaxIoUAssignerConfig) -> ModelResult<Self> {
        if cfg.perm_repeat_gt_cfg.is_some() {
            return Err(ModelError::new(
                NAME,
                "perm_repeat_gt_cfg is not supported yet (set it to null)",
            ));
        }
        if let Some(d) = &cfg.iou_calculator.dtype {
            if d != "fp16" {
                return Err(ModelError::new(
                    NAME,
                    format!("iou_calculator.dtype must be null or \"fp16\", got {d:?}"),
                ));
            }
        }
        Ok(Self { cfg: cfg.clone() })
    }

    /// `BboxOverlaps2D(b1, b2, mode)`: (M, 4) x (K, 4) -> (M, K) float32
    /// (with `dtype: fp16` the boxes are divided by `scale` and compared in
    /// half precision, the result back in float32 off the GPU, as mmdet).
    fn overlaps(&self, b1: &Tensor, b2: &Tensor, mode: OverlapMode) -> ModelResult<Tensor> {
        let calc = &self.cfg.iou_calculator;
        if calc.dtype.is_none() {
            return bbox_overlaps(b1, b2, mode, false);
        }
        let half = |b: &Tensor| -> ModelResult<Tensor> {
            Ok(b.f_div_scalar(calc.scale)?.f_to_kind(Kind::Half)?)
        };
        let o = bbox_overlaps(&half(b1)?, &half(b2)?, mode, false)?;
        Ok(if o.device() == Device::Cpu {
            o.f_to_kind(Kind::Float)?
        } else {
            o
        })
    }

    /// `assign(pred_instances, gt_instances, gt_instances_ignore)`: priors
    /// (P, 4), gt_bboxes (G, 4), gt_labels (G,), ignored boxes (I, 4).
    /// Returns gt_inds (P,) (0 background, -1 ignored, k + 1 ground truth k)
    /// and labels (P,) (-1 where not positive). With no ground truth every
    /// prior is background; with no prior the result is empty.
    pub fn assign(
        &self,
        priors: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
        gt_bboxes_ignore: Option<&Tensor>,
    ) -> ModelResult<AssignResult> {
        let num_gts = gt_bboxes.size().first().copied().unwrap_or(0);
        let num_priors = priors.size().first().copied().unwrap_or(0);
        if gt_labels.size() != [num_gts] || (num_gts > 0 && gt_bboxes.size() != [num_gts, 4]) {
            return Err(ModelError::new(
                NAME,
                format!(
                    "ground truths need bboxes (G, 4) and labels (G,), got {:?} and {:?}",
                    gt_bboxes.size(),
                    gt_labels.size()
                ),
            ));
        }
        if num_priors > 0 && (priors.dim() != 2 || !matches!(priors.size()[1], 4 | 5)) {
            return Err(ModelError::new(
                NAME,
                format!("priors must be (P, 4), got {:?}", priors.size()),
            ));
        }
        let device = priors.device();
        if num_gts == 0 || num_priors == 0 {
            let opts = (Kind::Int64, device);
            let fill = if num_gts == 0 { 0 } else { -1 };
            return Ok(AssignResult {
                num_gts,
                gt_inds: Tensor::f_full([num_priors], fill, opts)?,
                labels: Tensor::f_full([num_priors], -1, opts)?,
                max_overlaps: Some(Tensor::f_zeros([num_priors], (Kind::Float, device))?),
                matches: None,
            });
        }
        // mmdet drops a fifth (score) column.
        let priors = priors.f_narrow(1, 0, 4)?;
        let on_cpu = self.cfg.gpu_assign_thr > 0.0 && num_gts as f64 > self.cfg.gpu_assign_thr;
        let here = |t: &Tensor| -> ModelResult<Tensor> {
            Ok(if on_cpu {
                t.f_to_device(Device::Cpu)?
            } else {
                t.shallow_clone()
            })
        };
        let (priors, gt_bboxes, gt_labels) = (here(&priors)?, here(gt_bboxes)?, here(gt_labels)?);
        let mut overlaps = self.overlaps(&gt_bboxes, &priors, OverlapMode::Iou)?;
        if let Some(ignore) = gt_bboxes_ignore.filter(|i| i.numel() > 0) {
            if self.cfg.ignore_iof_thr > 0.0 {
                let ignore = here(&ignore.f_view([-1, 4])?)?;
                let ignore_max = if self.cfg.ignore_wrt_candidates {
                    self.overlaps(&priors, &ignore, OverlapMode::Iof)?
                        .f_amax(&[1i64][..], false)?
                } else {
                    self.overlaps(&ignore, &priors, OverlapMode::Iof)?
                        .f_amax(&[0i64][..], false)?
                };
                let ignored = ignore_max.f_gt(self.cfg.ignore_iof_thr)?.f_unsqueeze(0)?;
                overlaps = overlaps.f_masked_fill(&ignored, -1.0)?;
            }
        }
        let result = self.assign_wrt_overlaps(&overlaps, &gt_labels)?;
        Ok(AssignResult {
            num_gts,
            gt_inds: result.gt_inds.f_to_device(device)?,
            labels: result.labels.f_to_device(device)?,
            max_overlaps: result.max_overlaps.map(|m| m.f_to_device(device)).transpose()?,
            matches: None,
        })
    }

    /// `assign_wrt_overlaps`: overlaps (G, P) with G, P > 0, gt_labels (G,).
    pub fn assign_wrt_overlaps(
        &self,
        overlaps: &Tensor,
        gt_labels: &Tensor,
    ) -> ModelResult<AssignResult> {
        let (num_gts, num_priors) = overlaps.size2()?;
        let device = overlaps.device();
        let (max_overlaps, argmax_overlaps) = overlaps.f_max_dim(0, false)?;
        let (gt_max_overlaps, gt_argmax_overlaps) = overlaps.f_max_dim(1, false)?;
        let mut gt_inds = Tensor::f_full([num_priors], -1, (Kind::Int64, device))?;
        // Negatives; ignored priors (overlap -1) stay -1.
        let neg = match self.cfg.neg_iou_thr {
            NegIouThr::Below(t) => max_overlaps
                .f_ge(0.0)?
                .f_logical_and(&max_overlaps.f_lt(t)?)?,
            NegIouThr::Range((lo, hi)) => max_overlaps
                .f_ge(lo)?
                .f_logical_and(&max_overlaps.f_lt(hi)?)?,
        };
        gt_inds = gt_inds.f_masked_fill(&neg, 0)?;
        let pos = max_overlaps.f_ge(self.cfg.pos_iou_thr)?;
        gt_inds = argmax_overlaps
            .f_add_scalar(1)?
            .f_where_self(&pos, &gt_inds)?;
        if self.cfg.match_low_quality {
            // mmdet loops over the ground truths in order, a later one
            // overwriting an earlier one's claim: the claiming ground truth
            // of a prior is the last one, i.e. the largest k + 1.
            let claims = gt_max_overlaps.f_ge(self.cfg.min_pos_iou)?;
            let rank = Tensor::f_arange_start(1, num_gts + 1, (Kind::Int64, device))?;
            // (G, P): which priors each claiming ground truth takes.
            let taken = if self.cfg.gt_max_assign_all {
                overlaps.f_eq_tensor(&gt_max_overlaps.f_unsqueeze(1)?)?
            } else {
                Tensor::f_arange(num_priors, (Kind::Int64, device))?
                    .f_unsqueeze(0)?
                    .f_eq_tensor(&gt_argmax_overlaps.f_unsqueeze(1)?)?
            };
            let claim = taken
                .f_logical_and(&claims.f_unsqueeze(1)?)?
                .f_mul(&rank.f_unsqueeze(1)?)?
                .f_amax(&[0i64][..], false)?;
            gt_inds = claim.f_where_self(&claim.f_gt(0)?, &gt_inds)?;
        }
        let is_pos = gt_inds.f_gt(0)?;
        let matched = gt_inds.f_sub_scalar(1)?.f_clamp_min(0)?;
        let labels = gt_labels
            .f_to_kind(Kind::Int64)?
            .f_index_select(0, &matched)?
            .f_where_scalarother(&is_pos, -1)?;
        Ok(AssignResult { num_gts, gt_inds, labels, max_overlaps: Some(max_overlaps), matches: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::tensor;
    use crate::models::ops::nms::tests::{fixture, ints};

    fn assigner(json: serde_json::Value) -> MaxIoUAssigner {
        let mut json = json;
        json["type"] = NAME.into();
        MaxIoUAssigner::from_cfg(&AssignerCfg(json)).unwrap()
    }

    /// The cases of tests/models/two_stage_dense_reference.py (ASSIGN_CASES).
    #[test]
    fn max_iou_assignments_match_mmdet() {
        let fx = fixture();
        let (priors, gts, labels, ignore) = (
            tensor(fx, "assign.priors"),
            tensor(fx, "assign.gts"),
            tensor(fx, "assign.labels"),
            tensor(fx, "assign.ignore"),
        );
        let cases = [
            (
                "rpn",
                serde_json::json!({"pos_iou_thr": 0.7, "neg_iou_thr": 0.3, "min_pos_iou": 0.3}),
            ),
            (
                "rcnn",
                serde_json::json!({"pos_iou_thr": 0.5, "neg_iou_thr": 0.5, "min_pos_iou": 0.5,
                                   "match_low_quality": false}),
            ),
            (
                "range",
                serde_json::json!({"pos_iou_thr": 0.6, "neg_iou_thr": [0.1, 0.4], "min_pos_iou": 0.2,
                                   "gt_max_assign_all": false, "ignore_iof_thr": 0.5}),
            ),
            (
                "iof_gt",
                serde_json::json!({"pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0.1,
                                   "ignore_iof_thr": 0.3, "ignore_wrt_candidates": false}),
            ),
            (
                "zero_min",
                serde_json::json!({"pos_iou_thr": 0.5, "neg_iou_thr": 0.3, "min_pos_iou": 0.0}),
            ),
        ];
        for (name, json) in cases {
            let r = assigner(json)
                .assign(&priors, &gts, &labels, Some(&ignore))
                .unwrap();
            assert_eq!(r.num_gts, 7);
            assert_eq!(
                ints(&r.gt_inds),
                ints(&tensor(fx, &format!("assign.{name}.gt_inds"))),
                "{name} gt_inds"
            );
            assert_eq!(
                ints(&r.labels),
                ints(&tensor(fx, &format!("assign.{name}.labels"))),
                "{name} labels"
            );
        }
        let a = assigner(
            serde_json::json!({"pos_iou_thr": 0.7, "neg_iou_thr": 0.3, "min_pos_iou": 0.3}),
        );
        let r = a
            .assign(&priors, &gts.narrow(0, 0, 0), &labels.narrow(0, 0, 0), None)
            .unwrap();
        assert_eq!(ints(&r.gt_inds), ints(&tensor(fx, "assign.nogt.gt_inds")));
        assert_eq!(ints(&r.labels), ints(&tensor(fx, "assign.nogt.labels")));
    }

    #[test]
    fn assigner_edge_cases_and_errors() {
        let a = assigner(serde_json::json!({"pos_iou_thr": 0.5, "neg_iou_thr": 0.4}));
        let gts = Tensor::from_slice(&[0.0f32, 0.0, 4.0, 4.0]).view([1, 4]);
        let labels = Tensor::from_slice(&[3i64]);
        let none = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let r = a.assign(&none, &gts, &labels, None).unwrap();
        assert_eq!((r.num_gts, r.gt_inds.size()), (1, vec![0]));
        // One prior equal to the ground truth, one far away, on the CPU
        // path that `gpu_assign_thr` takes for crowded images.
        let crowded = assigner(
            serde_json::json!({"pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "gpu_assign_thr": 0.5}),
        );
        let priors =
            Tensor::from_slice(&[0.0f32, 0.0, 4.0, 4.0, 10.0, 10.0, 12.0, 12.0]).view([2, 4]);
        let r = crowded.assign(&priors, &gts, &labels, None).unwrap();
        assert_eq!(
            (ints(&r.gt_inds), ints(&r.labels)),
            (vec![1, 0], vec![3, -1])
        );
        let wrong = MaxIoUAssigner::from_cfg(&AssignerCfg(
            serde_json::json!({"type": "HungarianAssigner"}),
        ));
        assert_eq!(wrong.unwrap_err().component, "assigner");
        let bad = MaxIoUAssigner::from_cfg(&AssignerCfg(
            serde_json::json!({"type": NAME, "pos_iou_thr": 0.5}),
        ));
        assert_eq!(bad.unwrap_err().component, NAME);
        assert!(a
            .assign(&priors, &gts, &Tensor::from_slice(&[1i64, 2]), None)
            .is_err());
    }
}
