//! `ATSSHead` (Zhang et al., "Bridging the Gap Between Anchor-based and
//! Anchor-free Detection via Adaptive Training Sample Selection",
//! <https://arxiv.org/abs/1912.02424>) as `mmdet/models/dense_heads/atss_head.py`
//! on `AnchorHead` and `BaseDenseHead`: per level `stacked_convs` 3x3
//! ConvModules (GroupNorm by default) for classification and as many for
//! regression, then per anchor `K` sigmoid class scores (`atss_cls`), box
//! deltas times a learned per-level `scales.{i}.scale` (`atss_reg`) and a
//! centerness logit (`atss_centerness`, on the regression branch).
//!
//! Training: the anchors inside each image are assigned by `ATSSAssigner`
//! (every assigned anchor is a positive, every other a negative); focal
//! loss over all anchors, the box loss on the positives' decoded boxes
//! weighted by their centerness targets (normalised by the targets' sum),
//! and the centerness loss. Testing: `BaseDenseHead`'s, the scores
//! multiplied by the sigmoid centerness before NMS.
//!
//! Shape shorthand: `N` images, `A` anchors per location, `K` classes,
//! `H, W` a level's size, `T` anchors of all levels, `Np` positives.

use detc::registry::models::dense_heads::ATSSHeadConfig;
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig};
use indexmap::IndexMap;
use tch::nn;
use tch::{Kind, Tensor};

use super::anchor_head::{anchors_and_coder, featmap_sizes, image_hw, TargetFill, Targets};
use super::base_dense_head::{AnchorPrediction, DenseTest, TowerSpec, Towers};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{make_conv, Conv2d, ConvGeom, ModelError, ModelResult};
use crate::models::losses::{cfg_type, Loss, LossArgs};
use crate::models::ops::DeltaXYWHBBoxCoder;
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::anchor_generator::anchor_inside_flags;
use crate::models::task_modules::atss_assigner::ATSSAssigner;
use crate::models::task_modules::{AnchorGenerator, PseudoSampler};

const NAME: &str = "ATSSHead";

/// The head's `train_cfg`, built: ATSS's assignment, also GFL's.
#[derive(Debug)]
pub(super) struct AtssTrain {
    assigner: ATSSAssigner,
    allowed_border: i64,
    pos_weight: f64,
}

/// The training targets of a batch, per anchor of every level.
pub(super) struct AtssTargets {
    /// Each level's (H*W*A, 4) anchors.
    pub mlvl_anchors: Vec<Tensor>,
    /// (N, T) int64: the class of positives, `K` elsewhere.
    pub labels: Tensor,
    /// (N, T): `pos_weight` (or 1) for positives, 1 for negatives, 0 outside.
    pub label_weights: Tensor,
    /// (N, T, 4): the positives' ground-truth boxes, 0 elsewhere.
    pub bbox_targets: Tensor,
    /// The positives of the batch (at least 1 per image), averaged over the processes.
    pub avg_factor: f64,
}

impl AtssTrain {
    /// `train_cfg` (a `PseudoSampler` or none); `owner` names the head in errors.
    pub fn new(t: &RpnTrainConfig, owner: &str) -> ModelResult<Self> {
        if t.sampler.as_ref().is_some_and(|s| cfg_type(&s.0, "sampler").ok() != Some("PseudoSampler")) {
            return Err(ModelError::new(owner, "train_cfg.sampler must be null or PseudoSampler (every assigned anchor trains)"));
        }
        Ok(AtssTrain { assigner: ATSSAssigner::from_cfg(&t.assigner)?, allowed_border: t.allowed_border, pos_weight: t.pos_weight })
    }

    /// `get_targets` for the levels of `sizes`: each image's anchors inside
    /// it assigned by `ATSSAssigner` (with the count of each level's), the
    /// targets mapped back onto all anchors.
    pub fn targets(
        &self,
        prior_generator: &AnchorGenerator,
        sizes: &[(i64, i64)],
        device: tch::Device,
        samples: &[DetDataSample],
        num_classes: i64,
        reduce_mean: ReduceMean,
    ) -> ModelResult<AtssTargets> {
        let mlvl_anchors = prior_generator.grid_priors(sizes, device)?;
        let num_level: Vec<i64> = mlvl_anchors.iter().map(|a| a.size()[0]).collect();
        let flat_anchors = Tensor::f_cat(&mlvl_anchors, 0)?;
        let fill = TargetFill { num_classes, pos_weight: self.pos_weight, total: flat_anchors.size()[0] };
        let mut per_image = Vec::with_capacity(samples.len());
        for sample in samples {
            let pad = image_hw(sample.meta.pad_shape, "pad_shape", NAME)?;
            let flags = Tensor::f_cat(&prior_generator.valid_flags(sizes, pad, device)?, 0)?;
            per_image.push(self.targets_single(&fill, &flat_anchors, &flags, &num_level, sample)?);
        }
        let stack = |f: fn(&Targets) -> &Tensor| -> ModelResult<Tensor> {
            Ok(Tensor::f_stack(&per_image.iter().map(f).collect::<Vec<_>>(), 0)?)
        };
        Ok(AtssTargets {
            labels: stack(|t| &t.labels)?,
            label_weights: stack(|t| &t.label_weights)?,
            bbox_targets: stack(|t| &t.bbox_targets)?,
            avg_factor: reduce_mean(per_image.iter().map(|t| t.avg_factor).sum::<i64>() as f64)?,
            mlvl_anchors,
        })
    }

    /// `_get_targets_single` of one image.
    fn targets_single(
        &self,
        fill: &TargetFill,
        flat_anchors: &Tensor,
        valid_flags: &Tensor,
        num_level: &[i64],
        sample: &DetDataSample,
    ) -> ModelResult<Targets> {
        let img = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
        let inside = anchor_inside_flags(flat_anchors, valid_flags, img, self.allowed_border)?;
        let inside_inds = inside.f_nonzero()?.f_view([-1])?;
        if inside_inds.numel() == 0 {
            return Err(ModelError::new(
                NAME,
                "no valid anchor is inside the image: check the image and anchor sizes, \
                 or set allowed_border to -1 in model.train_cfg",
            ));
        }
        // One read of all the levels' counts.
        let counts = inside.f_split_with_sizes(num_level, 0)?.iter().map(|f| f.f_sum(Kind::Int64)).collect::<Result<Vec<_>, _>>()?;
        let level_inside = Vec::<i64>::try_from(Tensor::f_stack(&counts, 0)?.f_to_device(tch::Device::Cpu)?)?;
        let anchors = flat_anchors.f_index_select(0, &inside_inds)?;
        let gt_bboxes = sample.gt_instances.bboxes.f_view([-1, 4])?;
        let gt_labels = &sample.gt_instances.labels;
        let ignore = &sample.ignored_instances.bboxes;
        let ignore = (ignore.numel() > 0).then_some(ignore);
        let assign = self.assigner.assign(&anchors, &level_inside, &gt_bboxes, gt_labels, ignore)?;
        let sampled = PseudoSampler::sample(&assign, &anchors, &gt_bboxes, gt_labels)?;
        fill.targets(&sampled, &sampled.pos_gt_bboxes.f_to_kind(Kind::Float)?, anchors.size()[0], Some(&inside_inds))
    }
}

#[derive(Debug)]
pub struct ATSSHead {
    towers: Towers,
    atss_cls: Conv2d,
    atss_reg: Conv2d,
    atss_centerness: Conv2d,
    prior_generator: AnchorGenerator,
    bbox_coder: DeltaXYWHBBoxCoder,
    loss_cls: Loss,
    loss_bbox: Loss,
    loss_centerness: Loss,
    num_classes: i64,
    train: Option<AtssTrain>,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, A*K, H, W), deltas
/// (N, A*4, H, W) and centerness logits (N, A, H, W).
pub struct AtssOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
    pub centernesses: Vec<Tensor>,
}

impl ATSSHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}` and `reg_convs.{i}`
    /// (`conv`, `gn`), `atss_cls`, `atss_reg`, `atss_centerness`,
    /// `scales.{i}.scale`. `train_cfg` / `test_cfg` are the detector's.
    pub fn new(
        cfg: &ATSSHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        test_cfg: Option<&DenseTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        if !cfg.loss_cls.0.get("use_sigmoid").and_then(|v| v.as_bool()).unwrap_or(false) {
            return Err(ModelError::new(NAME, "loss_cls must be a sigmoid loss (use_sigmoid: true)"));
        }
        if !cfg.reg_decoded_bbox {
            return Err(ModelError::new(NAME, "reg_decoded_bbox must be true (the box loss is on decoded boxes)"));
        }
        if cfg.pred_kernel_size % 2 == 0 {
            return Err(ModelError::new(NAME, format!("pred_kernel_size must be odd, got {}", cfg.pred_kernel_size)));
        }
        let (prior_generator, a, bbox_coder) = anchors_and_coder(&cfg.anchor_generator, &cfg.bbox_coder, NAME)?;
        let train = train_cfg.or(cfg.train_cfg.as_ref()).map(|t| AtssTrain::new(t, NAME)).transpose()?;
        let built = Towers::build(
            p,
            &TowerSpec {
                owner: NAME,
                cls_name: "atss_cls",
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
        let kp = cfg.pred_kernel_size as i64;
        let pred = ConvGeom::k(kp).padding(kp / 2);
        Ok(ATSSHead {
            towers: built.towers,
            atss_cls: make_conv(&(p / "atss_cls"), last, a * k, pred, cls_init)?,
            atss_reg: make_conv(&(p / "atss_reg"), last, a * 4, pred, conv_init)?,
            atss_centerness: make_conv(&(p / "atss_centerness"), last, a, pred, conv_init)?,
            prior_generator,
            bbox_coder,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            loss_centerness: Loss::from_cfg(&cfg.loss_centerness)?,
            num_classes: k,
            train,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` in train (`train`) or eval mode.
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<AtssOutputs> {
        self.towers.check_levels(x, NAME)?;
        let mut out = AtssOutputs { cls_scores: vec![], bbox_preds: vec![], centernesses: vec![] };
        for (level, scale) in x.iter().zip(&self.towers.scales) {
            let (c, r) = self.towers.forward_t(level, train)?;
            out.cls_scores.push(self.atss_cls.forward(&c)?);
            out.bbox_preds.push(self.atss_reg.forward(&r)?.f_mul(scale)?.f_to_kind(Kind::Float)?);
            out.centernesses.push(self.atss_centerness.forward(&r)?);
        }
        Ok(out)
    }

    /// `loss`: `loss_cls`, `loss_bbox` and `loss_centerness`, each summed
    /// over levels. `reduce_mean` averages the normalising counts over the
    /// job's processes, as MMDetection's `reduce_mean`.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples, reduce_mean)
    }

    /// `loss_by_feat` on the head's outputs.
    pub fn loss_by_feat(&self, out: &AtssOutputs, samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
        let t = train.targets(&self.prior_generator, &featmap_sizes(&out.cls_scores), out.cls_scores[0].device(), samples, self.num_classes, reduce_mean)?;
        let (mut loss_cls, mut loss_bbox, mut loss_ctr) = (vec![], vec![], vec![]);
        let mut ctr_sum: Option<Tensor> = None;
        let mut start = 0;
        for (level, anchors) in t.mlvl_anchors.iter().enumerate() {
            let n = anchors.size()[0];
            let cut = |x: &Tensor| x.f_narrow(1, start, n);
            let (c, b, ctr, sum) = self.loss_single(
                anchors,
                &out.cls_scores[level],
                &out.bbox_preds[level],
                &out.centernesses[level],
                &cut(&t.labels)?,
                &cut(&t.label_weights)?,
                &cut(&t.bbox_targets)?,
                t.avg_factor,
            )?;
            loss_cls.push(c);
            loss_bbox.push(b);
            loss_ctr.push(ctr);
            ctr_sum = Some(match ctr_sum {
                None => sum,
                Some(acc) => acc.f_add(&sum)?,
            });
            start += n;
        }
        let ctr_sum = ctr_sum.ok_or_else(|| ModelError::new(NAME, "no feature level"))?.double_value(&[]);
        let bbox_avg_factor = reduce_mean(ctr_sum)?.max(1.0);
        let total = |parts: Vec<Tensor>| -> ModelResult<Tensor> {
            let mut it = parts.into_iter();
            let first = it.next().ok_or_else(|| ModelError::new(NAME, "no feature level"))?;
            it.try_fold(first, |acc, t| acc.f_add(&t)).map_err(Into::into)
        };
        Ok(IndexMap::from([
            ("loss_cls".to_string(), total(loss_cls)?),
            ("loss_bbox".to_string(), total(loss_bbox)?.f_div_scalar(bbox_avg_factor)?),
            ("loss_centerness".to_string(), total(loss_ctr)?),
        ]))
    }

    /// `loss_by_feat_single`: one level's losses and the sum of its
    /// positives' centerness targets. anchors (H*W*A, 4), cls_score (N, A*K,
    /// H, W), bbox_pred (N, A*4, H, W), centerness (N, A, H, W), labels and
    /// weights (N, H*W*A), box targets (N, H*W*A, 4).
    #[allow(clippy::too_many_arguments)]
    fn loss_single(
        &self,
        anchors: &Tensor,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        centerness: &Tensor,
        labels: &Tensor,
        label_weights: &Tensor,
        bbox_targets: &Tensor,
        avg_factor: f64,
    ) -> ModelResult<(Tensor, Tensor, Tensor, Tensor)> {
        let n = labels.size()[0];
        let anchors = anchors.f_unsqueeze(0)?.f_expand([n, -1, 4], false)?.f_reshape([-1, 4])?;
        let cls = cls_score.f_permute([0, 2, 3, 1])?.f_reshape([-1, self.num_classes])?;
        let reg = bbox_pred.f_permute([0, 2, 3, 1])?.f_reshape([-1, 4])?;
        let ctr = centerness.f_permute([0, 2, 3, 1])?.f_reshape([-1])?;
        let labels = labels.f_reshape([-1])?;
        let loss_cls = self.loss_cls.forward(&cls, &labels, LossArgs::default().weight(&label_weights.f_reshape([-1])?).avg_factor(avg_factor))?;
        let pos = labels.f_ge(0)?.f_logical_and(&labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?;
        if pos.numel() == 0 {
            let zero = |t: &Tensor| -> ModelResult<Tensor> { Ok(t.f_sum(t.kind())?.f_mul_scalar(0.0)?) };
            return Ok((loss_cls, zero(&reg)?, zero(&ctr)?, Tensor::f_zeros([], (Kind::Float, reg.device()))?));
        }
        let pos_targets = bbox_targets.f_reshape([-1, 4])?.f_index_select(0, &pos)?;
        let pos_anchors = anchors.f_index_select(0, &pos)?;
        let ctr_targets = centerness_target(&pos_anchors, &pos_targets)?;
        let decoded = self.bbox_coder.decode(&pos_anchors, &reg.f_index_select(0, &pos)?, None)?;
        let loss_bbox = self.loss_bbox.forward(&decoded, &pos_targets, LossArgs::default().weight(&ctr_targets).avg_factor(1.0))?;
        let loss_ctr = self.loss_centerness.forward(&ctr.f_index_select(0, &pos)?, &ctr_targets, LossArgs::default().avg_factor(avg_factor))?;
        let sum = ctr_targets.f_sum(Kind::Float)?;
        Ok((loss_cls, loss_bbox, loss_ctr, sum))
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let priors = self.prior_generator.grid_priors(&sizes, out.cls_scores[0].device())?;
        let prediction = AnchorPrediction { coder: &self.bbox_coder, num_classes: self.num_classes, use_sigmoid_cls: true, owner: NAME };
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let image = |maps: &[Tensor]| -> ModelResult<Vec<Tensor>> {
                    maps.iter().map(|m| Ok(m.f_get(i as i64)?.f_detach()?)).collect()
                };
                let factors = image(&out.centernesses)?;
                prediction.predict_single(&image(&out.cls_scores)?, &image(&out.bbox_preds)?, Some(&factors), &priors, sample, cfg, rescale)
            })
            .collect()
    }
}

/// `centerness_target`: of (Np, 4) anchors and their ground-truth boxes,
/// sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of the anchor
/// centre's distances to the box sides.
pub(super) fn centerness_target(anchors: &Tensor, gts: &Tensor) -> ModelResult<Tensor> {
    let a = |i: i64| anchors.f_select(1, i);
    let g = |i: i64| gts.f_select(1, i);
    let cx = a(0)?.f_add(&a(2)?)?.f_div_scalar(2.0)?;
    let cy = a(1)?.f_add(&a(3)?)?.f_div_scalar(2.0)?;
    let (l, t) = (cx.f_sub(&g(0)?)?, cy.f_sub(&g(1)?)?);
    let (r, b) = (g(2)?.f_sub(&cx)?, g(3)?.f_sub(&cy)?);
    let lr = l.f_minimum(&r)?.f_div(&l.f_maximum(&r)?)?;
    let tb = t.f_minimum(&b)?.f_div(&t.f_maximum(&b)?)?;
    Ok(lr.f_mul(&tb)?.f_sqrt()?)
}

#[cfg(test)]
#[path = "atss_tests.rs"]
mod tests;
