//! Match costs (`mmdet/models/task_modules/assigners/match_cost.py`): each
//! gives a (num_preds, num_gts) cost matrix that `HungarianAssigner` sums.
//!
//! Shape shorthand: `P` predictions, `G` ground truths, `C` classes; boxes x1y1x2y2 in pixels.

use detc::registry::models::task_modules::{
    BBoxL1CostConfig, BoxFormat, FocalLossCostConfig, IoUCostConfig, IouMode,
};
use detc::registry::refs::MatchCostCfg;
use tch::{Kind, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{bbox_overlaps, upload_as, xyxy_to_cxcywh, OverlapMode};

/// What a match cost sees of one image: the predictions and the ground truth.
#[derive(Debug)]
pub struct MatchInputs<'a> {
    /// (P, C) classification logits.
    pub pred_scores: &'a Tensor,
    /// (P, 4) predicted boxes, x1y1x2y2 in image pixels.
    pub pred_bboxes: &'a Tensor,
    /// (G,) ground-truth labels (int64).
    pub gt_labels: &'a Tensor,
    /// (G, 4) ground-truth boxes, x1y1x2y2.
    pub gt_bboxes: &'a Tensor,
    /// `img_meta['img_shape']`: (height, width) of the resized image before padding.
    pub img_shape: (f64, f64),
}

/// `FocalLossCost` (class logits; `binary_input` mask costs are not built here).
#[derive(Debug, Clone)]
pub struct FocalLossCost {
    pub alpha: f64,
    pub gamma: f64,
    pub eps: f64,
    pub weight: f64,
}

impl FocalLossCost {
    pub fn new(cfg: &FocalLossCostConfig) -> ModelResult<Self> {
        if cfg.binary_input {
            return Err(ModelError::new(
                "FocalLossCost",
                "binary_input: true (mask focal cost) is not supported yet",
            ));
        }
        Ok(FocalLossCost {
            alpha: cfg.alpha,
            gamma: cfg.gamma,
            eps: cfg.eps,
            weight: cfg.weight,
        })
    }

    /// scores (P, C) logits, labels (G,) -> (P, G):
    /// `pos_cost[:, labels] - neg_cost[:, labels]` times `weight`.
    pub fn cost(&self, scores: &Tensor, labels: &Tensor) -> ModelResult<Tensor> {
        let p = scores.f_sigmoid()?;
        let neg = p
            .f_neg()?
            .f_add_scalar(1.0 + self.eps)?
            .f_log()?
            .f_neg()?
            .f_mul_scalar(1.0 - self.alpha)?
            .f_mul(&p.f_pow_tensor_scalar(self.gamma)?)?;
        let pos = p
            .f_add_scalar(self.eps)?
            .f_log()?
            .f_neg()?
            .f_mul_scalar(self.alpha)?
            .f_mul(
                &p.f_neg()?
                    .f_add_scalar(1.0)?
                    .f_pow_tensor_scalar(self.gamma)?,
            )?;
        let labels = labels.f_to_kind(Kind::Int64)?;
        let cost = pos
            .f_index_select(1, &labels)?
            .f_sub(&neg.f_index_select(1, &labels)?)?;
        Ok(cost.f_mul_scalar(self.weight)?)
    }
}

/// `BBoxL1Cost`: L1 distance of boxes normalised by the image size.
#[derive(Debug, Clone)]
pub struct BBoxL1Cost {
    pub box_format: BoxFormat,
    pub weight: f64,
}

impl BBoxL1Cost {
    pub fn new(cfg: &BBoxL1CostConfig) -> Self {
        BBoxL1Cost {
            box_format: cfg.box_format,
            weight: cfg.weight,
        }
    }

    /// pred (P, 4), gt (G, 4) x1y1x2y2, img_shape (h, w) -> (P, G).
    pub fn cost(&self, pred: &Tensor, gt: &Tensor, img_shape: (f64, f64)) -> ModelResult<Tensor> {
        let (pred, gt) = match self.box_format {
            BoxFormat::Xyxy => (pred.shallow_clone(), gt.shallow_clone()),
            BoxFormat::Xywh => (xyxy_to_cxcywh(pred)?, xyxy_to_cxcywh(gt)?),
        };
        let (h, w) = img_shape;
        let factor = upload_as(&[w, h, w, h], gt.kind(), gt.device())?
            .f_unsqueeze(0)?;
        let (pred, gt) = (pred.f_div(&factor)?, gt.f_div(&factor)?);
        // cdist with p=1: Σ|pred_i - gt_j| over the 4 coordinates.
        let d = pred
            .f_unsqueeze(1)?
            .f_sub(&gt.f_unsqueeze(0)?)?
            .f_abs()?
            .f_sum_dim_intlist(-1, false, pred.kind())?;
        Ok(d.f_mul_scalar(self.weight)?)
    }
}

/// `IoUCost`: `-overlaps * weight` (IoU, IoF or GIoU).
#[derive(Debug, Clone)]
pub struct IoUCost {
    pub mode: OverlapMode,
    pub weight: f64,
}

impl IoUCost {
    pub fn new(cfg: &IoUCostConfig) -> Self {
        let mode = match cfg.iou_mode {
            IouMode::Iou => OverlapMode::Iou,
            IouMode::Iof => OverlapMode::Iof,
            IouMode::Giou => OverlapMode::Giou,
        };
        IoUCost {
            mode,
            weight: cfg.weight,
        }
    }

    /// pred (P, 4), gt (G, 4) -> (P, G). Half precision is computed in f32.
    pub fn cost(&self, pred: &Tensor, gt: &Tensor) -> ModelResult<Tensor> {
        let kind = pred.kind();
        let (p, g) = if kind == Kind::Half {
            (pred.f_to_kind(Kind::Float)?, gt.f_to_kind(Kind::Float)?)
        } else {
            (pred.shallow_clone(), gt.shallow_clone())
        };
        let o = bbox_overlaps(&p, &g, self.mode, false)?.f_to_kind(kind)?;
        Ok(o.f_neg()?.f_mul_scalar(self.weight)?)
    }
}

/// A match cost built from a `match_costs` entry.
#[derive(Debug, Clone)]
pub enum MatchCost {
    Focal(FocalLossCost),
    BBoxL1(BBoxL1Cost),
    IoU(IoUCost),
}

impl MatchCost {
    pub fn from_cfg(cfg: &MatchCostCfg) -> ModelResult<Self> {
        let ty = cfg_type(&cfg.0, "match cost")?;
        Ok(match ty {
            "FocalLossCost" => MatchCost::Focal(FocalLossCost::new(&parse_cfg(&cfg.0, ty)?)?),
            "BBoxL1Cost" => MatchCost::BBoxL1(BBoxL1Cost::new(&parse_cfg(&cfg.0, ty)?)),
            "IoUCost" => MatchCost::IoU(IoUCost::new(&parse_cfg(&cfg.0, ty)?)),
            other => {
                return Err(ModelError::new(
                    "HungarianAssigner",
                    format!("match cost {other:?} has no builder yet"),
                ))
            }
        })
    }

    /// The (P, G) cost of matching each prediction to each ground truth.
    pub fn cost(&self, x: &MatchInputs) -> ModelResult<Tensor> {
        match self {
            MatchCost::Focal(c) => c.cost(x.pred_scores, x.gt_labels),
            MatchCost::BBoxL1(c) => c.cost(x.pred_bboxes, x.gt_bboxes, x.img_shape),
            MatchCost::IoU(c) => c.cost(x.pred_bboxes, x.gt_bboxes),
        }
    }
}
