//! `MaskIoUHead` (`mmdet/models/roi_heads/mask_heads/maskiou_head.py`), the
//! mask-IoU branch of Mask Scoring R-CNN (Huang et al., "Mask Scoring
//! R-CNN", <https://arxiv.org/abs/1903.00241>): the RoI features next to the
//! 2x2-max-pooled sigmoid of each RoI's predicted mask at its class,
//! `num_convs` 3x3 convs + ReLU (the last of stride 2), `num_fcs` linear
//! layers + ReLU and `fc_mask_iou`, one IoU per class.
//!
//! Training target: the IoU of the positive's mask logits above
//! `mask_thr_binary` (MMDetection thresholds the logits, not the
//! probabilities) with its `mask_size` target, the target's area scaled up
//! to the ground truth's full area by the share of it inside the proposal.
//!
//! Shape shorthand: `R` RoIs, `C` channels, `S` the RoI side (14), `s` the
//! mask side (28), `K` classes.

use detc::registry::models::mask_heads::{default_mask_iou_init, MaskIoUHeadConfig};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::models::data_preprocessors::MaskTensors;
use crate::models::layers::transformer::{torch_linear_uniform, Linear};
use crate::models::layers::{caffe2_xavier, make_conv, param, Conv2d, ConvGeom, ConvInit, ModelError, ModelResult};
use crate::models::losses::{Loss, LossArgs};
use crate::models::task_modules::SamplingResult;

const NAME: &str = "MaskIoUHead";

#[derive(Debug)]
pub struct MaskIoUHead {
    convs: Vec<Conv2d>,
    fcs: Vec<Linear>,
    fc_mask_iou: Linear,
    loss_iou: Loss,
    pub num_classes: i64,
}

/// A linear layer with MMDetection's init (`weight` from `init`, bias 0) or,
/// without one, torch's.
fn linear(p: &nn::Path, in_f: i64, out_f: i64, init: Option<Init>) -> ModelResult<Linear> {
    let (w, b) = match init {
        Some(w) => (w, Init::Const(0.0)),
        None => (torch_linear_uniform(in_f), torch_linear_uniform(in_f)),
    };
    Ok(Linear { weight: param(p, "weight", &[out_f, in_f], w, true)?, bias: Some(param(p, "bias", &[out_f], b, true)?) })
}

impl MaskIoUHead {
    /// Builds under `p` (`roi_head.mask_iou_head`): `convs.{i}`, `fcs.{i}`, `fc_mask_iou`.
    pub fn new(cfg: &MaskIoUHeadConfig, p: &nn::Path) -> ModelResult<Self> {
        let mmdet_init = match &cfg.init_cfg {
            None => false,
            Some(init) if serde_json::to_value(init).ok() == serde_json::to_value(default_mask_iou_init()).ok() => true,
            Some(_) => {
                return Err(ModelError::new(
                    NAME,
                    "init_cfg must be MMDetection's default (Kaiming on convs, Caffe2Xavier on fcs, Normal 0.01 on fc_mask_iou) or null",
                ))
            }
        };
        if cfg.roi_feat_size % 2 != 0 {
            return Err(ModelError::new(NAME, format!("roi_feat_size must be even (the last conv halves it), got {}", cfg.roi_feat_size)));
        }
        let (c_in, c) = (cfg.in_channels as i64, cfg.conv_out_channels as i64);
        let convs = (0..cfg.num_convs as i64)
            .map(|i| {
                let cin = if i == 0 { c_in + 1 } else { c };
                let stride = if i == cfg.num_convs as i64 - 1 { 2 } else { 1 };
                let geom = ConvGeom::k(3).stride(stride).padding(1);
                let init = if mmdet_init { ConvInit::Kaiming } else { ConvInit::TorchDefault };
                make_conv(&(p / "convs" / i), cin, c, geom, init)
            })
            .collect::<ModelResult<Vec<_>>>()?;
        let side = cfg.roi_feat_size as i64 / 2;
        let fc = cfg.fc_out_channels as i64;
        let fcs = (0..cfg.num_fcs as i64)
            .map(|i| {
                let fin = if i == 0 { c * side * side } else { fc };
                linear(&(p / "fcs" / i), fin, fc, mmdet_init.then(|| caffe2_xavier(fin)))
            })
            .collect::<ModelResult<Vec<_>>>()?;
        let k = cfg.num_classes as i64;
        let normal = Init::Randn { mean: 0.0, stdev: 0.01 };
        Ok(MaskIoUHead {
            convs,
            fcs,
            fc_mask_iou: linear(&(p / "fc_mask_iou"), fc, k, mmdet_init.then_some(normal))?,
            loss_iou: Loss::from_cfg(&cfg.loss_iou)?,
            num_classes: k,
        })
    }

    /// mask_feats (R, C, S, S), mask_preds (R, s, s) logits at each RoI's
    /// class -> (R, K) predicted IoUs.
    pub fn forward(&self, mask_feats: &Tensor, mask_preds: &Tensor) -> ModelResult<Tensor> {
        let pooled = mask_preds.f_sigmoid()?.f_unsqueeze(1)?.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
        let mut x = Tensor::f_cat(&[mask_feats, &pooled], 1)?;
        for conv in &self.convs {
            x = conv.forward(&x)?.f_relu()?;
        }
        x = x.f_flatten(1, -1)?;
        for fc in &self.fcs {
            x = fc.forward(&x)?.f_relu()?;
        }
        self.fc_mask_iou.forward(&x)
    }

    /// `loss_and_target`: `loss_mask_iou` of the positives' (P, K) predicted
    /// IoUs at their labels against the IoUs of their (P, s, s) mask logits
    /// `mask_preds` with the `mask_targets`; only positives with a target
    /// IoU above 0 count.
    pub fn loss_and_target(
        &self,
        mask_iou_pred: &Tensor,
        mask_preds: &Tensor,
        mask_targets: &Tensor,
        sampling: &[SamplingResult],
        gt_masks: &[&MaskTensors],
        mask_thr_binary: f64,
    ) -> ModelResult<Tensor> {
        let targets = self.targets(sampling, gt_masks, mask_preds, mask_targets, mask_thr_binary)?;
        let pos = targets.f_gt(0.0)?;
        if !bool::try_from(pos.f_any()?)? {
            return Ok(mask_iou_pred.f_sum(mask_iou_pred.kind())?.f_mul_scalar(0.0)?);
        }
        self.loss_iou.forward(&mask_iou_pred.f_masked_select(&pos)?, &targets.f_masked_select(&pos)?, LossArgs::default())
    }

    /// `get_targets`: (P,) mask IoUs.
    fn targets(
        &self,
        sampling: &[SamplingResult],
        gt_masks: &[&MaskTensors],
        mask_preds: &Tensor,
        mask_targets: &Tensor,
        mask_thr_binary: f64,
    ) -> ModelResult<Tensor> {
        let ratios = sampling
            .iter()
            .zip(gt_masks)
            .map(|(s, masks)| area_ratios(&s.pos_priors, &s.pos_assigned_gt_inds, masks))
            .collect::<ModelResult<Vec<_>>>()?;
        let ratios = Tensor::f_cat(&ratios, 0)?.f_to_device(mask_preds.device())?;
        let binary = mask_preds.f_detach()?.f_gt(mask_thr_binary)?.f_to_kind(Kind::Float)?;
        let sum = |t: &Tensor| t.f_sum_dim_intlist([-1, -2].as_slice(), false, Kind::Float);
        let pred_areas = sum(&binary)?;
        let overlap = sum(&binary.f_mul(mask_targets)?)?;
        let gt_full = sum(mask_targets)?.f_div(&ratios.f_add_scalar(1e-7)?)?;
        Ok(overlap.f_div(&pred_areas.f_add(&gt_full)?.f_sub(&overlap)?)?)
    }

    /// `predict_by_feat` for one image: scores (R,) times the predicted IoU
    /// (R, K) at each detection's label (R,).
    pub fn rescore(&self, scores: &Tensor, mask_iou_pred: &Tensor, labels: &Tensor) -> ModelResult<Tensor> {
        let iou = mask_iou_pred.f_gather(1, &labels.f_to_kind(Kind::Int64)?.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
        Ok(scores.f_mul(&iou)?)
    }
}

/// `_get_area_ratio`: per positive, the share of its ground-truth mask's
/// area inside its proposal, the box cast to integers (truncated) and
/// clipped to the mask, at least 1 px wide and high (`BitmapMasks.crop`).
/// The crop areas come from a summed-area table of the masks, on their device.
fn area_ratios(proposals: &Tensor, gt_inds: &Tensor, masks: &MaskTensors) -> ModelResult<Tensor> {
    if proposals.size()[0] == 0 {
        return Ok(Tensor::f_zeros([0], (Kind::Float, proposals.device()))?);
    }
    let MaskTensors::Bitmap(masks) = masks else {
        return Err(ModelError::new(NAME, "the mask-IoU targets need bitmap masks (LoadAnnotations poly2mask: true)"));
    };
    let (_, h, w) = masks.size3()?;
    let device = masks.device();
    // table[g, y, x]: the mask's pixels above y and left of x.
    let table = masks
        .f_to_kind(Kind::Double)?
        .f_cumsum(1, Kind::Double)?
        .f_cumsum(2, Kind::Double)?
        .f_constant_pad_nd([1, 0, 1, 0])?;
    let g = gt_inds.f_to_device(device)?.f_to_kind(Kind::Int64)?;
    // numpy's astype(np.int32) truncates toward zero; then clipped to the mask.
    let b = proposals.f_to_device(device)?.f_to_kind(Kind::Double)?.f_trunc()?.f_to_kind(Kind::Int64)?;
    let col = |i: i64, hi: i64| b.f_select(1, i)?.f_clamp(0, hi);
    let (x1, y1, x2, y2) = (col(0, w)?, col(1, h)?, col(2, w)?, col(3, h)?);
    // At least 1 px, and Python slicing stops at the mask's edge.
    let x2 = x1.f_add(&x2.f_sub(&x1)?.f_clamp_min(1)?)?.f_clamp_max(w)?;
    let y2 = y1.f_add(&y2.f_sub(&y1)?.f_clamp_min(1)?)?.f_clamp_max(h)?;
    let at = |y: &Tensor, x: &Tensor| -> ModelResult<Tensor> {
        Ok(table.f_index(&[Some(g.shallow_clone()), Some(y.shallow_clone()), Some(x.shallow_clone())])?)
    };
    let inside = at(&y2, &x2)?.f_sub(&at(&y1, &x2)?)?.f_sub(&at(&y2, &x1)?)?.f_add(&at(&y1, &x1)?)?;
    let full = at(&Tensor::f_full_like(&g, h)?, &Tensor::f_full_like(&g, w)?)?;
    Ok(inside.f_div(&full.f_add_scalar(1e-7)?)?.f_to_kind(Kind::Float)?.f_to_device(proposals.device())?)
}
