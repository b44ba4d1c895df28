//! `VarifocalLoss` (Zhang et al., "VarifocalNet: An IoU-aware Dense Object
//! Detector", 2021, `mmdet/models/losses/varifocal_loss.py`): a sigmoid
//! cross-entropy against IoU-aware targets, asymmetric in its weights:
//! positives (target > 0) weighted by their target (`iou_weighted`) or 1,
//! negatives down-weighted as focal loss does, by
//! `alpha * |sigmoid(pred) - target| ^ gamma`.
//!
//! Shape shorthand: `N` samples, `C` classes.

use detc::registry::models::losses::VarifocalLossConfig;
use tch::{Reduction as TchReduction, Tensor};

use super::{weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct VarifocalLoss {
    pub alpha: f64,
    pub gamma: f64,
    pub iou_weighted: bool,
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl VarifocalLoss {
    pub fn new(cfg: &VarifocalLossConfig) -> ModelResult<Self> {
        if !cfg.use_sigmoid {
            return Err(ModelError::new("VarifocalLoss", "only use_sigmoid: true is supported (as in MMDetection)"));
        }
        Ok(VarifocalLoss {
            alpha: cfg.alpha,
            gamma: cfg.gamma,
            iou_weighted: cfg.iou_weighted,
            reduction: cfg.reduction,
            loss_weight: cfg.loss_weight,
        })
    }

    /// pred: (N, C) logits; target: (N, C) IoU-aware targets (a positive's
    /// IoU at its class, 0 elsewhere); `weight` broadcasts against (N, C).
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        if target.size() != pred.size() {
            return Err(ModelError::new(
                "VarifocalLoss",
                format!("pred and target must have one shape, got {:?} and {:?}", pred.size(), target.size()),
            ));
        }
        let target = target.f_to_kind(pred.kind())?;
        let positive = target.f_gt(0.0)?.f_to_kind(pred.kind())?;
        let negative = target.f_le(0.0)?.f_to_kind(pred.kind())?;
        let pos_weight = if self.iou_weighted { target.f_mul(&positive)? } else { positive };
        let neg_weight = pred.f_sigmoid()?.f_sub(&target)?.f_abs()?.f_pow_tensor_scalar(self.gamma)?.f_mul_scalar(self.alpha)?.f_mul(&negative)?;
        // Not detached: as in MMDetection, the negatives' weight passes gradient too.
        let focal_weight = pos_weight.f_add(&neg_weight)?;
        let bce = pred.f_binary_cross_entropy_with_logits(&target, None::<&Tensor>, None::<&Tensor>, TchReduction::None)?;
        let loss = bce.f_mul(&focal_weight)?;
        let loss = weight_reduce_loss(&loss, args.weight, args.reduction_or(self.reduction), args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}
