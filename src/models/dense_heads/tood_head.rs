//! `TOODHead` (Feng et al., "TOOD: Task-aligned One-stage Object
//! Detection", <https://arxiv.org/abs/2108.07755>) as
//! `mmdet/models/dense_heads/tood_head.py`: per level `stacked_convs`
//! ConvModules shared by both tasks (`inter_convs`, the first `num_dcn`
//! DCNv2 with 4 offset groups); their concatenated outputs feed two
//! `TaskDecomposition`s (a layer attention from the pooled features weighs
//! a 1x1 reduction of the layers) for the classification and regression
//! features. Scores are the geometric mean of the sigmoids of `tood_cls`
//! and of a class-agnostic `cls_prob_module`; boxes (in strides) come from
//! `tood_reg` on one anchor per location (side distances from its centre,
//! or deltas) and are resampled, each side at its own offset that
//! `reg_offset_module` predicts.
//!
//! Training: for the first `initial_epoch` epochs ATSS's assignment with
//! `initial_loss_cls` and centerness-weighted boxes; then
//! `TaskAlignedAssigner` on the predictions, `loss_cls` against each
//! positive's alignment metric (normalised per object to its best IoU), and
//! boxes weighted by it. Both losses are normalised by their weights' sums
//! over the processes. Testing: the scores as they are (already
//! probabilities), the boxes times the stride.
//!
//! Shape shorthand: `N` images, `K` classes, `C` feature channels, `S`
//! stacked convs, `H, W` a level's size, `T` anchors of all levels, `Np`
//! positives.

use std::sync::atomic::{AtomicU64, Ordering};

use detc::registry::models::dense_heads::{TOODHeadConfig, ToodAnchorType};
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig, ToodTrainConfig};
use indexmap::IndexMap;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::anchor_head::{anchors_and_coder, featmap_sizes, image_hw, TargetFill};
use super::atss_head::{centerness_target, AtssTrain};
use super::base_dense_head::{bbox_post_process, filter_scores_and_topk, DenseTest, TowerConv};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::deform_conv::{deform_conv2d, DeformConv2d, DeformInit, DeformSpec};
use crate::models::layers::{Activation, Conv2d, ConvGeom, ConvKind, ConvModule, ModelError, ModelResult, Norm, NormSpec};
use crate::models::losses::{Loss, LossArgs};
use crate::models::ops::{distance2bbox, DeltaXYWHBBoxCoder};
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::task_aligned_assigner::TaskAlignedAssigner;
use crate::models::task_modules::{anchor_inside_flags, AnchorGenerator, PseudoSampler};

const NAME: &str = "TOODHead";

/// `bias_init_with_prob(0.01)`: the classifiers' initial bias.
fn prior_bias() -> f64 {
    -((1.0 - 0.01f64) / 0.01).ln()
}

/// A conv drawn from N(0, `std`) with bias `bias` (MMEngine's `normal_init`).
fn normal_conv(p: &nn::Path, c_in: i64, c_out: i64, geom: ConvGeom, std: f64, bias: f64) -> ModelResult<Conv2d> {
    let conv = Conv2d::new(p, c_in, c_out, geom, true, Init::Randn { mean: 0.0, stdev: std }, true)?;
    if let Some(b) = &conv.bias {
        let _ = tch::no_grad(|| b.shallow_clone().f_fill_(bias))?;
    }
    Ok(conv)
}

/// `TaskDecomposition`: a layer attention (`layer_attention.{0,2}`, from
/// the pooled features, one sigmoid weight per stacked layer) scales a 1x1
/// reduction (`reduction_conv`) of the concatenated layers, then norm and ReLU.
#[derive(Debug)]
struct TaskDecomposition {
    attention_in: Conv2d,
    attention_out: Conv2d,
    /// `reduction_conv.conv.weight` (C, S*C, 1, 1); its bias (without a norm) is never added, as in MMDetection.
    reduction: Conv2d,
    norm: Option<Norm>,
    feat: i64,
    stacked: i64,
}

impl TaskDecomposition {
    fn new(p: &nn::Path, feat: i64, stacked: i64, norm: Option<&NormSpec>) -> ModelResult<Self> {
        let c_in = feat * stacked;
        let down = c_in / (stacked * 8);
        if down == 0 || feat % 8 != 0 {
            return Err(ModelError::new(NAME, format!("feat_channels must be a multiple of 8, got {feat}")));
        }
        let k1 = ConvGeom::k(1);
        let la = p / "layer_attention";
        Ok(TaskDecomposition {
            attention_in: normal_conv(&(&la / 0), c_in, down, k1, 0.001, 0.0)?,
            attention_out: normal_conv(&(&la / 2), down, stacked, k1, 0.001, 0.0)?,
            reduction: Conv2d::new(&(p / "reduction_conv" / "conv"), c_in, feat, k1, norm.is_none(), Init::Randn { mean: 0.0, stdev: 0.01 }, true)?,
            norm: norm.map(|n| Norm::new(&(p / "reduction_conv" / n.abbr()), feat, n, true)).transpose()?,
            feat,
            stacked,
        })
    }

    /// feat (N, S*C, H, W), its pooled (N, S*C, 1, 1) -> (N, C, H, W).
    fn forward_t(&self, feat: &Tensor, avg: &Tensor, train: bool) -> ModelResult<Tensor> {
        let (n, _, h, w) = feat.size4()?;
        let (c, s) = (self.feat, self.stacked);
        let weight = self.attention_out.forward(&self.attention_in.forward(avg)?.f_relu()?)?.f_sigmoid()?;
        let conv_weight = weight.f_reshape([n, 1, s, 1])?.f_mul(&self.reduction.weight.f_reshape([1, c, s, c])?)?.f_reshape([n, c, s * c])?;
        let mut out = conv_weight.f_bmm(&feat.f_reshape([n, s * c, h * w])?)?.f_reshape([n, c, h, w])?;
        if let Some(norm) = &self.norm {
            out = norm.forward_t(&out, train)?;
        }
        Ok(out.f_relu()?)
    }
}

/// The head's `train_cfg`, built.
#[derive(Debug)]
struct ToodTrain {
    initial: AtssTrain,
    initial_epoch: u64,
    assigner: TaskAlignedAssigner,
    alpha: f64,
    beta: f64,
    allowed_border: i64,
    pos_weight: f64,
}

/// The training targets of a batch, per anchor of every level.
struct ToodTargets {
    /// (N, T) int64: the class of positives, `K` elsewhere.
    labels: Tensor,
    label_weights: Tensor,
    /// (N, T, 4): the positives' ground-truth boxes (pixels).
    bbox_targets: Tensor,
    /// (N, T): the positives' normalised alignment metrics (1 per positive
    /// in the initial epochs), 0 elsewhere.
    metrics: Tensor,
}

#[derive(Debug)]
pub struct TOODHead {
    inter_convs: Vec<TowerConv>,
    cls_decomp: TaskDecomposition,
    reg_decomp: TaskDecomposition,
    tood_cls: Conv2d,
    tood_reg: Conv2d,
    cls_prob: (Conv2d, Conv2d),
    reg_offset: (Conv2d, Conv2d),
    scales: Vec<Tensor>,
    prior_generator: AnchorGenerator,
    bbox_coder: DeltaXYWHBBoxCoder,
    anchor_free: bool,
    initial_loss_cls: Loss,
    loss_cls: Loss,
    loss_bbox: Loss,
    num_classes: i64,
    train: Option<ToodTrain>,
    test: Option<DenseTest>,
    /// The current (0-based) training epoch, which picks the assignment
    /// (MMEngine's message hub `epoch`).
    epoch: AtomicU64,
}

/// What `forward` gives per level: scores (N, K, H, W), already
/// probabilities, and boxes x1y1x2y2 in strides (N, 4, H, W).
pub struct ToodOutputs {
    pub cls_scores: Vec<Tensor>,
    pub bbox_preds: Vec<Tensor>,
}

impl TOODHead {
    /// Builds under `p` (`bbox_head`): `inter_convs.{i}` (`conv`, `gn`),
    /// `cls_decomp` and `reg_decomp` (`layer_attention.{0,2}`,
    /// `reduction_conv`), `tood_cls`, `tood_reg`, `cls_prob_module.{0,2}`,
    /// `reg_offset_module.{0,2}`, `scales.{i}.scale`. `train_cfg` /
    /// `test_cfg` are the detector's.
    pub fn new(cfg: &TOODHeadConfig, train_cfg: Option<&ToodTrainConfig>, test_cfg: Option<&DenseTestConfig>, p: &nn::Path) -> ModelResult<Self> {
        if !cfg.reg_decoded_bbox {
            return Err(ModelError::new(NAME, "reg_decoded_bbox must be true (the box loss is on decoded boxes)"));
        }
        for (what, loss) in [("initial_loss_cls", &cfg.initial_loss_cls), ("loss_cls", &cfg.loss_cls)] {
            if !loss.0.get("activated").and_then(|v| v.as_bool()).unwrap_or(false) {
                return Err(ModelError::new(NAME, format!("{what} must take probabilities (activated: true): the scores are a geometric mean of sigmoids")));
            }
        }
        let (prior_generator, a, bbox_coder) = anchors_and_coder(&cfg.anchor_generator, &cfg.bbox_coder, NAME)?;
        if a != 1 {
            return Err(ModelError::new(NAME, "anchor_generator must give one anchor per location (one ratio and one scale)"));
        }
        if prior_generator.strides.iter().any(|&(w, h)| w != h) {
            return Err(ModelError::new(NAME, "the anchors' strides must be square"));
        }
        let (feat, stacked) = (cfg.feat_channels as i64, cfg.stacked_convs as i64);
        if feat % 4 != 0 {
            return Err(ModelError::new(NAME, format!("feat_channels must be a multiple of 4, got {feat}")));
        }
        let norm = cfg.norm_cfg.as_ref().map(|n| NormSpec::from_cfg(n, NAME)).transpose()?;
        let conv_kind = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let k3 = ConvGeom::k(3).padding(1);
        let inter = p / "inter_convs";
        let inter_convs = (0..stacked)
            .map(|i| {
                let (q, c_in) = (&inter / i, if i == 0 { cfg.in_channels as i64 } else { feat });
                let norm_layer = norm.as_ref().map(|n| Norm::new(&(&q / n.abbr()), feat, n, true)).transpose()?;
                let bias = norm.is_none();
                if i < cfg.num_dcn as i64 {
                    let spec = DeformSpec { modulated: true, deform_groups: 4 };
                    let conv = DeformConv2d::new(&(&q / "conv"), c_in, feat, k3, bias, spec, DeformInit::Scratch, true)?;
                    // `normal_init(m.conv, std=0.01)`: the weight; the offsets stay 0.
                    let _ = tch::no_grad(|| conv.weight.shallow_clone().f_normal_(0.0, 0.01))?;
                    Ok(TowerConv::Deform { conv, norm: norm_layer })
                } else {
                    let conv = Conv2d::new(&(&q / "conv"), c_in, feat, k3, bias, Init::Randn { mean: 0.0, stdev: 0.01 }, true)?.with_kind(conv_kind);
                    Ok(TowerConv::Plain(ConvModule { conv, norm: norm_layer, act: Some(Activation::Relu) }))
                }
            })
            .collect::<ModelResult<Vec<_>>>()?;
        let k = cfg.num_classes as i64;
        let (cat, quarter) = (feat * stacked, feat / 4);
        let two = |name: &str, out: i64, std: f64, bias: f64| -> ModelResult<(Conv2d, Conv2d)> {
            let q = p / name;
            Ok((normal_conv(&(&q / 0), cat, quarter, ConvGeom::k(1), std, 0.0)?, normal_conv(&(&q / 2), quarter, out, k3, std, bias)?))
        };
        let train = train_cfg
            .map(|t| -> ModelResult<ToodTrain> {
                let initial = RpnTrainConfig {
                    assigner: t.initial_assigner.clone(),
                    sampler: None,
                    allowed_border: t.allowed_border,
                    pos_weight: t.pos_weight,
                    debug: t.debug,
                };
                Ok(ToodTrain {
                    initial: AtssTrain::new(&initial, NAME)?,
                    initial_epoch: t.initial_epoch as u64,
                    assigner: TaskAlignedAssigner::from_cfg(&t.assigner)?,
                    alpha: t.alpha,
                    beta: t.beta,
                    allowed_border: t.allowed_border,
                    pos_weight: t.pos_weight,
                })
            })
            .transpose()?;
        Ok(TOODHead {
            inter_convs,
            cls_decomp: TaskDecomposition::new(&(p / "cls_decomp"), feat, stacked, norm.as_ref())?,
            reg_decomp: TaskDecomposition::new(&(p / "reg_decomp"), feat, stacked, norm.as_ref())?,
            tood_cls: normal_conv(&(p / "tood_cls"), feat, k, k3, 0.01, prior_bias())?,
            tood_reg: normal_conv(&(p / "tood_reg"), feat, 4, k3, 0.01, 0.0)?,
            cls_prob: two("cls_prob_module", 1, 0.01, prior_bias())?,
            reg_offset: two("reg_offset_module", 8, 0.001, 0.0)?,
            scales: (0..prior_generator.num_levels() as i64)
                .map(|i| crate::models::layers::param(&(p / "scales" / i), "scale", &[], Init::Const(1.0), true))
                .collect::<ModelResult<Vec<_>>>()?,
            prior_generator,
            bbox_coder,
            anchor_free: cfg.anchor_type == ToodAnchorType::AnchorFree,
            initial_loss_cls: Loss::from_cfg(&cfg.initial_loss_cls)?,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            num_classes: k,
            train,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
            epoch: AtomicU64::new(0),
        })
    }

    /// Sets the current (0-based) training epoch, as MMEngine's
    /// `RuntimeInfoHook` does before each epoch.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// `forward` (`train` switches the norms' batch statistics).
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<ToodOutputs> {
        if x.len() != self.scales.len() {
            return Err(ModelError::new(NAME, format!("{} feature levels for {} strides", x.len(), self.scales.len())));
        }
        let mut out = ToodOutputs { cls_scores: vec![], bbox_preds: vec![] };
        for (level, input) in x.iter().enumerate() {
            let (n, _, h, w) = input.size4()?;
            let stride = self.prior_generator.strides[level].0 as f64;
            let anchors = self.prior_generator.single_level_grid_priors((h, w), level, input.device())?.f_repeat([n, 1])?;
            let mut layers = Vec::with_capacity(self.inter_convs.len());
            let mut y = input.shallow_clone();
            for conv in &self.inter_convs {
                y = conv.forward_t(&y, train)?;
                layers.push(y.shallow_clone());
            }
            let feat = Tensor::f_cat(&layers, 1)?;
            let avg = feat.f_adaptive_avg_pool2d([1, 1])?;
            let cls_feat = self.cls_decomp.forward_t(&feat, &avg, train)?;
            let reg_feat = self.reg_decomp.forward_t(&feat, &avg, train)?;
            let cls_logits = self.tood_cls.forward(&cls_feat)?;
            let cls_prob = self.cls_prob.1.forward(&self.cls_prob.0.forward(&feat)?.f_relu()?)?;
            // sqrt(sigmoid(a) * sigmoid(b)) through log-sigmoids: MMDetection's
            // analytic gradient, without its NaN for very negative logits.
            let cls_score = cls_logits.f_log_sigmoid()?.f_add(&cls_prob.f_log_sigmoid()?)?.f_div_scalar(2.0)?.f_exp()?;
            let reg = self.tood_reg.forward(&reg_feat)?;
            let to_rows = |t: &Tensor| -> ModelResult<Tensor> { Ok(t.f_permute([0, 2, 3, 1])?.f_reshape([-1, 4])?) };
            let boxes = if self.anchor_free {
                let dist = to_rows(&reg.f_exp()?.f_mul(&self.scales[level])?.f_to_kind(Kind::Float)?)?;
                let centres = anchor_centres(&anchors)?.f_div_scalar(stride)?;
                distance2bbox(&centres, &dist, None)?
            } else {
                let deltas = to_rows(&reg.f_mul(&self.scales[level])?.f_to_kind(Kind::Float)?)?;
                self.bbox_coder.decode(&anchors, &deltas, None)?.f_div_scalar(stride)?
            };
            let reg_bbox = boxes.f_reshape([n, h, w, 4])?.f_permute([0, 3, 1, 2])?.f_contiguous()?;
            let offsets = self.reg_offset.1.forward(&self.reg_offset.0.forward(&feat)?.f_relu()?)?;
            // `deform_sampling`: each side read at its own offset (a 1x1 deformable conv of ones, a group per channel).
            let ones = Tensor::f_ones([4, 1, 1, 1], (reg_bbox.kind(), reg_bbox.device()))?;
            let sampled = deform_conv2d(&reg_bbox, &offsets, None, &ones, None, ConvGeom::k(1), 4)?;
            let side = |t: &Tensor, i: i64| t.f_narrow(1, i, 1);
            let invalid = side(&sampled, 0)?.f_gt_tensor(&side(&sampled, 2)?)?.f_logical_or(&side(&sampled, 1)?.f_gt_tensor(&side(&sampled, 3)?)?)?;
            out.cls_scores.push(cls_score);
            out.bbox_preds.push(reg_bbox.f_where_self(&invalid, &sampled)?);
        }
        Ok(out)
    }

    /// `loss`: `loss_cls` and `loss_bbox`, each summed over levels.
    /// `reduce_mean` averages the normalisers over the job's processes.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples, reduce_mean)
    }

    /// `loss_by_feat` on the head's outputs.
    pub fn loss_by_feat(&self, out: &ToodOutputs, samples: &[DetDataSample], reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
        let sizes = featmap_sizes(&out.cls_scores);
        let device = out.cls_scores[0].device();
        let mlvl_anchors = self.prior_generator.grid_priors(&sizes, device)?;
        let initial = self.epoch.load(Ordering::Relaxed) < train.initial_epoch;
        let t = if initial {
            let t = train.initial.targets(&self.prior_generator, &sizes, device, samples, self.num_classes, reduce_mean)?;
            let positive = t.labels.f_ge(0)?.f_logical_and(&t.labels.f_lt(self.num_classes)?)?.f_to_kind(Kind::Float)?;
            ToodTargets { labels: t.labels, label_weights: t.label_weights, bbox_targets: t.bbox_targets, metrics: positive }
        } else {
            self.aligned_targets(train, out, &sizes, &mlvl_anchors, samples)?
        };
        let (mut loss_cls, mut loss_bbox) = (vec![], vec![]);
        let (mut cls_norm, mut bbox_norm) = (vec![], vec![]);
        let mut start = 0;
        for (level, anchors) in mlvl_anchors.iter().enumerate() {
            let count = anchors.size()[0];
            let cut = |x: &Tensor| -> ModelResult<Tensor> { Ok(x.f_narrow(1, start, count)?) };
            let stride = self.prior_generator.strides[level].0 as f64;
            let n = samples.len() as i64;
            let cls = out.cls_scores[level].f_permute([0, 2, 3, 1])?.f_reshape([-1, self.num_classes])?;
            let bbox = out.bbox_preds[level].f_permute([0, 2, 3, 1])?.f_reshape([-1, 4])?;
            let labels = cut(&t.labels)?.f_reshape([-1])?;
            let weights = cut(&t.label_weights)?.f_reshape([-1])?;
            let targets = cut(&t.bbox_targets)?.f_reshape([-1, 4])?;
            let metrics = cut(&t.metrics)?.f_reshape([-1])?;
            let pos = labels.f_ge(0)?.f_logical_and(&labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?;
            let args = LossArgs::default().weight(&weights).avg_factor(1.0);
            loss_cls.push(if initial {
                self.initial_loss_cls.forward(&cls, &labels, args)?
            } else {
                // The alignment metric at each positive's class, 0 elsewhere.
                let mut soft = cls.f_zeros_like()?.f_detach()?;
                if pos.numel() > 0 {
                    let idx = [Some(pos.shallow_clone()), Some(labels.f_index_select(0, &pos)?)];
                    soft = soft.f_index_put(&idx, &metrics.f_index_select(0, &pos)?.f_to_kind(soft.kind())?, false)?;
                }
                self.loss_cls.forward(&cls, &soft, args)?
            });
            cls_norm.push(metrics.f_sum(Kind::Float)?);
            if pos.numel() > 0 {
                let pos_targets = targets.f_index_select(0, &pos)?;
                let weight = if initial {
                    let pos_anchors = anchors.f_repeat([n, 1])?.f_index_select(0, &pos)?;
                    centerness_target(&pos_anchors, &pos_targets)?
                } else {
                    metrics.f_index_select(0, &pos)?
                };
                let pos_pred = bbox.f_index_select(0, &pos)?;
                loss_bbox.push(self.loss_bbox.forward(&pos_pred, &pos_targets.f_div_scalar(stride)?, LossArgs::default().weight(&weight).avg_factor(1.0))?);
                bbox_norm.push(weight.f_sum(Kind::Float)?);
            } else {
                loss_bbox.push(bbox.f_sum(Kind::Float)?.f_mul_scalar(0.0)?);
                bbox_norm.push(Tensor::f_zeros([], (Kind::Float, device))?);
            }
            start += count;
        }
        // One read of both normalisers, as MMDetection's `.item()`s.
        let norms = Tensor::f_stack(&[sum_all(&cls_norm)?, sum_all(&bbox_norm)?], 0)?.f_to_device(tch::Device::Cpu)?;
        let norms = Vec::<f64>::try_from(norms.f_to_kind(Kind::Double)?)?;
        let cls_avg = reduce_mean(norms[0])?.max(1.0);
        let bbox_avg = reduce_mean(norms[1])?.max(1.0);
        Ok(IndexMap::from([
            ("loss_cls".to_string(), sum_all(&loss_cls)?.f_div_scalar(cls_avg)?),
            ("loss_bbox".to_string(), sum_all(&loss_bbox)?.f_div_scalar(bbox_avg)?),
        ]))
    }

    /// The task-aligned `get_targets`: per image, the anchors inside it
    /// assigned on the (detached) predictions, then each positive's metric
    /// normalised so that its object's best reaches the object's best IoU.
    fn aligned_targets(
        &self,
        train: &ToodTrain,
        out: &ToodOutputs,
        sizes: &[(i64, i64)],
        mlvl_anchors: &[Tensor],
        samples: &[DetDataSample],
    ) -> ModelResult<ToodTargets> {
        let device = out.cls_scores[0].device();
        let n = samples.len() as i64;
        let flat = |maps: &[Tensor], c: i64, strides: bool| -> ModelResult<Tensor> {
            let parts = maps
                .iter()
                .zip(&self.prior_generator.strides)
                .map(|(m, &(s, _))| {
                    let t = m.f_detach()?.f_permute([0, 2, 3, 1])?.f_reshape([n, -1, c])?;
                    Ok(if strides { t.f_mul_scalar(s)? } else { t })
                })
                .collect::<ModelResult<Vec<_>>>()?;
            Ok(Tensor::f_cat(&parts, 1)?)
        };
        let scores = flat(&out.cls_scores, self.num_classes, false)?;
        let boxes = flat(&out.bbox_preds, 4, true)?;
        let flat_anchors = Tensor::f_cat(mlvl_anchors, 0)?;
        let fill = TargetFill { num_classes: self.num_classes, pos_weight: train.pos_weight, total: flat_anchors.size()[0] };
        let (mut labels, mut weights, mut targets, mut metrics) = (vec![], vec![], vec![], vec![]);
        for (i, sample) in samples.iter().enumerate() {
            let pad = image_hw(sample.meta.pad_shape, "pad_shape", NAME)?;
            let flags = Tensor::f_cat(&self.prior_generator.valid_flags(sizes, pad, device)?, 0)?;
            let img = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
            let inside_inds = anchor_inside_flags(&flat_anchors, &flags, img, train.allowed_border)?.f_nonzero()?.f_view([-1])?;
            if inside_inds.numel() == 0 {
                return Err(ModelError::new(
                    NAME,
                    "no valid anchor is inside the image: check the image and anchor sizes, or set allowed_border to -1 in model.train_cfg",
                ));
            }
            let anchors = flat_anchors.f_index_select(0, &inside_inds)?;
            let (i, gt) = (i as i64, sample.gt_instances.bboxes.f_view([-1, 4])?);
            let pick = |t: &Tensor| -> ModelResult<Tensor> { Ok(t.f_get(i)?.f_index_select(0, &inside_inds)?) };
            let gt_labels = &sample.gt_instances.labels;
            let assigned = train.assigner.assign(&anchors, &pick(&scores)?, &pick(&boxes)?, &gt, gt_labels, train.alpha, train.beta)?;
            let sampled = PseudoSampler::sample(&assigned.result, &anchors, &gt, gt_labels)?;
            let filled = fill.targets(&sampled, &sampled.pos_gt_bboxes.f_to_kind(Kind::Float)?, anchors.size()[0], Some(&inside_inds))?;
            let mut norm = Tensor::f_zeros([anchors.size()[0]], (Kind::Float, device))?;
            if sampled.pos_inds.numel() > 0 {
                let pos = &sampled.pos_inds;
                let owner = &sampled.pos_assigned_gt_inds;
                let m = assigned.assign_metrics.f_index_select(0, pos)?.f_to_kind(Kind::Float)?;
                let iou = assigned.max_overlaps.f_index_select(0, pos)?.f_to_kind(Kind::Float)?;
                // Per object: the largest metric and IoU among its positives
                // (both positive, so a one-hot mask's max finds them).
                let one_hot = owner.f_one_hot(sampled.num_gts)?.f_to_kind(Kind::Float)?;
                let per_gt = |v: &Tensor| -> ModelResult<Tensor> {
                    let best = v.f_unsqueeze(1)?.f_mul(&one_hot)?.f_amax([0], false)?;
                    Ok(best.f_index_select(0, owner)?)
                };
                let normed = m.f_div(&per_gt(&m)?.f_add_scalar(1e-7)?)?.f_mul(&per_gt(&iou)?)?;
                norm = norm.f_index_put(&[Some(pos.shallow_clone())], &normed, false)?;
            }
            let total = Tensor::f_zeros([flat_anchors.size()[0]], (Kind::Float, device))?;
            metrics.push(total.f_index_put(&[Some(inside_inds.shallow_clone())], &norm, false)?);
            labels.push(filled.labels);
            weights.push(filled.label_weights);
            targets.push(filled.bbox_targets);
        }
        Ok(ToodTargets {
            labels: Tensor::f_stack(&labels, 0)?,
            label_weights: Tensor::f_stack(&weights, 0)?,
            bbox_targets: Tensor::f_stack(&targets, 0)?,
            metrics: Tensor::f_stack(&metrics, 0)?,
        })
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let (mut all_boxes, mut all_scores, mut all_labels) = (vec![], vec![], vec![]);
                for (level, &(stride, _)) in self.prior_generator.strides.iter().enumerate() {
                    let img = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
                        Ok(maps[level].f_get(i as i64)?.f_detach()?.f_permute([1, 2, 0])?.f_reshape([-1, c])?)
                    };
                    let (scores, labels, keep) = filter_scores_and_topk(&img(&out.cls_scores, self.num_classes)?, cfg.score_thr, cfg.nms_pre)?;
                    all_boxes.push(img(&out.bbox_preds, 4)?.f_mul_scalar(stride)?.f_index_select(0, &keep)?);
                    all_scores.push(scores);
                    all_labels.push(labels);
                }
                let (boxes, scores, labels) = (Tensor::f_cat(&all_boxes, 0)?, Tensor::f_cat(&all_scores, 0)?, Tensor::f_cat(&all_labels, 0)?);
                bbox_post_process(boxes, scores, labels, None, sample, cfg, rescale, NAME)
            })
            .collect()
    }
}

/// (M, 4) boxes -> their (M, 2) centres.
fn anchor_centres(anchors: &Tensor) -> ModelResult<Tensor> {
    let c = |a: i64, b: i64| -> ModelResult<Tensor> { Ok(anchors.f_select(1, a)?.f_add(&anchors.f_select(1, b)?)?.f_div_scalar(2.0)?) };
    Ok(Tensor::f_stack(&[c(0, 2)?, c(1, 3)?], -1)?)
}

/// The sum of per-level scalar tensors.
fn sum_all(parts: &[Tensor]) -> ModelResult<Tensor> {
    let (first, rest) = parts.split_first().ok_or_else(|| ModelError::new(NAME, "no feature level"))?;
    rest.iter().try_fold(first.shallow_clone(), |acc, t| acc.f_add(t)).map_err(Into::into)
}

#[cfg(test)]
#[path = "tood_tests.rs"]
mod tests;
