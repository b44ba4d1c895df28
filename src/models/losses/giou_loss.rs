//! `GIoULoss` (`mmdet/models/losses/iou_loss.py`): `1 - GIoU(pred, target)`
//! on aligned x1y1x2y2 boxes, with mmdet's `bbox_overlaps` clamping of the
//! union and the enclosing area at `eps`.
//!
//! Shape shorthand: `N` box pairs, `(N, 4)` x1y1x2y2.

use detc::registry::models::losses::GIoULossConfig;
use tch::Tensor;

use super::{early_exit, weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct GIoULoss {
    pub eps: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl GIoULoss {
    pub fn new(cfg: &GIoULossConfig) -> Self {
        GIoULoss {
            eps: cfg.eps,
            reduction: cfg.reduction,
            loss_weight: cfg.loss_weight,
        }
    }

    /// pred, target: (N, 4) boxes; `weight` (N,) or (N, 4) (averaged over the
    /// last dim, as mmdet). A weight with no positive entry returns
    /// `(pred * weight).sum()`, a zero that keeps the graph.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let reduction = args.reduction_or(self.reduction);
        // The loss is per box; a (N,) or (N, 4) weight becomes (N,).
        if let Some(zero) = early_exit(pred, args.weight, reduction, true)? {
            return Ok(zero);
        }
        let mut weight = args.weight.map(|w| w.shallow_clone());
        if let Some(w) = &weight {
            if w.dim() > 1 {
                if w.size() != pred.size() {
                    return Err(ModelError::new(
                        "GIoULoss",
                        format!("weight {:?} must match pred {:?}", w.size(), pred.size()),
                    ));
                }
                weight = Some(w.f_mean_dim(-1, false, w.kind())?);
            }
        }
        let loss = aligned_giou(pred, target, self.eps)?
            .f_neg()?
            .f_add_scalar(1.0)?;
        let loss = weight_reduce_loss(&loss, weight.as_ref(), reduction, args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}

/// `bbox_overlaps(a, b, mode='giou', is_aligned=True, eps)`: (..., 4) twice -> (...).
pub fn aligned_giou(a: &Tensor, b: &Tensor, eps: f64) -> ModelResult<Tensor> {
    let (overlap, union) = overlap_and_union(a, b, eps, "GIoULoss")?;
    let ious = overlap.f_div(&union)?;
    let (alo, ahi) = (a.f_narrow(-1, 0, 2)?, a.f_narrow(-1, 2, 2)?);
    let (blo, bhi) = (b.f_narrow(-1, 0, 2)?, b.f_narrow(-1, 2, 2)?);
    let enclose = wh_product(&alo.f_minimum(&blo)?, &ahi.f_maximum(&bhi)?)?.f_clamp_min(eps)?;
    Ok(ious.f_sub(&enclose.f_sub(&union)?.f_div(&enclose)?)?)
}

/// `bbox_overlaps(..., is_aligned=True)`'s intersection and its union
/// clamped at `eps`; `owner` names the loss in a shape error.
pub fn overlap_and_union(a: &Tensor, b: &Tensor, eps: f64, owner: &str) -> ModelResult<(Tensor, Tensor)> {
    if a.size() != b.size() || a.size().last() != Some(&4) {
        return Err(ModelError::new(
            owner,
            format!("boxes must be (..., 4) of one shape, got {:?} and {:?}", a.size(), b.size()),
        ));
    }
    let (alo, ahi) = (a.f_narrow(-1, 0, 2)?, a.f_narrow(-1, 2, 2)?);
    let (blo, bhi) = (b.f_narrow(-1, 0, 2)?, b.f_narrow(-1, 2, 2)?);
    let overlap = wh_product(&alo.f_maximum(&blo)?, &ahi.f_minimum(&bhi)?)?;
    let union = area(a)?.f_add(&area(b)?)?.f_sub(&overlap)?.f_clamp_min(eps)?;
    Ok((overlap, union))
}

/// `(x2 - x1) * (y2 - y1)` of (..., 4) boxes.
pub fn area(x: &Tensor) -> ModelResult<Tensor> {
    let wh = x.f_narrow(-1, 2, 2)?.f_sub(&x.f_narrow(-1, 0, 2)?)?;
    Ok(wh.f_select(-1, 0)?.f_mul(&wh.f_select(-1, 1)?)?)
}

/// The area between corners `lo` and `hi` (..., 2), empty when they cross.
pub fn wh_product(lo: &Tensor, hi: &Tensor) -> ModelResult<Tensor> {
    let wh = hi.f_sub(lo)?.f_clamp_min(0.0)?;
    Ok(wh.f_select(-1, 0)?.f_mul(&wh.f_select(-1, 1)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::losses::assert_reduced_zero_weight_is_the_exit;
    use tch::{Device, Kind};

    /// What a GPU computes in place of the early exit (the reduced loss of an
    /// all-zero weight, (N,) or (N, 4)) is the early exit's zero, with its
    /// zero gradient.
    #[test]
    fn reduced_loss_without_the_early_exit_is_the_same_zero() {
        let pred = Tensor::from_slice(&[1.5f32, 2.0, 4.25, 3.0, 0.5, 1.0, 2.0, 4.0]).view([2, 4]);
        let target = Tensor::from_slice(&[1.0f32, 1.0, 3.0, 5.0, 0.0, 2.0, 2.5, 3.0]).view([2, 4]);
        let weights = [Tensor::zeros([2, 4], (Kind::Float, Device::Cpu)), Tensor::zeros([2], (Kind::Float, Device::Cpu))];
        assert_reduced_zero_weight_is_the_exit(&pred, &weights, |p, w, reduction, avg| {
            let w = if w.dim() > 1 { w.mean_dim(-1, false, Kind::Float) } else { w.shallow_clone() };
            let loss = aligned_giou(p, &target, 1e-6).unwrap().neg() + 1.0;
            weight_reduce_loss(&loss, Some(&w), reduction, avg).unwrap()
        });
    }
}
