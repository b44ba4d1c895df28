//! `VFNetHead` (Zhang et al., "VarifocalNet: An IoU-aware Dense Object
//! Detector", <https://arxiv.org/abs/2008.13367>) as
//! `mmdet/models/dense_heads/vfnet_head.py`: FCOS's towers, then per level
//! an initial box (`vfnet_reg_conv`, `vfnet_reg`, times `scales.{i}`, `exp`,
//! times the level's regress-range bound or stride), a star-shaped
//! deformable conv whose nine taps sit on that box's corners, side centres
//! and centre (its offsets pass only `gradient_mul` of their gradient to the
//! box), a refined box as a factor on the initial one (`vfnet_reg_refine`,
//! `scales_refine.{i}`), and IoU-aware class scores (`vfnet_cls`).
//!
//! Training: positives from ATSS on one anchor per location (`use_atss`) or
//! FCOS's assignment; both boxes trained by their loss weighted by their IoU
//! with the ground truth, the scores by `VarifocalLoss` against the refined
//! box's IoU at its class (or focal loss on the labels without `use_vfl`).
//! Testing: the refined boxes, scored by the class sigmoid.
//!
//! Shape shorthand: `N` images, `K` classes, `C` feature channels, `H, W` a
//! level's size, `Q` the locations of all levels and images, `Np` positives.

use detc::registry::models::dense_heads::{BBoxNormType, VFNetHeadConfig};
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig};
use indexmap::IndexMap;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::anchor_head::featmap_sizes;
use super::atss_head::AtssTrain;
use super::base_dense_head::{distance_coder_clip_border, DenseTest, PointPrediction, TowerSpec, Towers};
use super::fcos_head::FcosAssign;
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::deform_conv::deform_conv2d;
use crate::models::layers::{make_conv, param, Conv2d, ConvGeom, ConvModule, ModelError, ModelResult};
use crate::models::losses::{Loss, LossArgs};
use crate::models::ops::{bbox2distance, bbox_overlaps, distance2bbox, OverlapMode};
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::{AnchorGenerator, MlvlPointGenerator};

const NAME: &str = "VFNetHead";

/// How positives are found.
#[derive(Debug)]
enum Assign {
    /// ATSS on one anchor per location; `None` without a `train_cfg`.
    Atss { anchors: AnchorGenerator, train: Option<AtssTrain> },
    /// FCOS's regress ranges (and centre sampling).
    Fcos(FcosAssign),
}

#[derive(Debug)]
pub struct VFNetHead {
    towers: Towers,
    vfnet_reg_conv: ConvModule,
    vfnet_reg: Conv2d,
    scales_refine: Vec<Tensor>,
    /// The two deformable convs' (C, C, 3, 3) weights (MMCV's `DeformConv2d`:
    /// no bias, offsets given).
    reg_refine_dconv: Tensor,
    vfnet_reg_refine: Conv2d,
    cls_dconv: Tensor,
    vfnet_cls: Conv2d,
    strides: Vec<i64>,
    /// What each level's initial distances are multiplied by after `exp`.
    box_scales: Vec<f64>,
    gradient_mul: f64,
    points: MlvlPointGenerator,
    assign: Assign,
    use_vfl: bool,
    sync_num_pos: bool,
    loss_cls: Loss,
    loss_bbox: Loss,
    loss_bbox_refine: Loss,
    num_classes: i64,
    clip_border: bool,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W), the initial
/// distances (N, 4, H, W; training only) and the refined ones (N, 4, H, W).
pub struct VfnetOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
    pub bbox_preds_refine: Vec<Tensor>,
}

impl VFNetHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}`, `reg_convs.{i}`,
    /// `vfnet_reg_conv` (`conv`, `gn`), `vfnet_reg`, `scales.{i}.scale`,
    /// `vfnet_reg_refine_dconv.weight`, `vfnet_reg_refine`,
    /// `scales_refine.{i}.scale`, `vfnet_cls_dconv.weight`, `vfnet_cls`.
    /// `train_cfg` / `test_cfg` are the detector's.
    pub fn new(
        cfg: &VFNetHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        test_cfg: Option<&DenseTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let loss_cls_cfg = if cfg.use_vfl { &cfg.loss_cls } else { &cfg.loss_cls_fl };
        if !loss_cls_cfg.0.get("use_sigmoid").and_then(|v| v.as_bool()).unwrap_or(true) {
            return Err(ModelError::new(NAME, "the classification loss must be a sigmoid loss (use_sigmoid: true)"));
        }
        if !cfg.reg_decoded_bbox {
            return Err(ModelError::new(NAME, "reg_decoded_bbox must be true (the box losses are on decoded boxes)"));
        }
        let levels = cfg.strides.len();
        if cfg.regress_ranges.len() != levels || levels < 2 {
            return Err(ModelError::new(
                NAME,
                format!("{} regress_ranges for {levels} strides: give one per stride, at least two", cfg.regress_ranges.len()),
            ));
        }
        let strides: Vec<i64> = cfg.strides.iter().map(|&s| s as i64).collect();
        let box_scales = match cfg.bbox_norm_type {
            // MMDetection's `reg_denoms`: each level's range bound, the last twice the one before.
            BBoxNormType::RegDenom => {
                let mut d: Vec<f64> = cfg.regress_ranges.iter().map(|r| r[1]).collect();
                d[levels - 1] = d[levels - 2] * 2.0;
                d
            }
            BBoxNormType::Stride => strides.iter().map(|&s| s as f64).collect(),
        };
        let k = cfg.num_classes as i64;
        // MMDetection places the points by the anchors' strides (and, with
        // ATSS, their `center_offset`), whatever `use_atss` says.
        let anchors = AnchorGenerator::from_cfg(&cfg.anchor_generator)?;
        if anchors.num_levels() != levels {
            return Err(ModelError::new(NAME, format!("anchor_generator has {} strides, the head {levels}", anchors.num_levels())));
        }
        let point_strides = anchors.strides.clone();
        let (assign, offset) = if cfg.use_atss {
            if anchors.num_base_priors().iter().any(|&a| a != 1) {
                return Err(ModelError::new(NAME, "anchor_generator must give one anchor per location (one ratio and one scale) with use_atss"));
            }
            let offset = cfg.anchor_generator.0.get("center_offset").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let train = train_cfg.or(cfg.train_cfg.as_ref()).map(|t| AtssTrain::new(t, NAME)).transpose()?;
            (Assign::Atss { anchors, train }, offset)
        } else {
            let fcos = FcosAssign {
                strides: strides.clone(),
                regress_ranges: cfg.regress_ranges.clone(),
                center_sampling: cfg.center_sampling,
                center_sample_radius: cfg.center_sample_radius,
                num_classes: k,
            };
            (Assign::Fcos(fcos), 0.5)
        };
        let built = Towers::build(
            p,
            &TowerSpec {
                owner: NAME,
                cls_name: "vfnet_cls",
                stacked_convs: cfg.stacked_convs,
                in_channels: cfg.in_channels,
                feat_channels: cfg.feat_channels,
                conv_cfg: cfg.conv_cfg.as_ref(),
                norm_cfg: cfg.norm_cfg.as_ref(),
                init_cfg: cfg.init_cfg.as_ref(),
                conv_bias: cfg.conv_bias.fixed(),
                levels,
                dcn_on_last_conv: cfg.dcn_on_last_conv,
                cls_tower: true,
            },
        )?;
        let (last, conv_init, cls_init) = (built.out_channels, built.conv_init, built.cls_init);
        let feat = cfg.feat_channels as i64;
        let k3 = ConvGeom::k(3).padding(1);
        // MMCV's DeformConv2d.reset_parameters, `kaiming_uniform_` (fan-in,
        // ReLU gain); the head's Normal init is for Conv2d only.
        let bound = (6.0 / (last * 9) as f64).sqrt();
        let dconv = |name: &str| param(&(p / name), "weight", &[feat, last, 3, 3], Init::Uniform { lo: -bound, up: bound }, true);
        let scales_refine = (0..levels as i64)
            .map(|i| param(&(p / "scales_refine" / i), "scale", &[], Init::Const(1.0), true))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(VFNetHead {
            vfnet_reg_conv: built.towers.extra_conv_module(&(p / "vfnet_reg_conv"), last)?,
            vfnet_reg: make_conv(&(p / "vfnet_reg"), feat, 4, k3, conv_init)?,
            scales_refine,
            reg_refine_dconv: dconv("vfnet_reg_refine_dconv")?,
            vfnet_reg_refine: make_conv(&(p / "vfnet_reg_refine"), feat, 4, k3, conv_init)?,
            cls_dconv: dconv("vfnet_cls_dconv")?,
            vfnet_cls: make_conv(&(p / "vfnet_cls"), feat, k, k3, cls_init)?,
            towers: built.towers,
            points: MlvlPointGenerator { strides: point_strides, offset },
            strides,
            box_scales,
            gradient_mul: cfg.gradient_mul,
            assign,
            use_vfl: cfg.use_vfl,
            sync_num_pos: cfg.sync_num_pos,
            loss_cls: Loss::from_cfg(loss_cls_cfg)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            loss_bbox_refine: Loss::from_cfg(&cfg.loss_bbox_refine)?,
            num_classes: k,
            clip_border: distance_coder_clip_border(&cfg.bbox_coder, NAME)?,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` in train (`train`) or eval mode (`bbox_preds` then empty).
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<VfnetOutputs> {
        self.towers.check_levels(x, NAME)?;
        let mut out = VfnetOutputs { cls_scores: vec![], bbox_preds: vec![], bbox_preds_refine: vec![] };
        let k3 = ConvGeom::k(3).padding(1);
        for (l, level) in x.iter().enumerate() {
            let (cls_feat, reg_feat) = self.towers.forward_t(level, train)?;
            let init_feat = self.vfnet_reg_conv.forward_t(&reg_feat, train)?;
            let bbox_pred = self
                .vfnet_reg
                .forward(&init_feat)?
                .f_mul(&self.towers.scales[l])?
                .f_to_kind(Kind::Float)?
                .f_exp()?
                .f_mul_scalar(self.box_scales[l])?;
            let offset = self.star_dcn_offset(&bbox_pred, self.strides[l])?.f_to_kind(reg_feat.kind())?;
            let refine_feat = deform_conv2d(&reg_feat, &offset, None, &self.reg_refine_dconv, None, k3, 1)?.f_relu()?;
            let refine = self
                .vfnet_reg_refine
                .forward(&refine_feat)?
                .f_mul(&self.scales_refine[l])?
                .f_to_kind(Kind::Float)?
                .f_exp()?
                .f_mul(&bbox_pred.f_detach()?)?;
            let cls_feat = deform_conv2d(&cls_feat, &offset, None, &self.cls_dconv, None, k3, 1)?.f_relu()?;
            out.cls_scores.push(self.vfnet_cls.forward(&cls_feat)?);
            if train {
                out.bbox_preds.push(bbox_pred);
            }
            out.bbox_preds_refine.push(refine);
        }
        Ok(out)
    }

    /// `star_dcn_offset`: the (N, 18, H, W) offsets that put the 3x3 taps of
    /// the deformable convs on the box (l, t, r, b) `bbox_pred` (N, 4, H, W)
    /// predicts, in the level's cells: rows at `-t, 0, b`, columns at
    /// `-l, 0, r`, less each tap's regular position.
    fn star_dcn_offset(&self, bbox_pred: &Tensor, stride: i64) -> ModelResult<Tensor> {
        let g = self.gradient_mul;
        let d = bbox_pred.f_detach()?.f_mul_scalar(1.0 - g)?.f_add(&bbox_pred.f_mul_scalar(g)?)?.f_div_scalar(stride)?;
        let side = |i: i64| d.f_select(1, i);
        let zero = side(0)?.f_zeros_like()?;
        let rows = [side(1)?.f_neg()?, zero.shallow_clone(), side(3)?];
        let cols = [side(0)?.f_neg()?, zero, side(2)?];
        let mut taps = Vec::with_capacity(18);
        for (i, row) in rows.iter().enumerate() {
            for (j, col) in cols.iter().enumerate() {
                // The regular grid's tap position, (i - 1, j - 1).
                taps.push(row.f_sub_scalar(i as f64 - 1.0)?);
                taps.push(col.f_sub_scalar(j as f64 - 1.0)?);
            }
        }
        Ok(Tensor::f_stack(&taps, 1)?)
    }

    /// `loss`: `loss_cls`, `loss_bbox` and `loss_bbox_rf`. `reduce_mean`
    /// averages a count over the job's processes, as MMDetection's `reduce_mean`.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples, reduce_mean)
    }

    /// `loss_by_feat` on the head's training outputs.
    pub fn loss_by_feat(&self, out: &VfnetOutputs, samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let device = out.cls_scores[0].device();
        let sizes = featmap_sizes(&out.cls_scores);
        let points = self.points.grid_priors(&sizes, device, false)?;
        let n = out.cls_scores[0].size()[0];
        let (labels, label_weights, targets) = self.get_targets(&sizes, &points, samples, reduce_mean)?;
        let flat = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
            let parts = maps.iter().map(|m| Ok(m.f_permute([0, 2, 3, 1])?.f_reshape([-1, c])?)).collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let cls = flat(&out.cls_scores, self.num_classes)?;
        let reg = flat(&out.bbox_preds, 4)?;
        let reg_refine = flat(&out.bbox_preds_refine, 4)?;
        let flat_points = Tensor::f_cat(&points.iter().map(|p| p.f_repeat([n, 1])).collect::<Result<Vec<_>, _>>()?, 0)?;

        let pos = labels.f_ge(0)?.f_logical_and(&labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?;
        let num_pos = pos.size()[0];
        let num_pos_avg = if self.sync_num_pos { reduce_mean(num_pos as f64)?.max(1.0) } else { num_pos as f64 };
        let pos_points = flat_points.f_index_select(0, &pos)?;
        let pos_reg = reg.f_index_select(0, &pos)?;
        let pos_refine = reg_refine.f_index_select(0, &pos)?;
        let pos_targets = distance2bbox(&pos_points, &targets.f_index_select(0, &pos)?, None)?;
        let iou_with_targets = |boxes: &Tensor| -> ModelResult<Tensor> {
            Ok(bbox_overlaps(boxes, &pos_targets, OverlapMode::Iou, true)?.f_clamp_min(1e-6)?.f_detach()?)
        };
        let decoded = distance2bbox(&pos_points, &pos_reg, None)?;
        let iou_init = iou_with_targets(&decoded)?;
        let avg_init = reduce_mean(iou_init.f_sum(Kind::Float)?.double_value(&[]))?.max(1.0);
        let decoded_refine = distance2bbox(&pos_points, &pos_refine, None)?;
        let iou_refine = iou_with_targets(&decoded_refine)?;
        let avg_refine = reduce_mean(iou_refine.f_sum(Kind::Float)?.double_value(&[]))?.max(1.0);
        let (loss_bbox, loss_bbox_rf) = if num_pos > 0 {
            (
                self.loss_bbox.forward(&decoded, &pos_targets, LossArgs::default().weight(&iou_init).avg_factor(avg_init))?,
                self.loss_bbox_refine.forward(&decoded_refine, &pos_targets, LossArgs::default().weight(&iou_refine).avg_factor(avg_refine))?,
            )
        } else {
            (pos_reg.f_sum(Kind::Float)?.f_mul_scalar(0.0)?, pos_refine.f_sum(Kind::Float)?.f_mul_scalar(0.0)?)
        };
        let loss_cls = if self.use_vfl {
            // The refined box's IoU at the positive's class, 0 elsewhere.
            let mut iou_targets = cls.f_zeros_like()?.f_detach()?;
            if num_pos > 0 {
                let pos_labels = labels.f_index_select(0, &pos)?;
                iou_targets = iou_targets.f_index_put(&[Some(pos.shallow_clone()), Some(pos_labels)], &iou_refine.f_to_kind(cls.kind())?, false)?;
            }
            self.loss_cls.forward(&cls, &iou_targets, LossArgs::default().avg_factor(num_pos_avg))?
        } else {
            let args = LossArgs::default().avg_factor(num_pos_avg);
            match &label_weights {
                Some(w) => self.loss_cls.forward(&cls, &labels, args.weight(w))?,
                None => self.loss_cls.forward(&cls, &labels, args)?,
            }
        };
        Ok(IndexMap::from([
            ("loss_cls".to_string(), loss_cls),
            ("loss_bbox".to_string(), loss_bbox),
            ("loss_bbox_rf".to_string(), loss_bbox_rf),
        ]))
    }

    /// `get_targets` over the levels of `sizes`, level by level and image by
    /// image within a level: (Q,) labels (`K` is background), the label
    /// weights with ATSS, and the (Q, 4) distances from each point to its
    /// ground truth's sides.
    fn get_targets(
        &self,
        sizes: &[(i64, i64)],
        points: &[Tensor],
        samples: &[DetDataSample],
        reduce_mean: ReduceMean,
    ) -> ModelResult<(Tensor, Option<Tensor>, Tensor)> {
        match &self.assign {
            Assign::Fcos(fcos) => {
                let (labels, targets) = fcos.get_targets(points, samples)?;
                Ok((Tensor::f_cat(&labels, 0)?, None, Tensor::f_cat(&targets, 0)?))
            }
            Assign::Atss { anchors, train } => {
                let train = train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
                let device = points[0].device();
                let t = train.targets(anchors, sizes, device, samples, self.num_classes, reduce_mean)?;
                let n = samples.len() as i64;
                let (mut labels, mut weights, mut targets) = (vec![], vec![], vec![]);
                let mut start = 0;
                for (level, level_points) in points.iter().enumerate() {
                    let count = t.mlvl_anchors[level].size()[0];
                    let cut = |x: &Tensor| x.f_narrow(1, start, count);
                    labels.push(cut(&t.labels)?.f_reshape([-1])?);
                    weights.push(cut(&t.label_weights)?.f_reshape([-1])?);
                    // The ground-truth boxes as the distances the points regress.
                    let boxes = cut(&t.bbox_targets)?.f_reshape([-1, 4])?;
                    targets.push(bbox2distance(&level_points.f_repeat([n, 1])?, &boxes, None, 0.1)?);
                    start += count;
                }
                Ok((Tensor::f_cat(&labels, 0)?, Some(Tensor::f_cat(&weights, 0)?), Tensor::f_cat(&targets, 0)?))
            }
        }
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let points = self.points.grid_priors(&sizes, out.cls_scores[0].device(), false)?;
        let prediction = PointPrediction { points: &points, num_classes: self.num_classes, clip_border: self.clip_border, owner: NAME };
        (0..samples.len())
            .map(|i| prediction.predict_single(i, &out.cls_scores, &out.bbox_preds_refine, None, &samples[i], cfg, rescale))
            .collect()
    }
}

#[cfg(test)]
#[path = "vfnet_tests.rs"]
mod tests;
