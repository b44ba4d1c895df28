//! `FoveaHead` (Kong et al., "FoveaBox: Beyound Anchor-Based Object
//! Detection", <https://arxiv.org/abs/1904.03797>) as
//! `mmdet/models/dense_heads/fovea_head.py` on `AnchorFreeHead`: per level
//! a regression tower and `conv_reg`, whose four maps are the log of each
//! side's distance from the location, in units of the level's
//! `base_edge_list` size; a classification tower and `conv_cls` (sigmoid
//! scores). With `with_deform` the classification branch first aligns the
//! input features to the predicted box (`feature_adaption`: a deformable
//! conv whose offsets a 1x1 conv computes from the exponentiated box), then
//! runs two ConvModules four times as wide.
//!
//! Training: each object trains the levels whose `scale_ranges` hold the
//! square root of its area, on the locations inside the central `sigma`
//! part of its box (its fovea); where foveae overlap, the smaller object
//! wins. Focal loss over all locations (normalised by the positives plus
//! the images), the box loss (e.g. smooth L1) on the positives' log
//! distances. Testing: sigmoid scores, boxes decoded and clipped to the
//! image (`[0, size - 1]`).
//!
//! Shape shorthand: `N` images, `K` classes, `C` feature channels, `H, W` a
//! level's size, `G` ground truths of an image, `Np` positives.

use detc::registry::models::dense_heads::FoveaHeadConfig;
use detc::registry::models::train_test::DenseTestConfig;
use indexmap::IndexMap;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::anchor_head::{featmap_sizes, image_hw};
use super::base_dense_head::{bbox_post_process, filter_scores_and_topk, DenseTest, TowerSpec, Towers};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::deform_conv::deform_conv2d;
use crate::models::layers::{make_conv, param, Activation, Conv2d, ConvGeom, ConvInit, ConvModule, ModelError, ModelResult, Norm, NormSpec};
use crate::models::losses::{Loss, LossArgs};
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::MlvlPointGenerator;

const NAME: &str = "FoveaHead";

/// `with_deform`'s classification branch: `feature_adaption` (`conv_offset`,
/// 1x1 from the 4 box maps, no bias; `conv_adaption`, a 3x3 `DeformConv2d`
/// of `deform_groups`), then `cls_convs.0` (3x3, C to 4C) and
/// `cls_convs.1` (1x1, 4C to 4C).
#[derive(Debug)]
struct AlignedBranch {
    conv_offset: Conv2d,
    adaption_weight: Tensor,
    deform_groups: i64,
    convs: [ConvModule; 2],
}

impl AlignedBranch {
    fn new(p: &nn::Path, feat: i64, deform_groups: i64, norm: Option<&NormSpec>, init: ConvInit) -> ModelResult<Self> {
        let fa = p / "feature_adaption";
        // `conv_adaption` N(0, 0.01) by FeatureAlign's init_cfg; `conv_offset`
        // zero, as BaseDenseHead.init_weights leaves every `conv_offset`.
        let offsets = deform_groups * 18;
        let conv_offset = Conv2d::new(&(&fa / "conv_offset"), 4, offsets, ConvGeom::k(1), false, Init::Const(0.0), true)?;
        let adaption_weight = param(&(&fa / "conv_adaption"), "weight", &[feat, feat, 3, 3], Init::Randn { mean: 0.0, stdev: 0.01 }, true)?;
        let module = |i: i64, c_in: i64, k: i64| -> ModelResult<ConvModule> {
            let q = p / "cls_convs" / i;
            let weight = match init {
                ConvInit::Normal { mean, std, .. } => Init::Randn { mean, stdev: std },
                _ => crate::models::layers::kaiming_normal_fan_out(&[4 * feat, c_in, k, k]),
            };
            let geom = ConvGeom::k(k).padding(k / 2);
            Ok(ConvModule {
                conv: Conv2d::new(&(&q / "conv"), c_in, 4 * feat, geom, norm.is_none(), weight, true)?,
                norm: norm.map(|n| Norm::new(&(&q / n.abbr()), 4 * feat, n, true)).transpose()?,
                act: Some(Activation::Relu),
            })
        };
        Ok(AlignedBranch { conv_offset, adaption_weight, deform_groups, convs: [module(0, feat, 3)?, module(1, 4 * feat, 1)?] })
    }

    /// The input level (N, C, H, W) aligned to its predicted box maps (N, 4, H, W) -> (N, 4C, H, W).
    fn forward_t(&self, x: &Tensor, bbox_pred: &Tensor, train: bool) -> ModelResult<Tensor> {
        let offset = self.conv_offset.forward(&bbox_pred.f_exp()?)?;
        let mut y = deform_conv2d(x, &offset, None, &self.adaption_weight, None, ConvGeom::k(3).padding(1), self.deform_groups)?.f_relu()?;
        for conv in &self.convs {
            y = conv.forward_t(&y, train)?;
        }
        Ok(y)
    }
}

#[derive(Debug)]
pub struct FoveaHead {
    towers: Towers,
    aligned: Option<AlignedBranch>,
    conv_reg: Conv2d,
    conv_cls: Conv2d,
    points: MlvlPointGenerator,
    strides: Vec<i64>,
    base_edges: Vec<f64>,
    scale_ranges: Vec<[f64; 2]>,
    sigma: f64,
    loss_cls: Loss,
    loss_bbox: Loss,
    num_classes: i64,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W) and log side
/// distances in base edges (N, 4, H, W).
pub struct FoveaOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
}

impl FoveaHead {
    /// Builds under `p` (`bbox_head`): `reg_convs.{i}`, `conv_reg`,
    /// `cls_convs.{i}`, `conv_cls`, and with `with_deform`
    /// `feature_adaption.{conv_offset,conv_adaption}`. `test_cfg` is the detector's.
    pub fn new(cfg: &FoveaHeadConfig, test_cfg: Option<&DenseTestConfig>, p: &nn::Path) -> ModelResult<Self> {
        if !cfg.loss_cls.0.get("use_sigmoid").and_then(|v| v.as_bool()).unwrap_or(false) {
            return Err(ModelError::new(NAME, "loss_cls must be a sigmoid loss (use_sigmoid: true)"));
        }
        let levels = cfg.strides.len();
        if cfg.base_edge_list.len() != levels || cfg.scale_ranges.len() != levels {
            return Err(ModelError::new(
                NAME,
                format!(
                    "{} strides, {} base_edge_list sizes and {} scale_ranges: give one of each per level",
                    levels,
                    cfg.base_edge_list.len(),
                    cfg.scale_ranges.len()
                ),
            ));
        }
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
                // FoveaHead has no learned per-level scales.
                levels: 0,
                dcn_on_last_conv: cfg.dcn_on_last_conv,
                cls_tower: !cfg.with_deform,
            },
        )?;
        let (last, conv_init, cls_init) = (built.out_channels, built.conv_init, built.cls_init);
        let feat = cfg.feat_channels as i64;
        if cfg.with_deform && last != feat {
            return Err(ModelError::new(NAME, "with_deform needs stacked_convs > 0 or in_channels equal to feat_channels"));
        }
        let aligned = if cfg.with_deform {
            let norm = cfg.norm_cfg.as_ref().map(|n| NormSpec::from_cfg(n, NAME)).transpose()?;
            Some(AlignedBranch::new(p, feat, cfg.deform_groups as i64, norm.as_ref(), conv_init)?)
        } else {
            None
        };
        let k = cfg.num_classes as i64;
        let k3 = ConvGeom::k(3).padding(1);
        let cls_in = if cfg.with_deform { 4 * feat } else { last };
        let strides: Vec<i64> = cfg.strides.iter().map(|&s| s as i64).collect();
        Ok(FoveaHead {
            towers: built.towers,
            aligned,
            conv_reg: make_conv(&(p / "conv_reg"), last, 4, k3, conv_init)?,
            conv_cls: make_conv(&(p / "conv_cls"), cls_in, k, k3, cls_init)?,
            points: MlvlPointGenerator { strides: strides.iter().map(|&s| (s, s)).collect(), offset: 0.5 },
            strides,
            base_edges: cfg.base_edge_list.clone(),
            scale_ranges: cfg.scale_ranges.clone(),
            sigma: cfg.sigma,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            num_classes: k,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` (`train` switches the norms' batch statistics).
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<FoveaOutputs> {
        if x.len() != self.strides.len() {
            return Err(ModelError::new(NAME, format!("{} feature levels for {} strides", x.len(), self.strides.len())));
        }
        let mut out = FoveaOutputs { cls_scores: vec![], bbox_preds: vec![] };
        for level in x {
            let (cls_feat, reg_feat) = self.towers.forward_t(level, train)?;
            let bbox_pred = self.conv_reg.forward(&reg_feat)?;
            let cls_feat = match &self.aligned {
                Some(branch) => branch.forward_t(level, &bbox_pred, train)?,
                None => cls_feat,
            };
            out.cls_scores.push(self.conv_cls.forward(&cls_feat)?);
            out.bbox_preds.push(bbox_pred);
        }
        Ok(out)
    }

    /// `loss`: `loss_cls` and `loss_bbox`.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples)
    }

    /// `loss_by_feat` on the head's outputs.
    pub fn loss_by_feat(&self, out: &FoveaOutputs, samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        let sizes = featmap_sizes(&out.cls_scores);
        let points = self.points.grid_priors(&sizes, out.cls_scores[0].device(), false)?;
        let flat = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
            let parts = maps.iter().map(|m| Ok(m.f_permute([0, 2, 3, 1])?.f_reshape([-1, c])?)).collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let cls = flat(&out.cls_scores, self.num_classes)?;
        let reg = flat(&out.bbox_preds, 4)?;
        // Level by level, image by image within a level.
        let (mut labels, mut targets) = (vec![], vec![]);
        for (level, (&(h, w), level_points)) in sizes.iter().zip(&points).enumerate() {
            for sample in samples {
                let (l, t) = self.targets_single(sample, level, (h, w), level_points)?;
                labels.push(l);
                targets.push(t);
            }
        }
        let labels = Tensor::f_cat(&labels, 0)?;
        let targets = Tensor::f_cat(&targets, 0)?;
        let pos = labels.f_ge(0)?.f_logical_and(&labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?;
        let num_pos = pos.size()[0];
        let loss_cls = self.loss_cls.forward(&cls, &labels, LossArgs::default().avg_factor((num_pos + samples.len() as i64) as f64))?;
        let pos_reg = reg.f_index_select(0, &pos)?;
        let loss_bbox = if num_pos > 0 {
            self.loss_bbox.forward(&pos_reg, &targets.f_index_select(0, &pos)?, LossArgs::default().avg_factor(num_pos as f64))?
        } else {
            pos_reg.f_sum(Kind::Float)?.f_mul_scalar(0.0)?
        };
        Ok(IndexMap::from([("loss_cls".to_string(), loss_cls), ("loss_bbox".to_string(), loss_bbox)]))
    }

    /// `_get_targets_single` of one image on one level of `(H, W)` and
    /// (H*W, 2) points: (H*W,) labels (`K` is background) and (H*W, 4) log
    /// side distances in base edges (0 where negative). An object covers
    /// the locations of its fovea; where several do, the smallest wins (the
    /// last that MMDetection writes, going from the largest).
    fn targets_single(&self, sample: &DetDataSample, level: usize, (h, w): (i64, i64), points: &Tensor) -> ModelResult<(Tensor, Tensor)> {
        let device = points.device();
        let gt = sample.gt_instances.bboxes.f_view([-1, 4])?.f_to_kind(Kind::Float)?;
        let gt_labels = sample.gt_instances.labels.f_to_kind(Kind::Int64)?;
        let q = h * w;
        let background = || -> ModelResult<(Tensor, Tensor)> {
            Ok((Tensor::f_full([q], self.num_classes, (Kind::Int64, device))?, Tensor::f_zeros([q, 4], (Kind::Float, device))?))
        };
        if gt.size()[0] == 0 {
            return background();
        }
        let col = |t: &Tensor, i: i64| t.f_select(1, i);
        let areas = col(&gt, 2)?.f_sub(&col(&gt, 0)?)?.f_mul(&col(&gt, 3)?.f_sub(&col(&gt, 1)?)?)?.f_sqrt()?;
        let [lo, hi] = self.scale_ranges[level];
        let hit = areas.f_ge(lo)?.f_logical_and(&areas.f_le(hi)?)?;
        // Each object's rank from the largest: a later one overwrites.
        let order = areas.f_neg()?.f_argsort_stable(true, 0, false)?;
        let rank = order.f_argsort_stable(true, 0, false)?;
        let (stride, sigma) = (self.strides[level] as f64, self.sigma);
        let s = gt.f_div_scalar(stride)?;
        let (half_w, half_h) = (col(&s, 2)?.f_sub(&col(&s, 0)?)?.f_mul_scalar(0.5)?, col(&s, 3)?.f_sub(&col(&s, 1)?)?.f_mul_scalar(0.5)?);
        let edge = |start: Tensor, half: &Tensor, factor: f64, ceil: bool, size: i64| -> ModelResult<Tensor> {
            let v = start.f_add(&half.f_mul_scalar(factor)?)?.f_sub_scalar(0.5)?;
            let v = if ceil { v.f_ceil()? } else { v.f_floor()? };
            Ok(v.f_to_kind(Kind::Int64)?.f_clamp(0, size - 1)?)
        };
        let left = edge(col(&s, 0)?, &half_w, 1.0 - sigma, true, w)?;
        let right = edge(col(&s, 0)?, &half_w, 1.0 + sigma, false, w)?;
        let top = edge(col(&s, 1)?, &half_h, 1.0 - sigma, true, h)?;
        let down = edge(col(&s, 1)?, &half_h, 1.0 + sigma, false, h)?;
        let ys = Tensor::f_arange(h, (Kind::Int64, device))?.f_view([1, h, 1])?;
        let xs = Tensor::f_arange(w, (Kind::Int64, device))?.f_view([1, 1, w])?;
        let g3 = |t: &Tensor| t.f_view([-1, 1, 1]);
        let cover = ys
            .f_ge_tensor(&g3(&top)?)?
            .f_logical_and(&ys.f_le_tensor(&g3(&down)?)?)?
            .f_logical_and(&xs.f_ge_tensor(&g3(&left)?)?)?
            .f_logical_and(&xs.f_le_tensor(&g3(&right)?)?)?
            .f_logical_and(&g3(&hit)?)?; // (G, H, W)
        let ranked = g3(&rank)?.f_expand_as(&cover)?.f_masked_fill(&cover.f_logical_not()?, -1)?;
        let best = ranked.f_amax([0], false)?.f_view([q])?; // the winning rank, -1 for none
        // Without a covered location every row below falls back to background.
        let covered = best.f_ge(0)?;
        let winner = order.f_index_select(0, &best.f_clamp_min(0)?)?;
        let labels = gt_labels.f_index_select(0, &winner)?.f_where_self(&covered, &Tensor::f_full([1], self.num_classes, (Kind::Int64, device))?)?;
        let boxes = gt.f_index_select(0, &winner)?;
        let (px, py) = (col(points, 0)?, col(points, 1)?);
        let base = self.base_edges[level];
        let sides = Tensor::f_stack(
            &[px.f_sub(&col(&boxes, 0)?)?, py.f_sub(&col(&boxes, 1)?)?, col(&boxes, 2)?.f_sub(&px)?, col(&boxes, 3)?.f_sub(&py)?],
            1,
        )?
        .f_div_scalar(base)?;
        let sides = sides.f_where_self(&covered.f_unsqueeze(1)?, &sides.f_ones_like()?)?;
        Ok((labels, sides.f_clamp(1.0 / 16.0, 16.0)?.f_log()?))
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let points = self.points.grid_priors(&sizes, out.cls_scores[0].device(), false)?;
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let (img_h, img_w) = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
                let (mut all_boxes, mut all_scores, mut all_labels) = (vec![], vec![], vec![]);
                for (level, level_points) in points.iter().enumerate() {
                    let img = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
                        Ok(maps[level].f_get(i as i64)?.f_detach()?.f_permute([1, 2, 0])?.f_reshape([-1, c])?)
                    };
                    let scores = img(&out.cls_scores, self.num_classes)?.f_sigmoid()?;
                    let (scores, labels, keep) = filter_scores_and_topk(&scores, cfg.score_thr, cfg.nms_pre)?;
                    let d = img(&out.bbox_preds, 4)?.f_index_select(0, &keep)?.f_exp()?.f_mul_scalar(self.base_edges[level])?;
                    let p = level_points.f_index_select(0, &keep)?;
                    let (px, py) = (p.f_select(1, 0)?, p.f_select(1, 1)?);
                    let side = |i: i64| d.f_select(1, i);
                    let (xmax, ymax) = ((img_w - 1) as f64, (img_h - 1) as f64);
                    let boxes = Tensor::f_stack(
                        &[
                            px.f_sub(&side(0)?)?.f_clamp(0.0, xmax)?,
                            py.f_sub(&side(1)?)?.f_clamp(0.0, ymax)?,
                            px.f_add(&side(2)?)?.f_clamp(0.0, xmax)?,
                            py.f_add(&side(3)?)?.f_clamp(0.0, ymax)?,
                        ],
                        -1,
                    )?;
                    all_boxes.push(boxes);
                    all_scores.push(scores);
                    all_labels.push(labels);
                }
                let (boxes, scores, labels) = (Tensor::f_cat(&all_boxes, 0)?, Tensor::f_cat(&all_scores, 0)?, Tensor::f_cat(&all_labels, 0)?);
                bbox_post_process(boxes, scores, labels, None, sample, cfg, rescale, NAME)
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "fovea_tests.rs"]
mod tests;
