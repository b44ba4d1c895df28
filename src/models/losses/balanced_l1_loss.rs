//! `BalancedL1Loss` (Pang et al., "Libra R-CNN", 2019,
//! `mmdet/models/losses/balanced_l1_loss.py`): per element, with
//! `d = |pred - target|` and `b = e^(gamma / alpha) - 1`,
//! `alpha / b * (b d + 1) ln(b d / beta + 1) - alpha d` below `beta` and
//! `gamma d + gamma / b - alpha beta` from it on.

use detc::registry::models::losses::BalancedL1LossConfig;
use tch::Tensor;

use super::l1_loss::elementwise_loss;
use super::{LossArgs, Reduction};
use crate::models::layers::ModelResult;

#[derive(Debug, Clone)]
pub struct BalancedL1Loss {
    pub alpha: f64,
    pub gamma: f64,
    pub beta: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl BalancedL1Loss {
    pub fn new(cfg: &BalancedL1LossConfig) -> Self {
        BalancedL1Loss { alpha: cfg.alpha, gamma: cfg.gamma, beta: cfg.beta, reduction: cfg.reduction, loss_weight: cfg.loss_weight }
    }

    /// pred, target: same shape (e.g. (N, 4)); `weight` of that shape.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let (alpha, gamma, beta) = (self.alpha, self.gamma, self.beta);
        let b = (gamma / alpha).exp() - 1.0;
        elementwise_loss("BalancedL1Loss", pred, target, args, (self.reduction, self.loss_weight), |diff| {
            let bd = diff.f_mul_scalar(b)?;
            let small = bd
                .f_add_scalar(1.0)?
                .f_mul(&bd.f_div_scalar(beta)?.f_add_scalar(1.0)?.f_log()?)?
                .f_mul_scalar(alpha / b)?
                .f_sub(&diff.f_mul_scalar(alpha)?)?;
            let large = diff.f_mul_scalar(gamma)?.f_add_scalar(gamma / b - alpha * beta)?;
            Ok(small.f_where_self(&diff.f_lt(beta)?, &large)?)
        })
    }
}
