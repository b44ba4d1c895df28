//! `FreeAnchorRetinaHead` (Zhang et al., "FreeAnchor: Learning to Match
//! Anchors for Visual Object Detection", <https://arxiv.org/abs/1909.02466>)
//! as `mmdet/models/dense_heads/free_anchor_retina_head.py`: RetinaHead's
//! branches, names and test; training without an assigner.
//!
//! Per ground truth, its bag is the `pre_anchor_topk` anchors that overlap
//! it most. Each anchor of the bag has a classification likelihood (its
//! sigmoid score at the object's class) and a localisation likelihood
//! `exp(-loss_bbox)` of its deltas against the object's; the positive bag
//! loss is `alpha * -log` of their products' mean-max (weights
//! `1 / (1 - p)`, normalised), averaged over the objects. Every anchor's
//! score at class `c` is pushed down, by a focal `(1 - alpha) * p^gamma *
//! -log(1 - p)`, where `p` is the score times one minus the (detached)
//! probability that the anchor's decoded box is an object of class `c`:
//! the IoU with that object ramped from 0 at `bbox_thr` to 1 at the
//! object's best IoU, the highest over the objects of the class. Its sum is
//! divided by the objects times `pre_anchor_topk`.
//!
//! Shape shorthand: `N` images, `J` anchors of all levels, `C` classes,
//! `G` objects of an image, `k` the bag size.

use detc::registry::models::dense_heads::{FreeAnchorRetinaHeadConfig, RetinaHeadConfig};
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig};
use indexmap::IndexMap;
use tch::{nn, Kind, Tensor};

use super::anchor_head::featmap_sizes;
use super::RetinaHead;
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{LossArgs, Reduction};
use crate::models::ops::{bbox_overlaps, OverlapMode};
use crate::models::roi_heads::DetInstances;

const NAME: &str = "FreeAnchorRetinaHead";
const EPS: f64 = 1e-12;

#[derive(Debug)]
pub struct FreeAnchorRetinaHead {
    pub retina: RetinaHead,
    pre_anchor_topk: i64,
    bbox_thr: f64,
    gamma: f64,
    alpha: f64,
}

/// `F.binary_cross_entropy` against 1 (`target_one`) or 0, with torch's
/// clamp of the log at -100.
fn bce(p: &Tensor, target_one: bool) -> ModelResult<Tensor> {
    let log = if target_one { p.f_log()? } else { p.f_neg()?.f_add_scalar(1.0)?.f_log()? };
    Ok(log.f_clamp_min(-100.0)?.f_neg()?)
}

impl FreeAnchorRetinaHead {
    /// Builds under `p` (`bbox_head`) with RetinaHead's names.
    pub fn new(
        cfg: &FreeAnchorRetinaHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        test_cfg: Option<&DenseTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        if cfg.loss_cls.0.get("use_sigmoid").and_then(|v| v.as_bool()) != Some(true) {
            return Err(ModelError::new(NAME, "loss_cls must have use_sigmoid: true (the bag losses read sigmoid scores)"));
        }
        // RetinaHead's config is this one without the bag-loss settings.
        let mut retina = serde_json::to_value(cfg).map_err(|e| ModelError::new(NAME, e.to_string()))?;
        if let Some(map) = retina.as_object_mut() {
            for key in ["pre_anchor_topk", "bbox_thr", "gamma", "alpha"] {
                map.remove(key);
            }
        }
        let retina: RetinaHeadConfig = serde_json::from_value(retina).map_err(|e| ModelError::new(NAME, e.to_string()))?;
        Ok(FreeAnchorRetinaHead {
            retina: RetinaHead::new(&retina, train_cfg, test_cfg, p)?,
            pre_anchor_topk: cfg.pre_anchor_topk as i64,
            bbox_thr: cfg.bbox_thr,
            gamma: cfg.gamma,
            alpha: cfg.alpha,
        })
    }

    /// `loss`: `positive_bag_loss` and `negative_bag_loss`.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        let head = &self.retina;
        let (cls_scores, bbox_preds) = head.forward(x)?;
        let device = cls_scores[0].device();
        let anchors = Tensor::f_cat(&head.prior_generator.grid_priors(&featmap_sizes(&cls_scores), device)?, 0)?;
        let n = samples.len() as i64;
        let c = head.num_classes;
        let flat = |maps: &[Tensor], ch: i64| -> ModelResult<Tensor> {
            let levels = maps.iter().map(|m| m.f_permute([0, 2, 3, 1])?.f_reshape([n, -1, ch])).collect::<Result<Vec<_>, _>>()?;
            Ok(Tensor::f_cat(&levels, 1)?)
        };
        let cls_probs = flat(&cls_scores, c)?.f_sigmoid()?;
        let deltas = flat(&bbox_preds, 4)?;
        let (mut box_probs, mut positive, mut num_pos) = (Vec::with_capacity(samples.len()), Vec::new(), 0i64);
        for (i, sample) in samples.iter().enumerate() {
            let (probs, deltas) = (cls_probs.f_get(i as i64)?, deltas.f_get(i as i64)?);
            let gt_bboxes = sample.gt_instances.bboxes.f_view([-1, 4])?.f_to_kind(Kind::Float)?;
            let gt_labels = &sample.gt_instances.labels;
            box_probs.push(tch::no_grad(|| self.box_prob(&anchors, &deltas, &gt_bboxes, gt_labels, c))?);
            let g = gt_bboxes.size()[0];
            if g > 0 {
                positive.push(self.positive_bag_loss(&anchors, &probs, &deltas, &gt_bboxes, gt_labels)?);
                num_pos += g;
            }
        }
        let positive_loss = if num_pos == 0 {
            // No object in the batch: the regression branch still gets a (zero) gradient.
            deltas.f_sum(deltas.kind())?.f_mul_scalar(0.0)?
        } else {
            Tensor::f_cat(&positive, 0)?.f_sum(Kind::Float)?.f_div_scalar(num_pos as f64)?
        };
        let prob = cls_probs.f_mul(&Tensor::f_stack(&box_probs, 0)?.f_neg()?.f_add_scalar(1.0)?)?.f_clamp(EPS, 1.0 - EPS)?;
        let negative = prob
            .f_pow_tensor_scalar(self.gamma)?
            .f_mul(&bce(&prob, false)?)?
            .f_mul_scalar(1.0 - self.alpha)?
            .f_sum(Kind::Float)?
            .f_div_scalar((num_pos * self.pre_anchor_topk).max(1) as f64)?;
        Ok(IndexMap::from([
            ("positive_bag_loss".to_string(), positive_loss),
            ("negative_bag_loss".to_string(), negative),
        ]))
    }

    /// The (J, C) probability that each anchor's decoded box is an object
    /// of each class (0 without objects).
    fn box_prob(&self, anchors: &Tensor, deltas: &Tensor, gt_bboxes: &Tensor, gt_labels: &Tensor, c: i64) -> ModelResult<Tensor> {
        let j = anchors.size()[0];
        let zeros = Tensor::f_zeros([j, c], (Kind::Float, anchors.device()))?;
        let g = gt_bboxes.size()[0];
        if g == 0 {
            return Ok(zeros);
        }
        let boxes = self.retina.bbox_coder.decode(anchors, &deltas.f_detach()?, None)?;
        let iou = bbox_overlaps(gt_bboxes, &boxes, OverlapMode::Iou, false)?;
        let t1 = self.bbox_thr;
        let t2 = iou.f_amax([1], true)?.f_clamp_min(t1 + EPS)?;
        let object_prob = iou.f_sub_scalar(t1)?.f_div(&t2.f_sub_scalar(t1)?)?.f_clamp(0.0, 1.0)?;
        // Per anchor and class, the highest over the objects of that class
        // (the probabilities are not negative, so the zeros stay elsewhere).
        Ok(zeros.f_index_reduce(1, gt_labels, &object_prob.f_transpose(0, 1)?, "amax", true)?)
    }

    /// `positive_loss_single` of an image with `G` objects: (G,) losses.
    fn positive_bag_loss(&self, anchors: &Tensor, probs: &Tensor, deltas: &Tensor, gt_bboxes: &Tensor, gt_labels: &Tensor) -> ModelResult<Tensor> {
        let (g, k, c) = (gt_bboxes.size()[0], self.pre_anchor_topk, self.retina.num_classes);
        let overlaps = bbox_overlaps(gt_bboxes, anchors, OverlapMode::Iou, false)?;
        let (_, matched) = overlaps.f_topk(k, 1, true, false)?;
        let flat = matched.f_reshape([-1])?;
        let cls_prob = probs
            .f_index_select(0, &flat)?
            .f_view([g, k, c])?
            .f_gather(2, &gt_labels.f_view([g, 1, 1])?.f_expand([g, k, 1], false)?, false)?
            .f_squeeze_dim(2)?;
        let matched_anchors = anchors.f_index_select(0, &flat)?;
        let targets = self.retina.bbox_coder.encode(&matched_anchors, &gt_bboxes.f_unsqueeze(1)?.f_expand([g, k, 4], false)?.f_reshape([-1, 4])?)?;
        let loss_bbox = self
            .retina
            .loss_bbox
            .forward(&deltas.f_index_select(0, &flat)?, &targets, LossArgs::default().reduction(Reduction::None))?
            .f_view([g, k, 4])?
            .f_sum_dim_intlist(-1, false, None::<Kind>)?;
        let matched_prob = cls_prob.f_mul(&loss_bbox.f_neg()?.f_exp()?)?;
        // Mean-max: weights 1 / (1 - p), normalised over the bag.
        let weight = matched_prob.f_neg()?.f_add_scalar(1.0)?.f_clamp_min(EPS)?.f_reciprocal()?;
        let weight = weight.f_div(&weight.f_sum_dim_intlist(1, true, None::<Kind>)?)?;
        let bag = weight.f_mul(&matched_prob)?.f_sum_dim_intlist(1, false, None::<Kind>)?;
        Ok(bce(&bag, true)?.f_mul_scalar(self.alpha)?)
    }

    /// RetinaHead's `predict`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        self.retina.predict(x, samples, rescale)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use tch::nn::VarStore;
    use tch::Device;

    use super::*;
    use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

    fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/free_anchor_reference.py", "detc-free-anchor", "free_anchor.pth"))
    }

    fn fx(key: &str) -> Tensor {
        tensor(fixture(), key)
    }

    /// `CASES` of the reference script.
    fn cfg(case: &str) -> (FreeAnchorRetinaHeadConfig, RpnTrainConfig, DenseTestConfig) {
        let mut head = serde_json::json!({
            "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8,
            "anchor_generator": {"type": "AnchorGenerator", "octave_base_scale": 4, "scales_per_octave": 2,
                                 "ratios": [0.5, 1.0, 2.0], "strides": [8, 16, 32]},
            "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0],
                           "target_stds": [0.1, 0.1, 0.2, 0.2]},
            "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
            "loss_bbox": {"type": "SmoothL1Loss", "beta": 0.11, "loss_weight": 0.75}
        });
        if case == "tuned" {
            let extra = serde_json::json!({"pre_anchor_topk": 7, "bbox_thr": 0.3, "gamma": 1.5, "alpha": 0.3,
                                           "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}});
            head.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        }
        let train = serde_json::json!({
            "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0, "ignore_iof_thr": -1},
            "sampler": {"type": "PseudoSampler"}, "allowed_border": -1, "pos_weight": -1, "debug": false
        });
        let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                      "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
        (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap())
    }

    fn check_case(case: &str) {
        let _seed = crate::models::layers::fixtures::seeded();
        let (cfg, train, test) = cfg(case);
        let vs = VarStore::new(Device::Cpu);
        let head = FreeAnchorRetinaHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
        let samples = || crate::models::dense_heads::base_dense_head::reference_samples(fx);
        crate::models::dense_heads::base_dense_head::check_head_case(
            fixture(),
            case,
            &vs,
            |x, _| head.loss(x, &samples()).unwrap(),
            |x, rescale| head.predict(x, &samples(), rescale).unwrap(),
        );
    }

    /// The free_anchor/ configs' head scaled down: both bag losses (an image
    /// without objects in the batch), every gradient, the detections.
    #[test]
    fn free_anchor_head_equals_mmdet() {
        check_case("plain");
    }

    /// Small bags, a lower `bbox_thr`, other gamma and alpha, an L1 likelihood.
    #[test]
    fn free_anchor_head_with_small_bags_equals_mmdet() {
        check_case("tuned");
    }
}
