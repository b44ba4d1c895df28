//! `DiceLoss` (`mmdet/models/losses/dice_loss.py`): V-Net dice
//! `1 - 2ΣPT / (ΣP² + eps + ΣT² + eps)` per sample, or the naive form
//! `1 - (2ΣPT + eps) / (ΣP + ΣT + eps)`.
//!
//! Shape shorthand: `N` masks of `H, W` pixels.

use detc::registry::models::losses::DiceLossConfig;
use tch::{Kind, Tensor};

use super::{weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct DiceLoss {
    /// Apply sigmoid to the predictions first.
    pub activate: bool,
    pub naive_dice: bool,
    pub eps: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl DiceLoss {
    pub fn new(cfg: &DiceLossConfig) -> ModelResult<Self> {
        if cfg.activate && !cfg.use_sigmoid {
            return Err(ModelError::new(
                "DiceLoss",
                "activate with use_sigmoid: false (softmax) is not implemented in MMDetection either",
            ));
        }
        Ok(DiceLoss {
            activate: cfg.activate,
            naive_dice: cfg.naive_dice,
            eps: cfg.eps,
            reduction: cfg.reduction,
            loss_weight: cfg.loss_weight,
        })
    }

    /// pred: (N, ...) logits (probabilities when `activate` is false);
    /// target: (N, ...) with as many elements per sample; `weight`: (N,).
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let reduction = args.reduction_or(self.reduction);
        let n = pred.size().first().copied().unwrap_or(0);
        if target.size().first().copied().unwrap_or(-1) != n || pred.numel() != target.numel() {
            return Err(ModelError::new(
                "DiceLoss",
                format!(
                    "pred {:?} and target {:?} differ",
                    pred.size(),
                    target.size()
                ),
            ));
        }
        if let Some(w) = args.weight {
            if w.dim() != 1 || w.size()[0] != n {
                return Err(ModelError::new(
                    "DiceLoss",
                    format!("weight must be ({n},), got {:?}", w.size()),
                ));
            }
        }
        let p = if self.activate {
            pred.f_sigmoid()?
        } else {
            pred.shallow_clone()
        };
        let p = p.f_flatten(1, -1)?;
        let t = target.f_flatten(1, -1)?.f_to_kind(Kind::Float)?;
        let sum1 = |x: &Tensor| x.f_sum_dim_intlist(1, false, x.kind());
        let a = sum1(&p.f_mul(&t)?)?;
        let d = if self.naive_dice {
            let (b, c) = (sum1(&p)?, sum1(&t)?);
            a.f_mul_scalar(2.0)?
                .f_add_scalar(self.eps)?
                .f_div(&b.f_add(&c)?.f_add_scalar(self.eps)?)?
        } else {
            let b = sum1(&p.f_mul(&p)?)?.f_add_scalar(self.eps)?;
            let c = sum1(&t.f_mul(&t)?)?.f_add_scalar(self.eps)?;
            a.f_mul_scalar(2.0)?.f_div(&b.f_add(&c)?)?
        };
        let loss = d.f_neg()?.f_add_scalar(1.0)?;
        let loss = weight_reduce_loss(&loss, args.weight, reduction, args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}
