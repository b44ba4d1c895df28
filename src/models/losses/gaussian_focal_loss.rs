//! `GaussianFocalLoss` (`mmdet/models/losses/gaussian_focal_loss.py`,
//! CornerNet and CenterNet): a focal loss on probabilities against a
//! Gaussian heatmap. Positives count `-log(p) (1 - p) ^ alpha`; every
//! location is pushed down by `-log(1 - p) p ^ alpha (1 - target) ^ gamma`,
//! so that locations near a peak are spared.
//!
//! Shape shorthand: `Q` locations, `K` classes, `Np` positives.

use detc::registry::models::losses::GaussianFocalLossConfig;
use detc::registry::refs::LossCfg;
use tch::Tensor;

use super::{cfg_type, parse_cfg, weight_reduce_loss, AvgFactor, Reduction};
use crate::models::layers::{ModelError, ModelResult};

const NAME: &str = "GaussianFocalLoss";
/// MMDetection's `eps` inside the logs.
const EPS: f64 = 1e-12;

#[derive(Debug, Clone)]
pub struct GaussianFocalLoss {
    pub alpha: f64,
    pub gamma: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
    pub pos_weight: f64,
    pub neg_weight: f64,
}

impl GaussianFocalLoss {
    /// From a `loss_cls` dict, which must be a `GaussianFocalLoss`.
    pub fn from_cfg(cfg: &LossCfg, owner: &str) -> ModelResult<Self> {
        if cfg_type(&cfg.0, "loss_cls")? != NAME {
            return Err(ModelError::new(owner, "loss_cls must be a GaussianFocalLoss"));
        }
        let c: GaussianFocalLossConfig = parse_cfg(&cfg.0, NAME)?;
        Ok(GaussianFocalLoss {
            alpha: c.alpha,
            gamma: c.gamma,
            reduction: c.reduction,
            loss_weight: c.loss_weight,
            pos_weight: c.pos_weight,
            neg_weight: c.neg_weight,
        })
    }

    /// The negatives' term, element-wise: pred and target (Q, K).
    fn negative(&self, pred: &Tensor, target: &Tensor) -> ModelResult<Tensor> {
        let spare = target.f_neg()?.f_add_scalar(1.0)?.f_pow_tensor_scalar(self.gamma)?;
        let log = pred.f_neg()?.f_add_scalar(1.0 + EPS)?.f_log()?.f_neg()?;
        Ok(log.f_mul(&pred.f_pow_tensor_scalar(self.alpha)?)?.f_mul(&spare)?)
    }

    /// The positives' term, element-wise, of probabilities `p`.
    fn positive(&self, p: &Tensor) -> ModelResult<Tensor> {
        let log = p.f_add_scalar(EPS)?.f_log()?.f_neg()?;
        Ok(log.f_mul(&p.f_neg()?.f_add_scalar(1.0)?.f_pow_tensor_scalar(self.alpha)?)?)
    }

    /// `gaussian_focal_loss`: pred (Q, K) probabilities, target (Q, K) the
    /// heatmap; the positives are where the target is 1.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, avg_factor: Option<f64>) -> ModelResult<Tensor> {
        let peaks = target.f_eq(1.0)?.f_to_kind(pred.kind())?;
        let loss = self
            .positive(pred)?
            .f_mul(&peaks)?
            .f_mul_scalar(self.pos_weight)?
            .f_add(&self.negative(pred, target)?.f_mul_scalar(self.neg_weight)?)?;
        Ok(weight_reduce_loss(&loss, None, self.reduction, avg_factor.map(AvgFactor::Host))?.f_mul_scalar(self.loss_weight)?)
    }

    /// `gaussian_focal_loss_with_pos_inds`: the positives are the rows
    /// `pos_inds` (Np,) at their classes `pos_labels` (Np,); each term is
    /// reduced by `avg_factor` on its own.
    pub fn forward_with_pos(&self, pred: &Tensor, target: &Tensor, pos_inds: &Tensor, pos_labels: &Tensor, avg_factor: Option<f64>) -> ModelResult<Tensor> {
        let pos = pred.f_index_select(0, pos_inds)?.f_gather(1, &pos_labels.f_unsqueeze(1)?, false)?;
        let pos_loss = weight_reduce_loss(&self.positive(&pos)?, None, self.reduction, avg_factor.map(AvgFactor::Host))?;
        let neg_loss = weight_reduce_loss(&self.negative(pred, target)?, None, self.reduction, avg_factor.map(AvgFactor::Host))?;
        Ok(pos_loss.f_mul_scalar(self.pos_weight)?.f_add(&neg_loss.f_mul_scalar(self.neg_weight)?)?.f_mul_scalar(self.loss_weight)?)
    }
}
