//! `GFLHead` (Li et al., "Generalized Focal Loss: Learning Qualified and
//! Distributed Bounding Boxes for Dense Object Detection",
//! <https://arxiv.org/abs/2006.04388>) as `mmdet/models/dense_heads/gfl_head.py`:
//! ATSS's branches, anchors and assignment (`atss_head.rs`), then per
//! location `K` sigmoid scores (`gfl_cls`) that estimate the IoU of the box
//! at the class, and per side a distribution over the distances
//! `0..=reg_max` in strides (`gfl_reg` times a learned per-level
//! `scales.{i}.scale`), whose expectation (`Integral`) is the distance from
//! the anchor's centre.
//!
//! Training: `QualityFocalLoss` against the IoU of each positive's decoded
//! box with its ground truth (0 elsewhere), the box loss (GIoU) and
//! `DistributionFocalLoss` on the positives, both weighted by the positive's
//! highest class score and normalised by those weights' sum. Testing:
//! `BaseDenseHead`'s, without score factors.
//!
//! Shape shorthand: `N` images, `K` classes, `B` bins (`reg_max + 1`),
//! `H, W` a level's size, `Np` positives of a level.

use detc::registry::models::dense_heads::GFLHeadConfig;
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig};
use indexmap::IndexMap;
use tch::nn;
use tch::{Kind, Tensor};

use super::anchor_head::{featmap_sizes, image_hw};
use super::atss_head::AtssTrain;
use super::base_dense_head::{bbox_post_process, distance_coder_clip_border, filter_scores_and_topk, DenseTest, TowerSpec, Towers};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{buffer, make_conv, Conv2d, ConvGeom, ModelError, ModelResult};
use crate::models::losses::{cfg_type, Loss, LossArgs};
use crate::models::ops::{bbox2distance, bbox_overlaps, distance2bbox, OverlapMode};
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::AnchorGenerator;

const NAME: &str = "GFLHead";

#[derive(Debug)]
pub struct GFLHead {
    towers: Towers,
    gfl_cls: Conv2d,
    gfl_reg: Conv2d,
    prior_generator: AnchorGenerator,
    clip_border: bool,
    reg_max: i64,
    /// `integral.project`: the bins' distances `0..=reg_max` (a buffer).
    project: Tensor,
    loss_cls: Loss,
    loss_bbox: Loss,
    loss_dfl: Loss,
    num_classes: i64,
    train: Option<AtssTrain>,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W) and side
/// distributions (N, 4*B, H, W).
pub struct GflOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
}

/// One level's losses and the sum of its positives' weights.
struct LevelLoss {
    cls: Tensor,
    bbox: Tensor,
    dfl: Tensor,
    weight_sum: Tensor,
}

/// The `Integral`: (M, 4*B) side logits -> (M, 4) expected distances, the
/// softmax over each side's `B` bins times `project` (B,).
fn integral(x: &Tensor, project: &Tensor) -> ModelResult<Tensor> {
    let bins = project.size()[0];
    let p = x.f_reshape([-1, bins])?.f_softmax(1, x.kind())?;
    Ok(p.f_matmul(&project.f_to_kind(x.kind())?)?.f_reshape([-1, 4])?)
}

/// The (M, 2) centres of (M, 4) anchors.
fn anchor_center(anchors: &Tensor) -> ModelResult<Tensor> {
    let a = |i: i64| anchors.f_select(1, i);
    Ok(Tensor::f_stack(&[a(0)?.f_add(&a(2)?)?.f_div_scalar(2.0)?, a(1)?.f_add(&a(3)?)?.f_div_scalar(2.0)?], -1)?)
}

impl GFLHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}` and `reg_convs.{i}`
    /// (`conv`, `gn`), `gfl_cls`, `gfl_reg`, `scales.{i}.scale`, `integral.project`.
    /// `train_cfg` / `test_cfg` are the detector's.
    pub fn new(
        cfg: &GFLHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        test_cfg: Option<&DenseTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        if cfg_type(&cfg.loss_cls.0, "GFLHead.loss_cls")? != "QualityFocalLoss" {
            return Err(ModelError::new(NAME, "loss_cls must be QualityFocalLoss (its targets are IoU scores)"));
        }
        let prior_generator = AnchorGenerator::from_cfg(&cfg.anchor_generator)?;
        if prior_generator.num_base_priors().iter().any(|&n| n != 1) {
            return Err(ModelError::new(NAME, "the anchor generator must give one anchor per location (one ratio, one scale)"));
        }
        if prior_generator.strides.iter().any(|&(w, h)| w != h) {
            return Err(ModelError::new(NAME, "anchor strides must be square (one number per level)"));
        }
        let clip_border = distance_coder_clip_border(&cfg.bbox_coder, NAME)?;
        let built = Towers::build(
            p,
            &TowerSpec {
                owner: NAME,
                cls_name: "gfl_cls",
                stacked_convs: cfg.stacked_convs,
                in_channels: cfg.in_channels,
                feat_channels: cfg.feat_channels,
                conv_cfg: cfg.conv_cfg.as_ref(),
                norm_cfg: cfg.norm_cfg.as_ref(),
                init_cfg: cfg.init_cfg.as_ref(),
                conv_bias: None,
                levels: prior_generator.num_levels(),
                dcn_on_last_conv: false,
                cls_tower: true,
            },
        )?;
        let (last, conv_init, cls_init) = (built.out_channels, built.conv_init, built.cls_init);
        let k = cfg.num_classes as i64;
        let reg_max = cfg.reg_max as i64;
        let k3 = ConvGeom::k(3).padding(1);
        Ok(GFLHead {
            towers: built.towers,
            gfl_cls: make_conv(&(p / "gfl_cls"), last, k, k3, cls_init)?,
            gfl_reg: make_conv(&(p / "gfl_reg"), last, 4 * (reg_max + 1), k3, conv_init)?,
            prior_generator,
            clip_border,
            reg_max,
            project: buffer(&(p / "integral"), "project", Tensor::f_linspace(0.0, reg_max as f64, reg_max + 1, (Kind::Float, p.device()))?),
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            loss_dfl: Loss::from_cfg(&cfg.loss_dfl)?,
            num_classes: k,
            train: train_cfg.or(cfg.train_cfg.as_ref()).map(|t| AtssTrain::new(t, NAME)).transpose()?,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` in train (`train`) or eval mode.
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<GflOutputs> {
        self.towers.check_levels(x, NAME)?;
        let mut out = GflOutputs { cls_scores: vec![], bbox_preds: vec![] };
        for (level, scale) in x.iter().zip(&self.towers.scales) {
            let (c, r) = self.towers.forward_t(level, train)?;
            out.cls_scores.push(self.gfl_cls.forward(&c)?);
            out.bbox_preds.push(self.gfl_reg.forward(&r)?.f_mul(scale)?.f_to_kind(Kind::Float)?);
        }
        Ok(out)
    }

    /// `loss`: `loss_cls`, `loss_bbox` and `loss_dfl`, each summed over
    /// levels. `reduce_mean` averages the normalising counts over the job's
    /// processes, as MMDetection's `reduce_mean`.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
        let t = train.targets(&self.prior_generator, &featmap_sizes(&out.cls_scores), out.cls_scores[0].device(), samples, self.num_classes, reduce_mean)?;
        let mut levels = Vec::with_capacity(t.mlvl_anchors.len());
        let mut start = 0;
        for (level, anchors) in t.mlvl_anchors.iter().enumerate() {
            let n = anchors.size()[0];
            let cut = |x: &Tensor| x.f_narrow(1, start, n);
            let stride = self.prior_generator.strides[level].0 as f64;
            levels.push(self.loss_single(
                anchors,
                &out.cls_scores[level],
                &out.bbox_preds[level],
                &cut(&t.labels)?,
                &cut(&t.label_weights)?,
                &cut(&t.bbox_targets)?,
                stride,
                t.avg_factor,
            )?);
            start += n;
        }
        let total = |f: fn(&LevelLoss) -> &Tensor| -> ModelResult<Tensor> {
            let mut it = levels.iter().map(f);
            let first = it.next().ok_or_else(|| ModelError::new(NAME, "no feature level"))?.shallow_clone();
            it.try_fold(first, |acc, x| acc.f_add(x)).map_err(Into::into)
        };
        let weight_avg = reduce_mean(total(|l| &l.weight_sum)?.double_value(&[]))?.max(1.0);
        Ok(IndexMap::from([
            ("loss_cls".to_string(), total(|l| &l.cls)?),
            ("loss_bbox".to_string(), total(|l| &l.bbox)?.f_div_scalar(weight_avg)?),
            ("loss_dfl".to_string(), total(|l| &l.dfl)?.f_div_scalar(weight_avg)?),
        ]))
    }

    /// `loss_by_feat_single`: anchors (H*W, 4), cls_score (N, K, H, W),
    /// bbox_pred (N, 4*B, H, W), labels and weights (N, H*W), box targets
    /// (N, H*W, 4); distances in units of the level's `stride`.
    #[allow(clippy::too_many_arguments)]
    fn loss_single(
        &self,
        anchors: &Tensor,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        labels: &Tensor,
        label_weights: &Tensor,
        bbox_targets: &Tensor,
        stride: f64,
        avg_factor: f64,
    ) -> ModelResult<LevelLoss> {
        let n = labels.size()[0];
        let bins = self.reg_max + 1;
        let anchors = anchors.f_unsqueeze(0)?.f_expand([n, -1, 4], false)?.f_reshape([-1, 4])?;
        let cls = cls_score.f_permute([0, 2, 3, 1])?.f_reshape([-1, self.num_classes])?;
        let reg = bbox_pred.f_permute([0, 2, 3, 1])?.f_reshape([-1, 4 * bins])?;
        let labels = labels.f_reshape([-1])?;
        let pos = labels.f_ge(0)?.f_logical_and(&labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?;
        let mut score = Tensor::f_zeros([labels.size()[0]], (Kind::Float, cls.device()))?;
        let (bbox, dfl, weight_sum) = if pos.numel() > 0 {
            let pos_targets = bbox_targets.f_reshape([-1, 4])?.f_index_select(0, &pos)?.f_div_scalar(stride)?;
            let pos_reg = reg.f_index_select(0, &pos)?;
            let centers = anchor_center(&anchors.f_index_select(0, &pos)?)?.f_div_scalar(stride)?;
            let weights = cls.f_detach()?.f_sigmoid()?.f_amax([1], false)?.f_index_select(0, &pos)?;
            let decoded = distance2bbox(&centers, &integral(&pos_reg, &self.project)?, None)?;
            let iou = bbox_overlaps(&decoded.f_detach()?, &pos_targets, OverlapMode::Iou, true)?;
            score = score.f_index_put(&[Some(pos.shallow_clone())], &iou.f_to_kind(Kind::Float)?, false)?;
            let target_corners = bbox2distance(&centers, &pos_targets, Some(self.reg_max as f64), 0.1)?.f_reshape([-1])?;
            let bbox = self.loss_bbox.forward(&decoded, &pos_targets, LossArgs::default().weight(&weights).avg_factor(1.0))?;
            let corner_weights = weights.f_unsqueeze(1)?.f_expand([-1, 4], false)?.f_reshape([-1])?;
            let dfl = self.loss_dfl.forward(
                &pos_reg.f_reshape([-1, bins])?,
                &target_corners,
                LossArgs::default().weight(&corner_weights).avg_factor(4.0),
            )?;
            (bbox, dfl, weights.f_sum(Kind::Float)?)
        } else {
            let zero = reg.f_sum(reg.kind())?.f_mul_scalar(0.0)?;
            (zero.shallow_clone(), zero, Tensor::f_zeros([], (Kind::Float, reg.device()))?)
        };
        // QualityFocalLoss's soft target: the IoU at each positive's class.
        let soft = Tensor::f_zeros([labels.size()[0], self.num_classes + 1], (Kind::Float, cls.device()))?
            .f_scatter(1, &labels.f_unsqueeze(1)?, &score.f_unsqueeze(1)?)?
            .f_narrow(1, 0, self.num_classes)?;
        let weights = label_weights.f_reshape([-1])?;
        let cls = self.loss_cls.forward(&cls, &soft, LossArgs::default().weight(&weights).avg_factor(avg_factor))?;
        Ok(LevelLoss { cls, bbox, dfl, weight_sum })
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let priors = self.prior_generator.grid_priors(&sizes, out.cls_scores[0].device())?;
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let (mut all_dists, mut all_priors, mut all_scores, mut all_labels) = (vec![], vec![], vec![], vec![]);
                for (level, level_priors) in priors.iter().enumerate() {
                    let img = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
                        Ok(maps[level].f_get(i as i64)?.f_detach()?.f_permute([1, 2, 0])?.f_reshape([-1, c])?)
                    };
                    let stride = self.prior_generator.strides[level].0 as f64;
                    let dists = integral(&img(&out.bbox_preds, 4 * (self.reg_max + 1))?, &self.project)?.f_mul_scalar(stride)?;
                    let scores = img(&out.cls_scores, self.num_classes)?.f_sigmoid()?;
                    let (scores, labels, keep) = filter_scores_and_topk(&scores, cfg.score_thr, cfg.nms_pre)?;
                    all_scores.push(scores);
                    all_labels.push(labels);
                    all_dists.push(dists.f_index_select(0, &keep)?);
                    all_priors.push(level_priors.f_index_select(0, &keep)?);
                }
                let (h, w) = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
                let max_shape = self.clip_border.then_some((h as f64, w as f64));
                let centers = anchor_center(&Tensor::f_cat(&all_priors, 0)?)?;
                let bboxes = distance2bbox(&centers, &Tensor::f_cat(&all_dists, 0)?, max_shape)?;
                let (scores, labels) = (Tensor::f_cat(&all_scores, 0)?, Tensor::f_cat(&all_labels, 0)?);
                bbox_post_process(bboxes, scores, labels, None, sample, cfg, rescale, NAME)
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "gfl_tests.rs"]
mod tests;
