//! `MSELoss` (`mmdet/models/losses/mse_loss.py`): (pred - target)^2,
//! weighted and reduced as mmdet's `@weighted_loss` losses.

use detc::registry::models::losses::MSELossConfig;
use tch::Tensor;

use super::{weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct MSELoss {
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl MSELoss {
    pub fn new(cfg: &MSELossConfig) -> Self {
        MSELoss { reduction: cfg.reduction, loss_weight: cfg.loss_weight }
    }

    /// pred, target: the same shape; `weight` broadcast against them.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        if pred.size() != target.size() {
            return Err(ModelError::new("MSELoss", format!("pred {:?} and target {:?} differ", pred.size(), target.size())));
        }
        let loss = pred.f_sub(target)?.f_square()?;
        let loss = weight_reduce_loss(&loss, args.weight, args.reduction_or(self.reduction), args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}
