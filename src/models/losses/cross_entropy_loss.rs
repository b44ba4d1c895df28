//! `CrossEntropyLoss` (`mmdet/models/losses/cross_entropy_loss.py`) in its
//! three forms: softmax cross-entropy over class indices, per-class binary
//! cross-entropy on logits (`use_sigmoid`, labels expanded to one-hot), and
//! the mask cross-entropy of mask heads (`use_mask`: binary cross-entropy on
//! the predicted mask of each RoI's target class).
//!
//! Shape shorthand: `N` samples (RoIs), `C` classes, `H, W` mask size.

use detc::registry::models::losses::CrossEntropyLossConfig;
use tch::{Kind, Tensor};

use super::{weight_reduce_loss, AvgFactor, LossArgs, Reduction};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::upload_as;

/// Which criterion the config selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeMode {
    Softmax,
    Sigmoid,
    Mask,
}

#[derive(Debug, Clone)]
pub struct CrossEntropyLoss {
    pub mode: CeMode,
    pub reduction: Reduction,
    pub class_weight: Option<Vec<f64>>,
    /// `ignore_index` (null in the config means -100, torch's default).
    pub ignore_index: i64,
    pub loss_weight: f64,
    pub avg_non_ignore: bool,
}

const NAME: &str = "CrossEntropyLoss";

impl CrossEntropyLoss {
    pub fn new(cfg: &CrossEntropyLossConfig) -> ModelResult<Self> {
        let mode = match (cfg.use_sigmoid, cfg.use_mask) {
            (true, true) => {
                return Err(ModelError::new(
                    NAME,
                    "use_sigmoid and use_mask exclude each other",
                ))
            }
            (true, false) => CeMode::Sigmoid,
            (false, true) => CeMode::Mask,
            (false, false) => CeMode::Softmax,
        };
        if mode == CeMode::Mask && cfg.ignore_index.is_some() {
            return Err(ModelError::new(
                NAME,
                "use_mask does not support ignore_index",
            ));
        }
        Ok(CrossEntropyLoss {
            mode,
            reduction: cfg.reduction,
            class_weight: cfg.class_weight.clone(),
            ignore_index: cfg.ignore_index.unwrap_or(-100),
            loss_weight: cfg.loss_weight,
            avg_non_ignore: cfg.avg_non_ignore,
        })
    }

    fn class_weight_like(&self, like: &Tensor) -> ModelResult<Option<Tensor>> {
        match &self.class_weight {
            None => Ok(None),
            Some(cw) => Ok(Some(
                upload_as(cw, like.kind(), like.device())?,
            )),
        }
    }

    /// Softmax: pred (N, C) logits, label (N,) indices. Sigmoid: pred (N, C)
    /// logits with label (N,) indices (expanded to one-hot; out-of-range
    /// labels, e.g. the background `C`, give all-zero rows) or label (N, C)
    /// binary targets. `weight`: per sample (N,) (or (N, C) for sigmoid
    /// targets of pred's shape).
    pub fn forward(&self, pred: &Tensor, label: &Tensor, args: LossArgs) -> ModelResult<Tensor> {
        let reduction = args.reduction_or(self.reduction);
        let loss = match self.mode {
            CeMode::Softmax => self.softmax_ce(pred, label, args, reduction)?,
            CeMode::Sigmoid => self.sigmoid_bce(pred, label, args, reduction)?,
            CeMode::Mask => {
                return Err(ModelError::new(
                    NAME,
                    "use_mask needs the RoIs' labels: call forward_mask(pred, target, labels)",
                ))
            }
        };
        Ok(loss.f_mul_scalar(self.loss_weight)?)
    }

    fn softmax_ce(
        &self,
        pred: &Tensor,
        label: &Tensor,
        args: LossArgs,
        reduction: Reduction,
    ) -> ModelResult<Tensor> {
        let cw = self.class_weight_like(pred)?;
        let label = label.f_to_kind(Kind::Int64)?;
        let loss = pred.f_cross_entropy_loss(
            &label,
            cw.as_ref(),
            tch::Reduction::None,
            self.ignore_index,
            0.0,
        )?;
        let mut avg_factor = args.avg_factor;
        if avg_factor.is_none() && self.avg_non_ignore && reduction == Reduction::Mean {
            let ignored = label
                .f_eq(self.ignore_index)?
                .f_sum(Kind::Int64)?
                .int64_value(&[]);
            avg_factor = Some(AvgFactor::Host((label.numel() as i64 - ignored) as f64));
        }
        let weight = match args.weight {
            Some(w) => Some(w.f_to_kind(Kind::Float)?),
            None => None,
        };
        weight_reduce_loss(&loss, weight.as_ref(), reduction, avg_factor)
    }

    fn sigmoid_bce(
        &self,
        pred: &Tensor,
        label: &Tensor,
        args: LossArgs,
        reduction: Reduction,
    ) -> ModelResult<Tensor> {
        let ig = self.ignore_index;
        if pred.dim() != label.dim() && (pred.dim() != 2 || label.dim() != 1) {
            return Err(ModelError::new(
                NAME,
                format!(
                    "use_sigmoid needs pred (N, C) with label (N,) or a label of pred's shape; got {:?} and {:?}",
                    pred.size(),
                    label.size()
                ),
            ));
        }
        let (target, weight, valid) = if pred.dim() != label.dim() {
            // `_expand_onehot_labels`
            let channels = *pred.size().last().unwrap_or(&1);
            let label = label.f_to_kind(Kind::Int64)?;
            let valid = label.f_ge(0)?.f_logical_and(&label.f_ne(ig)?)?;
            let hot = valid.f_logical_and(&label.f_lt(channels)?)?;
            // Rows with an out-of-range label get an all-zero one-hot row.
            let safe = label.f_where_scalarother(&hot, 0)?;
            let target = safe
                .f_one_hot(channels)?
                .f_mul(&hot.f_unsqueeze(1)?)?
                .f_to_kind(pred.kind())?;
            let valid = valid
                .f_view([-1, 1])?
                .f_expand([label.size()[0], channels], false)?
                .f_to_kind(Kind::Float)?;
            let weight = match args.weight {
                Some(w) => w.f_view([-1, 1])?.f_repeat([1, channels])?.f_mul(&valid)?,
                None => valid.shallow_clone(),
            };
            (target, weight, valid)
        } else {
            let valid = label
                .f_ge(0)?
                .f_logical_and(&label.f_ne(ig)?)?
                .f_to_kind(Kind::Float)?;
            let weight = match args.weight {
                Some(w) => w.f_mul(&valid)?,
                None => valid.shallow_clone(),
            };
            (label.f_to_kind(pred.kind())?, weight, valid)
        };
        let mut avg_factor = args.avg_factor;
        if avg_factor.is_none() && self.avg_non_ignore && reduction == Reduction::Mean {
            avg_factor = Some(AvgFactor::Host(valid.f_sum(Kind::Double)?.double_value(&[])));
        }
        let pos_weight = self.class_weight_like(pred)?;
        let loss = pred.f_binary_cross_entropy_with_logits(
            &target,
            None::<&Tensor>,
            pos_weight.as_ref(),
            tch::Reduction::None,
        )?;
        weight_reduce_loss(
            &loss,
            Some(&weight.f_to_kind(Kind::Float)?),
            reduction,
            avg_factor,
        )
    }

    /// `mask_cross_entropy`: pred (N, C, H, W) mask logits, target (N, H, W)
    /// binary masks, labels (N,) the class whose mask each RoI is scored on.
    /// Always the mean over all pixels, shape (1,) (mmdet allows no other
    /// reduction and no avg_factor here).
    pub fn forward_mask(
        &self,
        pred: &Tensor,
        target: &Tensor,
        labels: &Tensor,
        args: LossArgs,
    ) -> ModelResult<Tensor> {
        if self.mode != CeMode::Mask {
            return Err(ModelError::new(NAME, "forward_mask needs use_mask: true"));
        }
        if args.reduction_or(self.reduction) != Reduction::Mean || args.avg_factor.is_some() {
            return Err(ModelError::new(
                NAME,
                "use_mask supports only reduction mean without avg_factor (as MMDetection)",
            ));
        }
        if pred.dim() != 4 || target.dim() != 3 || labels.dim() != 1 {
            return Err(ModelError::new(
                NAME,
                format!(
                    "use_mask needs pred (N, C, H, W), target (N, H, W), labels (N,); got {:?}, {:?}, {:?}",
                    pred.size(),
                    target.size(),
                    labels.size()
                ),
            ));
        }
        let n = pred.size()[0];
        let idx = labels
            .f_to_kind(Kind::Int64)?
            .f_view([n, 1, 1, 1])?
            .f_expand([n, 1, pred.size()[2], pred.size()[3]], false)?;
        let slice = pred.f_gather(1, &idx, false)?.f_squeeze_dim(1)?;
        let cw = self.class_weight_like(pred)?;
        let loss = slice.f_binary_cross_entropy_with_logits(
            &target.f_to_kind(pred.kind())?,
            cw.as_ref(),
            None::<&Tensor>,
            tch::Reduction::Mean,
        )?;
        Ok(loss.f_unsqueeze(0)?.f_mul_scalar(self.loss_weight)?)
    }
}
