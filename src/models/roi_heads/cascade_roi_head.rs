//! `CascadeRoIHead` (`mmdet/models/roi_heads/cascade_roi_head.py`): Cascade
//! R-CNN's chain of box heads, and Cascade Mask R-CNN's with a mask head per
//! stage.
//!
//! Training: stage `s` assigns and samples its proposals with its own
//! `train_cfg.rcnn[s]` (stricter IoU thresholds stage after stage), runs its
//! box head (and mask head on the positives), and its losses, named
//! `s{s}.loss_cls`, ... and scaled by `stage_loss_weights[s]` (`acc` is
//! not), add up. Between stages the sampled boxes are moved by the stage's
//! regression, for the class of their target (a negative's most likely
//! class), without gradient, and the ground truths the sampler added are
//! dropped: the next stage's proposals.
//! Prediction: every stage refines the boxes of the one before it; the class
//! logits of all stages are averaged, the last stage's regression decodes
//! the boxes, then NMS as in Faster R-CNN; each stage's mask head runs on the
//! detections, their sigmoid maps averaged before pasting.
//!
//! Shape shorthand: `N` images, `P` proposals of an image, `M` sampled RoIs
//! of the batch, `K` classes.

use detc::registry::models::roi_heads::CascadeRoIHeadConfig;
use detc::registry::models::train_test::{RcnnTestConfig, RcnnTrainConfig};
use indexmap::IndexMap;
use tch::{nn, Kind, Tensor};

use super::bbox_heads::bbox_head_predict::empty_instances;
use super::bbox_heads::{build_bbox_head, ConvFCBBoxHead};
use super::roi_extractors::RoIExtractor;
use super::sparse_roi_head::bbox2roi;
use super::standard_roi_head::{
    build_test, build_train, check_batch, check_fit, img_shape, predict_per_image, sample_batch, unscale_boxes,
    MaskBranch, RcnnTest, RcnnTrain, RoiFeatures,
};
use super::{check_stage_weights, per_stage, DetInstances};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::masks::{predict_by_feat_single, predict_masks};
use crate::models::task_modules::SamplingResult;

const NAME: &str = "CascadeRoIHead";

/// One stage: its extractor, box head, optional mask branch and training settings.
#[derive(Debug)]
struct Stage {
    bbox_roi_extractor: RoIExtractor,
    bbox_head: ConvFCBBoxHead,
    mask: Option<MaskBranch>,
    train: Option<RcnnTrain>,
    loss_weight: f64,
}

impl Stage {
    /// The stage's RoI features (a cascade has no shared head).
    fn features(&self) -> RoiFeatures<'_> {
        RoiFeatures { extractor: &self.bbox_roi_extractor, shared_head: None }
    }
}

#[derive(Debug)]
pub struct CascadeRoIHead {
    stages: Vec<Stage>,
    test: Option<RcnnTest>,
}

impl CascadeRoIHead {
    /// Builds under `p` (`roi_head`): `bbox_head.{s}.*` and `mask_head.{s}.*`.
    /// `train_cfg` is the detector's `train_cfg.rcnn` (one dict per stage),
    /// `test_cfg` its `test_cfg.rcnn` (each falling back to the head's own).
    pub fn new(
        cfg: &CascadeRoIHeadConfig,
        train_cfg: Option<&[RcnnTrainConfig]>,
        test_cfg: Option<&RcnnTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let n = cfg.num_stages as usize;
        check_stage_weights(&cfg.stage_loss_weights, n, NAME)?;
        let train_cfg = train_cfg.or(cfg.train_cfg.as_deref());
        if let Some(t) = train_cfg.filter(|t| t.len() != n) {
            return Err(ModelError::new(NAME, format!("train_cfg.rcnn has {} dicts for num_stages {n} (one per stage)", t.len())));
        }
        let with_mask = cfg.mask_head.is_some();
        let extractors = per_stage(&cfg.bbox_roi_extractor, n, "bbox_roi_extractor", NAME)?;
        let heads = per_stage(&cfg.bbox_head, n, "bbox_head", NAME)?;
        let mask_extractors =
            cfg.mask_roi_extractor.as_ref().map(|e| per_stage(e, n, "mask_roi_extractor", NAME)).transpose()?;
        let mask_heads = cfg.mask_head.as_ref().map(|h| per_stage(h, n, "mask_head", NAME)).transpose()?;
        let mut stages = Vec::with_capacity(n);
        for s in 0..n {
            let bbox_roi_extractor = RoIExtractor::from_cfg(extractors[s], &(p / "bbox_roi_extractor" / s))?;
            let head_cfg = heads[s];
            let bbox_head = build_bbox_head(head_cfg, &(p / "bbox_head" / s))?;
            check_fit(&bbox_roi_extractor, "bbox", bbox_head.in_channels, Some(bbox_head.roi_feat_size))?;
            let mask = match &mask_heads {
                None => None,
                Some(mask_heads) => {
                    let ext = mask_extractors.as_ref().map(|e| e[s]);
                    Some(MaskBranch::new(mask_heads[s], ext, RoiFeatures { extractor: &bbox_roi_extractor, shared_head: None }, p / "mask_roi_extractor" / s, &(p / "mask_head" / s))?)
                }
            };
            stages.push(Stage {
                bbox_roi_extractor,
                bbox_head,
                mask,
                train: train_cfg.map(|t| build_train(&t[s], with_mask)).transpose()?,
                loss_weight: cfg.stage_loss_weights[s],
            });
        }
        let test = test_cfg.or(cfg.test_cfg.as_ref()).map(|c| build_test(c, with_mask)).transpose()?;
        Ok(CascadeRoIHead { stages, test })
    }

    /// Whether every stage has a mask head (Cascade Mask R-CNN).
    pub fn with_mask(&self) -> bool {
        self.stages.iter().all(|s| s.mask.is_some())
    }

    /// The last stage's box head (its class count is the detector's).
    pub fn bbox_head(&self) -> &ConvFCBBoxHead {
        &self.stages.last().expect("a cascade has a stage").bbox_head
    }

    /// `loss(x, rpn_results_list, batch_data_samples)`: `s{s}.loss_cls`,
    /// `s{s}.acc`, `s{s}.loss_bbox` (and `s{s}.loss_mask`) of every stage.
    /// `proposals`: per image (P, 4) boxes from the RPN (detached).
    pub fn loss(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
    ) -> ModelResult<IndexMap<String, Tensor>> {
        check_batch(&proposals, samples)?;
        let mut losses = IndexMap::new();
        let mut proposals = proposals;
        let last = self.stages.len() - 1;
        for (s, stage) in self.stages.iter().enumerate() {
            let train = stage
                .train
                .as_ref()
                .ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg.rcnn (one dict per stage)"))?;
            let sampling = sample_batch(train, &proposals, samples, stage.features(), &stage.bbox_head, x)?;
            let priors = sampling.iter().map(|r| r.priors()).collect::<ModelResult<Vec<_>>>()?;
            let rois = bbox2roi(&priors)?;
            let bbox_feats = stage.bbox_roi_extractor.forward(x, &rois)?;
            let (cls_score, bbox_pred) = stage.bbox_head.forward_t(&bbox_feats, true)?;
            let mut stage_losses =
                stage.bbox_head.loss_and_target(&cls_score, &bbox_pred, &rois, &sampling, train.pos_weight)?;
            if let Some(mask) = &stage.mask {
                stage_losses.insert("loss_mask".into(), mask.loss(x, &sampling, &bbox_feats, stage.features(), samples, train)?);
            }
            for (name, value) in stage_losses {
                let value = if name.contains("loss") { value.f_mul_scalar(stage.loss_weight)? } else { value };
                losses.insert(format!("s{s}.{name}"), value);
            }
            if s < last {
                let refined = tch::no_grad(|| {
                    refine_bboxes(&stage.bbox_head, &sampling, &rois, &cls_score, &bbox_pred, samples)
                })?;
                match refined {
                    Some(next) => proposals = next,
                    None => break,
                }
            }
        }
        Ok(losses)
    }

    /// `predict(x, rpn_results_list, batch_data_samples, rescale)`: per image
    /// the detections after `test_cfg` and, with mask heads, their binary
    /// masks; `rescale` as `StandardRoIHead::predict`.
    pub fn predict(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
        rescale: bool,
    ) -> ModelResult<Vec<DetInstances>> {
        let test = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "prediction needs model.test_cfg.rcnn"))?;
        check_batch(&proposals, samples)?;
        let rois = bbox2roi(&proposals)?;
        if rois.size()[0] == 0 {
            let mut empty = samples.iter().map(|_| empty_instances(&rois)).collect::<ModelResult<Vec<_>>>()?;
            if self.with_mask() {
                self.predict_mask(x, samples, &mut empty, test.mask_thr_binary, rescale)?;
            }
            return Ok(empty);
        }
        let counts: Vec<i64> = proposals.iter().map(|p| p.size()[0]).collect();
        let (rois, cls_scores, bbox_preds) = self.refine_roi(x, rois, samples, &counts)?;
        // With mask heads the boxes stay in the resized image until the masks are pasted.
        let bbox_rescale = rescale && !self.with_mask();
        let mut results =
            predict_per_image(self.bbox_head(), &rois, &cls_scores, &bbox_preds, samples, &test.boxes, bbox_rescale)?;
        if self.with_mask() {
            self.predict_mask(x, samples, &mut results, test.mask_thr_binary, rescale)?;
        }
        Ok(results)
    }

    /// `_refine_roi`: each stage's box head on the RoIs, each stage but the
    /// last moving them (per image, by the deltas of each RoI's top
    /// non-background class). Returns per image the last stage's RoIs, the
    /// class logits averaged over the stages and the last stage's deltas.
    fn refine_roi(
        &self,
        x: &[Tensor],
        rois: Tensor,
        samples: &[DetDataSample],
        counts: &[i64],
    ) -> ModelResult<(Vec<Tensor>, Vec<Tensor>, Vec<Tensor>)> {
        let mut rois = rois;
        let mut score_sum: Option<Tensor> = None;
        let last = self.stages.len() - 1;
        for (s, stage) in self.stages.iter().enumerate() {
            let feats = stage.bbox_roi_extractor.forward(x, &rois)?;
            let (cls_score, bbox_pred) = stage.bbox_head.forward_t(&feats, false)?;
            score_sum = Some(match score_sum {
                None => cls_score.shallow_clone(),
                Some(sum) => sum.f_add(&cls_score)?,
            });
            if s == last {
                let scores = score_sum.expect("one stage ran").f_div_scalar(self.stages.len() as f64)?;
                return Ok((
                    rois.f_split_with_sizes(counts, 0)?,
                    scores.f_split_with_sizes(counts, 0)?,
                    bbox_pred.f_split_with_sizes(counts, 0)?,
                ));
            }
            let k = stage.bbox_head.num_classes;
            let labels = cls_score.f_narrow(1, 0, k)?.f_argmax(1, false)?;
            let mut refined = Vec::with_capacity(samples.len());
            let parts = rois.f_split_with_sizes(counts, 0)?;
            let labels = labels.f_split_with_sizes(counts, 0)?;
            let deltas = bbox_pred.f_split_with_sizes(counts, 0)?;
            for (i, sample) in samples.iter().enumerate() {
                if parts[i].size()[0] == 0 {
                    continue;
                }
                let boxes = stage.bbox_head.regress_by_class(
                    &parts[i].f_narrow(1, 1, 4)?,
                    &labels[i],
                    &deltas[i],
                    img_shape(sample)?,
                )?;
                refined.push(Tensor::f_cat(&[&parts[i].f_narrow(1, 0, 1)?, &boxes], 1)?);
            }
            rois = Tensor::f_cat(&refined, 0)?;
        }
        unreachable!("the last stage returns")
    }

    /// `predict_mask`: each stage's mask head on the detections (resized-image
    /// boxes); the sigmoid maps are averaged over the stages and pasted per
    /// image; with `rescale` the boxes are then divided by `scale_factor`.
    fn predict_mask(
        &self,
        x: &[Tensor],
        samples: &[DetDataSample],
        results: &mut [DetInstances],
        mask_thr_binary: f64,
        rescale: bool,
    ) -> ModelResult<()> {
        let boxes: Vec<Tensor> = results.iter().map(|r| r.bboxes.shallow_clone()).collect();
        let mask_rois = bbox2roi(&boxes)?;
        let merged = if mask_rois.size()[0] == 0 {
            None
        } else {
            let mut sum: Option<Tensor> = None;
            for stage in &self.stages {
                let mask = stage.mask.as_ref().expect("predict_mask runs with mask heads");
                let probs = mask.forward(x, &mask_rois, stage.features())?.f_sigmoid()?;
                sum = Some(match sum {
                    None => probs,
                    Some(total) => total.f_add(&probs)?,
                });
            }
            let mean = sum.expect("a cascade has a stage").f_div_scalar(self.stages.len() as f64)?;
            let counts: Vec<i64> = boxes.iter().map(|b| b.size()[0]).collect();
            Some(mean.f_split_with_sizes(&counts, 0)?)
        };
        for (i, (res, sample)) in results.iter_mut().zip(samples).enumerate() {
            let probs = match &merged {
                Some(m) => m[i].shallow_clone(),
                None => Tensor::f_zeros([0, 1, 1, 1], (Kind::Float, res.bboxes.device()))?,
            };
            let masks = if res.bboxes.size()[0] == 0 {
                predict_masks(&probs, &res.bboxes, &res.labels, &sample.meta, mask_thr_binary, rescale)?
            } else {
                predict_by_feat_single(&probs, &res.bboxes, &res.labels, &sample.meta, mask_thr_binary, rescale, true)?
            };
            if rescale {
                unscale_boxes(res, sample)?;
            }
            res.masks = Some(masks);
        }
        Ok(())
    }
}

/// `BBoxHead.refine_bboxes`: each image's sampled RoIs moved by `bbox_pred`
/// for the class of their target (a negative's: its top class), the ground
/// truths the sampler added dropped; `None` when there is no RoI.
fn refine_bboxes(
    head: &ConvFCBBoxHead,
    sampling: &[SamplingResult],
    rois: &Tensor,
    cls_score: &Tensor,
    bbox_pred: &Tensor,
    samples: &[DetDataSample],
) -> ModelResult<Option<Vec<Tensor>>> {
    if cls_score.numel() == 0 {
        return Ok(None);
    }
    let k = head.num_classes;
    let top_class = cls_score.f_narrow(1, 0, k)?.f_argmax(1, false)?;
    let counts: Vec<i64> = sampling.iter().map(|r| r.pos_priors.size()[0] + r.neg_priors.size()[0]).collect();
    let parts = rois.f_split_with_sizes(&counts, 0)?;
    let top_class = top_class.f_split_with_sizes(&counts, 0)?;
    let deltas = bbox_pred.f_split_with_sizes(&counts, 0)?;
    let mut out = Vec::with_capacity(sampling.len());
    for (i, (r, sample)) in sampling.iter().zip(samples).enumerate() {
        // The positives' targets are their ground truths' labels; the negatives' the background.
        let num_pos = r.pos_priors.size()[0];
        let num_neg = counts[i] - num_pos;
        let background = Tensor::f_full([num_neg], k, (Kind::Int64, r.pos_gt_labels.device()))?;
        let labels = Tensor::f_cat(&[&r.pos_gt_labels.f_to_kind(Kind::Int64)?, &background], 0)?;
        let labels = top_class[i].f_where_self(&labels.f_eq(k)?, &labels)?;
        let boxes = head.regress_by_class(&parts[i].f_narrow(1, 1, 4)?, &labels, &deltas[i], img_shape(sample)?)?;
        // Keep every negative and the positives that are not added ground truths.
        let keep = Tensor::f_cat(
            &[
                &r.pos_is_gt.f_to_kind(Kind::Int64)?.f_eq(0)?,
                &Tensor::f_ones([num_neg], (Kind::Bool, boxes.device()))?,
            ],
            0,
        )?;
        out.push(boxes.f_index_select(0, &keep.f_nonzero()?.f_view([-1])?)?);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::Device;

    use super::*;
    use crate::models::layers::fixtures::assert_close;
    use crate::models::roi_heads::standard_roi_head::tests::{extractor, features, fx, load, proposals, samples};

    /// `cascade_cfg(with_mask)` of tests/models/two_stage_roi_reference.py.
    fn tiny(prefix: &str, with_mask: bool) -> (VarStore, CascadeRoIHead) {
        let stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]];
        let heads: Vec<serde_json::Value> = (0..3)
            .map(|s| {
                serde_json::json!({
                    "type": "Shared2FCBBoxHead", "in_channels": 8, "fc_out_channels": 16, "roi_feat_size": 7,
                    "num_classes": 3, "reg_class_agnostic": s != 1,
                    "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": stds[s]},
                    "loss_bbox": if s == 0 { serde_json::json!({"type": "SmoothL1Loss", "beta": 1.0, "loss_weight": 1.0}) }
                                 else { serde_json::json!({"type": "L1Loss", "loss_weight": 1.0}) }
                })
            })
            .collect();
        let train: Vec<serde_json::Value> = [0.5, 0.6, 0.7]
            .iter()
            .map(|t| {
                serde_json::json!({
                    "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": t, "neg_iou_thr": t, "min_pos_iou": t,
                                 "match_low_quality": false, "ignore_iof_thr": -1},
                    "sampler": {"type": "RandomSampler", "num": 512, "pos_fraction": 0.25, "neg_pos_ub": -1,
                                "add_gt_as_proposals": true},
                    "mask_size": 28, "pos_weight": -1
                })
            })
            .collect();
        let mut cfg = serde_json::json!({
            "num_stages": 3, "stage_loss_weights": [1, 0.5, 0.25],
            "bbox_roi_extractor": extractor(7), "bbox_head": heads, "train_cfg": train,
            "test_cfg": {"score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20,
                         "mask_thr_binary": 0.5}
        });
        if with_mask {
            cfg["mask_roi_extractor"] = extractor(14);
            cfg["mask_head"] = serde_json::json!({"type": "FCNMaskHead", "num_convs": 2, "roi_feat_size": 14,
                                                   "in_channels": 8, "conv_out_channels": 8, "num_classes": 3});
        }
        let vs = VarStore::new(Device::Cpu);
        let head = CascadeRoIHead::new(&serde_json::from_value(cfg).unwrap(), None, None, &vs.root()).unwrap();
        load(&vs, prefix);
        (vs, head)
    }

    /// Every stage's losses (scaled by its weight, `acc` not), the gradients
    /// through the refinements, and the predictions (averaged scores, last
    /// stage's boxes, stage-averaged masks) equal MMDetection's.
    #[test]
    fn cascade_roi_head_equals_mmdet() {
        for (prefix, with_mask) in [("cas", false), ("casm", true)] {
            let (vs, head) = tiny(prefix, with_mask);
            let x = features(prefix);
            let losses = head.loss(&x, proposals(), &samples()).unwrap();
            let mut want_keys = vec![];
            for s in 0..3 {
                want_keys.extend([format!("s{s}.loss_cls"), format!("s{s}.acc"), format!("s{s}.loss_bbox")]);
                if with_mask {
                    want_keys.push(format!("s{s}.loss_mask"));
                }
            }
            assert_eq!(losses.keys().cloned().collect::<Vec<_>>(), want_keys);
            let mut total: Option<Tensor> = None;
            for (name, v) in &losses {
                let want = fx(&format!("{prefix}.out.{name}"));
                assert_close(v, &want, 1e-6, 1e-5, &format!("{prefix} {name}"));
                if name.contains("loss") {
                    let v = v.sum(Kind::Float);
                    total = Some(match total {
                        None => v,
                        Some(t) => t + v,
                    });
                }
            }
            total.unwrap().backward();
            let vars = vs.variables();
            let mut keys = vec!["bbox_head.0.fc_cls.weight", "bbox_head.1.fc_reg.weight", "bbox_head.2.shared_fcs.0.weight"];
            if with_mask {
                keys.extend(["mask_head.0.conv_logits.weight", "mask_head.2.convs.0.conv.weight"]);
            }
            let close = |got: &Tensor, key: &str| {
                let want = fx(&format!("{prefix}.grad.{key}"));
                let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
                assert_close(got, &want, tol, 1e-5, &format!("{prefix} grad {key}"));
            };
            for key in keys {
                close(&vars[key].grad(), key);
            }
            for (i, t) in x.iter().enumerate() {
                close(&t.grad(), &format!("x.{i}"));
            }

            for rescale in [true, false] {
                let res = tch::no_grad(|| head.predict(&x, proposals(), &samples(), rescale)).unwrap();
                for (i, r) in res.iter().enumerate() {
                    let p = format!("{prefix}.pred{}.{i}", rescale as i32);
                    let want = |k: &str| fx(&format!("{p}.{k}"));
                    assert_close(&r.bboxes, &want("bboxes"), 1e-4, 1e-5, &format!("{p} bboxes"));
                    assert_close(&r.scores, &want("scores"), 1e-6, 1e-5, &format!("{p} scores"));
                    assert_eq!(r.labels, want("labels"), "{p} labels");
                    if with_mask {
                        let differ = r.masks.as_ref().unwrap().ne_tensor(&want("masks")).sum(Kind::Int64).int64_value(&[]);
                        assert_eq!(differ, 0, "{p}: {differ} mask pixels differ");
                    }
                }
            }
        }
    }
}
