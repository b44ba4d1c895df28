//! `SparseRoIHead` (`mmdet/models/roi_heads/sparse_roi_head.py`): the
//! iterative head of Sparse R-CNN and QueryInst. Each of the `num_stages`
//! stages pools RoI features for the current boxes, runs its `DIIHead` on them
//! and on the object features, and decodes refined boxes. Boxes and class
//! scores are detached between stages and for matching; the object features
//! flow on with their gradients. In training each stage is matched to the
//! ground truth (Hungarian, on the CPU) and contributes `s{i}.loss_*`; with a
//! mask head (QueryInst) each stage also trains its `DynamicMaskHead` on the
//! positives. Prediction has no NMS: top-k over proposals × classes.
//!
//! Shape shorthand: `N` images, `P` proposals per image, `C` feature channels,
//! `K` classes, `G` ground truths of an image.

use detc::registry::models::common::{IntOrPair, OneOrMany};
use detc::registry::models::roi_heads::SparseRoIHeadConfig;
use detc::registry::models::train_test::{RcnnTrainConfig, SparseRcnnTestConfig};
use detc::registry::refs::{BBoxHeadCfg, MaskHeadCfg, RoiExtractorCfg};
use indexmap::IndexMap;
use tch::{nn, Kind, Tensor};

use super::bbox_heads::DIIHead;
use super::mask_heads::DynamicMaskHead;
use super::{check_stage_weights, gt_masks, per_stage};
use super::roi_extractors::SingleRoIExtractor;
use crate::models::data_preprocessors::{DetDataSample, MaskTensors};
use crate::models::dense_heads::Proposals;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::masks::predict_masks;
use crate::models::task_modules::{HungarianAssigner, MatchInputs, PseudoSampler, SamplingResult};
use crate::models::ops::upload_as;

const NAME: &str = "SparseRoIHead";

/// The distributed mean of a count (`reduce_mean`); the identity in one process.
pub type ReduceMean<'a> = &'a dyn Fn(f64) -> ModelResult<f64>;

/// The training settings of one stage.
#[derive(Debug)]
struct StageTrain {
    assigner: HungarianAssigner,
    pos_weight: f64,
    mask_size: Option<(i64, i64)>,
}

/// The predictions of one image (`pred_instances`).
#[derive(Debug)]
pub struct DetInstances {
    /// (k, 4) x1y1x2y2: original-image pixels with `rescale`, else resized-image pixels.
    pub bboxes: Tensor,
    /// (k,) sigmoid class scores.
    pub scores: Tensor,
    /// (k,) int64 contiguous labels.
    pub labels: Tensor,
    /// (k, H, W) bool masks (QueryInst).
    pub masks: Option<Tensor>,
}

/// What one stage's box forward gives (`_bbox_forward`).
struct StageOutput {
    /// (N, P, K) logits.
    cls_score: Tensor,
    /// (N*P, 4) refined boxes, with gradients.
    decoded_bboxes: Tensor,
    /// (N, P, C), with gradients (the next stage's object features).
    object_feats: Tensor,
    /// (N, P, C) the attention features (the mask head's dynamic parameters).
    attn_feats: Tensor,
    /// Per image (P, 4) refined boxes, detached.
    detached_proposals: Vec<Tensor>,
}

#[derive(Debug)]
pub struct SparseRoIHead {
    stage_loss_weights: Vec<f64>,
    bbox_roi_extractor: Vec<SingleRoIExtractor>,
    bbox_head: Vec<DIIHead>,
    mask_roi_extractor: Vec<SingleRoIExtractor>,
    mask_head: Vec<DynamicMaskHead>,
    train: Vec<StageTrain>,
    test_cfg: Option<SparseRcnnTestConfig>,
}

/// A per-stage list: one config for all stages, or exactly `n`.
fn square(size: IntOrPair) -> (i64, i64) {
    match size {
        IntOrPair::Int(s) => (s as i64, s as i64),
        IntOrPair::Pair((h, w)) => (h as i64, w as i64),
    }
}

/// `bbox2roi`: per-image (P_i, 4) boxes -> (sum P_i, 5) `[img_idx, x1, y1, x2, y2]`.
pub fn bbox2roi(boxes: &[Tensor]) -> ModelResult<Tensor> {
    let rois = boxes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let idx = Tensor::f_full([b.size()[0], 1], i as f64, (b.kind(), b.device()))?;
            Ok(Tensor::f_cat(&[idx, b.f_narrow(1, 0, 4)?], 1)?)
        })
        .collect::<ModelResult<Vec<_>>>()?;
    Ok(Tensor::f_cat(&rois, 0)?)
}

impl SparseRoIHead {
    /// Builds the stages under `p` (`roi_head`): heads at `bbox_head.{i}` and
    /// `mask_head.{i}`. `train_cfg` is the detector's `train_cfg.rcnn` (one per
    /// stage), `test_cfg` its `test_cfg.rcnn`.
    pub fn new(
        cfg: &SparseRoIHeadConfig,
        train_cfg: Option<&[RcnnTrainConfig]>,
        test_cfg: Option<&SparseRcnnTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let n = cfg.num_stages as usize;
        check_stage_weights(&cfg.stage_loss_weights, n, NAME)?;
        let bbox_roi_extractor = per_stage(&cfg.bbox_roi_extractor, n, "bbox_roi_extractor", NAME)?
            .into_iter()
            .map(SingleRoIExtractor::from_cfg)
            .collect::<ModelResult<Vec<_>>>()?;
        let bbox_head = per_stage(&cfg.bbox_head, n, "bbox_head", NAME)?
            .into_iter()
            .enumerate()
            .map(|(i, c)| build_bbox_head(c, &(p / "bbox_head" / i)))
            .collect::<ModelResult<Vec<_>>>()?;
        let (mask_roi_extractor, mask_head) = match (&cfg.mask_roi_extractor, &cfg.mask_head) {
            (Some(ext), Some(head)) => (
                per_stage(ext, n, "mask_roi_extractor", NAME)?
                    .into_iter()
                    .map(SingleRoIExtractor::from_cfg)
                    .collect::<ModelResult<Vec<_>>>()?,
                per_stage(head, n, "mask_head", NAME)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| build_mask_head(c, &(p / "mask_head" / i)))
                    .collect::<ModelResult<Vec<_>>>()?,
            ),
            (None, None) => (vec![], vec![]),
            _ => {
                return Err(ModelError::new(
                    NAME,
                    "mask_roi_extractor and mask_head go together (detc has no shared-extractor mask branch)",
                ))
            }
        };
        let with_mask = !mask_head.is_empty();
        let train = match train_cfg {
            None => vec![],
            Some(stages) if stages.len() != n => {
                return Err(ModelError::new(
                    NAME,
                    format!("train_cfg.rcnn has {} entries for num_stages {n}", stages.len()),
                ))
            }
            Some(stages) => stages
                .iter()
                .map(|s| {
                    match cfg_type(&s.sampler.0, "sampler")? {
                        "PseudoSampler" => {}
                        other => {
                            return Err(ModelError::new(
                                NAME,
                                format!("Sparse R-CNN and QueryInst only support PseudoSampler, not {other:?}"),
                            ))
                        }
                    }
                    if s.soft_mask_target {
                        return Err(ModelError::new(
                            NAME,
                            "train_cfg.rcnn.soft_mask_target is not supported (binary mask targets only)",
                        ));
                    }
                    let mask_size = s.mask_size.map(square);
                    if with_mask && mask_size.is_none() {
                        return Err(ModelError::new(NAME, "train_cfg.rcnn needs mask_size with a mask head"));
                    }
                    Ok(StageTrain {
                        assigner: HungarianAssigner::from_cfg(&s.assigner)?,
                        pos_weight: s.pos_weight,
                        mask_size,
                    })
                })
                .collect::<ModelResult<Vec<_>>>()?,
        };
        Ok(SparseRoIHead {
            stage_loss_weights: cfg.stage_loss_weights.clone(),
            bbox_roi_extractor,
            bbox_head,
            mask_roi_extractor,
            mask_head,
            train,
            test_cfg: test_cfg.cloned(),
        })
    }

    pub fn num_stages(&self) -> usize {
        self.bbox_head.len()
    }

    pub fn with_mask(&self) -> bool {
        !self.mask_head.is_empty()
    }

    /// `_bbox_forward` + `refine_bboxes`: one stage on the current boxes.
    fn bbox_forward(
        &self,
        stage: usize,
        x: &[Tensor],
        proposals: &[Tensor],
        object_feats: &Tensor,
        img_shapes: &[(f64, f64)],
        train: bool,
    ) -> ModelResult<StageOutput> {
        let head = &self.bbox_head[stage];
        let rois = bbox2roi(proposals)?;
        let bbox_feats = self.bbox_roi_extractor[stage].forward(x, &rois)?;
        let out = head.forward_t(&bbox_feats, object_feats, train)?;
        let deltas = out.bbox_pred.f_reshape([-1, 4])?;
        // Every image's boxes decoded at once, each clamped to its own shape.
        let counts: Vec<i64> = proposals.iter().map(|b| b.size()[0]).collect();
        let images: Vec<((f64, f64), i64)> = img_shapes.iter().copied().zip(counts.iter().copied()).collect();
        let decoded = head
            .bbox_coder
            .decode_images(&rois.f_narrow(1, 1, 4)?, &deltas, Some(&images))?;
        let detached_proposals = decoded.f_detach()?.f_split_with_sizes(&counts, 0)?;
        Ok(StageOutput {
            cls_score: out.cls_score,
            decoded_bboxes: decoded,
            object_feats: out.obj_feat,
            attn_feats: out.attn_feats,
            detached_proposals,
        })
    }

    /// `SparseRoIHead.loss`: every stage's `s{i}.loss_cls`, `s{i}.pos_acc`,
    /// `s{i}.loss_bbox`, `s{i}.loss_iou` (and `s{i}.loss_mask`), the losses
    /// scaled by the stage's weight.
    pub fn loss(
        &self,
        x: &[Tensor],
        proposals: Vec<Proposals>,
        samples: &[DetDataSample],
        reduce_mean: ReduceMean,
    ) -> ModelResult<IndexMap<String, Tensor>> {
        if self.train.is_empty() {
            return Err(ModelError::new(NAME, "training needs model.train_cfg.rcnn"));
        }
        let img_shapes = img_shapes(samples)?;
        let whwh: Vec<&Tensor> = proposals.iter().map(|p| &p.imgs_whwh).collect();
        let imgs_whwh = Tensor::f_cat(&whwh, 0)?;
        let (mut object_feats, mut boxes) = initial_state(proposals)?;
        let mut losses = IndexMap::new();
        for stage in 0..self.num_stages() {
            let weight = self.stage_loss_weights[stage];
            let st = &self.train[stage];
            let out = self.bbox_forward(stage, x, &boxes, &object_feats, &img_shapes, true)?;
            crate::engine::profile::section("stages: bbox forward");
            let scores = (0..samples.len())
                .map(|i| Ok(out.cls_score.f_get(i as i64)?.f_detach()?))
                .collect::<ModelResult<Vec<_>>>()?;
            let inputs: Vec<MatchInputs> = samples
                .iter()
                .enumerate()
                .map(|(i, sample)| MatchInputs {
                    pred_scores: &scores[i],
                    pred_bboxes: &out.detached_proposals[i],
                    gt_labels: &sample.gt_instances.labels,
                    gt_bboxes: &sample.gt_instances.bboxes,
                    img_shape: img_shapes[i],
                })
                .collect();
            let assigned = st.assigner.assign_all(&inputs)?;
            let sampling = assigned
                .iter()
                .zip(samples)
                .enumerate()
                .map(|(i, (assign, sample))| {
                    let gt = &sample.gt_instances;
                    PseudoSampler::sample(assign, &out.detached_proposals[i], &gt.bboxes, &gt.labels)
                })
                .collect::<ModelResult<Vec<_>>>()?;
            crate::engine::profile::section("stages: Hungarian assignment");
            let k = out.cls_score.size()[2];
            let head = &self.bbox_head[stage];
            let bbox_losses = head.loss_and_target(
                &out.cls_score.f_reshape([-1, k])?,
                &out.decoded_bboxes,
                &sampling,
                &imgs_whwh,
                st.pos_weight,
                reduce_mean,
            )?;
            for (name, value) in bbox_losses {
                let value = if name.contains("loss") {
                    value.f_mul_scalar(weight)?
                } else {
                    value
                };
                losses.insert(format!("s{stage}.{name}"), value);
            }
            crate::engine::profile::section("stages: bbox losses");
            if self.with_mask() {
                let pos_boxes: Vec<Tensor> = sampling
                    .iter()
                    .map(|r| r.pos_priors.shallow_clone())
                    .collect();
                let pos_rois = bbox2roi(&pos_boxes)?;
                let attn: Vec<Tensor> = sampling
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        out.attn_feats
                            .f_get(i as i64)?
                            .f_index_select(0, &r.pos_inds)
                    })
                    .collect::<Result<_, _>>()?;
                let attn = Tensor::f_cat(&attn, 0)?;
                let mask_feats = self.mask_roi_extractor[stage].forward(x, &pos_rois)?;
                let mask_preds = self.mask_head[stage].forward_t(&mask_feats, &attn, true)?;
                let gt_masks = gt_masks(samples, NAME)?;
                let mask_size = st.mask_size.unwrap_or((28, 28));
                let loss = self.mask_head[stage].loss_and_target(
                    &mask_preds,
                    &sampling,
                    &gt_masks,
                    mask_size,
                    reduce_mean,
                )?;
                losses.insert(format!("s{stage}.loss_mask"), loss.f_mul_scalar(weight)?);
                crate::engine::profile::section("stages: mask");
            }
            object_feats = out.object_feats;
            boxes = out.detached_proposals;
        }
        Ok(losses)
    }

    /// `predict_bbox` + `predict_mask`: sigmoid scores of the last stage,
    /// top-k over proposals × classes per image (no NMS), boxes divided by
    /// `scale_factor` with `rescale`; masks from the last stage's mask head
    /// pasted into the original image (`rescale`) and thresholded.
    pub fn predict(
        &self,
        x: &[Tensor],
        proposals: Vec<Proposals>,
        samples: &[DetDataSample],
        rescale: bool,
    ) -> ModelResult<Vec<DetInstances>> {
        let test = self
            .test_cfg
            .as_ref()
            .ok_or_else(|| ModelError::new(NAME, "prediction needs model.test_cfg.rcnn"))?;
        let img_shapes = img_shapes(samples)?;
        let (mut object_feats, mut boxes) = initial_state(proposals)?;
        let mut last = None;
        for stage in 0..self.num_stages() {
            let out = self.bbox_forward(stage, x, &boxes, &object_feats, &img_shapes, false)?;
            object_feats = out.object_feats.shallow_clone();
            boxes = out
                .detached_proposals
                .iter()
                .map(|b| b.shallow_clone())
                .collect();
            last = Some(out);
        }
        let last = last.ok_or_else(|| ModelError::new(NAME, "num_stages must be at least 1"))?;
        let head = self.bbox_head.last().expect("at least one stage");
        let k = head.num_classes;
        let scores = if head.use_sigmoid {
            last.cls_score.f_sigmoid()?
        } else {
            let s = last.cls_score.f_softmax(-1, Kind::Float)?;
            s.f_narrow(-1, 0, k)?
        };
        let num_props = boxes.first().map(|b| b.size()[0]).unwrap_or(0);
        // mmdet's topk fails when max_per_img exceeds proposals × classes; keep them all then.
        let top = (test.max_per_img as i64).min(num_props * k);
        let mut results = Vec::with_capacity(samples.len());
        let mut topk = Vec::with_capacity(samples.len());
        for (i, sample) in samples.iter().enumerate() {
            let (s, inds) = scores
                .f_get(i as i64)?
                .f_flatten(0, 1)?
                .f_topk(top, -1, true, true)?;
            let labels = inds.f_remainder(k)?;
            let mut bboxes = boxes[i].f_index_select(0, &inds.f_floor_divide_scalar(k)?)?;
            if rescale && !self.with_mask() {
                bboxes = bboxes.f_div(&scale_factor(sample, &bboxes)?)?;
            }
            results.push(DetInstances {
                bboxes,
                scores: s,
                labels,
                masks: None,
            });
            topk.push(inds);
        }
        if !self.with_mask() {
            return Ok(results);
        }
        let rois = bbox2roi(&boxes)?;
        let c = last.attn_feats.size()[2];
        let attn = last.attn_feats.f_reshape([-1, c])?;
        let stage = self.num_stages() - 1;
        let mask_feats = self.mask_roi_extractor[stage].forward(x, &rois)?;
        let mask_preds = self.mask_head[stage].forward_t(&mask_feats, &attn, false)?;
        let sz = mask_preds.size();
        let mask_preds = mask_preds.f_reshape([samples.len() as i64, -1, sz[2], sz[3]])?;
        for (i, (res, sample)) in results.iter_mut().zip(samples).enumerate() {
            // (P*K, h, w)[topk]: the map of each pick's (proposal, class).
            let picked = mask_preds
                .f_get(i as i64)?
                .f_index_select(0, &topk[i])?
                .f_unsqueeze(1)?;
            let meta = &sample.meta;
            let masks = predict_masks(
                &picked,
                &res.bboxes,
                &res.labels,
                meta,
                test.mask_thr_binary.unwrap_or(0.5),
                rescale,
            )?;
            if rescale {
                res.bboxes = res.bboxes.f_div(&scale_factor(sample, &res.bboxes)?)?;
            }
            res.masks = Some(masks);
        }
        Ok(results)
    }
}

fn build_bbox_head(cfg: &BBoxHeadCfg, p: &nn::Path) -> ModelResult<DIIHead> {
    match cfg_type(&cfg.0, "bbox_head")? {
        "DIIHead" => DIIHead::new(&parse_cfg(&cfg.0, "DIIHead")?, p.clone()),
        other => Err(ModelError::new(
            NAME,
            format!("bbox_head {other:?} is not supported (only DIIHead)"),
        )),
    }
}

fn build_mask_head(cfg: &MaskHeadCfg, p: &nn::Path) -> ModelResult<DynamicMaskHead> {
    match cfg_type(&cfg.0, "mask_head")? {
        "DynamicMaskHead" => DynamicMaskHead::new(&parse_cfg(&cfg.0, "DynamicMaskHead")?, p),
        other => Err(ModelError::new(
            NAME,
            format!("mask_head {other:?} is not supported (only DynamicMaskHead)"),
        )),
    }
}

/// The first stage's inputs: the object features (N, P, C) and each image's
/// (P, 4) boxes.
fn initial_state(proposals: Vec<Proposals>) -> ModelResult<(Tensor, Vec<Tensor>)> {
    let feats: Vec<Tensor> = proposals
        .iter()
        .map(|p| p.features.f_unsqueeze(0))
        .collect::<Result<_, _>>()?;
    let boxes = proposals.into_iter().map(|p| p.bboxes).collect();
    Ok((Tensor::f_cat(&feats, 0)?, boxes))
}

/// `img_shape` `(h, w)` of each sample.
fn img_shapes(samples: &[DetDataSample]) -> ModelResult<Vec<(f64, f64)>> {
    samples
        .iter()
        .map(|s| {
            s.meta
                .img_shape
                .map(|(h, w)| (h as f64, w as f64))
                .ok_or_else(|| ModelError::new(NAME, "a sample has no img_shape"))
        })
        .collect()
}

/// `[w, h, w, h]` of `scale_factor` on the device and dtype of `like`.
fn scale_factor(sample: &DetDataSample, like: &Tensor) -> ModelResult<Tensor> {
    let (w, h) = sample
        .meta
        .scale_factor
        .ok_or_else(|| ModelError::new(NAME, "rescale needs scale_factor in the sample's meta"))?;
    Ok(upload_as(&[w, h, w, h], like.kind(), like.device())?)
}
