//! `L1Loss` (`mmdet/models/losses/smooth_l1_loss.py`): |pred - target|.
//!
//! Shape shorthand: `N` samples; boxes are `(N, 4)`.

use detc::registry::models::losses::L1LossConfig;
use tch::Tensor;

use super::{early_exit, weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct L1Loss {
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl L1Loss {
    pub fn new(cfg: &L1LossConfig) -> Self {
        L1Loss {
            reduction: cfg.reduction,
            loss_weight: cfg.loss_weight,
        }
    }

    /// pred, target: same shape (e.g. (N, 4)); `weight` of that shape.
    /// As mmdet: a weight with no positive entry returns `(pred * weight).sum()`
    /// (a zero that keeps the graph), and an empty target gives `pred.sum() * 0`.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        elementwise_loss("L1Loss", pred, target, args, (self.reduction, self.loss_weight), Ok)
    }
}

/// The frame of mmdet's `@weighted_loss` box losses (L1, smooth L1): the
/// zero for an all-zero weight or an empty target, the shape check, then
/// `loss_of(|pred - target|)` weighted, reduced (the config's `reduction`
/// unless `args` overrides it) and scaled by `loss_weight`.
pub(super) fn elementwise_loss(
    name: &str,
    pred: &Tensor,
    target: &Tensor,
    args: LossArgs,
    (reduction, loss_weight): (Reduction, f64),
    loss_of: impl FnOnce(Tensor) -> ModelResult<Tensor>,
) -> ModelResult<Tensor> {
    let reduction = args.reduction_or(reduction);
    let elementwise = args.weight.map_or(true, |w| w.dim() == pred.dim());
    if let Some(zero) = early_exit(pred, args.weight, reduction, elementwise)? {
        return Ok(zero);
    }
    let loss = if target.numel() == 0 {
        pred.f_sum(pred.kind())?.f_mul_scalar(0.0)?
    } else {
        if pred.size() != target.size() {
            return Err(ModelError::new(
                name,
                format!("pred {:?} and target {:?} differ", pred.size(), target.size()),
            ));
        }
        loss_of(pred.f_sub(target)?.f_abs()?)?
    };
    let loss = weight_reduce_loss(&loss, args.weight, reduction, args.avg_factor)?;
    Ok(loss.f_mul_scalar(loss_weight)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::losses::assert_reduced_zero_weight_is_the_exit;
    use tch::{Device, Kind};

    /// What a GPU computes in place of the early exit (the reduced loss of
    /// an all-zero weight) is the early exit's zero, with its zero gradient.
    #[test]
    fn reduced_loss_without_the_early_exit_is_the_same_zero() {
        let pred = Tensor::from_slice(&[1.5f32, -2.0, 0.25, 3.0, 0.5, -1.0, 2.0, 4.0]).view([2, 4]);
        let target = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
        let weights = [Tensor::zeros([2, 4], (Kind::Float, Device::Cpu))];
        assert_reduced_zero_weight_is_the_exit(&pred, &weights, |p, w, reduction, avg| {
            weight_reduce_loss(&(p - &target).abs(), Some(w), reduction, avg).unwrap()
        });
    }
}
