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
use crate::models::ops::{bbox_overlaps, upload_as, upload_repeated, xyxy_to_cxcywh, OverlapMode};

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

/// The predictions and ground truths of one or more images, each kind
/// concatenated in image order. A cost is computed for every prediction
/// against every ground truth of the batch, one launch per operation for
/// the whole batch; the assigner keeps each image's own block.
#[derive(Debug)]
pub struct CostInputs {
    /// (ΣP, C) classification logits.
    pub pred_scores: Tensor,
    /// (ΣP, 4) predicted boxes, x1y1x2y2 in image pixels.
    pub pred_bboxes: Tensor,
    /// (ΣG,) ground-truth labels.
    pub gt_labels: Tensor,
    /// (ΣG, 4) ground-truth boxes, x1y1x2y2.
    pub gt_bboxes: Tensor,
    /// Each image's shape and counts, in the order of the rows.
    pub images: Vec<ImageRows>,
}

/// One image's part of [`CostInputs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageRows {
    /// `img_shape`: (height, width).
    pub img_shape: (f64, f64),
    /// P, its predictions.
    pub preds: i64,
    /// G, its ground truths.
    pub gts: i64,
}

impl CostInputs {
    /// One image's inputs, as they are.
    pub fn one(x: &MatchInputs) -> Self {
        CostInputs {
            pred_scores: x.pred_scores.shallow_clone(),
            pred_bboxes: x.pred_bboxes.shallow_clone(),
            gt_labels: x.gt_labels.shallow_clone(),
            gt_bboxes: x.gt_bboxes.shallow_clone(),
            images: vec![ImageRows::of(x)],
        }
    }

    /// The images' inputs concatenated (one image's as they are).
    pub fn batch(images: &[&MatchInputs]) -> ModelResult<Self> {
        if let [x] = images {
            return Ok(Self::one(x));
        }
        let cat = |f: for<'x> fn(&MatchInputs<'x>) -> &'x Tensor| -> ModelResult<Tensor> {
            Ok(Tensor::f_cat(&images.iter().map(|x| f(x)).collect::<Vec<_>>(), 0)?)
        };
        Ok(CostInputs {
            pred_scores: cat(|x| x.pred_scores)?,
            pred_bboxes: cat(|x| x.pred_bboxes)?,
            gt_labels: cat(|x| x.gt_labels)?,
            gt_bboxes: cat(|x| x.gt_bboxes)?,
            images: images.iter().map(|x| ImageRows::of(x)).collect(),
        })
    }
}

impl ImageRows {
    pub(super) fn of(x: &MatchInputs) -> Self {
        let rows = |t: &Tensor| t.size().first().copied().unwrap_or(0);
        ImageRows { img_shape: x.img_shape, preds: rows(x.pred_bboxes), gts: rows(x.gt_labels) }
    }
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

    /// pred (ΣP, 4), gt (ΣG, 4) x1y1x2y2 of `images` -> (ΣP, ΣG), each box
    /// divided by its own image's size.
    pub fn cost(&self, pred: &Tensor, gt: &Tensor, images: &[ImageRows]) -> ModelResult<Tensor> {
        let (pred, gt) = match self.box_format {
            BoxFormat::Xyxy => (pred.shallow_clone(), gt.shallow_clone()),
            BoxFormat::Xywh => (xyxy_to_cxcywh(pred)?, xyxy_to_cxcywh(gt)?),
        };
        let (pred_factor, gt_factor) = size_factors(images, gt.kind(), gt.device())?;
        let (pred, gt) = (pred.f_div(&pred_factor)?, gt.f_div(&gt_factor)?);
        // cdist with p=1: Σ|pred_i - gt_j| over the 4 coordinates.
        let d = pred
            .f_unsqueeze(1)?
            .f_sub(&gt.f_unsqueeze(0)?)?
            .f_abs()?
            .f_sum_dim_intlist(-1, false, pred.kind())?;
        Ok(d.f_mul_scalar(self.weight)?)
    }
}

/// `[w, h, w, h]` of each prediction's and each ground truth's image: one
/// (1, 4) row for a single image, else a row per box.
fn size_factors(images: &[ImageRows], kind: Kind, device: tch::Device) -> ModelResult<(Tensor, Tensor)> {
    let whwh = |r: &ImageRows| {
        let (h, w) = r.img_shape;
        [w, h, w, h]
    };
    if let [one] = images {
        let factor = upload_as(&whwh(one), kind, device)?.f_unsqueeze(0)?;
        return Ok((factor.shallow_clone(), factor));
    }
    let rows = |count: fn(&ImageRows) -> i64| -> ModelResult<Tensor> {
        let rows: Vec<_> = images.iter().map(|r| (whwh(r), count(r))).collect();
        upload_repeated(&rows, kind, device)
    };
    Ok((rows(|r| r.preds)?, rows(|r| r.gts)?))
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

    /// The (P, G) cost of matching each prediction of one image to each of
    /// its ground truths.
    pub fn cost(&self, x: &MatchInputs) -> ModelResult<Tensor> {
        self.cost_of(&CostInputs::one(x))
    }

    /// The (ΣP, ΣG) cost of every prediction against every ground truth of
    /// the batch.
    pub fn cost_of(&self, x: &CostInputs) -> ModelResult<Tensor> {
        match self {
            MatchCost::Focal(c) => c.cost(&x.pred_scores, &x.gt_labels),
            MatchCost::BBoxL1(c) => c.cost(&x.pred_bboxes, &x.gt_bboxes, &x.images),
            MatchCost::IoU(c) => c.cost(&x.pred_bboxes, &x.gt_bboxes),
        }
    }
}
