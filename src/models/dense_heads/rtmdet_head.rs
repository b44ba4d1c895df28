//! `RTMDetSepBNHead` (Lyu et al., "RTMDet: An Empirical Study of Designing
//! Real-Time Object Detectors", <https://arxiv.org/abs/2212.07784>) as
//! `mmdet/models/dense_heads/rtmdet_head.py`.
//!
//! Per level `n`: a classification and a regression tower of
//! `stacked_convs` ConvModules (`cls_convs.{n}.{i}`, `reg_convs.{n}.{i}`),
//! then `rtm_cls.{n}` (class logits) and `rtm_reg.{n}` (side distances,
//! through `exp` with `exp_on_reg`, times the level's stride). With
//! `share_conv` every level uses level 0's convs and keeps its own norms;
//! as in PyTorch, the shared weights appear in the state dict under every
//! level's name (`cls_convs.2.0.conv.weight`), and train once.
//!
//! Training: the prior points `(x, y)` at offset 0 decode each location's
//! box; `DynamicSoftLabelAssigner` matches them (detached, with the logits)
//! to the ground truths; `QualityFocalLoss` against each positive's IoU
//! (`assign_metrics`) and the box loss on the positives' decoded boxes
//! weighted by it, normalised by the sums of the IoUs and of the box
//! weights (averaged over the processes). Testing: `BaseDenseHead`'s, the
//! boxes clipped to the image.
//!
//! Shape shorthand: `N` images, `K` classes, `T` priors of all levels,
//! `H, W` a level's size.

use detc::registry::models::dense_heads::RTMDetSepBNHeadConfig;
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig};
use indexmap::IndexMap;
use tch::nn;
use tch::{Kind, Tensor};

use super::anchor_head::{featmap_sizes, image_hw};
use super::base_dense_head::{bbox_post_process, distance_coder_clip_border, filter_scores_and_topk, DenseTest};
use crate::models::data_preprocessors::{DetDataSample, MaskTensors};
use crate::models::layers::csp_layer::{CspConv, CspInit, CspSpec};
use crate::models::layers::{make_conv, Activation, Conv2d, ConvGeom, ConvInit, ConvKind, ConvModule, ModelError, ModelResult, Norm, NormSpec};
use crate::models::losses::{cfg_type, Loss, LossArgs};
use crate::models::ops::distance2bbox;
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::anchor_generator::anchor_inside_flags;
use crate::models::task_modules::{DynamicSoftLabelAssigner, MlvlPointGenerator};

const NAME: &str = "RTMDetSepBNHead";

/// `bias_init_with_prob(0.01)`: the logit of the prior probability.
fn bias_init_with_prob(prob: f64) -> f64 {
    -((1.0 - prob) / prob).ln()
}

#[derive(Debug)]
struct RtmTrain {
    assigner: DynamicSoftLabelAssigner,
    allowed_border: i64,
    pos_weight: f64,
}

#[derive(Debug)]
pub struct RTMDetSepBNHead {
    /// Per level, the towers' modules.
    cls_convs: Vec<Vec<CspConv>>,
    reg_convs: Vec<Vec<CspConv>>,
    rtm_cls: Vec<Conv2d>,
    rtm_reg: Vec<Conv2d>,
    exp_on_reg: bool,
    prior_generator: MlvlPointGenerator,
    clip_border: bool,
    loss_cls: Loss,
    loss_bbox: Loss,
    num_classes: i64,
    train: Option<RtmTrain>,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W) and side
/// distances in pixels (N, 4, H, W).
pub struct RtmOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
}

/// Level `n`'s copy of a shared tower module: level 0's conv (its weight
/// also registered under this level's name, as PyTorch's state dict lists
/// it) with a norm of its own.
fn shared_level(first: &CspConv, p: &nn::Path, c_out: i64, spec: &CspSpec) -> ModelResult<CspConv> {
    let share = |m: &ConvModule, q: &nn::Path, c: i64| -> ModelResult<ConvModule> {
        let conv = Conv2d {
            weight: (q / "conv").add("weight", m.conv.weight.shallow_clone(), false),
            bias: m.conv.bias.as_ref().map(|b| (q / "conv").add("bias", b.shallow_clone(), false)),
            geom: m.conv.geom,
            kind: ConvKind::Plain,
        };
        Ok(ConvModule { conv, norm: Some(Norm::new(&(q / spec.norm.abbr()), c, &spec.norm, true)?), act: spec.act })
    };
    Ok(match first {
        CspConv::Plain(m) => CspConv::Plain(share(m, p, c_out)?),
        CspConv::Separable { depthwise, pointwise } => CspConv::Separable {
            depthwise: share(depthwise, &(p / "depthwise_conv"), depthwise.conv.weight.size()[0])?,
            pointwise: share(pointwise, &(p / "pointwise_conv"), c_out)?,
        },
    })
}

impl RTMDetSepBNHead {
    /// Builds under `p` (`bbox_head`); `train_cfg` / `test_cfg` are the detector's.
    pub fn new(
        cfg: &RTMDetSepBNHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        test_cfg: Option<&DenseTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        if cfg.with_objectness {
            return Err(ModelError::new(NAME, "with_objectness is not supported yet (set it to false, as the rtmdet configs do)"));
        }
        if ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)? != ConvKind::Plain {
            return Err(ModelError::new(NAME, "conv_cfg is not supported (leave it null)"));
        }
        if cfg.pred_kernel_size % 2 == 0 {
            return Err(ModelError::new(NAME, "pred_kernel_size must be odd"));
        }
        if cfg_type(&cfg.loss_cls.0, "RTMDetSepBNHead.loss_cls")? != "QualityFocalLoss" {
            return Err(ModelError::new(NAME, "loss_cls must be QualityFocalLoss (its targets are IoU scores)"));
        }
        let prior_generator = MlvlPointGenerator::from_cfg(&cfg.anchor_generator, NAME)?;
        if prior_generator.strides.iter().any(|&(w, h)| w != h) {
            return Err(ModelError::new(NAME, "strides must be square (one number per level)"));
        }
        let spec = CspSpec {
            norm: NormSpec::from_cfg(&cfg.norm_cfg, NAME)?,
            act: Activation::from_cfg(Some(&cfg.act_cfg), NAME)?,
            init: CspInit::Normal { std: 0.01 },
            trainable: true,
        };
        let (feat, k) = (cfg.feat_channels as i64, cfg.num_classes as i64);
        let levels = prior_generator.num_levels();
        let tower = |name: &str| -> ModelResult<Vec<Vec<CspConv>>> {
            let mut out: Vec<Vec<CspConv>> = Vec::with_capacity(levels);
            for n in 0..levels {
                let mut convs = Vec::with_capacity(cfg.stacked_convs as usize);
                for i in 0..cfg.stacked_convs as usize {
                    let q = p / name / n / i;
                    let c_in = if i == 0 { cfg.in_channels as i64 } else { feat };
                    convs.push(if cfg.share_conv && n > 0 {
                        shared_level(&out[0][i], &q, feat, &spec)?
                    } else {
                        spec.conv(&q, c_in, feat, 3, 1, cfg.use_depthwise)?
                    });
                }
                out.push(convs);
            }
            Ok(out)
        };
        let (cls_convs, reg_convs) = (tower("cls_convs")?, tower("reg_convs")?);
        let last = if cfg.stacked_convs == 0 { cfg.in_channels as i64 } else { feat };
        let geom = ConvGeom::k(cfg.pred_kernel_size as i64).padding(cfg.pred_kernel_size as i64 / 2);
        let cls_init = ConvInit::Normal { mean: 0.0, std: 0.01, bias: bias_init_with_prob(0.01) };
        let reg_init = ConvInit::Normal { mean: 0.0, std: 0.01, bias: 0.0 };
        let rtm_cls = (0..levels).map(|n| make_conv(&(p / "rtm_cls" / n), last, k, geom, cls_init)).collect::<ModelResult<Vec<_>>>()?;
        let rtm_reg = (0..levels).map(|n| make_conv(&(p / "rtm_reg" / n), last, 4, geom, reg_init)).collect::<ModelResult<Vec<_>>>()?;
        let train = match train_cfg.or(cfg.train_cfg.as_ref()) {
            Some(t) => {
                if t.sampler.as_ref().is_some_and(|s| cfg_type(&s.0, "sampler").ok() != Some("PseudoSampler")) {
                    return Err(ModelError::new(NAME, "train_cfg.sampler must be null or PseudoSampler (every assigned prior trains)"));
                }
                Some(RtmTrain { assigner: DynamicSoftLabelAssigner::from_cfg(&t.assigner)?, allowed_border: t.allowed_border, pos_weight: t.pos_weight })
            }
            None => None,
        };
        Ok(RTMDetSepBNHead {
            cls_convs,
            reg_convs,
            rtm_cls,
            rtm_reg,
            exp_on_reg: cfg.exp_on_reg,
            clip_border: distance_coder_clip_border(&cfg.bbox_coder, NAME)?,
            prior_generator,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            num_classes: k,
            train,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward` in train (`train`) or eval mode.
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<RtmOutputs> {
        if x.len() != self.rtm_cls.len() {
            return Err(ModelError::new(NAME, format!("{} feature levels for {} strides", x.len(), self.rtm_cls.len())));
        }
        let mut out = RtmOutputs { cls_scores: vec![], bbox_preds: vec![] };
        for (n, level) in x.iter().enumerate() {
            let (mut c, mut r) = (level.shallow_clone(), level.shallow_clone());
            for conv in &self.cls_convs[n] {
                c = conv.forward_t(&c, train)?;
            }
            for conv in &self.reg_convs[n] {
                r = conv.forward_t(&r, train)?;
            }
            let stride = self.prior_generator.strides[n].0 as f64;
            let reg = self.rtm_reg[n].forward(&r)?;
            let reg = if self.exp_on_reg { reg.f_exp()? } else { reg };
            out.cls_scores.push(self.rtm_cls[n].forward(&c)?);
            out.bbox_preds.push(reg.f_mul_scalar(stride)?);
        }
        Ok(out)
    }

    /// `loss`: `loss_cls` and `loss_bbox`, each summed over levels.
    /// `reduce_mean` averages the normalising sums over the job's processes.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples, reduce_mean)
    }

    /// `loss_by_feat` of `forward`'s outputs.
    pub fn loss_by_feat(&self, out: &RtmOutputs, samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
        let n = samples.len() as i64;
        let k = self.num_classes;
        let device = out.cls_scores[0].device();
        let sizes = featmap_sizes(&out.cls_scores);
        let priors = Tensor::f_cat(&self.prior_generator.grid_priors(&sizes, device, true)?, 0)?;
        let flat = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
            let levels = maps.iter().map(|m| m.f_permute([0, 2, 3, 1])?.f_reshape([n, -1, c])).collect::<Result<Vec<_>, _>>()?;
            Ok(Tensor::f_cat(&levels, 1)?)
        };
        let cls = flat(&out.cls_scores, k)?;
        let dists = flat(&out.bbox_preds, 4)?;
        let t = priors.size()[0];
        let points = priors.f_narrow(1, 0, 2)?.f_unsqueeze(0)?.f_expand([n, t, 2], false)?.f_reshape([-1, 2])?;
        let decoded = distance2bbox(&points, &dists.f_reshape([-1, 4])?, None)?.f_reshape([n, t, 4])?;
        let mut per_image = Vec::with_capacity(samples.len());
        for (i, sample) in samples.iter().enumerate() {
            let i = i as i64;
            per_image.push(self.targets_single(train, &priors, &sizes, &cls.f_get(i)?.f_detach()?, &decoded.f_get(i)?.f_detach()?, sample)?);
        }
        let stack = |f: fn(&ImageTargets) -> &Tensor| -> ModelResult<Tensor> {
            Ok(Tensor::f_cat(&per_image.iter().map(f).collect::<Vec<_>>(), 0)?)
        };
        let labels = stack(|t| &t.labels)?;
        let label_weights = stack(|t| &t.label_weights)?;
        let bbox_targets = stack(|t| &t.bbox_targets)?;
        let metrics = stack(|t| &t.assign_metrics)?;
        let cls = cls.f_reshape([-1, k])?;
        let decoded = decoded.f_reshape([-1, 4])?;
        // QualityFocalLoss's soft target: each positive's IoU at its class.
        let soft = Tensor::f_zeros([labels.size()[0], k + 1], (Kind::Float, device))?
            .f_scatter(1, &labels.f_unsqueeze(1)?, &metrics.f_unsqueeze(1)?)?
            .f_narrow(1, 0, k)?;
        let loss_cls = self.loss_cls.forward(&cls, &soft, LossArgs::default().weight(&label_weights).avg_factor(1.0))?;
        let pos = labels.f_lt(k)?.f_nonzero()?.f_view([-1])?;
        let (loss_bbox, pos_weight_sum) = if pos.numel() > 0 {
            let w = metrics.f_index_select(0, &pos)?;
            let loss = self.loss_bbox.forward(
                &decoded.f_index_select(0, &pos)?,
                &bbox_targets.f_index_select(0, &pos)?,
                LossArgs::default().weight(&w).avg_factor(1.0),
            )?;
            (loss, w.f_sum(Kind::Float)?)
        } else {
            (decoded.f_sum(decoded.kind())?.f_mul_scalar(0.0)?, Tensor::f_zeros([], (Kind::Float, device))?)
        };
        // One read of both normalisers.
        let sums = Vec::<f64>::try_from(Tensor::f_stack(&[metrics.f_sum(Kind::Float)?, pos_weight_sum], 0)?.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?;
        let cls_avg = reduce_mean(sums[0])?.max(1.0);
        let bbox_avg = reduce_mean(sums[1])?.max(1.0);
        Ok(IndexMap::from([
            ("loss_cls".to_string(), loss_cls.f_div_scalar(cls_avg)?),
            ("loss_bbox".to_string(), loss_bbox.f_div_scalar(bbox_avg)?),
        ]))
    }

    /// `_get_targets_single` of one image: its (T, K) logits and (T, 4)
    /// decoded boxes (detached) against its ground truths.
    fn targets_single(
        &self,
        train: &RtmTrain,
        priors: &Tensor,
        sizes: &[(i64, i64)],
        cls: &Tensor,
        decoded: &Tensor,
        sample: &DetDataSample,
    ) -> ModelResult<ImageTargets> {
        let device = priors.device();
        let t = priors.size()[0];
        let pad = image_hw(sample.meta.pad_shape, "pad_shape", NAME)?;
        let flags = Tensor::f_cat(&self.prior_generator.valid_flags(sizes, pad, device)?, 0)?;
        let img = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
        // MMDetection tests the (x, y, stride_w, stride_h) priors as if they were boxes.
        let inside = anchor_inside_flags(priors, &flags, img, train.allowed_border)?.f_nonzero()?.f_view([-1])?;
        if inside.numel() == 0 {
            return Err(ModelError::new(NAME, "no prior is inside the image: set allowed_border to -1 in model.train_cfg"));
        }
        let gt_bboxes = sample.gt_instances.bboxes.f_view([-1, 4])?.f_to_kind(Kind::Float)?;
        let gt_labels = &sample.gt_instances.labels;
        let centers = match &sample.gt_instances.masks {
            Some(MaskTensors::Bitmap(m)) if m.size()[0] > 0 => Some(center_of_mass(m)?),
            Some(MaskTensors::Bitmap(_)) | None => None,
            Some(_) => {
                return Err(ModelError::new(
                    NAME,
                    "DynamicSoftLabelAssigner takes the centres of bitmap masks: load them with `LoadAnnotations(poly2mask=True)`",
                ))
            }
        };
        let assign = train.assigner.assign(
            &priors.f_index_select(0, &inside)?,
            &decoded.f_index_select(0, &inside)?,
            &cls.f_index_select(0, &inside)?,
            &gt_bboxes,
            gt_labels,
            centers.as_ref(),
        )?;
        let k = self.num_classes;
        let pos_in = assign.gt_inds.f_gt(0)?;
        let pos_local = pos_in.f_nonzero()?.f_view([-1])?;
        let pos = inside.f_index_select(0, &pos_local)?;
        let gt_of_pos = assign.gt_inds.f_index_select(0, &pos_local)?.f_sub_scalar(1)?;
        let w = if train.pos_weight <= 0.0 { 1.0 } else { train.pos_weight };
        let labels = Tensor::f_full([t], k, (Kind::Int64, device))?
            .f_index_put(&[Some(pos.shallow_clone())], &assign.labels.f_index_select(0, &pos_local)?, false)?;
        let label_weights = Tensor::f_zeros([t], (Kind::Float, device))?
            .f_index_fill(0, &inside, 1.0)?
            .f_index_fill(0, &pos, w)?;
        let bbox_targets = Tensor::f_zeros([t, 4], (Kind::Float, device))?
            .f_index_put(&[Some(pos.shallow_clone())], &gt_bboxes.f_index_select(0, &gt_of_pos)?, false)?;
        let assign_metrics = Tensor::f_zeros([t], (Kind::Float, device))?
            .f_index_put(&[Some(pos)], &assign.max_overlaps.f_index_select(0, &pos_local)?, false)?;
        Ok(ImageTargets { labels, label_weights, bbox_targets, assign_metrics })
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let priors = self.prior_generator.grid_priors(&sizes, out.cls_scores[0].device(), false)?;
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let (mut all_dists, mut all_points, mut all_scores, mut all_labels) = (vec![], vec![], vec![], vec![]);
                for (level, points) in priors.iter().enumerate() {
                    let img = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
                        Ok(maps[level].f_get(i as i64)?.f_detach()?.f_permute([1, 2, 0])?.f_reshape([-1, c])?)
                    };
                    let scores = img(&out.cls_scores, self.num_classes)?.f_sigmoid()?;
                    let (scores, labels, keep) = filter_scores_and_topk(&scores, cfg.score_thr, cfg.nms_pre)?;
                    all_scores.push(scores);
                    all_labels.push(labels);
                    all_dists.push(img(&out.bbox_preds, 4)?.f_index_select(0, &keep)?);
                    all_points.push(points.f_index_select(0, &keep)?);
                }
                let (h, w) = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
                let max_shape = self.clip_border.then_some((h as f64, w as f64));
                let bboxes = distance2bbox(&Tensor::f_cat(&all_points, 0)?, &Tensor::f_cat(&all_dists, 0)?, max_shape)?;
                let (scores, labels) = (Tensor::f_cat(&all_scores, 0)?, Tensor::f_cat(&all_labels, 0)?);
                bbox_post_process(bboxes, scores, labels, None, sample, cfg, rescale, NAME)
            })
            .collect()
    }
}

/// One image's targets over all `T` priors.
struct ImageTargets {
    /// (T,) int64: the class of positives, `K` elsewhere.
    labels: Tensor,
    /// (T,): `pos_weight` (or 1) for positives, 1 for the other priors inside, 0 outside.
    label_weights: Tensor,
    /// (T, 4): the positives' ground-truth boxes, 0 elsewhere.
    bbox_targets: Tensor,
    /// (T,): the positives' IoUs, 0 elsewhere.
    assign_metrics: Tensor,
}

/// `center_of_mass` of (G, H, W) masks: (G, 2) `(x, y)` pixel centres
/// (row and column indices weighted by the mask).
fn center_of_mass(masks: &Tensor) -> ModelResult<Tensor> {
    let (h, w) = (masks.size()[1], masks.size()[2]);
    let m = masks.f_to_kind(Kind::Float)?;
    let device = m.device();
    let norm = m.f_sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)?.f_clamp_min(1e-7)?;
    let ys = Tensor::f_arange(h, (Kind::Float, device))?.f_view([1, h, 1])?;
    let xs = Tensor::f_arange(w, (Kind::Float, device))?.f_view([1, 1, w])?;
    let cy = m.f_mul(&ys)?.f_sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)?.f_div(&norm)?;
    let cx = m.f_mul(&xs)?.f_sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)?.f_div(&norm)?;
    Ok(Tensor::f_stack(&[cx, cy], 1)?)
}

#[cfg(test)]
#[path = "rtmdet_tests.rs"]
mod tests;
