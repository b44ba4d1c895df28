//! `SmoothL1Loss` (`mmdet/models/losses/smooth_l1_loss.py`): per element
//! `0.5 * d^2 / beta` below `beta` and `d - 0.5 * beta` from it on, with
//! `d = |pred - target|` (the RPN's default box loss, `beta = 1/9`).
//!
//! Shape shorthand: `N` samples; boxes are `(N, 4)`.

use detc::registry::models::losses::SmoothL1LossConfig;
use tch::Tensor;

use super::l1_loss::elementwise_loss;
use super::{LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct SmoothL1Loss {
    pub beta: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
}

impl SmoothL1Loss {
    pub fn new(cfg: &SmoothL1LossConfig) -> ModelResult<Self> {
        if cfg.beta <= 0.0 {
            return Err(ModelError::new(
                "SmoothL1Loss",
                format!("beta must be positive, got {}", cfg.beta),
            ));
        }
        Ok(SmoothL1Loss {
            beta: cfg.beta,
            reduction: cfg.reduction,
            loss_weight: cfg.loss_weight,
        })
    }

    /// pred, target: same shape (e.g. (N, 4)); `weight` of that shape.
    /// As mmdet: a weight with no positive entry returns `(pred * weight).sum()`
    /// (a zero that keeps the graph), and an empty target gives `pred.sum() * 0`.
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let beta = self.beta;
        let settings = (self.reduction, self.loss_weight);
        elementwise_loss("SmoothL1Loss", pred, target, args, settings, |diff| {
            let quadratic = diff.f_mul_scalar(0.5)?.f_mul(&diff)?.f_div_scalar(beta)?;
            let linear = diff.f_sub_scalar(0.5 * beta)?;
            Ok(quadratic.f_where_self(&diff.f_lt(beta)?, &linear)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn loss(beta: f64) -> SmoothL1Loss {
        SmoothL1Loss::new(&serde_json::from_value(serde_json::json!({"beta": beta})).unwrap())
            .unwrap()
    }

    #[test]
    fn smooth_l1_is_quadratic_below_beta_and_linear_above() {
        let pred = Tensor::from_slice(&[0.0f32, 0.05, -0.5, 2.0]);
        let target = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let l = loss(0.1)
            .forward(
                &pred,
                &target,
                LossArgs::default().reduction(Reduction::None),
            )
            .unwrap();
        let want = [0.0, 0.5 * 0.05 * 0.05 / 0.1, 0.5 - 0.05, 2.0 - 0.05];
        for (a, b) in Vec::<f32>::try_from(&l).unwrap().iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
        let w = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0]);
        let mean = loss(0.1)
            .forward(
                &pred,
                &target,
                LossArgs::default().weight(&w).avg_factor(2.0),
            )
            .unwrap();
        let expect = (want[1] + want[3]) / (2.0 + f32::EPSILON as f64);
        assert!((mean.double_value(&[]) - expect).abs() < 1e-6);
        assert!(SmoothL1Loss::new(
            &serde_json::from_value(serde_json::json!({"beta": 0.0})).unwrap()
        )
        .is_err());
    }
}
