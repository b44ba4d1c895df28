//! `FCOSHead` (Tian et al., "FCOS: Fully Convolutional One-Stage Object
//! Detection", <https://arxiv.org/abs/1904.01355>) as
//! `mmdet/models/dense_heads/fcos_head.py` on `AnchorFreeHead` and
//! `BaseDenseHead`: per level `stacked_convs` 3x3 ConvModules (GroupNorm by
//! default) for classification and as many for regression, then per
//! location `K` sigmoid class scores (`conv_cls`), the distances to the
//! box's left, top, right and bottom (`conv_reg`, times a learned per-level
//! `scales.{i}.scale`, then `exp`, or ReLU with `norm_on_bbox`) and a
//! centerness logit (`conv_centerness`).
//!
//! Training: each location (a point at `(i + 0.5) * stride`) is assigned
//! the smallest-area ground truth that contains it (or, with
//! `center_sampling`, whose centre region of `center_sample_radius` strides
//! contains it) and whose largest side distance is within the level's
//! `regress_ranges`; focal loss over all locations, the box loss on the
//! decoded boxes of the positives weighted by their centerness targets, and
//! the centerness loss. Testing: `BaseDenseHead`'s, the scores multiplied by
//! the sigmoid centerness before NMS.
//!
//! Shape shorthand: `N` images, `K` classes, `H, W` a level's size, `Q` the
//! locations of all levels, `G` ground truths of an image.

use detc::registry::models::dense_heads::FCOSHeadConfig;
use detc::registry::models::train_test::DenseTestConfig;
use indexmap::IndexMap;
use tch::nn;
use tch::{Kind, Tensor};

use super::anchor_head::featmap_sizes;
use super::base_dense_head::{distance_coder_clip_border, DenseTest, PointPrediction, TowerSpec, Towers};
use crate::models::layers::make_conv;
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{
    Conv2d, ConvGeom, ModelError, ModelResult,
};
use crate::models::losses::{Loss, LossArgs};
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::ops::{distance2bbox, upload_as};
use crate::models::roi_heads::DetInstances;

const NAME: &str = "FCOSHead";

/// MMDetection's `INF` of FCOS's target assignment.
const INF: f64 = 1e8;

#[derive(Debug)]
pub struct FCOSHead {
    towers: Towers,
    conv_cls: Conv2d,
    conv_reg: Conv2d,
    conv_centerness: Conv2d,
    assign: FcosAssign,
    norm_on_bbox: bool,
    centerness_on_reg: bool,
    clip_border: bool,
    loss_cls: Loss,
    loss_bbox: Loss,
    loss_centerness: Loss,
    num_classes: i64,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W), distances
/// (N, 4, H, W) and centerness logits (N, 1, H, W).
pub struct FcosOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
    pub centernesses: Vec<Tensor>,
}

/// `MlvlPointGenerator.grid_priors` (offset 0.5): per level the (H*W, 2)
/// points `((x + 0.5) * stride, (y + 0.5) * stride)`, row by row.
fn grid_points(sizes: &[(i64, i64)], strides: &[i64], like: &Tensor) -> ModelResult<Vec<Tensor>> {
    sizes
        .iter()
        .zip(strides)
        .map(|(&(h, w), &s)| {
            let opts = (Kind::Float, like.device());
            let xs = Tensor::f_arange(w, opts)?.f_add_scalar(0.5)?.f_mul_scalar(s)?;
            let ys = Tensor::f_arange(h, opts)?.f_add_scalar(0.5)?.f_mul_scalar(s)?;
            let xx = xs.f_repeat([h])?;
            let yy = ys.f_view([-1, 1])?.f_repeat([1, w])?.f_view([-1])?;
            Ok(Tensor::f_stack(&[xx, yy], -1)?.f_to_kind(like.kind())?)
        })
        .collect()
}

impl FCOSHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}`, `reg_convs.{i}`
    /// (`conv` and `gn`), `conv_cls`, `conv_reg`, `conv_centerness`,
    /// `scales.{i}.scale`. `test_cfg` is the detector's.
    pub fn new(cfg: &FCOSHeadConfig, test_cfg: Option<&DenseTestConfig>, p: &nn::Path) -> ModelResult<Self> {
        if !cfg.loss_cls.0.get("use_sigmoid").and_then(|v| v.as_bool()).unwrap_or(false) {
            return Err(ModelError::new(NAME, "loss_cls must be a sigmoid loss (use_sigmoid: true)"));
        }
        if cfg.regress_ranges.len() != cfg.strides.len() {
            return Err(ModelError::new(NAME, format!("{} regress_ranges for {} strides", cfg.regress_ranges.len(), cfg.strides.len())));
        }
        let clip_border = distance_coder_clip_border(&cfg.bbox_coder, NAME)?;
        let built = Towers::build(
            p,
            &TowerSpec {
                owner: NAME,
                cls_name: "conv_cls",
                stacked_convs: cfg.stacked_convs,
                in_channels: cfg.in_channels,
                feat_channels: cfg.feat_channels,
                conv_cfg: cfg.conv_cfg.as_ref(),
                norm_cfg: cfg.norm_cfg.as_ref(),
                init_cfg: cfg.init_cfg.as_ref(),
                conv_bias: cfg.conv_bias.fixed(),
                levels: cfg.strides.len(),
                dcn_on_last_conv: cfg.dcn_on_last_conv,
                cls_tower: true,
            },
        )?;
        let (last, conv_init, cls_init) = (built.out_channels, built.conv_init, built.cls_init);
        let k = cfg.num_classes as i64;
        let k3 = ConvGeom::k(3).padding(1);
        Ok(FCOSHead {
            towers: built.towers,
            conv_cls: make_conv(&(p / "conv_cls"), last, k, k3, cls_init)?,
            conv_reg: make_conv(&(p / "conv_reg"), last, 4, k3, conv_init)?,
            conv_centerness: make_conv(&(p / "conv_centerness"), last, 1, k3, conv_init)?,
            assign: FcosAssign {
                strides: cfg.strides.iter().map(|&s| s as i64).collect(),
                regress_ranges: cfg.regress_ranges.clone(),
                center_sampling: cfg.center_sampling,
                center_sample_radius: cfg.center_sample_radius,
                num_classes: k,
            },
            norm_on_bbox: cfg.norm_on_bbox,
            centerness_on_reg: cfg.centerness_on_reg,
            clip_border,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            loss_centerness: Loss::from_cfg(&cfg.loss_centerness)?,
            num_classes: k,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` in train (`train`) or eval mode: with `norm_on_bbox` the
    /// eval distances are multiplied by the level's stride.
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<FcosOutputs> {
        self.towers.check_levels(x, NAME)?;
        let mut out = FcosOutputs { cls_scores: vec![], bbox_preds: vec![], centernesses: vec![] };
        for ((level, scale), &stride) in x.iter().zip(&self.towers.scales).zip(&self.assign.strides) {
            let (c, r) = self.towers.forward_t(level, train)?;
            out.cls_scores.push(self.conv_cls.forward(&c)?);
            out.centernesses.push(self.conv_centerness.forward(if self.centerness_on_reg { &r } else { &c })?);
            let d = self.conv_reg.forward(&r)?.f_mul(scale)?.f_to_kind(Kind::Float)?;
            out.bbox_preds.push(if self.norm_on_bbox {
                let d = d.f_clamp_min(0.0)?;
                if train { d } else { d.f_mul_scalar(stride)? }
            } else {
                d.f_exp()?
            });
        }
        Ok(out)
    }

    /// `loss`: `loss_cls`, `loss_bbox` and `loss_centerness`. `reduce_mean`
    /// averages a count over the job's processes (the positives' number and
    /// centerness sum that normalise the losses, as MMDetection's `reduce_mean`).
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples, reduce_mean)
    }

    /// `loss_by_feat` on the head's outputs.
    pub fn loss_by_feat(&self, out: &FcosOutputs, samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let sizes = featmap_sizes(&out.cls_scores);
        let points = grid_points(&sizes, &self.assign.strides, &out.bbox_preds[0])?;
        let (labels, mut bbox_targets) = self.assign.get_targets(&points, samples)?;
        if self.norm_on_bbox {
            for (t, &s) in bbox_targets.iter_mut().zip(&self.assign.strides) {
                *t = t.f_div_scalar(s)?;
            }
        }
        let n = out.cls_scores[0].size()[0];
        let flat = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
            let parts = maps.iter().map(|m| Ok(m.f_permute([0, 2, 3, 1])?.f_reshape([-1, c])?)).collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let cls = flat(&out.cls_scores, self.num_classes)?;
        let reg = flat(&out.bbox_preds, 4)?;
        let ctr = flat(&out.centernesses, 1)?.f_view([-1])?;
        let labels = Tensor::f_cat(&labels, 0)?;
        let targets = Tensor::f_cat(&bbox_targets, 0)?;
        let flat_points = Tensor::f_cat(&points.iter().map(|p| p.f_repeat([n, 1])).collect::<Result<Vec<_>, _>>()?, 0)?;

        let pos = labels.f_ge(0)?.f_logical_and(&labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?;
        let num_pos = reduce_mean(pos.size()[0] as f64)?.max(1.0);
        let loss_cls = self.loss_cls.forward(&cls, &labels, LossArgs::default().avg_factor(num_pos))?;
        let pos_reg = reg.f_index_select(0, &pos)?;
        let pos_ctr = ctr.f_index_select(0, &pos)?;
        let pos_targets = targets.f_index_select(0, &pos)?;
        let ctr_targets = centerness_target(&pos_targets)?;
        let denorm = reduce_mean(ctr_targets.f_sum(Kind::Float)?.double_value(&[]))?.max(1e-6);
        let (loss_bbox, loss_centerness) = if pos.size()[0] > 0 {
            let pos_points = flat_points.f_index_select(0, &pos)?;
            let decoded = distance2bbox(&pos_points, &pos_reg, None)?;
            let decoded_targets = distance2bbox(&pos_points, &pos_targets, None)?;
            let loss_bbox = self.loss_bbox.forward(&decoded, &decoded_targets, LossArgs::default().weight(&ctr_targets).avg_factor(denorm))?;
            let loss_ctr = self.loss_centerness.forward(&pos_ctr, &ctr_targets, LossArgs::default().avg_factor(num_pos))?;
            (loss_bbox, loss_ctr)
        } else {
            (pos_reg.f_sum(pos_reg.kind())?, pos_ctr.f_sum(pos_ctr.kind())?)
        };
        Ok(IndexMap::from([
            ("loss_cls".to_string(), loss_cls),
            ("loss_bbox".to_string(), loss_bbox),
            ("loss_centerness".to_string(), loss_centerness),
        ]))
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let points = grid_points(&sizes, &self.assign.strides, &out.bbox_preds[0])?;
        let prediction = PointPrediction { points: &points, num_classes: self.num_classes, clip_border: self.clip_border, owner: NAME };
        (0..samples.len())
            .map(|i| prediction.predict_single(i, &out.cls_scores, &out.bbox_preds, Some(&out.centernesses), &samples[i], cfg, rescale))
            .collect()
    }
}

/// FCOS's assignment of locations to ground truths (`FCOSHead.get_targets`),
/// also VFNet's without ATSS.
#[derive(Debug)]
pub(super) struct FcosAssign {
    pub strides: Vec<i64>,
    pub regress_ranges: Vec<[f64; 2]>,
    pub center_sampling: bool,
    pub center_sample_radius: f64,
    pub num_classes: i64,
}

impl FcosAssign {
    /// `get_targets`: per level, the (N*H*W,) labels (`K` is background) and
    /// (N*H*W, 4) distance targets of every image, images concatenated
    /// within each level.
    pub fn get_targets(&self, points: &[Tensor], samples: &[DetDataSample]) -> ModelResult<(Vec<Tensor>, Vec<Tensor>)> {
        let num_points: Vec<i64> = points.iter().map(|p| p.size()[0]).collect();
        let all_points = Tensor::f_cat(points, 0)?;
        // Each level's constants repeated for its points: (Q, k), once per batch.
        let per_point = |rows: Vec<Vec<f64>>| -> ModelResult<Tensor> {
            let parts = rows
                .iter()
                .zip(&num_points)
                .map(|(r, &n)| {
                    let row = upload_as(r, all_points.kind(), all_points.device())?;
                    Ok(row.f_view([1, -1])?.f_expand([n, r.len() as i64], false)?)
                })
                .collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let ranges = per_point(self.regress_ranges.iter().map(|r| r.to_vec()).collect())?;
        let radii = if self.center_sampling {
            Some(per_point(self.strides.iter().map(|&s| vec![s as f64 * self.center_sample_radius]).collect())?)
        } else {
            None
        };
        let mut per_image = Vec::with_capacity(samples.len());
        for s in samples {
            per_image.push(self.targets_single(&s.gt_instances.bboxes, &s.gt_instances.labels, &all_points, &ranges, radii.as_ref())?);
        }
        let mut labels = Vec::with_capacity(points.len());
        let mut targets = Vec::with_capacity(points.len());
        for (lvl, _) in num_points.iter().enumerate() {
            let split = |t: &Tensor| -> ModelResult<Tensor> {
                let start: i64 = num_points[..lvl].iter().sum();
                Ok(t.f_narrow(0, start, num_points[lvl])?)
            };
            labels.push(Tensor::f_cat(&per_image.iter().map(|(l, _)| split(l)).collect::<ModelResult<Vec<_>>>()?, 0)?);
            let t = Tensor::f_cat(&per_image.iter().map(|(_, t)| split(t)).collect::<ModelResult<Vec<_>>>()?, 0)?;
            targets.push(t);
        }
        Ok((labels, targets))
    }

    /// `_get_targets_single`: gt (G, 4) boxes and (G,) labels, points (Q, 2),
    /// their level's regress range (Q, 2) and, with `center_sampling`, the
    /// radius of the centre region (Q, 1) -> labels (Q,), targets (Q, 4).
    fn targets_single(
        &self,
        gt: &Tensor,
        gt_labels: &Tensor,
        points: &Tensor,
        ranges: &Tensor,
        radii: Option<&Tensor>,
    ) -> ModelResult<(Tensor, Tensor)> {
        let q = points.size()[0];
        let g = gt.size()[0];
        if g == 0 {
            let labels = Tensor::f_full([q], self.num_classes, (Kind::Int64, points.device()))?;
            return Ok((labels, Tensor::f_zeros([q, 4], (gt.kind(), points.device()))?));
        }
        let gt = gt.f_to_kind(points.kind())?;
        let col = |t: &Tensor, i: i64| -> ModelResult<Tensor> { Ok(t.f_select(1, i)?.f_view([1, g])?) };
        let (gx1, gy1, gx2, gy2) = (col(&gt, 0)?, col(&gt, 1)?, col(&gt, 2)?, col(&gt, 3)?);
        let areas = gx2.f_sub(&gx1)?.f_mul(&gy2.f_sub(&gy1)?)?.f_expand([q, g], false)?.f_contiguous()?;
        let xs = points.f_select(1, 0)?.f_view([q, 1])?;
        let ys = points.f_select(1, 1)?.f_view([q, 1])?;
        let (left, top) = (xs.f_sub(&gx1)?, ys.f_sub(&gy1)?);
        let (right, bottom) = (gx2.f_sub(&xs)?, gy2.f_sub(&ys)?);
        let targets = Tensor::f_stack(&[&left, &top, &right, &bottom], -1)?; // (Q, G, 4)
        let inside = if let Some(stride) = radii {
            // The centre region: `radius` strides around the box centre, within the box.
            let cx = gx1.f_add(&gx2)?.f_div_scalar(2.0)?;
            let cy = gy1.f_add(&gy2)?.f_div_scalar(2.0)?;
            let x_min = cx.f_sub(stride)?.f_maximum(&gx1)?;
            let y_min = cy.f_sub(stride)?.f_maximum(&gy1)?;
            let x_max = cx.f_add(stride)?.f_minimum(&gx2)?;
            let y_max = cy.f_add(stride)?.f_minimum(&gy2)?;
            let d = Tensor::f_stack(&[xs.f_sub(&x_min)?, ys.f_sub(&y_min)?, x_max.f_sub(&xs)?, y_max.f_sub(&ys)?], -1)?;
            d.f_amin([-1], false)?.f_gt(0.0)?
        } else {
            targets.f_amin([-1], false)?.f_gt(0.0)?
        };
        let max_dist = targets.f_amax([-1], false)?;
        let lo = ranges.f_select(1, 0)?.f_view([q, 1])?;
        let hi = ranges.f_select(1, 1)?.f_view([q, 1])?;
        let in_range = max_dist.f_ge_tensor(&lo)?.f_logical_and(&max_dist.f_le_tensor(&hi)?)?;
        let areas = areas.f_masked_fill(&inside.f_logical_not()?, INF)?.f_masked_fill(&in_range.f_logical_not()?, INF)?;
        let (min_area, min_idx) = areas.f_min_dim(1, false)?;
        let labels = gt_labels.f_index_select(0, &min_idx)?.f_masked_fill(&min_area.f_eq(INF)?, self.num_classes)?;
        let picked = targets.f_gather(1, &min_idx.f_view([q, 1, 1])?.f_expand([q, 1, 4], false)?, false)?.f_view([q, 4])?;
        Ok((labels, picked))
    }

}

/// `centerness_target`: sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))
/// of (P, 4) distance targets.
fn centerness_target(targets: &Tensor) -> ModelResult<Tensor> {
    if targets.size()[0] == 0 {
        return Ok(targets.f_select(1, 0)?);
    }
    let d = |i: i64| targets.f_select(1, i);
    let (l, t, r, b) = (d(0)?, d(1)?, d(2)?, d(3)?);
    let lr = l.f_minimum(&r)?.f_div(&l.f_maximum(&r)?)?;
    let tb = t.f_minimum(&b)?.f_div(&t.f_maximum(&b)?)?;
    Ok(lr.f_mul(&tb)?.f_sqrt()?)
}

#[cfg(test)]
#[path = "fcos_tests.rs"]
mod tests;
