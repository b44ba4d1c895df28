//! The IoU-based box losses of `mmdet/models/losses/iou_loss.py` besides
//! GIoU: `IoULoss` (UnitBox: `-ln IoU`, `1 - IoU` or `1 - IoU²`),
//! `BoundedIoULoss` (smooth-L1 of per-coordinate IoU bounds), `DIoULoss`
//! (IoU minus the squared centre distance over the enclosing diagonal) and
//! `CIoULoss` (DIoU plus an aspect-ratio term), each with MMDetection's
//! arithmetic: the same eps placements, detached targets and weights.
//!
//! Shape shorthand: `N` box pairs, `(N, 4)` x1y1x2y2.

use std::f64::consts::PI;

use detc::registry::models::losses::{BoundedIoULossConfig, DistanceIoULossConfig, IoULossConfig, IoULossMode};
use tch::Tensor;

use super::giou_loss::{area, overlap_and_union, wh_product};
use super::{early_exit, weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

/// Which loss of the family, with its own parameter.
#[derive(Debug, Clone, Copy)]
enum Variant {
    IoU(IoULossMode),
    Bounded { beta: f64 },
    Distance,
    Complete,
}

#[derive(Debug, Clone)]
pub struct IoUFamilyLoss {
    variant: Variant,
    eps: f64,
    reduction: Reduction,
    loss_weight: f64,
}

impl IoUFamilyLoss {
    pub fn iou(cfg: &IoULossConfig) -> Self {
        // `linear: true` is MMDetection's deprecated spelling of `mode: linear`.
        let mode = if cfg.linear { IoULossMode::Linear } else { cfg.mode };
        Self::with(Variant::IoU(mode), cfg.eps, cfg.reduction, cfg.loss_weight)
    }

    pub fn bounded(cfg: &BoundedIoULossConfig) -> Self {
        Self::with(Variant::Bounded { beta: cfg.beta }, cfg.eps, cfg.reduction, cfg.loss_weight)
    }

    /// `DIoULoss`, or `CIoULoss` when `complete`.
    pub fn distance(cfg: &DistanceIoULossConfig, complete: bool) -> Self {
        let variant = if complete { Variant::Complete } else { Variant::Distance };
        Self::with(variant, cfg.eps, cfg.reduction, cfg.loss_weight)
    }

    fn with(variant: Variant, eps: f64, reduction: Reduction, loss_weight: f64) -> Self {
        IoUFamilyLoss { variant, eps, reduction, loss_weight }
    }

    fn name(&self) -> &'static str {
        match self.variant {
            Variant::IoU(_) => "IoULoss",
            Variant::Bounded { .. } => "BoundedIoULoss",
            Variant::Distance => "DIoULoss",
            Variant::Complete => "CIoULoss",
        }
    }

    /// pred, target: (N, 4) boxes; `weight` (N,) or (N, 4): averaged over the
    /// last dim except for `BoundedIoULoss`, whose loss is per coordinate. A
    /// weight with no positive entry returns `(pred * weight).sum()`, a zero
    /// that keeps the graph (`IoULoss` only when reducing, as mmdet).
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let reduction = args.reduction_or(self.reduction);
        let mmdet_exits = !matches!(self.variant, Variant::IoU(_)) || reduction != Reduction::None;
        // Skippable where the loss is per box and finite: not
        // `BoundedIoULoss`'s, per coordinate, nor `CIoULoss`'s, NaN for a
        // box equal to its target (mmdet's `alpha` is 0 / 0 there).
        let skippable = matches!(self.variant, Variant::IoU(_) | Variant::Distance);
        if mmdet_exits {
            if let Some(zero) = early_exit(pred, args.weight, reduction, skippable)? {
                return Ok(zero);
            }
        }
        if pred.size() != target.size() || pred.dim() != 2 || pred.size()[1] != 4 {
            return Err(ModelError::new(
                self.name(),
                format!("pred and target must be (N, 4), got {:?} and {:?}", pred.size(), target.size()),
            ));
        }
        let mut weight = args.weight.map(Tensor::shallow_clone);
        if let Some(w) = &weight {
            if w.dim() > 1 && !matches!(self.variant, Variant::Bounded { .. }) {
                if w.size() != pred.size() {
                    return Err(ModelError::new(
                        self.name(),
                        format!("weight {:?} must match pred {:?}", w.size(), pred.size()),
                    ));
                }
                weight = Some(w.f_mean_dim(-1, false, w.kind())?);
            }
        }
        let loss = match self.variant {
            Variant::IoU(mode) => iou_loss(pred, target, mode, self.eps)?,
            Variant::Bounded { beta } => bounded_iou_loss(pred, target, beta, self.eps)?,
            Variant::Distance => distance_iou_loss(pred, target, self.eps, false)?,
            Variant::Complete => distance_iou_loss(pred, target, self.eps, true)?,
        };
        let loss = weight_reduce_loss(&loss, weight.as_ref(), reduction, args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}

/// `iou_loss`: the aligned IoU (`bbox_overlaps`, its own eps 1e-6) clamped
/// at `eps`, then by `mode`.
fn iou_loss(pred: &Tensor, target: &Tensor, mode: IoULossMode, eps: f64) -> ModelResult<Tensor> {
    let (overlap, union) = overlap_and_union(pred, target, 1e-6, "IoULoss")?;
    let ious = overlap.f_div(&union)?.f_clamp_min(eps)?;
    Ok(match mode {
        IoULossMode::Linear => ious.f_neg()?.f_add_scalar(1.0)?,
        IoULossMode::Square => ious.f_square()?.f_neg()?.f_add_scalar(1.0)?,
        IoULossMode::Log => ious.f_log()?.f_neg()?,
    })
}

/// Centre and size of (N, 4) boxes: `(cx, cy, w, h)`, each (N,).
fn centre_size(b: &Tensor) -> ModelResult<(Tensor, Tensor, Tensor, Tensor)> {
    let c = |i: i64| b.f_select(1, i);
    Ok((
        c(0)?.f_add(&c(2)?)?.f_mul_scalar(0.5)?,
        c(1)?.f_add(&c(3)?)?.f_mul_scalar(0.5)?,
        c(2)?.f_sub(&c(0)?)?,
        c(3)?.f_sub(&c(1)?)?,
    ))
}

/// `bounded_iou_loss` -> (N, 4): for the centre offsets
/// `1 - max((t - 2|d|) / (t + 2|d| + eps), 0)`, for the sizes
/// `1 - min(t / (p + eps), p / (t + eps))`, then smooth-L1 with `beta`.
fn bounded_iou_loss(pred: &Tensor, target: &Tensor, beta: f64, eps: f64) -> ModelResult<Tensor> {
    let (pcx, pcy, pw, ph) = centre_size(pred)?;
    let (tcx, tcy, tw, th) = centre_size(&target.detach())?;
    let offset = |t: &Tensor, d: &Tensor| -> ModelResult<Tensor> {
        let d2 = d.f_abs()?.f_mul_scalar(2.0)?;
        let bound = t.f_sub(&d2)?.f_div(&t.f_add(&d2)?.f_add_scalar(eps)?)?;
        Ok(bound.f_maximum(&bound.f_zeros_like()?)?.f_neg()?.f_add_scalar(1.0)?)
    };
    let size = |t: &Tensor, p: &Tensor| -> ModelResult<Tensor> {
        let ratio = t.f_div(&p.f_add_scalar(eps)?)?.f_minimum(&p.f_div(&t.f_add_scalar(eps)?)?)?;
        Ok(ratio.f_neg()?.f_add_scalar(1.0)?)
    };
    let parts = [
        offset(&tw, &tcx.f_sub(&pcx)?)?,
        offset(&th, &tcy.f_sub(&pcy)?)?,
        size(&tw, &pw)?,
        size(&th, &ph)?,
    ];
    let comb = Tensor::f_stack(&parts, -1)?.f_flatten(1, -1)?;
    let quadratic = comb.f_mul(&comb)?.f_mul_scalar(0.5)?.f_div_scalar(beta)?;
    let linear = comb.f_sub_scalar(0.5 * beta)?;
    Ok(quadratic.f_where_self(&comb.f_lt(beta)?, &linear)?)
}

/// `diou_loss` (`complete`: `ciou_loss`) -> (N,).
fn distance_iou_loss(pred: &Tensor, target: &Tensor, eps: f64, complete: bool) -> ModelResult<Tensor> {
    let (plo, phi) = (pred.f_narrow(1, 0, 2)?, pred.f_narrow(1, 2, 2)?);
    let (tlo, thi) = (target.f_narrow(1, 0, 2)?, target.f_narrow(1, 2, 2)?);
    let overlap = wh_product(&plo.f_maximum(&tlo)?, &phi.f_minimum(&thi)?)?;
    let union = area(pred)?.f_add(&area(target)?)?.f_sub(&overlap)?.f_add_scalar(eps)?;
    let ious = overlap.f_div(&union)?;
    let enclose = phi.f_maximum(&thi)?.f_sub(&plo.f_minimum(&tlo)?)?.f_clamp_min(0.0)?;
    let c2 = enclose.f_select(1, 0)?.f_square()?.f_add(&enclose.f_select(1, 1)?.f_square()?)?.f_add_scalar(eps)?;
    let p = |i: i64| pred.f_select(1, i);
    let t = |i: i64| target.f_select(1, i);
    let centre_gap = |a: i64, b: i64| -> ModelResult<Tensor> {
        Ok(t(a)?.f_add(&t(b)?)?.f_sub(&p(a)?.f_add(&p(b)?)?)?.f_square()?.f_div_scalar(4.0)?)
    };
    let rho2 = centre_gap(0, 2)?.f_add(&centre_gap(1, 3)?)?;
    let mut penalty = rho2.f_div(&c2)?;
    if complete {
        let ratio = |x: &dyn Fn(i64) -> Result<Tensor, tch::TchError>| -> ModelResult<Tensor> {
            let w = x(2)?.f_sub(&x(0)?)?;
            let h = x(3)?.f_sub(&x(1)?)?.f_add_scalar(eps)?;
            Ok(w.f_div(&h)?.f_atan()?)
        };
        let v = ratio(&t)?.f_sub(&ratio(&p)?)?.f_square()?.f_mul_scalar(4.0 / (PI * PI))?;
        // alpha is a constant of the step (torch.no_grad in mmdet).
        let alpha = {
            let (ious, v) = (ious.detach(), v.detach());
            ious.f_gt(0.5)?
                .f_to_kind(v.kind())?
                .f_mul(&v)?
                .f_div(&ious.f_neg()?.f_add_scalar(1.0)?.f_add(&v)?)?
        };
        penalty = penalty.f_add(&alpha.f_mul(&v)?)?;
    }
    let score = ious.f_sub(&penalty)?;
    let score = if complete { score.f_clamp(-1.0, 1.0)? } else { score };
    Ok(score.f_neg()?.f_add_scalar(1.0)?)
}
