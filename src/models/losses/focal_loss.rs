//! `FocalLoss` (Lin et al., 2017), sigmoid form: mmdet's `py_sigmoid_focal_loss`
//! (`mmdet/models/losses/focal_loss.py`), and `py_focal_loss_with_prob` when
//! `activated` (predictions are probabilities). The CUDA path of mmdet calls
//! mmcv's fused kernel, which computes the same values; one formula here
//! keeps CPU and GPU identical.
//!
//! Shape shorthand: `N` samples, `C` classes (background is the index `C`).

use detc::registry::models::losses::FocalLossConfig;
use tch::{Kind, Tensor};

use super::{weight_reduce_loss, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};

#[derive(Debug, Clone)]
pub struct FocalLoss {
    pub gamma: f64,
    pub alpha: f64,
    pub reduction: Reduction,
    pub loss_weight: f64,
    pub activated: bool,
}

impl FocalLoss {
    pub fn new(cfg: &FocalLossConfig) -> ModelResult<Self> {
        if !cfg.use_sigmoid {
            return Err(ModelError::new(
                "FocalLoss",
                "only use_sigmoid: true is supported (as in MMDetection)",
            ));
        }
        Ok(FocalLoss {
            gamma: cfg.gamma,
            alpha: cfg.alpha,
            reduction: cfg.reduction,
            loss_weight: cfg.loss_weight,
            activated: cfg.activated,
        })
    }

    /// pred: (N, C) logits (probabilities when `activated`); target: (N, C)
    /// one-hot/soft targets, or (N,) class indices in `0..=C` where `C` means
    /// background (all-zero row). `weight`: (N,), (N, C) or (N*C,).
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let reduction = args.reduction_or(self.reduction);
        let loss = focal_elementwise(pred, target, self.gamma, self.alpha, self.activated)?;
        let weight = match args.weight {
            Some(w) => Some(broadcast_weight(w, &loss)?),
            None => None,
        };
        let loss = weight_reduce_loss(&loss, weight.as_ref(), reduction, args.avg_factor)?;
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }
}

/// (N,) labels -> (N, C) one-hot with the background column `C` dropped
/// (`F.one_hot(target, C + 1)[:, :C]`), as `pred`'s dtype. On the CPU the
/// labels' range is checked with a clear error (torch's CPU `one_hot` would
/// check it too); on CUDA, as torch's `one_hot` and MMCV's focal-loss kernel,
/// nothing is read back: the two reads would wait for the device at every
/// call, and the labels come from the assigners.
pub fn labels_to_one_hot(labels: &Tensor, num_classes: i64, kind: Kind) -> ModelResult<Tensor> {
    if labels.numel() > 0 && labels.device() == tch::Device::Cpu {
        let (lo, hi) = (
            labels.f_min()?.int64_value(&[]),
            labels.f_max()?.int64_value(&[]),
        );
        if lo < 0 || hi > num_classes {
            return Err(ModelError::new(
                "FocalLoss",
                format!("labels must lie in 0..={num_classes} ({num_classes} = background), got {lo}..={hi}"),
            ));
        }
    }
    let oh = labels
        .f_to_kind(Kind::Int64)?
        .f_one_hot(num_classes + 1)?
        .f_narrow(1, 0, num_classes)?;
    Ok(oh.f_to_kind(kind)?)
}

/// The element-wise focal loss (N, C) before weighting and reduction.
pub fn focal_elementwise(
    pred: &Tensor,
    target: &Tensor,
    gamma: f64,
    alpha: f64,
    activated: bool,
) -> ModelResult<Tensor> {
    if pred.dim() != 2 {
        return Err(ModelError::new(
            "FocalLoss",
            format!("pred must be (N, C), got {:?}", pred.size()),
        ));
    }
    let target = if pred.dim() == target.dim() {
        target.f_to_kind(pred.kind())?
    } else {
        labels_to_one_hot(target, pred.size()[1], pred.kind())?
    };
    if target.size() != pred.size() {
        return Err(ModelError::new(
            "FocalLoss",
            format!(
                "target {:?} does not match pred {:?}",
                target.size(),
                pred.size()
            ),
        ));
    }
    let p = if activated {
        pred.shallow_clone()
    } else {
        pred.f_sigmoid()?
    };
    let one_minus_t = target.f_neg()?.f_add_scalar(1.0)?;
    // pt is (1 - p_t) of the paper: the probability of the wrong answer.
    let pt = p
        .f_neg()?
        .f_add_scalar(1.0)?
        .f_mul(&target)?
        .f_add(&p.f_mul(&one_minus_t)?)?;
    let focal_weight = target
        .f_mul_scalar(alpha)?
        .f_add(&one_minus_t.f_mul_scalar(1.0 - alpha)?)?
        .f_mul(&pt.f_pow_tensor_scalar(gamma)?)?;
    let bce = if activated {
        pred.f_binary_cross_entropy::<Tensor>(&target, None, tch::Reduction::None)?
    } else {
        pred.f_binary_cross_entropy_with_logits::<Tensor>(
            &target,
            None,
            None,
            tch::Reduction::None,
        )?
    };
    Ok(bce.f_mul(&focal_weight)?)
}

/// mmdet's weight broadcast: a per-sample (N,) weight becomes (N, 1); a
/// flattened (N*C,) one becomes (N, C).
pub fn broadcast_weight(weight: &Tensor, loss: &Tensor) -> ModelResult<Tensor> {
    if weight.size() == loss.size() {
        return Ok(weight.shallow_clone());
    }
    let n = loss.size()[0];
    if weight.size().first() == Some(&n) && weight.dim() == 1 {
        return Ok(weight.f_view([-1, 1])?);
    }
    if weight.numel() as i64 == loss.numel() as i64 {
        return Ok(weight.f_view([n, -1])?);
    }
    Err(ModelError::new(
        "FocalLoss",
        format!(
            "weight {:?} does not fit the loss {:?}",
            weight.size(),
            loss.size()
        ),
    ))
}
