//! `CenterNetUpdateHead` (the one-stage CenterNet of Zhou et al.,
//! "Probabilistic two-stage detection", <https://arxiv.org/abs/2103.07461>)
//! as `mmdet/models/dense_heads/centernet_update_head.py` on
//! `AnchorFreeHead`: FCOS's towers, `conv_cls` and `conv_reg` (side
//! distances in strides through a learned per-level scale, clamped at 0,
//! times the stride at test time).
//!
//! Training: the scores learn, per class, a Gaussian heatmap around each
//! object's centre (`exp(-d^2 / r^2)`, the radius from the object's area,
//! the peak at the centre's cell), with `GaussianFocalLoss`; the positives
//! are, per object, the 3x3 cells around its centre on every level whose
//! predicted box has a GIoU loss below both `more_pos_thresh` and the
//! `more_pos_topk`-th smallest (the centre cell of a level in range always
//! is one). Boxes train on the cells within one stride of the centre, inside
//! the box and in the level's range, each on the object nearest by that
//! weighted distance. Testing: `BaseDenseHead`'s, as FCOS without
//! centerness.
//!
//! Shape shorthand: `N` images, `K` classes, `L` levels, `Q` locations of
//! all levels and images, `P` locations of one image, `G` its ground truths.

use detc::registry::models::dense_heads::CenterNetUpdateHeadConfig;
use detc::registry::models::train_test::DenseTestConfig;
use indexmap::IndexMap;
use tch::nn;
use tch::{Kind, Tensor};

use super::anchor_head::featmap_sizes;
use super::base_dense_head::{distance_coder_clip_border, DenseTest, PointPrediction, TowerSpec, Towers};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{make_conv, ConvGeom, Conv2d, ModelError, ModelResult};
use crate::models::losses::{GaussianFocalLoss, Loss, LossArgs, Reduction};
use crate::models::ops::{bbox2distance, distance2bbox, upload, upload_as};
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::MlvlPointGenerator;

const NAME: &str = "CenterNetUpdateHead";
/// MMDetection's `INF` here.
const INF: f64 = 1e9;
/// The scores are clamped to `[clamp, 1 - clamp]` before the loss.
const SIGMOID_CLAMP: f64 = 1e-4;

#[derive(Debug)]
pub struct CenterNetUpdateHead {
    towers: Towers,
    conv_cls: Conv2d,
    conv_reg: Conv2d,
    points: MlvlPointGenerator,
    strides: Vec<i64>,
    regress_ranges: Vec<[f64; 2]>,
    hm_min_radius: f64,
    /// `((1 - overlap) / (1 + overlap))`.
    delta: f64,
    more_pos_thresh: f64,
    more_pos_topk: i64,
    soft_weight_on_reg: bool,
    loss_cls: GaussianFocalLoss,
    loss_bbox: Loss,
    loss_bbox_weight: f64,
    num_classes: i64,
    clip_border: bool,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W) and side
/// distances (N, 4, H, W), in strides when training, in pixels at test time.
pub struct CenterNetOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
}

impl CenterNetUpdateHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}`, `reg_convs.{i}`,
    /// `conv_cls`, `conv_reg`, `scales.{i}.scale`. `test_cfg` is the detector's.
    pub fn new(cfg: &CenterNetUpdateHeadConfig, test_cfg: Option<&DenseTestConfig>, p: &nn::Path) -> ModelResult<Self> {
        let levels = cfg.strides.len();
        if cfg.regress_ranges.len() != levels {
            return Err(ModelError::new(NAME, format!("{} regress_ranges for {levels} strides", cfg.regress_ranges.len())));
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
                levels,
                dcn_on_last_conv: cfg.dcn_on_last_conv,
                cls_tower: true,
            },
        )?;
        let (last, conv_init, cls_init) = (built.out_channels, built.conv_init, built.cls_init);
        let k3 = ConvGeom::k(3).padding(1);
        let strides: Vec<i64> = cfg.strides.iter().map(|&s| s as i64).collect();
        Ok(CenterNetUpdateHead {
            towers: built.towers,
            conv_cls: make_conv(&(p / "conv_cls"), last, cfg.num_classes as i64, k3, cls_init)?,
            conv_reg: make_conv(&(p / "conv_reg"), last, 4, k3, conv_init)?,
            points: MlvlPointGenerator { strides: strides.iter().map(|&s| (s, s)).collect(), offset: 0.5 },
            strides,
            regress_ranges: cfg.regress_ranges.clone(),
            hm_min_radius: cfg.hm_min_radius as f64,
            delta: (1.0 - cfg.hm_min_overlap) / (1.0 + cfg.hm_min_overlap),
            more_pos_thresh: cfg.more_pos_thresh,
            more_pos_topk: cfg.more_pos_topk as i64,
            soft_weight_on_reg: cfg.soft_weight_on_reg,
            loss_cls: GaussianFocalLoss::from_cfg(&cfg.loss_cls, NAME)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            loss_bbox_weight: cfg.loss_bbox.0.get("loss_weight").and_then(|v| v.as_f64()).unwrap_or(1.0),
            num_classes: cfg.num_classes as i64,
            clip_border: distance_coder_clip_border(&cfg.bbox_coder, NAME)?,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` in train (`train`) or eval mode.
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<CenterNetOutputs> {
        self.towers.check_levels(x, NAME)?;
        let mut out = CenterNetOutputs { cls_scores: vec![], bbox_preds: vec![] };
        for ((level, scale), &stride) in x.iter().zip(&self.towers.scales).zip(&self.strides) {
            let (c, r) = self.towers.forward_t(level, train)?;
            out.cls_scores.push(self.conv_cls.forward(&c)?);
            let d = self.conv_reg.forward(&r)?.f_mul(scale)?.f_to_kind(Kind::Float)?.f_clamp_min(0.0)?;
            out.bbox_preds.push(if train { d } else { d.f_mul_scalar(stride as f64)? });
        }
        Ok(out)
    }

    /// `loss`: `loss_cls` and `loss_bbox`. `reduce_mean` averages the
    /// normalisers over the job's processes.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples, reduce_mean)
    }

    /// `loss_by_feat` on the head's training outputs.
    pub fn loss_by_feat(&self, out: &CenterNetOutputs, samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let sizes = featmap_sizes(&out.cls_scores);
        let device = out.cls_scores[0].device();
        let points = self.points.grid_priors(&sizes, device, false)?;
        let n = samples.len() as i64;
        let flat = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
            let parts = maps.iter().map(|m| Ok(m.f_permute([0, 2, 3, 1])?.f_reshape([-1, c])?)).collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let cls = flat(&out.cls_scores, self.num_classes)?;
        let reg = flat(&out.bbox_preds, 4)?;
        let flat_points = Tensor::f_cat(&points.iter().map(|p| p.f_repeat([n, 1])).collect::<Result<Vec<_>, _>>()?, 0)?;
        let (cls_targets, bbox_targets) = self.get_targets(&points, samples)?;
        let positives = tch::no_grad(|| self.extra_positives(&flat_points, &reg, &sizes, samples))?;
        let num_pos_cls = reduce_mean(positives.as_ref().map_or(0, |(inds, _)| inds.size()[0]) as f64)?.max(1.0);
        let probs = cls.f_sigmoid()?.f_clamp(SIGMOID_CLAMP, 1.0 - SIGMOID_CLAMP)?;
        let loss_cls = match &positives {
            Some((inds, labels)) => self.loss_cls.forward_with_pos(&probs, &cls_targets, inds, labels, Some(num_pos_cls))?,
            None => self.loss_cls.forward(&probs, &cls_targets, Some(num_pos_cls))?,
        };
        let pos = bbox_targets.f_amax([1], false)?.f_ge(0.0)?.f_nonzero()?.f_view([-1])?;
        let weight = if self.soft_weight_on_reg {
            cls_targets.f_amax([1], false)?.f_index_select(0, &pos)?
        } else {
            Tensor::f_ones([pos.size()[0]], (Kind::Float, device))?
        };
        let num_pos_bbox = reduce_mean(weight.f_sum(Kind::Float)?.double_value(&[]))?.max(1.0);
        let loss_bbox = if pos.numel() > 0 {
            let pos_points = flat_points.f_index_select(0, &pos)?;
            let decoded = distance2bbox(&pos_points, &reg.f_index_select(0, &pos)?, None)?;
            let targets = distance2bbox(&pos_points, &bbox_targets.f_index_select(0, &pos)?, None)?;
            self.loss_bbox.forward(&decoded, &targets, LossArgs::default().weight(&weight).avg_factor(num_pos_bbox))?
        } else {
            reg.f_sum(Kind::Float)?.f_mul_scalar(0.0)?
        };
        Ok(IndexMap::from([("loss_cls".to_string(), loss_cls), ("loss_bbox".to_string(), loss_bbox)]))
    }

    /// `get_targets`: level by level, image by image within a level, the
    /// (Q, K) heatmaps and the (Q, 4) side distances in strides (-INF where
    /// no box trains).
    fn get_targets(&self, points: &[Tensor], samples: &[DetDataSample]) -> ModelResult<(Tensor, Tensor)> {
        let counts: Vec<i64> = points.iter().map(|p| p.size()[0]).collect();
        let all_points = Tensor::f_cat(points, 0)?;
        let device = all_points.device();
        let per_point = |values: Vec<Vec<f64>>| -> ModelResult<Tensor> {
            let parts = values
                .iter()
                .zip(&counts)
                .map(|(v, &c)| Ok(upload_as(v, Kind::Float, device)?.f_view([1, -1])?.f_expand([c, v.len() as i64], false)?))
                .collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 0)?)
        };
        let ranges = per_point(self.regress_ranges.iter().map(|r| r.to_vec()).collect())?;
        let strides = per_point(self.strides.iter().map(|&s| vec![s as f64]).collect())?.f_view([-1])?;
        let per_image = samples
            .iter()
            .map(|s| self.targets_single(s, &all_points, &ranges, &strides))
            .collect::<ModelResult<Vec<_>>>()?;
        let (mut heat, mut boxes) = (vec![], vec![]);
        let mut start = 0;
        for &c in &counts {
            for (h, b) in &per_image {
                heat.push(h.f_narrow(0, start, c)?);
                boxes.push(b.f_narrow(0, start, c)?);
            }
            start += c;
        }
        Ok((Tensor::f_cat(&heat, 0)?, Tensor::f_cat(&boxes, 0)?))
    }

    /// `_get_targets_single` of one image on all its (P, 2) points with
    /// their (P, 2) regress ranges and (P,) strides.
    fn targets_single(&self, sample: &DetDataSample, points: &Tensor, ranges: &Tensor, strides: &Tensor) -> ModelResult<(Tensor, Tensor)> {
        let p = points.size()[0];
        let device = points.device();
        let gt = sample.gt_instances.bboxes.f_view([-1, 4])?.f_to_kind(Kind::Float)?;
        let g = gt.size()[0];
        if g == 0 {
            // MMDetection fills an image without objects with the integer
            // `num_classes`, which the batch's float heatmaps turn into that value.
            return Ok((
                Tensor::f_full([p, self.num_classes], self.num_classes as f64, (Kind::Float, device))?,
                Tensor::f_full([p, 4], -1.0, (Kind::Float, device))?,
            ));
        }
        let pts = points.f_unsqueeze(1)?.f_expand([p, g, 2], false)?;
        let boxes = gt.f_unsqueeze(0)?.f_expand([p, g, 4], false)?;
        let stride = strides.f_view([p, 1, 1])?.f_expand([p, g, 2], false)?;
        let sides = bbox2distance(&pts.f_reshape([-1, 2])?, &boxes.f_reshape([-1, 4])?, None, 0.1)?.f_view([p, g, 4])?;
        let inside_box = sides.f_amin([2], false)?.f_gt(0.0)?;
        let centres = boxes.f_narrow(2, 0, 2)?.f_add(&boxes.f_narrow(2, 2, 2)?)?.f_div_scalar(2.0)?;
        // The centre's cell centre (`.int()`: truncation).
        let cell = centres.f_div(&stride)?.f_to_kind(Kind::Int)?.f_to_kind(Kind::Float)?.f_mul(&stride)?.f_add(&stride.f_div_scalar(2.0)?)?;
        let off = pts.f_sub(&cell)?;
        let s0 = stride.f_select(2, 0)?;
        let near = off.f_select(2, 0)?.f_abs()?.f_le_tensor(&s0)?.f_logical_and(&off.f_select(2, 1)?.f_abs()?.f_le_tensor(&s0)?)?;
        let wh = sides.f_narrow(2, 0, 2)?.f_add(&sides.f_narrow(2, 2, 2)?)?;
        let crit = wh.f_square()?.f_sum_dim_intlist(2, false, Kind::Float)?.f_sqrt()?.f_div_scalar(2.0)?;
        let in_range = crit.f_ge_tensor(&ranges.f_narrow(1, 0, 1)?)?.f_logical_and(&crit.f_le_tensor(&ranges.f_narrow(1, 1, 1)?)?)?;
        let trains_box = inside_box.f_logical_and(&near)?.f_logical_and(&in_range)?;
        let peak = off.f_square()?.f_sum_dim_intlist(2, false, Kind::Float)?.f_eq(0.0)?;
        let dist = pts.f_sub(&centres)?.f_square()?.f_sum_dim_intlist(2, false, Kind::Float)?.f_masked_fill(&peak, 0.0)?;
        let areas = boxes.f_select(2, 2)?.f_sub(&boxes.f_select(2, 0)?)?.f_mul(&boxes.f_select(2, 3)?.f_sub(&boxes.f_select(2, 1)?)?)?;
        let radius = areas.f_mul_scalar(self.delta * self.delta * 2.0)?.f_clamp_min(self.hm_min_radius * self.hm_min_radius)?;
        let dist = dist.f_div(&radius)?; // (P, G)
        let (min_dist, min_inds) = dist.f_masked_fill(&trains_box.f_logical_not()?, INF)?.f_min_dim(1, false)?;
        let picked = sides.f_gather(1, &min_inds.f_view([p, 1, 1])?.f_expand([p, 1, 4], false)?, false)?.f_view([p, 4])?;
        let picked = picked.f_masked_fill(&min_dist.f_eq(INF)?.f_unsqueeze(1)?, -INF)?;
        let bbox_target = picked.f_div(&strides.f_unsqueeze(1)?)?;
        // Per class, the nearest object of that class's Gaussian (0 below 1e-4).
        let labels = sample.gt_instances.labels.f_to_kind(Kind::Int64)?;
        let of_class = labels.f_one_hot(self.num_classes)?.f_to_kind(Kind::Bool)?; // (G, K)
        let nearest = dist.f_unsqueeze(2)?.f_masked_fill(&of_class.f_logical_not()?.f_unsqueeze(0)?, f64::INFINITY)?.f_amin([1], false)?;
        let heat = nearest.f_neg()?.f_exp()?;
        let heat = heat.f_masked_fill(&heat.f_lt(1e-4)?, 0.0)?;
        Ok((heat, bbox_target))
    }

    /// `add_cls_pos_inds`: per object, the cells of the 3x3 region around its
    /// centre on every level whose predicted box fits it best; `None` without objects.
    fn extra_positives(&self, flat_points: &Tensor, reg: &Tensor, sizes: &[(i64, i64)], samples: &[DetDataSample]) -> ModelResult<Option<(Tensor, Tensor)>> {
        let Some(region) = self.centre_regions(sizes, samples, flat_points.device())? else { return Ok(None) };
        let (g, l) = (region.labels.size()[0], self.strides.len() as i64);
        let inds = region.inds.f_masked_fill(&region.masks.f_logical_not()?, 0)?;
        let flat_inds = inds.f_view([-1])?;
        let pts = flat_points.f_index_select(0, &flat_inds)?;
        let preds = reg.f_index_select(0, &flat_inds)?;
        let targets = region.targets.f_view([-1, 4])?.f_clamp_min(0.0)?;
        let decoded = distance2bbox(&pts, &preds, None)?;
        let decoded_targets = distance2bbox(&pts, &targets, None)?;
        let loss = self
            .loss_bbox
            .forward(&decoded, &decoded_targets, LossArgs::default().reduction(Reduction::None))?
            .f_view([g, l, 9])?
            .f_div_scalar(self.loss_bbox_weight)?
            .f_masked_fill(&region.masks.f_logical_not()?, INF)?;
        // A level in range always keeps its centre cell.
        let centre = Tensor::f_arange(9, (Kind::Int64, loss.device()))?.f_eq(4)?.f_view([1, 1, 9])?;
        let loss = loss.f_masked_fill(&region.level_masks.f_unsqueeze(2)?.f_logical_and(&centre)?, 0.0)?.f_view([g, -1])?;
        let (thr, _) = loss.f_kthvalue(self.more_pos_topk, 1, false)?;
        let thr = thr.f_clamp_max(self.more_pos_thresh)?;
        let new_pos = loss.f_lt_tensor(&thr.f_view([g, 1])?)?;
        let pos_inds = inds.f_view([g, -1])?.f_masked_select(&new_pos)?;
        let pos_labels = region.labels.f_view([g, 1])?.f_expand([g, l * 9], false)?.f_masked_select(&new_pos)?;
        Ok(Some((pos_inds, pos_labels)))
    }

    /// `_get_center3x3_region_index_targets`: for every object of the batch
    /// (images in order) and level, the flat indices (G, L, 9) of the 3x3
    /// cells around its centre's cell, which of them lie on the map and
    /// inside the box, their side distances in strides (G, L, 9, 4), and
    /// whether the level's range holds the object (G, L).
    fn centre_regions(&self, sizes: &[(i64, i64)], samples: &[DetDataSample], device: tch::Device) -> ModelResult<Option<CentreRegions>> {
        let l = self.strides.len() as i64;
        let n = samples.len() as i64;
        let dx = upload(&[-1i64, 0, 1, -1, 0, 1, -1, 0, 1], device)?.f_view([1, 1, 9])?;
        let dy = upload(&[-1i64, -1, -1, 0, 0, 0, 1, 1, 1], device)?.f_view([1, 1, 9])?;
        let hs = upload(&sizes.iter().map(|s| s.0).collect::<Vec<_>>(), device)?.f_view([1, l, 1])?;
        let ws = upload(&sizes.iter().map(|s| s.1).collect::<Vec<_>>(), device)?.f_view([1, l, 1])?;
        let areas: Vec<i64> = sizes.iter().map(|&(h, w)| h * w).collect();
        let starts: Vec<i64> = areas.iter().scan(0, |acc, a| {
            let s = *acc;
            *acc += n * a;
            Some(s)
        }).collect();
        let starts = upload(&starts, device)?.f_view([1, l, 1])?;
        let area = upload(&areas, device)?.f_view([1, l, 1])?;
        let strides_l = upload(&self.strides, device)?;
        let (mut labels, mut level_masks, mut inds, mut masks, mut targets) = (vec![], vec![], vec![], vec![], vec![]);
        for (i, sample) in samples.iter().enumerate() {
            let gt = sample.gt_instances.bboxes.f_view([-1, 4])?.f_to_kind(Kind::Float)?;
            let g = gt.size()[0];
            if g == 0 {
                continue;
            }
            labels.push(sample.gt_instances.labels.f_to_kind(Kind::Int64)?);
            let boxes = gt.f_unsqueeze(1)?.f_expand([g, l, 4], false)?;
            let stride = strides_l.f_view([1, l, 1])?.f_expand([g, l, 2], false)?;
            let centres = boxes.f_narrow(2, 0, 2)?.f_add(&boxes.f_narrow(2, 2, 2)?)?.f_div_scalar(2.0)?;
            let cells = centres.f_div(&stride)?.f_to_kind(Kind::Int64)?;
            let cell_centres = cells.f_mul(&stride)?.f_add(&stride.f_div_scalar_mode(2, "floor")?)?;
            let sides = bbox2distance(&cell_centres.f_to_kind(Kind::Float)?.f_reshape([-1, 2])?, &boxes.f_reshape([-1, 4])?, None, 0.1)?.f_view([g, l, 4])?;
            let wh = sides.f_narrow(2, 0, 2)?.f_add(&sides.f_narrow(2, 2, 2)?)?;
            let crit = wh.f_square()?.f_sum_dim_intlist(2, false, Kind::Float)?.f_sqrt()?.f_div_scalar(2.0)?;
            let lo = upload_as(&self.regress_ranges.iter().map(|r| r[0]).collect::<Vec<_>>(), Kind::Float, device)?;
            let hi = upload_as(&self.regress_ranges.iter().map(|r| r[1]).collect::<Vec<_>>(), Kind::Float, device)?;
            // MMDetection compares with the ranges as integers.
            let in_range = crit.f_ge_tensor(&lo.f_trunc()?)?.f_logical_and(&crit.f_le_tensor(&hi.f_trunc()?)?)?;
            let level_mask = sides.f_amin([2], false)?.f_ge(0.0)?.f_logical_and(&in_range)?;
            let (cx, cy) = (cells.f_narrow(2, 0, 1)?, cells.f_narrow(2, 1, 1)?);
            let (x, y) = (cx.f_add(&dx)?, cy.f_add(&dy)?);
            let idx = starts.f_add(&area.f_mul_scalar(i as i64)?)?.f_add(&y.f_mul(&ws)?)?.f_add(&x)?;
            let on_map = y.f_lt_tensor(&hs)?.f_logical_and(&y.f_ge(0)?)?.f_logical_and(&x.f_lt_tensor(&ws)?)?.f_logical_and(&x.f_ge(0)?)?;
            let scaled = sides.f_div(&stride.f_repeat([1, 1, 2])?.f_to_kind(Kind::Float)?)?;
            let (dxf, dyf) = (dx.f_to_kind(Kind::Float)?, dy.f_to_kind(Kind::Float)?);
            let side = |j: i64| scaled.f_select(2, j)?.f_unsqueeze(2);
            let region_targets = Tensor::f_stack(&[side(0)?.f_add(&dxf)?, side(1)?.f_add(&dyf)?, side(2)?.f_sub(&dxf)?, side(3)?.f_sub(&dyf)?], 3)?;
            let mask = on_map.f_logical_and(&region_targets.f_amin([3], false)?.f_ge(0.0)?)?;
            level_masks.push(level_mask);
            inds.push(idx.f_expand([g, l, 9], false)?.f_to_kind(Kind::Int64)?);
            masks.push(mask);
            targets.push(region_targets);
        }
        if labels.is_empty() {
            return Ok(None);
        }
        Ok(Some(CentreRegions {
            labels: Tensor::f_cat(&labels, 0)?,
            level_masks: Tensor::f_cat(&level_masks, 0)?,
            inds: Tensor::f_cat(&inds, 0)?,
            masks: Tensor::f_cat(&masks, 0)?,
            targets: Tensor::f_cat(&targets, 0)?,
        }))
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
            .map(|i| prediction.predict_single(i, &out.cls_scores, &out.bbox_preds, None, &samples[i], cfg, rescale))
            .collect()
    }
}

/// What `_get_center3x3_region_index_targets` gives for the batch's objects.
struct CentreRegions {
    /// (G,) the objects' classes.
    labels: Tensor,
    /// (G, L) the level's range holds the object (and its centre cell is in the box).
    level_masks: Tensor,
    /// (G, L, 9) flat indices of the 3x3 cells.
    inds: Tensor,
    /// (G, L, 9) the cell is on the map and inside the box.
    masks: Tensor,
    /// (G, L, 9, 4) the cells' side distances in strides.
    targets: Tensor,
}

#[cfg(test)]
#[path = "centernet_tests.rs"]
mod tests;
