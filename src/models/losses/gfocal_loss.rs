//! The losses of Generalized Focal Loss (Li et al., 2020,
//! `mmdet/models/losses/gfocal_loss.py`): `QualityFocalLoss`, a sigmoid
//! cross-entropy against soft (IoU-quality) targets, and
//! `DistributionFocalLoss`, which pulls a side's discrete distance
//! distribution to the two integers around its target.
//!
//! Shape shorthand: `N` samples, `C` classes, `B` bins (`reg_max + 1`).

use detc::registry::models::losses::{DistributionFocalLossConfig, QualityFocalLossConfig};
use tch::{Kind, Reduction as TchReduction, Tensor};

use super::{weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct QualityFocalLoss {
    pub beta: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
    pub activated: bool,
}

impl QualityFocalLoss {
    pub fn new(cfg: &QualityFocalLossConfig) -> ModelResult<Self> {
        if !cfg.use_sigmoid {
            return Err(ModelError::new("QualityFocalLoss", "only use_sigmoid: true is supported (as in MMDetection)"));
        }
        Ok(QualityFocalLoss { beta: cfg.beta, reduction: cfg.reduction, loss_weight: cfg.loss_weight, activated: cfg.activated })
    }

    /// pred: (N, C) logits (probabilities when `activated`); target: (N, C)
    /// soft targets (a positive's quality at its class, 0 elsewhere);
    /// `weight`: (N,). mmdet's label-and-score form gives the same values: at
    /// a zero target both forms are BCE(pred, 0) * sigmoid(pred) ^ beta.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        if pred.dim() != 2 || target.size() != pred.size() {
            return Err(ModelError::new(
                "QualityFocalLoss",
                format!("pred (N, C) and a target of its shape, got {:?} and {:?}", pred.size(), target.size()),
            ));
        }
        let target = target.f_to_kind(pred.kind())?;
        let (p, bce) = if self.activated {
            (pred.shallow_clone(), pred.f_binary_cross_entropy(&target, None::<&Tensor>, TchReduction::None)?)
        } else {
            (pred.f_sigmoid()?, pred.f_binary_cross_entropy_with_logits(&target, None::<&Tensor>, None::<&Tensor>, TchReduction::None)?)
        };
        let scale = target.f_sub(&p)?.f_abs()?.f_pow_tensor_scalar(self.beta)?;
        let loss = bce.f_mul(&scale)?.f_sum_dim_intlist(1, false, pred.kind())?;
        let loss = weight_reduce_loss(&loss, args.weight, args.reduction_or(self.reduction), args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}

#[derive(Debug, Clone)]
pub struct DistributionFocalLoss {
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl DistributionFocalLoss {
    pub fn new(cfg: &DistributionFocalLossConfig) -> Self {
        DistributionFocalLoss { reduction: cfg.reduction, loss_weight: cfg.loss_weight }
    }

    /// pred: (N, B) logits over the bins; target: (N,) distances in
    /// `[0, B - 1)`; `weight`: (N,).
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        if pred.dim() != 2 || target.size() != [pred.size()[0]] {
            return Err(ModelError::new(
                "DistributionFocalLoss",
                format!("pred (N, B) and target (N,), got {:?} and {:?}", pred.size(), target.size()),
            ));
        }
        let left = target.f_to_kind(Kind::Int64)?;
        let right = left.f_add_scalar(1)?;
        let weight_left = right.f_to_kind(target.kind())?.f_sub(target)?;
        let weight_right = target.f_sub(&left.f_to_kind(target.kind())?)?;
        let ce = |t: &Tensor| pred.f_cross_entropy_loss(t, None::<&Tensor>, TchReduction::None, -100, 0.0);
        let loss = ce(&left)?.f_mul(&weight_left)?.f_add(&ce(&right)?.f_mul(&weight_right)?)?;
        let loss = weight_reduce_loss(&loss, args.weight, args.reduction_or(self.reduction), args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}
