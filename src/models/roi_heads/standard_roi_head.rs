//! `StandardRoIHead` (`mmdet/models/roi_heads/standard_roi_head.py`): the
//! box branch and the optional mask branch of Faster and Mask R-CNN.
//!
//! Training: per image the proposals are assigned to the ground truth
//! (`MaxIoUAssigner`, with the image's ignored instances) and sampled
//! (`RandomSampler`, which puts the ground-truth boxes before the proposals);
//! the box head runs on the RoIs of all sampled priors, the mask head on
//! the positives only (pooled again by the mask extractor, or picked from
//! the box features when the extractor is shared).
//! Prediction: the box head on the proposals, softmax, class-specific
//! decoding, per-class NMS; then the mask head on the kept boxes (in
//! resized-image pixels) and the masks pasted into the image.
//!
//! Shape shorthand: `N` images, `P` proposals of an image, `M` sampled RoIs
//! of the batch, `Np` positives, `K` classes, `k` detections of an image.

use detc::registry::models::common::IntOrPair;
use detc::registry::models::roi_heads::{MaskScoringRoIHeadConfig, StandardRoIHeadConfig};
use detc::registry::models::task_modules::OHEMSamplerConfig;
use detc::registry::models::train_test::{RcnnTestConfig, RcnnTrainConfig};
use detc::registry::refs::{AssignerCfg, MaskHeadCfg, RoiExtractorCfg, SamplerCfg};
use indexmap::IndexMap;
use tch::{nn, Kind, Tensor};

use super::bbox_heads::bbox_head_predict::empty_instances;
use super::bbox_heads::{build_bbox_head, BoxTestCfg, ConvFCBBoxHead};
use super::res_layer::ResLayer;
use super::mask_heads::{FCNMaskHead, MaskIoUHead};
use super::roi_extractors::RoIExtractor;
use super::sparse_roi_head::bbox2roi;
use super::{gt_masks, DetInstances};
use crate::models::data_preprocessors::{DetDataSample, MaskTensors};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::masks::predict_masks;
use crate::models::losses::{LossArgs, Reduction};
use crate::models::task_modules::libra_samplers::CombinedSampler;
use crate::models::task_modules::random_sampler::Side;
use crate::models::task_modules::{
    AssignResult, MaxIoUAssigner, PseudoSampler, RandomSampler, SamplingResult,
};
use crate::models::ops::{upload, upload_as};

const NAME: &str = "StandardRoIHead";

/// The sampler `train_cfg.rcnn.sampler` names.
#[derive(Debug)]
pub(super) enum Sampler {
    Random(RandomSampler),
    /// `OHEMSampler`: `RandomSampler`'s counts, the hardest candidates instead of a draw.
    Ohem(RandomSampler),
    Pseudo,
    /// Libra R-CNN's `CombinedSampler`.
    Combined(CombinedSampler),
}

/// `train_cfg.rcnn`, built.
#[derive(Debug)]
pub(super) struct RcnnTrain {
    assigner: MaxIoUAssigner,
    sampler: Sampler,
    pub(super) pos_weight: f64,
    /// `(h, w)` of the mask targets; set when there is a mask head.
    pub(super) mask_size: Option<(i64, i64)>,
    /// Binarises the positives' mask logits for Mask Scoring R-CNN's IoU targets.
    pub(super) mask_thr_binary: Option<f64>,
}

/// `test_cfg.rcnn`, parsed.
#[derive(Debug)]
pub(super) struct RcnnTest {
    pub(super) boxes: BoxTestCfg,
    /// Set when there is a mask head.
    pub(super) mask_thr_binary: f64,
}

/// The mask branch: its head and, unless shared with the box branch, its extractor.
#[derive(Debug)]
pub(super) struct MaskBranch {
    /// `None`: `share_roi_extractor` (the box extractor and box features are reused).
    pub(super) roi_extractor: Option<RoIExtractor>,
    pub(super) head: FCNMaskHead,
}

/// How a branch turns RoIs into its head's input: the RoI extractor, then
/// the `shared_head` (the C4 configs' `ResLayer`) when there is one.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoiFeatures<'a> {
    pub(super) extractor: &'a RoIExtractor,
    pub(super) shared_head: Option<&'a ResLayer>,
}

impl RoiFeatures<'_> {
    /// The pooled (and shared-head) features of `rois` (R, 5); `train`
    /// switches the shared head's batch norms (unless `norm_eval`).
    pub(super) fn forward(&self, x: &[Tensor], rois: &Tensor, train: bool) -> ModelResult<Tensor> {
        let feats = self.extractor.forward(x, rois)?;
        match self.shared_head {
            Some(head) => head.forward_t(&feats, train),
            None => Ok(feats),
        }
    }

    /// Checks that these features fit a head taking `head_in` channels (at
    /// `head_size`, for a box head).
    fn check_fit(&self, what: &str, head_in: i64, head_size: Option<(i64, i64)>) -> ModelResult<()> {
        let Some(shared) = self.shared_head else { return check_fit(self.extractor, what, head_in, head_size) };
        check_fit(self.extractor, what, shared.in_channels, None)?;
        let (h, w) = self.extractor.output_size();
        let size = (h / shared.stride, w / shared.stride);
        if shared.out_channels != head_in || head_size.is_some_and(|s| s != size) {
            return Err(ModelError::new(
                NAME,
                format!(
                    "shared_head gives {} channels of {size:?} but {what}_head takes in_channels {head_in}{}",
                    shared.out_channels,
                    head_size.map(|s| format!(" at roi_feat_size {s:?}")).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct StandardRoIHead {
    bbox_roi_extractor: RoIExtractor,
    shared_head: Option<ResLayer>,
    bbox_head: ConvFCBBoxHead,
    mask: Option<MaskBranch>,
    /// Mask Scoring R-CNN's `mask_iou_head` (`MaskScoringRoIHead`).
    mask_iou: Option<MaskIoUHead>,
    train: Option<RcnnTrain>,
    test: Option<RcnnTest>,
}

fn pair(size: IntOrPair) -> (i64, i64) {
    match size {
        IntOrPair::Int(s) => (s as i64, s as i64),
        IntOrPair::Pair((h, w)) => (h as i64, w as i64),
    }
}

fn build_assigner(cfg: &AssignerCfg) -> ModelResult<MaxIoUAssigner> {
    match cfg_type(&cfg.0, "train_cfg.rcnn.assigner")? {
        "MaxIoUAssigner" => MaxIoUAssigner::from_cfg(cfg),
        other => Err(ModelError::new(
            NAME,
            format!("assigner {other:?} is not supported (only MaxIoUAssigner)"),
        )),
    }
}

fn build_sampler(cfg: &SamplerCfg) -> ModelResult<Sampler> {
    match cfg_type(&cfg.0, "train_cfg.rcnn.sampler")? {
        "RandomSampler" => Ok(Sampler::Random(RandomSampler::from_cfg(cfg)?)),
        "PseudoSampler" => Ok(Sampler::Pseudo),
        "CombinedSampler" => Ok(Sampler::Combined(CombinedSampler::from_cfg(cfg)?)),
        "OHEMSampler" => {
            let c: OHEMSamplerConfig = parse_cfg(&cfg.0, "OHEMSampler")?;
            if c.loss_key != "loss_cls" {
                return Err(ModelError::new(NAME, format!("OHEMSampler loss_key {:?}: only loss_cls ranks the candidates", c.loss_key)));
            }
            Ok(Sampler::Ohem(RandomSampler::new(&c.sampling)))
        }
        other => Err(ModelError::new(
            NAME,
            format!("sampler {other:?} is not supported (RandomSampler, OHEMSampler, CombinedSampler or PseudoSampler)"),
        )),
    }
}

pub(super) fn build_train(cfg: &RcnnTrainConfig, with_mask: bool) -> ModelResult<RcnnTrain> {
    if cfg.soft_mask_target {
        return Err(ModelError::new(
            NAME,
            "train_cfg.rcnn.soft_mask_target is not supported (binary mask targets only)",
        ));
    }
    let mask_size = cfg.mask_size.map(pair);
    if with_mask && mask_size.is_none() {
        return Err(ModelError::new(
            NAME,
            "train_cfg.rcnn needs mask_size (e.g. 28) with a mask head",
        ));
    }
    Ok(RcnnTrain {
        assigner: build_assigner(&cfg.assigner)?,
        sampler: build_sampler(&cfg.sampler)?,
        pos_weight: cfg.pos_weight,
        mask_size,
        mask_thr_binary: cfg.mask_thr_binary,
    })
}

pub(super) fn build_test(cfg: &RcnnTestConfig, with_mask: bool) -> ModelResult<RcnnTest> {
    let mask_thr_binary = match (cfg.mask_thr_binary, with_mask) {
        (Some(t), _) => t,
        (None, false) => 0.5,
        (None, true) => {
            return Err(ModelError::new(
                NAME,
                "test_cfg.rcnn needs mask_thr_binary (e.g. 0.5) with a mask head",
            ))
        }
    };
    Ok(RcnnTest {
        boxes: BoxTestCfg::from_cfg(cfg)?,
        mask_thr_binary,
    })
}

/// Checks that an extractor's pooled features fit the head that reads them.
pub(super) fn check_fit(
    ext: &RoIExtractor,
    what: &str,
    head_in: i64,
    head_size: Option<(i64, i64)>,
) -> ModelResult<()> {
    let fits_size = head_size.map_or(true, |s| s == ext.output_size());
    if ext.out_channels() != head_in || !fits_size {
        return Err(ModelError::new(
            NAME,
            format!(
                "{what}_roi_extractor gives {} channels of {:?} but {what}_head takes in_channels {head_in}{}",
                ext.out_channels(),
                ext.output_size(),
                head_size.map(|s| format!(" at roi_feat_size {s:?}")).unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

impl StandardRoIHead {
    /// Builds under `p` (`roi_head`): `bbox_head.*` and `mask_head.*`.
    /// `train_cfg` is the detector's `train_cfg.rcnn`, `test_cfg` its
    /// `test_cfg.rcnn` (each falling back to the head config's own).
    pub fn new(
        cfg: &StandardRoIHeadConfig,
        train_cfg: Option<&RcnnTrainConfig>,
        test_cfg: Option<&RcnnTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let (Some(ext_cfg), Some(head_cfg)) = (&cfg.bbox_roi_extractor, &cfg.bbox_head) else {
            return Err(ModelError::new(
                NAME,
                "bbox_roi_extractor and bbox_head are required",
            ));
        };
        let bbox_roi_extractor = RoIExtractor::from_cfg(ext_cfg, &(p / "bbox_roi_extractor"))?;
        let shared_head = match &cfg.shared_head {
            None => None,
            Some(c) => match cfg_type(&c.0, "shared_head")? {
                "ResLayer" => Some(ResLayer::new(&parse_cfg(&c.0, "ResLayer")?, &(p / "shared_head"))?),
                other => return Err(ModelError::new(NAME, format!("shared_head {other:?} is not supported (only ResLayer)"))),
            },
        };
        let bbox_head = build_bbox_head(head_cfg, &(p / "bbox_head"))?;
        let features = RoiFeatures { extractor: &bbox_roi_extractor, shared_head: shared_head.as_ref() };
        features.check_fit("bbox", bbox_head.in_channels, Some(bbox_head.roi_feat_size))?;
        let mask = cfg
            .mask_head
            .as_ref()
            .map(|mh| MaskBranch::new(mh, cfg.mask_roi_extractor.as_ref(), features, p / "mask_roi_extractor", &(p / "mask_head")))
            .transpose()?;
        let with_mask = mask.is_some();
        Ok(StandardRoIHead {
            train: train_cfg
                .or(cfg.train_cfg.as_ref())
                .map(|c| build_train(c, with_mask))
                .transpose()?,
            test: test_cfg
                .or(cfg.test_cfg.as_ref())
                .map(|c| build_test(c, with_mask))
                .transpose()?,
            bbox_roi_extractor,
            shared_head,
            bbox_head,
            mask,
            mask_iou: None,
        })
    }

    /// `MaskScoringRoIHead`: the standard head with its mask branch and a
    /// `mask_iou_head` (under `p / "mask_iou_head"`) whose predicted IoU of
    /// each mask rescales its detection's score.
    pub fn mask_scoring(
        cfg: &MaskScoringRoIHeadConfig,
        train_cfg: Option<&RcnnTrainConfig>,
        test_cfg: Option<&RcnnTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        const OWNER: &str = "MaskScoringRoIHead";
        let mut head = Self::new(&cfg.standard, train_cfg, test_cfg, p)?;
        if head.mask.is_none() {
            return Err(ModelError::new(OWNER, "needs a mask_head (FCNMaskHead)"));
        }
        if head.train.as_ref().is_some_and(|t| t.mask_thr_binary.is_none()) {
            return Err(ModelError::new(OWNER, "train_cfg.rcnn needs mask_thr_binary (e.g. 0.5) for the mask-IoU targets"));
        }
        let iou = match cfg_type(&cfg.mask_iou_head.0, "mask_iou_head")? {
            "MaskIoUHead" => MaskIoUHead::new(&parse_cfg(&cfg.mask_iou_head.0, "MaskIoUHead")?, &(p / "mask_iou_head"))?,
            other => return Err(ModelError::new(OWNER, format!("mask_iou_head {other:?} is not supported (only MaskIoUHead)"))),
        };
        head.mask_iou = Some(iou);
        Ok(head)
    }

    /// The box branch's RoI features: the extractor and the shared head.
    fn bbox_features(&self) -> RoiFeatures<'_> {
        RoiFeatures { extractor: &self.bbox_roi_extractor, shared_head: self.shared_head.as_ref() }
    }

    /// Loads the shared head's `Pretrained` `init_cfg`, if any.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Option<detc::checkpoint::KeyReport>> {
        match &self.shared_head {
            Some(head) => head.init_weights(vs),
            None => Ok(None),
        }
    }

    /// Whether a mask branch is configured (Mask R-CNN).
    pub fn with_mask(&self) -> bool {
        self.mask.is_some()
    }

    /// The box head (its coder and class count are the detector's too).
    pub fn bbox_head(&self) -> &ConvFCBBoxHead {
        &self.bbox_head
    }

    /// `loss(x, rpn_results_list, batch_data_samples)`: `loss_cls`, `acc`,
    /// `loss_bbox` and, with a mask head, `loss_mask`. `proposals`: per image
    /// (P, 4) boxes from the RPN (detached here, as mmdet's are).
    pub fn loss(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self
            .train
            .as_ref()
            .ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg.rcnn"))?;
        check_batch(&proposals, samples)?;
        let sampling = sample_batch(train, &proposals, samples, self.bbox_features(), &self.bbox_head, x)?;
        crate::engine::profile::section("roi: assign and sample");

        let priors = sampling
            .iter()
            .map(|s| s.priors())
            .collect::<ModelResult<Vec<_>>>()?;
        let rois = bbox2roi(&priors)?;
        let bbox_feats = self.bbox_features().forward(x, &rois, true)?;
        crate::engine::profile::section("roi: RoIAlign");
        let (cls_score, bbox_pred) = self.bbox_head.forward_t(&bbox_feats, true)?;
        crate::engine::profile::section("roi: bbox head");
        let mut losses = self.bbox_head.loss_and_target(
            &cls_score,
            &bbox_pred,
            &rois,
            &sampling,
            train.pos_weight,
        )?;
        crate::engine::profile::section("roi: bbox targets and losses");

        match (&self.mask, &self.mask_iou) {
            (Some(mask), None) => {
                let loss = mask.loss(x, &sampling, &bbox_feats, self.bbox_features(), samples, train)?;
                losses.insert("loss_mask".into(), loss);
                crate::engine::profile::section("roi: mask");
            }
            (Some(mask), Some(iou)) => {
                let (feats, preds) = mask.forward_train(x, &sampling, &bbox_feats, self.bbox_features())?;
                let gt = gt_masks(samples, NAME)?;
                let size = train.mask_size.ok_or_else(|| ModelError::new(NAME, "train_cfg.rcnn needs mask_size with a mask head"))?;
                let targets = mask.head.get_targets(&sampling, &gt, size)?;
                losses.insert("loss_mask".into(), mask.head.loss_from_targets(&preds, &targets, &sampling)?);
                // The predicted mask at each positive's class, not detached (as MMDetection).
                let labels = Tensor::f_cat(&sampling.iter().map(|s| s.pos_gt_labels.shallow_clone()).collect::<Vec<_>>(), 0)?;
                let pos_preds = class_maps(&preds, &labels)?;
                let iou_pred = iou.forward(&feats, &pos_preds)?;
                let pos_iou = iou_pred.f_gather(1, &labels.f_to_kind(Kind::Int64)?.f_unsqueeze(1)?, false)?.f_view([-1])?;
                let thr = train.mask_thr_binary.unwrap_or(0.5);
                losses.insert("loss_mask_iou".into(), iou.loss_and_target(&pos_iou, &pos_preds, &targets, &sampling, &gt, thr)?);
            }
            (None, _) => {}
        }
        Ok(losses)
    }

    /// `predict(x, rpn_results_list, batch_data_samples, rescale)`: per
    /// image the detections after `test_cfg` (score_thr, per-class NMS,
    /// max_per_img) and, with a mask head, their binary masks. With
    /// `rescale` boxes are in original-image pixels and masks of
    /// `ori_shape`; without, both are in the resized image.
    pub fn predict(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
        rescale: bool,
    ) -> ModelResult<Vec<DetInstances>> {
        let test = self
            .test
            .as_ref()
            .ok_or_else(|| ModelError::new(NAME, "prediction needs model.test_cfg.rcnn"))?;
        check_batch(&proposals, samples)?;
        // With a mask head the boxes stay in the resized image until the
        // masks are pasted (mmdet rescales both there).
        let bbox_rescale = rescale && !self.with_mask();
        let mut results = self.predict_bbox(x, &proposals, samples, &test.boxes, bbox_rescale)?;
        if let Some(mask) = &self.mask {
            self.predict_mask(
                mask,
                x,
                samples,
                &mut results,
                test.mask_thr_binary,
                rescale,
            )?;
        }
        Ok(results)
    }

    /// `predict_bbox`: the box head on every proposal, then per image
    /// `_predict_by_feat_single`.
    fn predict_bbox(
        &self,
        x: &[Tensor],
        proposals: &[Tensor],
        samples: &[DetDataSample],
        cfg: &BoxTestCfg,
        rescale: bool,
    ) -> ModelResult<Vec<DetInstances>> {
        let rois = bbox2roi(proposals)?;
        if rois.size()[0] == 0 {
            return samples.iter().map(|_| empty_instances(&rois)).collect();
        }
        let bbox_feats = self.bbox_features().forward(x, &rois, false)?;
        let (cls_score, bbox_pred) = self.bbox_head.forward_t(&bbox_feats, false)?;
        let counts: Vec<i64> = proposals.iter().map(|p| p.size()[0]).collect();
        let rois = rois.f_split_with_sizes(&counts, 0)?;
        let cls_score = cls_score.f_split_with_sizes(&counts, 0)?;
        let bbox_pred = bbox_pred.f_split_with_sizes(&counts, 0)?;
        predict_per_image(&self.bbox_head, &rois, &cls_score, &bbox_pred, samples, cfg, rescale)
    }

    /// `predict_mask`: the mask head on the detections (resized-image
    /// boxes), masks pasted per image; with `rescale` the boxes are then
    /// divided by `scale_factor`.
    fn predict_mask(
        &self,
        mask: &MaskBranch,
        x: &[Tensor],
        samples: &[DetDataSample],
        results: &mut [DetInstances],
        mask_thr_binary: f64,
        rescale: bool,
    ) -> ModelResult<()> {
        let boxes: Vec<Tensor> = results.iter().map(|r| r.bboxes.shallow_clone()).collect();
        let mask_rois = bbox2roi(&boxes)?;
        let counts: Vec<i64> = boxes.iter().map(|b| b.size()[0]).collect();
        let (mask_preds, mask_ious) = if mask_rois.size()[0] == 0 {
            (None, None)
        } else {
            let (feats, preds) = mask.forward_with_features(x, &mask_rois, self.bbox_features())?;
            let ious = match &self.mask_iou {
                Some(iou) => {
                    let labels = Tensor::f_cat(&results.iter().map(|r| r.labels.shallow_clone()).collect::<Vec<_>>(), 0)?;
                    Some(iou.forward(&feats, &class_maps(&preds, &labels)?)?.f_split_with_sizes(&counts, 0)?)
                }
                None => None,
            };
            (Some(preds.f_split_with_sizes(&counts, 0)?), ious)
        };
        for (i, (res, sample)) in results.iter_mut().zip(samples).enumerate() {
            // predict_masks gives mmdet's empty (0, ori_h, ori_w) for no detection.
            let preds = match &mask_preds {
                Some(p) => p[i].shallow_clone(),
                None => Tensor::f_zeros([0, 1, 1, 1], (Kind::Float, res.bboxes.device()))?,
            };
            let masks = mask.head.predict_by_feat(
                &preds,
                &res.bboxes,
                &res.labels,
                &sample.meta,
                mask_thr_binary,
                rescale,
            )?;
            if rescale {
                unscale_boxes(res, sample)?;
            }
            res.masks = Some(masks);
            if let (Some(iou), Some(ious)) = (&self.mask_iou, &mask_ious) {
                res.scores = iou.rescore(&res.scores, &ious[i], &res.labels)?;
            }
        }
        Ok(())
    }
}

impl MaskBranch {
    /// `mask_head` under `p` and its `mask_roi_extractor` (`None`: the box
    /// branch's extractor is shared, MMDetection's `share_roi_extractor`);
    /// the box branch's shared head, if any, runs on the mask RoIs too.
    pub(super) fn new(
        head_cfg: &MaskHeadCfg,
        ext_cfg: Option<&RoiExtractorCfg>,
        bbox: RoiFeatures,
        ext_path: nn::Path,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let head = match cfg_type(&head_cfg.0, "mask_head")? {
            "FCNMaskHead" => FCNMaskHead::new(&parse_cfg(&head_cfg.0, "FCNMaskHead")?, p)?,
            other => {
                return Err(ModelError::new(NAME, format!("mask_head {other:?} is not supported (only FCNMaskHead)")))
            }
        };
        let roi_extractor = ext_cfg.map(|c| RoIExtractor::from_cfg(c, &ext_path)).transpose()?;
        // FCNMaskHead's roi_feat_size is unused (mmdet: "reserved").
        let branch = MaskBranch { roi_extractor, head };
        branch.features(bbox).check_fit("mask", branch.head.in_channels, None)?;
        Ok(branch)
    }

    /// The mask RoIs' features: its own extractor (or the box branch's),
    /// then the box branch's shared head, as MMDetection's `_mask_forward`.
    fn features<'a>(&'a self, bbox: RoiFeatures<'a>) -> RoiFeatures<'a> {
        RoiFeatures { extractor: self.roi_extractor.as_ref().unwrap_or(bbox.extractor), shared_head: bbox.shared_head }
    }

    /// Mask logits (R, K, h, w) of `rois` (R, 5) in eval mode; `bbox` (the
    /// box branch's features) pools them when the extractor is shared.
    pub(super) fn forward(&self, x: &[Tensor], rois: &Tensor, bbox: RoiFeatures) -> ModelResult<Tensor> {
        Ok(self.forward_with_features(x, rois, bbox)?.1)
    }

    /// The RoI features (R, C, S, S) and mask logits (R, K, h, w) of `rois` in eval mode.
    pub(super) fn forward_with_features(&self, x: &[Tensor], rois: &Tensor, bbox: RoiFeatures) -> ModelResult<(Tensor, Tensor)> {
        let feats = self.features(bbox).forward(x, rois, false)?;
        let preds = self.head.forward_t(&feats, false)?;
        Ok((feats, preds))
    }

    /// The positives' mask features and logits in training: pooled by its
    /// own extractor and the box branch's shared head, or picked from
    /// `bbox_feats` (the box features of all sampled RoIs) when shared.
    pub(super) fn forward_train(
        &self,
        x: &[Tensor],
        sampling: &[SamplingResult],
        bbox_feats: &Tensor,
        bbox: RoiFeatures,
    ) -> ModelResult<(Tensor, Tensor)> {
        let mask_feats = match &self.roi_extractor {
            Some(_) => {
                let pos: Vec<Tensor> = sampling.iter().map(|s| s.pos_priors.shallow_clone()).collect();
                self.features(bbox).forward(x, &bbox2roi(&pos)?, true)?
            }
            None => bbox_feats.f_index_select(0, &positive_rows(sampling, bbox_feats.device())?)?,
        };
        let mask_preds = self.head.forward_t(&mask_feats, true)?;
        Ok((mask_feats, mask_preds))
    }

    /// `mask_loss`: the head on the positives of `sampling` (pooled by its
    /// own extractor and the box branch's shared head, or picked from
    /// `bbox_feats`, the box features of all sampled RoIs, when shared)
    /// against their ground-truth masks.
    pub(super) fn loss(
        &self,
        x: &[Tensor],
        sampling: &[SamplingResult],
        bbox_feats: &Tensor,
        bbox: RoiFeatures,
        samples: &[DetDataSample],
        train: &RcnnTrain,
    ) -> ModelResult<Tensor> {
        let (_, mask_preds) = self.forward_train(x, sampling, bbox_feats, bbox)?;
        let gt_masks = gt_masks(samples, NAME)?;
        let mask_size = train
            .mask_size
            .ok_or_else(|| ModelError::new(NAME, "train_cfg.rcnn needs mask_size with a mask head"))?;
        self.head.loss_and_target(&mask_preds, sampling, &gt_masks, mask_size)
    }
}

/// One proposal list per sample.
/// Each RoI's map at its label: preds (R, K, h, w) or class-agnostic
/// (R, 1, h, w), labels (R,) -> (R, h, w).
fn class_maps(preds: &Tensor, labels: &Tensor) -> ModelResult<Tensor> {
    let (r, k, h, w) = preds.size4()?;
    let labels = if k == 1 { labels.f_zeros_like()? } else { labels.shallow_clone() };
    let idx = labels.f_to_kind(Kind::Int64)?.f_view([r, 1, 1, 1])?.f_expand([r, 1, h, w], false)?;
    Ok(preds.f_gather(1, &idx, false)?.f_view([r, h, w])?)
}

pub(super) fn check_batch(proposals: &[Tensor], samples: &[DetDataSample]) -> ModelResult<()> {
    if proposals.len() != samples.len() || samples.is_empty() {
        return Err(ModelError::new(
            NAME,
            format!(
                "needs one proposal list per image, got {} for {} images",
                proposals.len(),
                samples.len()
            ),
        ));
    }
    Ok(())
}

/// What `OHEMSampler` ranks candidates with: one image's features and the
/// box branch that classifies its RoIs (MMDetection's sampler `context`).
struct HardMiner<'a> {
    features: RoiFeatures<'a>,
    head: &'a ConvFCBBoxHead,
    x: &'a [Tensor],
    image: usize,
}

impl HardMiner<'_> {
    /// `hard_mining`: of the candidates in `mask`, all when at most `num`,
    /// else the `num` whose `loss_cls` (per RoI, without gradient) is highest,
    /// ascending; negatives are scored against the background class.
    fn pick(&self, mask: &Tensor, num: i64, side: Side) -> ModelResult<Tensor> {
        let inds = mask.f_nonzero()?.f_view([-1])?;
        let n = inds.numel() as i64;
        if n <= num {
            return Ok(inds);
        }
        let (boxes, labels) = match side {
            Side::Positive { boxes, labels, .. } => (boxes.f_index_select(0, &inds)?, labels.f_index_select(0, &inds)?),
            Side::Negative { boxes, .. } => (
                boxes.f_index_select(0, &inds)?,
                Tensor::f_full([n], self.head.num_classes, (Kind::Int64, boxes.device()))?,
            ),
        };
        let loss = tch::no_grad(|| -> ModelResult<Tensor> {
            let feats: Vec<Tensor> =
                self.x.iter().map(|level| level.f_narrow(0, self.image as i64, 1)).collect::<Result<_, _>>()?;
            let rois = bbox2roi(&[boxes])?;
            // MMDetection mines with the model in training mode.
            let (cls_score, _) = self.head.forward_t(&self.features.forward(&feats, &rois, true)?, true)?;
            let ones = cls_score.f_new_ones([n], (cls_score.kind(), cls_score.device()))?;
            self.head.loss_cls.forward(&cls_score, &labels, LossArgs::default().weight(&ones).reduction(Reduction::None))
        })?;
        let (_, top) = loss.f_topk(num.max(0), 0, true, true)?;
        Ok(inds.f_index_select(0, &top)?.f_sort(0, false)?.0)
    }
}

/// Assigns and samples every image's proposals; `features` and `head` (the
/// box branch) rank the candidates for `OHEMSampler`.
pub(super) fn sample_batch(
    train: &RcnnTrain,
    proposals: &[Tensor],
    samples: &[DetDataSample],
    features: RoiFeatures,
    head: &ConvFCBBoxHead,
    x: &[Tensor],
) -> ModelResult<Vec<SamplingResult>> {
    proposals
        .iter()
        .zip(samples)
        .enumerate()
        .map(|(image, (props, sample))| assign_and_sample(train, props, sample, &HardMiner { features, head, x, image }))
        .collect()
}

/// `predict_by_feat` per image: the box head's `_predict_by_feat_single` on
/// each image's RoIs, logits and deltas (boxes rescaled to the original
/// image with `rescale`).
pub(super) fn predict_per_image(
    head: &ConvFCBBoxHead,
    rois: &[Tensor],
    cls_scores: &[Tensor],
    bbox_preds: &[Tensor],
    samples: &[DetDataSample],
    cfg: &BoxTestCfg,
    rescale: bool,
) -> ModelResult<Vec<DetInstances>> {
    samples
        .iter()
        .enumerate()
        .map(|(i, sample)| {
            let scale = if rescale { Some(scale_factor(sample)?) } else { None };
            head.predict_by_feat_single(&rois[i], &cls_scores[i], &bbox_preds[i], img_shape(sample)?, scale, cfg)
        })
        .collect()
}

/// Assigns one image's proposals to its ground truth and samples them
/// (`miner` ranks the candidates for `OHEMSampler`).
fn assign_and_sample(
    train: &RcnnTrain,
    proposals: &Tensor,
    sample: &DetDataSample,
    miner: &HardMiner,
) -> ModelResult<SamplingResult> {
    let priors = proposals.f_detach()?.f_narrow(1, 0, 4)?;
    let gt = &sample.gt_instances;
    let ignored = &sample.ignored_instances.bboxes;
    let ignored = (ignored.numel() > 0).then_some(ignored);
    let assign: AssignResult = train
        .assigner
        .assign(&priors, &gt.bboxes, &gt.labels, ignored)?;
    match &train.sampler {
        Sampler::Random(s) => s.sample(&assign, &priors, &gt.bboxes, &gt.labels),
        Sampler::Ohem(s) => {
            s.sample_with(&assign, &priors, &gt.bboxes, &gt.labels, &mut |mask, num, side| miner.pick(mask, num, side))
        }
        Sampler::Pseudo => PseudoSampler::sample(&assign, &priors, &gt.bboxes, &gt.labels),
        Sampler::Combined(s) => s.sample(&assign, &priors, &gt.bboxes, &gt.labels),
    }
}

/// The rows of the positives among the sampled RoIs (each image's
/// positives come first among its priors): mmdet's uint8 `pos_inds` mask
/// of the shared-extractor branch, as indices.
fn positive_rows(sampling: &[SamplingResult], device: tch::Device) -> ModelResult<Tensor> {
    let mut rows = Vec::new();
    let mut start = 0;
    for s in sampling {
        let num_pos = s.pos_priors.size()[0];
        rows.extend(start..start + num_pos);
        start += num_pos + s.neg_priors.size()[0];
    }
    Ok(upload(&rows, device)?)
}

/// The detections' boxes divided by the sample's `scale_factor` (to the
/// original image), once their masks are pasted (mmdet rescales in place).
pub(super) fn unscale_boxes(res: &mut DetInstances, sample: &DetDataSample) -> ModelResult<()> {
    if res.bboxes.size()[0] == 0 {
        return Ok(());
    }
    let (w, h) = scale_factor(sample)?;
    let s = upload_as(&[w, h, w, h], res.bboxes.kind(), res.bboxes.device())?;
    res.bboxes = res.bboxes.f_div(&s)?;
    Ok(())
}

/// `img_shape` `(h, w)` of a sample.
pub(super) fn img_shape(sample: &DetDataSample) -> ModelResult<(f64, f64)> {
    sample
        .meta
        .img_shape
        .map(|(h, w)| (h as f64, w as f64))
        .ok_or_else(|| ModelError::new(NAME, "a sample has no img_shape"))
}

/// `scale_factor` `(w, h)` of a sample.
pub(super) fn scale_factor(sample: &DetDataSample) -> ModelResult<(f64, f64)> {
    sample
        .meta
        .scale_factor
        .ok_or_else(|| ModelError::new(NAME, "rescale needs scale_factor in the sample's meta"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use detc::data::SampleMeta;
    use tch::{nn::VarStore, Device};

    use super::*;
    use crate::models::data_preprocessors::InstanceTensors;
    use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
    use crate::models::weights::{load_state_dict, Shapes, named_shapes, with_prefix};

    /// tests/models/two_stage_roi_reference.py's output, made once per test process.
    pub(crate) fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/two_stage_roi_reference.py", "detc-two-stage-roi", "two_stage_roi.pth"))
    }

    /// The fixture tensor `key`.
    pub(crate) fn fx(key: &str) -> Tensor {
        tensor(fixture(), key)
    }

    /// Loads `{prefix}.sd.*` into `vs`, exactly (no missing or unexpected key).
    pub(crate) fn load(vs: &VarStore, prefix: &str) {
        let sd = with_prefix(fixture(), &format!("{prefix}.sd")).unwrap();
        let report = load_state_dict(vs, "", &sd, Shapes::Refuse).unwrap();
        assert!(report.is_exact(), "{prefix}: {report:?}");
    }

    /// mmdet's SamplingResults of the fixture case `prefix` (two images).
    pub(crate) fn sampling(prefix: &str) -> Vec<SamplingResult> {
        (0..2)
            .map(|i| {
                let t = |k: &str| fx(&format!("{prefix}.samp.{i}.{k}"));
                let (pos, neg) = (t("pos_inds"), t("neg_inds"));
                let (num_pos, num_neg) = (pos.size()[0], neg.size()[0]);
                SamplingResult {
                    pos_priors: t("pos_priors"),
                    neg_priors: t("neg_priors"),
                    pos_is_gt: t("pos_is_gt"),
                    num_gts: t("num_gts").int64_value(&[]),
                    pos_assigned_gt_inds: t("pos_assigned_gt_inds"),
                    pos_gt_labels: t("pos_gt_labels"),
                    pos_gt_bboxes: t("pos_gt_bboxes"),
                    num_pos: num_pos.max(1),
                    num_neg: num_neg.max(1),
                    avg_factor: t("avg_factor").int64_value(&[]),
                    pos_inds: pos,
                    neg_inds: neg,
                }
            })
            .collect()
    }

    /// The fixture's two images as the preprocessor hands them over.
    pub(crate) fn samples() -> Vec<DetDataSample> {
        (0..2)
            .map(|i| {
                let t = |k: &str| fx(&format!("img.{i}.{k}"));
                DetDataSample {
                    meta: SampleMeta {
                        img_shape: Some((64, 80)),
                        ori_shape: Some((50, 64)),
                        pad_shape: Some((64, 80)),
                        scale_factor: Some((1.25, 1.28)),
                        ..Default::default()
                    },
                    batch_input_shape: (64, 80),
                    gt_instances: InstanceTensors {
                        bboxes: t("bboxes"),
                        labels: t("labels"),
                        masks: Some(MaskTensors::Bitmap(t("masks"))),
                    },
                    ignored_instances: InstanceTensors {
                        bboxes: Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
                        labels: Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
                        masks: None,
                    },
                }
            })
            .collect()
    }

    pub(crate) fn extractor(size: i64) -> serde_json::Value {
        serde_json::json!({
            "type": "SingleRoIExtractor",
            "roi_layer": {"type": "RoIAlign", "output_size": size, "sampling_ratio": 0},
            "out_channels": 8, "featmap_strides": [4, 8, 16, 32]
        })
    }

    /// `e2e_cfg(shared)` of the reference script.
    fn tiny_cfg(shared: bool) -> (StandardRoIHeadConfig, RcnnTrainConfig, RcnnTestConfig) {
        let cfg = serde_json::json!({
            "bbox_roi_extractor": extractor(7),
            "bbox_head": {"type": "Shared2FCBBoxHead", "in_channels": 8, "fc_out_channels": 16,
                          "roi_feat_size": 7, "num_classes": 3,
                          "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
            "mask_roi_extractor": if shared { serde_json::Value::Null } else { extractor(14) },
            "mask_head": {"type": "FCNMaskHead", "num_convs": 2, "in_channels": 8,
                          "roi_feat_size": if shared { 7 } else { 14 },
                          "conv_out_channels": 8, "num_classes": 3}
        });
        let train = serde_json::json!({
            "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.5,
                         "min_pos_iou": 0.5, "match_low_quality": true, "ignore_iof_thr": -1},
            "sampler": {"type": "RandomSampler", "num": 512, "pos_fraction": 0.25,
                        "neg_pos_ub": -1, "add_gt_as_proposals": true},
            "mask_size": if shared { 14 } else { 28 }, "pos_weight": -1
        });
        let test = serde_json::json!({
            "score_thr": 0.05, "nms": {"type": "nms", "iou_threshold": 0.5},
            "max_per_img": 20, "mask_thr_binary": 0.5
        });
        (
            serde_json::from_value(cfg).unwrap(),
            serde_json::from_value(train).unwrap(),
            serde_json::from_value(test).unwrap(),
        )
    }

    /// The fixture head `prefix`; `train` builds the assigner and sampler.
    fn tiny_head(prefix: &str, shared: bool, train: bool) -> (VarStore, StandardRoIHead) {
        tiny_head_sampling(prefix, shared, train, None)
    }

    /// [`tiny_head`] with another `train_cfg.sampler`.
    fn tiny_head_sampling(
        prefix: &str,
        shared: bool,
        train: bool,
        sampler: Option<serde_json::Value>,
    ) -> (VarStore, StandardRoIHead) {
        let (cfg, mut train_cfg, test) = tiny_cfg(shared);
        if let Some(sampler) = sampler {
            train_cfg.sampler = SamplerCfg(sampler);
        }
        let train_cfg = train.then_some(&train_cfg);
        let vs = VarStore::new(Device::Cpu);
        let head = StandardRoIHead::new(&cfg, train_cfg, Some(&test), &vs.root()).unwrap();
        load(&vs, prefix);
        (vs, head)
    }

    pub(crate) fn features(prefix: &str) -> Vec<Tensor> {
        (0..4)
            .map(|i| fx(&format!("{prefix}.x.{i}")).set_requires_grad(true))
            .collect()
    }

    pub(crate) fn proposals() -> Vec<Tensor> {
        (0..2).map(|i| fx(&format!("img.{i}.proposals"))).collect()
    }

    /// Needs the real MaxIoUAssigner and RandomSampler.
    fn check_loss(prefix: &str, shared: bool) {
        check_loss_sampling(prefix, shared, None)
    }

    fn check_loss_sampling(prefix: &str, shared: bool, sampler: Option<serde_json::Value>) {
        let (vs, head) = tiny_head_sampling(prefix, shared, true, sampler);
        let x = features(prefix);
        let losses = head.loss(&x, proposals(), &samples()).unwrap();
        let keys: Vec<&str> = losses.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["loss_cls", "acc", "loss_bbox", "loss_mask"]);
        for (name, v) in &losses {
            let want = fx(&format!("{prefix}.out.{name}"));
            assert_close(v, &want, 1e-6, 1e-5, &format!("{prefix} {name}"));
        }
        let total =
            &losses["loss_cls"] + &losses["loss_bbox"] + losses["loss_mask"].sum(Kind::Float);
        total.backward();
        let vars = vs.variables();
        let grads = [
            "bbox_head.shared_fcs.0.weight",
            "bbox_head.fc_cls.weight",
            "bbox_head.fc_reg.weight",
            "mask_head.convs.0.conv.weight",
            "mask_head.conv_logits.weight",
        ];
        let close = |got: &Tensor, key: &str| {
            let want = fx(&format!("{prefix}.grad.{key}"));
            let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
            assert_close(got, &want, tol, 1e-5, &format!("{prefix} grad {key}"));
        };
        for key in grads {
            close(&vars[key].grad(), key);
        }
        for (i, t) in x.iter().enumerate() {
            close(&t.grad(), &format!("x.{i}"));
        }
    }

    #[test]
    fn standard_roi_head_loss_and_grads_equal_mmdet() {
        check_loss("e2e", false);
    }

    #[test]
    fn standard_roi_head_loss_with_a_shared_extractor_equals_mmdet() {
        check_loss("e2es", true);
    }

    /// Needs the real batched_nms.
    /// `OHEMSampler` taking 8 of the 10-13 candidates per image: the ones
    /// its box head scores worst, as MMDetection's (the losses then agree).
    #[test]
    fn ohem_sampler_keeps_the_hardest_as_mmdet() {
        let ohem = serde_json::json!({"type": "OHEMSampler", "num": 8, "pos_fraction": 0.25, "neg_pos_ub": -1,
                                      "add_gt_as_proposals": true});
        check_loss_sampling("ohem", false, Some(ohem));
    }

    #[test]
    fn standard_roi_head_predict_equals_mmdet() {
        let (_vs, head) = tiny_head("e2e", false, false);
        let x = features("e2e");
        for rescale in [true, false] {
            let res = tch::no_grad(|| head.predict(&x, proposals(), &samples(), rescale)).unwrap();
            for (i, r) in res.iter().enumerate() {
                let p = format!("e2e.pred{}.{i}", rescale as i32);
                let want = |k: &str| fx(&format!("{p}.{k}"));
                assert_close(
                    &r.bboxes,
                    &want("bboxes"),
                    1e-4,
                    1e-5,
                    &format!("{p} bboxes"),
                );
                assert_close(
                    &r.scores,
                    &want("scores"),
                    1e-6,
                    1e-5,
                    &format!("{p} scores"),
                );
                assert_eq!(r.labels, want("labels"), "{p} labels");
                let masks = r.masks.as_ref().unwrap();
                assert_eq!(masks.kind(), Kind::Bool, "{p} masks dtype");
                let differ = masks
                    .ne_tensor(&want("masks"))
                    .sum(Kind::Int64)
                    .int64_value(&[]);
                assert_eq!(differ, 0, "{p}: {differ} mask pixels differ");
            }
        }
    }

    /// `c4_cfg()` of the reference script: the C4 configs' head, at full width.
    fn c4_head(train: bool) -> (VarStore, StandardRoIHead) {
        let (_, train_cfg, test) = tiny_cfg(true);
        let cfg: StandardRoIHeadConfig = serde_json::from_value(serde_json::json!({
            "shared_head": {"type": "ResLayer", "depth": 50, "stage": 3, "stride": 2, "dilation": 1, "style": "caffe",
                            "norm_cfg": {"type": "BN", "requires_grad": false}, "norm_eval": true},
            "bbox_roi_extractor": {"type": "SingleRoIExtractor",
                                   "roi_layer": {"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0},
                                   "out_channels": 1024, "featmap_strides": [16]},
            "bbox_head": {"type": "BBoxHead", "with_avg_pool": true, "roi_feat_size": 7, "in_channels": 2048,
                          "num_classes": 3, "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
            "mask_head": {"type": "FCNMaskHead", "num_convs": 0, "in_channels": 2048, "conv_out_channels": 16,
                          "num_classes": 3}
        }))
        .unwrap();
        let vs = VarStore::new(Device::Cpu);
        let head = StandardRoIHead::new(&cfg, train.then_some(&train_cfg), Some(&test), &vs.root()).unwrap();
        load(&vs, "c4");
        (vs, head)
    }

    /// The C4 head (a `ResLayer` shared head with frozen BN in eval mode, a
    /// plain `BBoxHead`, a mask head on the positives' shared-head features):
    /// losses, gradients (of the shared head too) and predictions equal
    /// MMDetection's.
    #[test]
    fn c4_head_with_a_shared_res_layer_equals_mmdet() {
        let (vs, head) = c4_head(true);
        let x = vec![fx("c4.x.0").set_requires_grad(true)];
        let losses = head.loss(&x, proposals(), &samples()).unwrap();
        let keys: Vec<&str> = losses.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["loss_cls", "acc", "loss_bbox", "loss_mask"]);
        for (name, v) in &losses {
            assert_close(v, &fx(&format!("c4.out.{name}")), 1e-5, 1e-4, &format!("c4 {name}"));
        }
        (&losses["loss_cls"] + &losses["loss_bbox"] + losses["loss_mask"].sum(Kind::Float)).backward();
        let vars = vs.variables();
        let close = |got: &Tensor, key: &str| {
            let want = fx(&format!("c4.grad.{key}"));
            let tol = 1e-4 * want.abs().max().double_value(&[]);
            assert_close(got, &want, tol, 1e-4, &format!("c4 grad {key}"));
        };
        for key in [
            "shared_head.layer4.0.conv1.weight",
            "shared_head.layer4.2.conv3.weight",
            "bbox_head.fc_cls.weight",
            "bbox_head.fc_reg.weight",
            "mask_head.upsample.weight",
            "mask_head.conv_logits.weight",
        ] {
            close(&vars[key].grad(), key);
        }
        close(&x[0].grad(), "x.0");
        // Frozen BN (requires_grad: false) takes no gradient and is not trained.
        assert!(!vars["shared_head.layer4.0.bn1.weight"].requires_grad());

        let (_vs, head) = c4_head(false);
        let x = vec![fx("c4.x.0")];
        let res = tch::no_grad(|| head.predict(&x, proposals(), &samples(), true)).unwrap();
        for (i, r) in res.iter().enumerate() {
            let want = |k: &str| fx(&format!("c4.pred1.{i}.{k}"));
            assert_close(&r.bboxes, &want("bboxes"), 1e-3, 1e-5, &format!("c4 image {i} bboxes"));
            assert_close(&r.scores, &want("scores"), 1e-5, 1e-4, &format!("c4 image {i} scores"));
            assert_eq!(r.labels, want("labels"), "c4 image {i} labels");
            let differ = r.masks.as_ref().unwrap().ne_tensor(&want("masks")).sum(Kind::Int64).int64_value(&[]);
            assert_eq!(differ, 0, "c4 image {i}: {differ} mask pixels differ");
        }
    }

    #[test]
    fn standard_roi_head_predicts_empty_instances_without_proposals() {
        let (_vs, head) = tiny_head("e2e", false, false);
        let x = features("e2e");
        let none = || Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        for rescale in [true, false] {
            let res = head
                .predict(&x, vec![none(), none()], &samples(), rescale)
                .unwrap();
            for r in &res {
                assert_eq!(r.bboxes.size(), [0, 4]);
                assert_eq!(r.scores.size(), [0]);
                assert_eq!(r.labels.kind(), Kind::Int64);
                let masks = r.masks.as_ref().unwrap();
                assert_eq!((masks.size(), masks.kind()), (vec![0, 50, 64], Kind::Bool));
            }
        }
    }

    #[test]
    fn standard_roi_head_state_dict_equals_mmdet_mask_rcnn() {
        let cfg: StandardRoIHeadConfig = serde_json::from_value(serde_json::json!({
            "bbox_roi_extractor": {"type": "SingleRoIExtractor",
                "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0},
                "out_channels": 256, "featmap_strides": [4, 8, 16, 32]},
            "bbox_head": {"type": "Shared2FCBBoxHead", "in_channels": 256, "fc_out_channels": 1024,
                "roi_feat_size": 7, "num_classes": 80,
                "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}},
            "mask_roi_extractor": {"type": "SingleRoIExtractor",
                "roi_layer": {"type": "RoIAlign", "output_size": 14, "sampling_ratio": 0},
                "out_channels": 256, "featmap_strides": [4, 8, 16, 32]},
            "mask_head": {"type": "FCNMaskHead", "num_convs": 4, "in_channels": 256,
                "conv_out_channels": 256, "num_classes": 80}
        }))
        .unwrap();
        let vs = VarStore::new(Device::Cpu);
        let head = StandardRoIHead::new(&cfg, None, None, &(vs.root() / "roi_head")).unwrap();
        assert!(head.with_mask());
        let mut want: Vec<(String, Vec<i64>)> = fixture()
            .keys()
            .filter_map(|k| k.strip_prefix("shape."))
            .map(|k| {
                (
                    format!("roi_head.{k}"),
                    Vec::<i64>::try_from(fx(&format!("shape.{k}"))).unwrap(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(named_shapes(&vs, ""), want);
    }

    #[test]
    fn standard_roi_head_rejects_what_it_does_not_support() {
        let (cfg, train, test) = tiny_cfg(false);
        // No train cfg where the check does not need one (its assigner is
        // another module's).
        let build = |cfg: &StandardRoIHeadConfig,
                     train: Option<&RcnnTrainConfig>,
                     test: &RcnnTestConfig| {
            StandardRoIHead::new(cfg, train, Some(test), &VarStore::new(Device::Cpu).root())
                .unwrap_err()
                .message
        };
        let mut bad = cfg.clone();
        bad.bbox_head = None;
        assert!(build(&bad, None, &test).contains("required"));
        let mut bad = cfg.clone();
        // A shared head whose input the extractor's 8 channels do not fit.
        bad.shared_head =
            Some(serde_json::from_value(serde_json::json!({"type": "ResLayer", "depth": 50})).unwrap());
        assert!(build(&bad, None, &test).contains("gives 8 channels of (7, 7) but bbox_head takes in_channels 1024"));
        let mut bad = cfg.clone();
        bad.bbox_head.as_mut().unwrap().0["in_channels"] = serde_json::json!(16);
        assert!(build(&bad, None, &test).contains("in_channels 16"));
        let mut bad = cfg.clone();
        bad.mask_head.as_mut().unwrap().0["type"] = serde_json::json!("HTCMaskHead");
        assert!(build(&bad, None, &test).contains("HTCMaskHead"));
        let mut bad = train.clone();
        bad.mask_size = None;
        assert!(build(&cfg, Some(&bad), &test).contains("mask_size"));
        let mut bad = test.clone();
        bad.mask_thr_binary = None;
        assert!(build(&cfg, None, &bad).contains("mask_thr_binary"));
        let mut bad = test.clone();
        bad.nms = Some(
            serde_json::from_value(serde_json::json!({"type": "matrix_nms", "iou_threshold": 0.5}))
                .unwrap(),
        );
        assert!(build(&cfg, None, &bad).contains("matrix_nms"));

        let vs = VarStore::new(Device::Cpu);
        let no_train = StandardRoIHead::new(&cfg, None, Some(&test), &vs.root()).unwrap();
        let err = no_train
            .loss(&features("e2e"), proposals(), &samples())
            .unwrap_err();
        assert!(err.message.contains("train_cfg"), "{err}");
        let err = no_train
            .predict(
                &features("e2e"),
                vec![fx("img.0.proposals")],
                &samples(),
                true,
            )
            .unwrap_err();
        assert!(err.message.contains("one proposal list per image"), "{err}");
    }
}
