//! Losses (`mmdet/models/losses`) as MMDetection 3.3.0 computes them: the
//! heads' `loss_cls`, `loss_bbox`, `loss_iou` and `loss_mask`.
//!
//! Every loss follows mmdet's `weight_reduce_loss` contract: an optional
//! element-wise `weight`, a `reduction` (`none`/`mean`/`sum`, overridable per
//! call), and an optional `avg_factor` that turns `mean` into
//! `sum / (avg_factor + f32::EPSILON)` (the normaliser the heads pass, e.g.
//! the number of positives). The result is multiplied by `loss_weight`.
//! All ops are tch tensor ops, so autograd gives the gradients.
//!
//! Shape shorthand: `N` samples (proposals, RoIs), `C` classes, `H, W` mask size.

// The heads consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod balanced_l1_loss;
pub mod cross_entropy_loss;
pub mod dice_loss;
pub mod focal_loss;
pub mod gaussian_focal_loss;
pub mod gfocal_loss;
pub mod ghm_loss;
pub mod giou_loss;
pub mod iou_losses;
pub mod l1_loss;
pub mod mse_loss;
pub mod smooth_l1_loss;
pub mod varifocal_loss;

pub use balanced_l1_loss::BalancedL1Loss;
pub use cross_entropy_loss::CrossEntropyLoss;
pub use detc::registry::models::common::Reduction;
pub use dice_loss::DiceLoss;
pub use focal_loss::FocalLoss;
pub use gaussian_focal_loss::GaussianFocalLoss;
pub use gfocal_loss::{DistributionFocalLoss, QualityFocalLoss};
pub use ghm_loss::{Ghmc, Ghmr};
pub use giou_loss::GIoULoss;
pub use iou_losses::IoUFamilyLoss;
pub use l1_loss::L1Loss;
pub use mse_loss::MSELoss;
pub use smooth_l1_loss::SmoothL1Loss;
pub use varifocal_loss::VarifocalLoss;

use detc::registry::refs::LossCfg;
use serde::de::DeserializeOwned;
use tch::Tensor;

use crate::models::layers::{ModelError, ModelResult};

/// The optional per-call arguments of every mmdet loss `forward`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LossArgs<'a> {
    /// Element-wise (or per-sample, broadcast as mmdet does) loss weight.
    pub weight: Option<&'a Tensor>,
    /// Divisor of the summed loss for `mean` (mmdet's `avg_factor`).
    pub avg_factor: Option<AvgFactor<'a>>,
    /// Replaces the configured reduction for this call.
    pub reduction_override: Option<Reduction>,
}

impl<'a> LossArgs<'a> {
    pub fn weight(mut self, w: &'a Tensor) -> Self {
        self.weight = Some(w);
        self
    }
    pub fn avg_factor(mut self, f: f64) -> Self {
        self.avg_factor = Some(AvgFactor::Host(f));
        self
    }
    pub fn avg(mut self, f: AvgFactor<'a>) -> Self {
        self.avg_factor = Some(f);
        self
    }
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction_override = Some(r);
        self
    }
    fn reduction_or(&self, configured: Reduction) -> Reduction {
        self.reduction_override.unwrap_or(configured)
    }
}

/// An `avg_factor`: a number, or a count still on the device (a float
/// 0-dim tensor), which a GPU would have to finish computing before the
/// host could read it.
#[derive(Debug, Clone, Copy)]
pub enum AvgFactor<'a> {
    Host(f64),
    Device(&'a Tensor),
}

/// `reduce_loss`: none keeps the element-wise loss, mean/sum reduce to a scalar.
pub fn reduce_loss(loss: &Tensor, reduction: Reduction) -> ModelResult<Tensor> {
    Ok(match reduction {
        Reduction::None => loss.shallow_clone(),
        Reduction::Mean => loss.f_mean(loss.kind())?,
        Reduction::Sum => loss.f_sum(loss.kind())?,
    })
}

/// `weight_reduce_loss`: applies `weight`, then reduces; with `avg_factor`,
/// `mean` is `sum / (avg_factor + eps)` (eps = `torch.finfo(float32).eps`,
/// so an `avg_factor` of 0 gives 0 rather than NaN) and `sum` is an error.
pub fn weight_reduce_loss(
    loss: &Tensor,
    weight: Option<&Tensor>,
    reduction: Reduction,
    avg_factor: Option<AvgFactor>,
) -> ModelResult<Tensor> {
    let loss = match weight {
        Some(w) => loss.f_mul(w)?,
        None => loss.shallow_clone(),
    };
    match (avg_factor, reduction) {
        (None, r) => reduce_loss(&loss, r),
        (Some(AvgFactor::Host(f)), Reduction::Mean) => Ok(loss
            .f_sum(loss.kind())?
            .f_div_scalar(f + f32::EPSILON as f64)?),
        (Some(AvgFactor::Device(f)), Reduction::Mean) => Ok(loss
            .f_sum(loss.kind())?
            .f_div(&f.f_add_scalar(f32::EPSILON as f64)?)?),
        (Some(_), Reduction::None) => Ok(loss),
        (Some(_), Reduction::Sum) => Err(ModelError::new(
            "weight_reduce_loss",
            "avg_factor can not be used with reduction \"sum\" (use mean or none)",
        )),
    }
}

/// mmdet's early exit of the box losses ([`zero_if_no_positive_weight`]),
/// where it is needed. It reads `any(weight > 0)` back, a wait for a GPU; on
/// CUDA a reduced loss whose weight multiplies it elementwise
/// (`weight_fits`) skips it, the weighted reduction of an all-zero weight
/// being the same zero with a zero gradient (a (N,) weight of (N, 4) boxes
/// only the exit broadcasts).
pub(crate) fn early_exit(
    pred: &Tensor,
    weight: Option<&Tensor>,
    reduction: Reduction,
    weight_fits: bool,
) -> ModelResult<Option<Tensor>> {
    if pred.device().is_cuda() && reduction != Reduction::None && weight_fits {
        return Ok(None);
    }
    zero_if_no_positive_weight(pred, weight)
}

/// mmdet's early exit of the box losses: when no entry of `weight` is
/// positive, the loss is `(pred * weight).sum()`, a zero that keeps the graph
/// (a (N,) weight is broadcast over the last dim of a (N, 4) `pred`).
fn zero_if_no_positive_weight(pred: &Tensor, weight: Option<&Tensor>) -> ModelResult<Option<Tensor>> {
    let Some(w) = weight else { return Ok(None) };
    if bool::try_from(w.f_gt(0.0)?.f_any()?)? {
        return Ok(None);
    }
    let w = if pred.dim() == w.dim() + 1 { w.f_unsqueeze(1)? } else { w.shallow_clone() };
    Ok(Some(pred.f_mul(&w)?.f_sum(pred.kind())?))
}

/// Parses a component config dict (its `type` removed) into `T`, naming the
/// component on error.
pub(crate) fn parse_cfg<T: DeserializeOwned>(
    value: &serde_json::Value,
    name: &str,
) -> ModelResult<T> {
    let mut v = value.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("type");
    }
    serde_json::from_value(v).map_err(|e| ModelError::new(name, format!("bad config: {e}")))
}

/// The `type` of a component config dict.
pub(crate) fn cfg_type<'v>(value: &'v serde_json::Value, role: &str) -> ModelResult<&'v str> {
    value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| ModelError::new(role, "config has no string `type`"))
}

/// A loss built from a `loss_*` config dict.
#[derive(Debug)]
pub enum Loss {
    Focal(FocalLoss),
    L1(L1Loss),
    SmoothL1(SmoothL1Loss),
    GIoU(GIoULoss),
    /// `IoULoss`, `BoundedIoULoss`, `DIoULoss`, `CIoULoss`.
    IoUFamily(IoUFamilyLoss),
    Dice(DiceLoss),
    CrossEntropy(CrossEntropyLoss),
    QualityFocal(QualityFocalLoss),
    Varifocal(VarifocalLoss),
    DistributionFocal(DistributionFocalLoss),
    Mse(MSELoss),
    BalancedL1(BalancedL1Loss),
    Ghmc(Ghmc),
    Ghmr(Ghmr),
}

impl Loss {
    /// Builds the loss a config names (`FocalLoss`, `L1Loss`, `SmoothL1Loss`,
    /// the IoU losses, `DiceLoss`, `CrossEntropyLoss`).
    pub fn from_cfg(cfg: &LossCfg) -> ModelResult<Self> {
        let ty = cfg_type(&cfg.0, "loss")?;
        Ok(match ty {
            "FocalLoss" => Loss::Focal(FocalLoss::new(&parse_cfg(&cfg.0, ty)?)?),
            "L1Loss" => Loss::L1(L1Loss::new(&parse_cfg(&cfg.0, ty)?)),
            "SmoothL1Loss" => Loss::SmoothL1(SmoothL1Loss::new(&parse_cfg(&cfg.0, ty)?)?),
            "GIoULoss" => Loss::GIoU(GIoULoss::new(&parse_cfg(&cfg.0, ty)?)),
            "IoULoss" => Loss::IoUFamily(IoUFamilyLoss::iou(&parse_cfg(&cfg.0, ty)?)),
            "BoundedIoULoss" => Loss::IoUFamily(IoUFamilyLoss::bounded(&parse_cfg(&cfg.0, ty)?)),
            "DIoULoss" => Loss::IoUFamily(IoUFamilyLoss::distance(&parse_cfg(&cfg.0, ty)?, false)),
            "CIoULoss" => Loss::IoUFamily(IoUFamilyLoss::distance(&parse_cfg(&cfg.0, ty)?, true)),
            "DiceLoss" => Loss::Dice(DiceLoss::new(&parse_cfg(&cfg.0, ty)?)?),
            "CrossEntropyLoss" => {
                Loss::CrossEntropy(CrossEntropyLoss::new(&parse_cfg(&cfg.0, ty)?)?)
            }
            "QualityFocalLoss" => Loss::QualityFocal(QualityFocalLoss::new(&parse_cfg(&cfg.0, ty)?)?),
            "VarifocalLoss" => Loss::Varifocal(VarifocalLoss::new(&parse_cfg(&cfg.0, ty)?)?),
            "DistributionFocalLoss" => Loss::DistributionFocal(DistributionFocalLoss::new(&parse_cfg(&cfg.0, ty)?)),
            "MSELoss" => Loss::Mse(MSELoss::new(&parse_cfg(&cfg.0, ty)?)),
            "BalancedL1Loss" => Loss::BalancedL1(BalancedL1Loss::new(&parse_cfg(&cfg.0, ty)?)),
            "GHMC" | "GHMR" => {
                return Err(ModelError::new(
                    "loss",
                    format!("{ty} keeps running statistics that detc registers in an anchor head's loss_cls / loss_bbox (RetinaHead, RPNHead) only"),
                ))
            }
            other => {
                return Err(ModelError::new(
                    "loss",
                    format!("loss type {other:?} has no builder yet"),
                ))
            }
        })
    }

    /// As [`Loss::from_cfg`], for a loss that may keep buffers (GHM's
    /// `edges` and `acc_sum`), registered under `p` (`bbox_head.loss_cls`).
    pub fn from_cfg_at(cfg: &LossCfg, p: &tch::nn::Path) -> ModelResult<Self> {
        let ty = cfg_type(&cfg.0, "loss")?;
        Ok(match ty {
            "GHMC" => Loss::Ghmc(Ghmc::new(&parse_cfg(&cfg.0, ty)?, p)?),
            "GHMR" => Loss::Ghmr(Ghmr::new(&parse_cfg(&cfg.0, ty)?, p)?),
            _ => Self::from_cfg(cfg)?,
        })
    }

    /// Whether the loss of a concatenation is the sum of its parts' losses
    /// at one `avg_factor`: an elementwise loss, summed and divided by it.
    /// Not Dice (a ratio over the whole input) nor GHM (its gradient
    /// density, and its moving average, are of the one call's input).
    pub fn is_sum_over_elements(&self) -> bool {
        !matches!(self, Loss::Dice(_) | Loss::Ghmc(_) | Loss::Ghmr(_))
    }

    /// `loss(pred, target, weight, avg_factor, reduction_override)`; for the
    /// mask cross-entropy use [`CrossEntropyLoss::forward_mask`].
    pub fn forward(&self, pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        match self {
            Loss::Focal(l) => l.forward(pred, target, args),
            Loss::L1(l) => l.forward(pred, target, args),
            Loss::SmoothL1(l) => l.forward(pred, target, args),
            Loss::GIoU(l) => l.forward(pred, target, args),
            Loss::IoUFamily(l) => l.forward(pred, target, args),
            Loss::Dice(l) => l.forward(pred, target, args),
            Loss::CrossEntropy(l) => l.forward(pred, target, args),
            Loss::QualityFocal(l) => l.forward(pred, target, args),
            Loss::Varifocal(l) => l.forward(pred, target, args),
            Loss::DistributionFocal(l) => l.forward(pred, target, args),
            Loss::Mse(l) => l.forward(pred, target, args),
            Loss::BalancedL1(l) => l.forward(pred, target, args),
            // GHM takes the weight as its valid-sample mask and its own
            // normaliser; `avg_factor` is swallowed, as MMDetection's `**kwargs`.
            Loss::Ghmc(l) => l.forward(pred, target, ghm_weight(pred, target, args)?.as_ref(), args.reduction_override),
            Loss::Ghmr(l) => l.forward(pred, target, ghm_weight(pred, target, args)?.as_ref(), args.reduction_override),
        }
    }
}

/// GHM's `label_weight` argument: the call's weight, or all ones.
fn ghm_weight(pred: &Tensor, target: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
    Ok(match args.weight {
        Some(w) => w.shallow_clone(),
        None => Tensor::f_ones_like(target)?.f_to_kind(pred.kind())?,
    })
}

#[cfg(test)]
mod ghm_tests;
#[cfg(test)]
pub(crate) mod reference;

/// The check behind skipping the early exit on a GPU: for each all-zero
/// `weight`, a reduced `loss_without_exit(pred, weight, reduction,
/// avg_factor)` is the early exit's zero, with its zero gradient.
#[cfg(test)]
pub(crate) fn assert_reduced_zero_weight_is_the_exit(
    pred: &Tensor,
    weights: &[Tensor],
    loss_without_exit: impl Fn(&Tensor, &Tensor, Reduction, Option<AvgFactor>) -> Tensor,
) {
    let count = Tensor::from(7.0f32);
    for weight in weights {
        for (reduction, avg) in [
            (Reduction::Mean, None),
            (Reduction::Mean, Some(AvgFactor::Host(7.0))),
            (Reduction::Mean, Some(AvgFactor::Device(&count))),
            (Reduction::Sum, None),
        ] {
            let run = |early: bool| {
                let p = pred.copy().set_requires_grad(true);
                let loss = if early {
                    zero_if_no_positive_weight(&p, Some(weight)).unwrap().unwrap()
                } else {
                    loss_without_exit(&p, weight, reduction, avg)
                };
                loss.backward();
                (loss.double_value(&[]), Vec::<f32>::try_from(p.grad().view([-1])).unwrap())
            };
            assert_eq!(run(true), run(false), "weight {:?} {reduction:?} {avg:?}", weight.size());
        }
    }
}
