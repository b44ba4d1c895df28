//! `RPNHead` (`mmdet/models/dense_heads/rpn_head.py`, on `AnchorHead` and
//! `BaseDenseHead`): a shared 3x3 conv (+ ReLU) over every FPN level, then
//! per anchor an objectness logit (`rpn_cls`) and box deltas (`rpn_reg`).
//! Training assigns and samples the anchors of each image and returns the
//! two losses with the proposals; testing returns the proposals.
//!
//! Shape shorthand: `N` images, `L` levels, `A` anchors per location, `C`
//! classifier channels per anchor (1 with a sigmoid loss, 2 with softmax),
//! `H, W` a level's size, `G` ground truths of an image, `P` proposals.

use detc::registry::models::common::StrOrList;
use detc::registry::models::dense_heads::RPNHeadConfig;
use detc::registry::models::ops::NmsConfig;
use detc::registry::models::train_test::{ProposalConfig, RpnTrainConfig};
use detc::registry::models::weight_init::NormalInitConfig;
use indexmap::IndexMap;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::models::data_preprocessors::DetDataSample;
use crate::models::roi_heads::DetInstances;
use crate::models::layers::{make_conv, Activation, Conv2d, ConvGeom, ConvInit, ConvModule, ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg, Loss};
use crate::models::ops::nms::{batched_nms_cfg, batched_nms_where_images, nms_config};
use crate::models::ops::{upload_as, DeltaXYWHBBoxCoder};
use super::anchor_head::{featmap_sizes, image_hw, larger_than_mask, AnchorLoss, AnchorTrain};
use crate::models::task_modules::AnchorGenerator;

const NAME: &str = "RPNHead";

/// `rpn_conv`: one `nn.Conv2d` (`num_convs: 1`) or an `nn.Sequential` of
/// ConvModules with ReLU (`rpn_conv.{i}.conv.*`).
#[derive(Debug)]
enum RpnConv {
    Single(Conv2d),
    Stack(Vec<ConvModule>),
}

/// `train_cfg.rpn_proposal` / `test_cfg.rpn`, built.
#[derive(Debug, Clone)]
struct ProposalSettings {
    nms_pre: i64,
    max_per_img: i64,
    nms: NmsConfig,
    min_bbox_size: f64,
}

impl ProposalSettings {
    fn new(cfg: &ProposalConfig) -> ModelResult<Self> {
        Ok(ProposalSettings {
            nms_pre: cfg.nms_pre,
            max_per_img: cfg.max_per_img as i64,
            nms: nms_config(&cfg.nms, "RPNHead.nms")?,
            min_bbox_size: cfg.min_bbox_size,
        })
    }
}

#[derive(Debug)]
pub struct RPNHead {
    rpn_conv: RpnConv,
    /// `rpn_cls`: 1x1, `feat_channels` -> `A * C`.
    pub rpn_cls: Conv2d,
    /// `rpn_reg`: 1x1, `feat_channels` -> `A * 4`.
    pub rpn_reg: Conv2d,
    pub prior_generator: AnchorGenerator,
    pub bbox_coder: DeltaXYWHBBoxCoder,
    pub loss_cls: Loss,
    pub loss_bbox: Loss,
    pub reg_decoded_bbox: bool,
    pub use_sigmoid_cls: bool,
    /// `C`: 1 (sigmoid) or 2 (softmax; class 1 is background).
    pub cls_out_channels: i64,
    train: Option<AnchorTrain>,
    proposal: Option<ProposalSettings>,
    test: Option<ProposalSettings>,
}

fn conv_init(cfg: &RPNHeadConfig) -> ModelResult<ConvInit> {
    let Some(init) = &cfg.init_cfg else {
        return Ok(ConvInit::TorchDefault);
    };
    let items = init.as_vec();
    let [one] = items.as_slice() else {
        return Err(ModelError::new(
            NAME,
            "init_cfg must be one Normal dict on Conv2d (or null for torch's default)",
        ));
    };
    if cfg_type(&one.0, "RPNHead.init_cfg")? != "Normal" {
        return Err(ModelError::new(
            NAME,
            "init_cfg type is not supported yet (use Normal on Conv2d, or null)",
        ));
    }
    let n: NormalInitConfig = parse_cfg(&one.0, "RPNHead.init_cfg")?;
    let on_conv = match &n.layer {
        None => true,
        Some(l) => match l {
            StrOrList::One(s) => s == "Conv2d",
            StrOrList::List(v) => v.iter().any(|s| s == "Conv2d"),
        },
    };
    if !on_conv || n.r#override.is_some() {
        return Err(ModelError::new(
            NAME,
            "init_cfg Normal must name layer Conv2d and have no override",
        ));
    }
    let bias = match n.bias_prob {
        Some(p) => -((1.0 - p) / p).ln(),
        None => n.bias,
    };
    Ok(ConvInit::Normal {
        mean: n.mean,
        std: n.std,
        bias,
    })
}

impl RPNHead {
    /// Builds under `p` (`rpn_head`): `rpn_conv`, `rpn_cls`, `rpn_reg`.
    /// `train_cfg` is the detector's `train_cfg.rpn`, `proposal_cfg` its
    /// `train_cfg.rpn_proposal` (proposals while training), `test_cfg` its
    /// `test_cfg.rpn`.
    pub fn new(
        cfg: &RPNHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        proposal_cfg: Option<&ProposalConfig>,
        test_cfg: Option<&ProposalConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        if cfg.num_classes != 1 {
            return Err(ModelError::new(NAME, "num_classes must be 1"));
        }
        let use_sigmoid_cls = cfg
            .loss_cls
            .0
            .get("use_sigmoid")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let cls_out_channels = if use_sigmoid_cls { 1 } else { 2 };
        let prior_generator = AnchorGenerator::from_cfg(&cfg.anchor_generator)?;
        let per_level = prior_generator.num_base_priors();
        let num_base_priors = per_level[0];
        if per_level.iter().any(|&a| a != num_base_priors) {
            return Err(ModelError::new(
                NAME,
                format!("every level needs the same number of anchors, got {per_level:?}"),
            ));
        }
        let bbox_coder = DeltaXYWHBBoxCoder::from_cfg(&cfg.bbox_coder, "RPNHead.bbox_coder")?;
        let init = conv_init(cfg)?;
        let (in_c, feat_c) = (cfg.in_channels as i64, cfg.feat_channels as i64);
        let k3 = ConvGeom::k(3).padding(1);
        let rpn_conv = if cfg.num_convs > 1 {
            let stack = p / "rpn_conv";
            let convs = (0..cfg.num_convs as i64)
                .map(|i| {
                    let q = &stack / i;
                    let c_in = if i == 0 { in_c } else { feat_c };
                    let conv = make_conv(&(&q / "conv"), c_in, feat_c, k3, init)?;
                    Ok(ConvModule {
                        conv,
                        norm: None,
                        act: Some(Activation::Relu),
                    })
                })
                .collect::<ModelResult<Vec<_>>>()?;
            RpnConv::Stack(convs)
        } else {
            RpnConv::Single(make_conv(&(p / "rpn_conv"), in_c, feat_c, k3, init)?)
        };
        let a = num_base_priors;
        let rpn_cls = make_conv(
            &(p / "rpn_cls"),
            feat_c,
            a * cls_out_channels,
            ConvGeom::k(1),
            init,
        )?;
        let rpn_reg = make_conv(&(p / "rpn_reg"), feat_c, a * 4, ConvGeom::k(1), init)?;
        let train = train_cfg.or(cfg.train_cfg.as_ref()).map(|t| AnchorTrain::new(t, NAME)).transpose()?;
        let test = test_cfg
            .or(cfg.test_cfg.as_ref())
            .map(ProposalSettings::new)
            .transpose()?;
        let proposal = match proposal_cfg {
            Some(c) => Some(ProposalSettings::new(c)?),
            None => test.clone(),
        };
        Ok(RPNHead {
            rpn_conv,
            rpn_cls,
            rpn_reg,
            prior_generator,
            bbox_coder,
            loss_cls: Loss::from_cfg_at(&cfg.loss_cls, &(p / "loss_cls"))?,
            loss_bbox: Loss::from_cfg_at(&cfg.loss_bbox, &(p / "loss_bbox"))?,
            reg_decoded_bbox: cfg.reg_decoded_bbox,
            use_sigmoid_cls,
            cls_out_channels,
            train,
            proposal,
            test,
        })
    }

    /// `forward`: per level x (N, Cin, H, W) -> cls_scores (N, A*C, H, W)
    /// and bbox_preds (N, A*4, H, W).
    pub fn forward(&self, x: &[Tensor]) -> ModelResult<(Vec<Tensor>, Vec<Tensor>)> {
        if x.len() != self.prior_generator.num_levels() {
            return Err(ModelError::new(
                NAME,
                format!(
                    "{} feature levels for {} anchor strides",
                    x.len(),
                    self.prior_generator.num_levels()
                ),
            ));
        }
        let mut cls = Vec::with_capacity(x.len());
        let mut reg = Vec::with_capacity(x.len());
        for level in x {
            let mut y = level.shallow_clone();
            match &self.rpn_conv {
                RpnConv::Single(c) => y = c.forward(&y)?,
                RpnConv::Stack(convs) => {
                    for c in convs {
                        y = c.forward_t(&y, true)?;
                    }
                }
            }
            let y = y.f_relu()?;
            cls.push(self.rpn_cls.forward(&y)?);
            reg.push(self.rpn_reg.forward(&y)?);
        }
        Ok((cls, reg))
    }

    /// `loss_and_predict`: `{loss_rpn_cls, loss_rpn_bbox}` (each summed over
    /// levels) and per image the (P, 4) detached proposals (the
    /// `rpn_proposal` settings). Every ground truth is class 0 here.
    pub fn loss_and_predict(
        &self,
        x: &[Tensor],
        samples: &[DetDataSample],
    ) -> ModelResult<(IndexMap<String, Tensor>, Vec<Tensor>)> {
        let (cls_scores, bbox_preds) = self.forward(x)?;
        crate::engine::profile::section("rpn: forward");
        let losses = self.loss_by_feat(&cls_scores, &bbox_preds, samples)?;
        crate::engine::profile::section("rpn: targets and losses");
        let cfg = self.proposal.as_ref().ok_or_else(|| {
            ModelError::new(
                NAME,
                "no train_cfg.rpn_proposal nor test_cfg.rpn to make proposals with",
            )
        })?;
        let proposals = self.predict_by_feat(&cls_scores, &bbox_preds, samples, cfg, false)?;
        crate::engine::profile::section("rpn: proposals (NMS)");
        Ok((losses, proposals.into_iter().map(|(b, _)| b).collect()))
    }

    /// `predict(rescale=False)`: per image the (P, 4) proposals in pixels of
    /// the resized image (the `test_cfg` settings).
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample]) -> ModelResult<Vec<Tensor>> {
        let cfg = self
            .test
            .as_ref()
            .ok_or_else(|| ModelError::new(NAME, "predict needs test_cfg.rpn"))?;
        let (cls_scores, bbox_preds) = self.forward(x)?;
        Ok(self.predict_by_feat(&cls_scores, &bbox_preds, samples, cfg, false)?.into_iter().map(|(b, _)| b).collect())
    }

    /// `predict` of the `RPN` detector: per image the proposals as
    /// detections of class 0 with their objectness scores, best first; with
    /// `rescale`, in original-image pixels (scaled back before the size
    /// filter and NMS, as `RPNHead._bbox_post_process` does).
    pub fn predict_detections(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs test_cfg.rpn"))?;
        let (cls_scores, bbox_preds) = self.forward(x)?;
        self.predict_by_feat(&cls_scores, &bbox_preds, samples, cfg, rescale)?
            .into_iter()
            .map(|(bboxes, scores)| {
                let labels = Tensor::f_zeros([scores.size()[0]], (Kind::Int64, scores.device()))?;
                Ok(DetInstances { bboxes, scores, labels, masks: None })
            })
            .collect()
    }


    /// `loss_by_feat`: `loss_rpn_cls` and `loss_rpn_bbox` from the head's
    /// outputs; every ground truth is the one (objectness) class.
    pub fn loss_by_feat(
        &self,
        cls_scores: &[Tensor],
        bbox_preds: &[Tensor],
        samples: &[DetDataSample],
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs train_cfg.rpn"))?;
        let anchor_loss = AnchorLoss {
            prior_generator: &self.prior_generator,
            bbox_coder: &self.bbox_coder,
            loss_cls: &self.loss_cls,
            loss_bbox: &self.loss_bbox,
            reg_decoded_bbox: self.reg_decoded_bbox,
            cls_out_channels: self.cls_out_channels,
            num_classes: 1,
            class_agnostic: true,
            owner: NAME,
        };
        let (loss_cls, loss_bbox) = anchor_loss.loss_by_feat(train, cls_scores, bbox_preds, samples)?;
        Ok(IndexMap::from([("loss_rpn_cls".to_string(), loss_cls), ("loss_rpn_bbox".to_string(), loss_bbox)]))
    }

    /// `predict_by_feat` with RPNHead's `_predict_by_feat_single` and
    /// `_bbox_post_process`: per image the (P, 4) proposals, detached.
    /// MMDetection ranks and decodes each image's levels one image at a
    /// time; here the ranking takes the batch at once, level by level (the
    /// same sorts, row by row), and so does decoding (each image's rows
    /// clamped to its own shape); the size filter and NMS go image by
    /// image, but on CUDA, where every image's NMS runs in one sweep.
    fn predict_by_feat(
        &self,
        cls_scores: &[Tensor],
        bbox_preds: &[Tensor],
        samples: &[DetDataSample],
        cfg: &ProposalSettings,
        rescale: bool,
    ) -> ModelResult<Vec<(Tensor, Tensor)>> {
        let sizes = featmap_sizes(cls_scores);
        let device = cls_scores
            .first()
            .map(|c| c.device())
            .unwrap_or(Device::Cpu);
        let mlvl_priors = self.prior_generator.grid_priors(&sizes, device)?;
        let ranked = self.rank_levels(cls_scores, bbox_preds, &mlvl_priors, cfg)?;
        let (n, per_image) = (ranked.deltas.size()[0], ranked.deltas.size()[1]);
        let shapes = samples
            .iter()
            .map(|s| {
                let (h, w) = image_hw(s.meta.img_shape, "img_shape", NAME)?;
                Ok(((h as f64, w as f64), per_image))
            })
            .collect::<ModelResult<Vec<_>>>()?;
        let mut bboxes = self
            .bbox_coder
            .decode_images(&ranked.priors.f_reshape([-1, 4])?, &ranked.deltas.f_reshape([-1, 4])?, Some(&shapes))?
            .f_view([n, per_image, 4])?;
        if rescale {
            // mmdet multiplies by the reciprocals (in the boxes' dtype).
            let inverse = samples
                .iter()
                .map(|sample| {
                    let (sw, sh) = sample
                        .meta
                        .scale_factor
                        .ok_or_else(|| ModelError::new(NAME, "rescale needs scale_factor in the sample's meta"))?;
                    Ok([1.0 / sw, 1.0 / sh, 1.0 / sw, 1.0 / sh])
                })
                .collect::<ModelResult<Vec<_>>>()?;
            let inverse = upload_as(inverse.as_flattened(), bboxes.kind(), bboxes.device())?.f_view([n, 1, 4])?;
            bboxes = bboxes.f_mul(&inverse)?;
        }
        self.post_process(&bboxes, &ranked.scores, &ranked.level_ids, cfg)
    }

    /// `_predict_by_feat_single`'s ranking, for the batch: per level
    /// (N, A*C, H, W) scores and (N, A*4, H, W) deltas, the `nms_pre` best
    /// anchors of each image, the levels concatenated.
    fn rank_levels(
        &self,
        cls_scores: &[Tensor],
        bbox_preds: &[Tensor],
        mlvl_priors: &[Tensor],
        cfg: &ProposalSettings,
    ) -> ModelResult<Ranked> {
        let mut mlvl_deltas = Vec::new();
        let mut mlvl_priors_kept = Vec::new();
        let mut mlvl_scores = Vec::new();
        let mut level_ids = Vec::new();
        for (level, ((cls, reg), priors)) in cls_scores
            .iter()
            .zip(bbox_preds)
            .zip(mlvl_priors)
            .enumerate()
        {
            let n = cls.size()[0];
            let mut deltas = reg.f_detach()?.f_permute([0, 2, 3, 1])?.f_reshape([n, -1, 4])?;
            let logits = cls
                .f_detach()?
                .f_permute([0, 2, 3, 1])?
                .f_reshape([n, -1, self.cls_out_channels])?;
            let mut scores = if self.use_sigmoid_cls {
                logits.f_sigmoid()?
            } else {
                // Class 1 is background.
                logits.f_softmax(-1, logits.kind())?.f_narrow(2, 0, 1)?
            }
            .f_reshape([n, -1])?;
            let mut priors = priors.f_unsqueeze(0)?.f_expand([n, -1, 4], false)?;
            if cfg.nms_pre > 0 && cfg.nms_pre < scores.size()[1] {
                // torch's default (unstable) sort, as mmdet: same ties.
                let (ranked, rank_inds) = scores.f_sort(1, true)?;
                let top = rank_inds.f_narrow(1, 0, cfg.nms_pre)?;
                scores = ranked.f_narrow(1, 0, cfg.nms_pre)?;
                let top4 = top.f_unsqueeze(2)?.f_expand([n, cfg.nms_pre, 4], false)?;
                deltas = deltas.f_gather(1, &top4, false)?;
                priors = priors.f_gather(1, &top4, false)?;
            }
            level_ids.push(Tensor::f_full(
                [scores.size()[1]],
                level as i64,
                (Kind::Int64, scores.device()),
            )?);
            mlvl_deltas.push(deltas);
            mlvl_priors_kept.push(priors);
            mlvl_scores.push(scores);
        }
        Ok(Ranked {
            deltas: Tensor::f_cat(&mlvl_deltas, 1)?,
            priors: Tensor::f_cat(&mlvl_priors_kept, 1)?,
            scores: Tensor::f_cat(&mlvl_scores, 1)?,
            level_ids: Tensor::f_cat(&level_ids, 0)?,
        })
    }

    /// The batch's decoded boxes (B, P, 4) of their ranked anchors, their
    /// scores (B, P) and levels (P,) -> each image's (K, 4) proposals and
    /// their (K,) scores, best first (`_bbox_post_process`, image by image;
    /// on CUDA every image's NMS in one sweep).
    fn post_process(
        &self,
        bboxes: &Tensor,
        scores: &Tensor,
        level_ids: &Tensor,
        cfg: &ProposalSettings,
    ) -> ModelResult<Vec<(Tensor, Tensor)>> {
        let at_most = Some(cfg.max_per_img as usize);
        // The boxes not above min_bbox_size are left out of NMS, as if
        // filtered first (on CUDA inside the sweep, with no read).
        let keeps = match larger_than_mask(bboxes, cfg.min_bbox_size)? {
            Some(valid) => batched_nms_where_images(bboxes, scores, level_ids, &valid, &cfg.nms, at_most)?,
            None => (0..bboxes.size()[0])
                .map(|i| batched_nms_cfg(&bboxes.f_get(i)?, &scores.f_get(i)?, level_ids, &cfg.nms, at_most))
                .collect::<ModelResult<_>>()?,
        };
        keeps
            .iter()
            .enumerate()
            .map(|(i, keep)| {
                let i = i as i64;
                Ok((bboxes.f_get(i)?.f_index_select(0, keep)?, scores.f_get(i)?.f_index_select(0, keep)?))
            })
            .collect()
    }
}

/// The best anchors of each level, the levels concatenated: deltas and
/// priors (.., P, 4), scores (.., P), and each one's level (P,).
struct Ranked {
    deltas: Tensor,
    priors: Tensor,
    scores: Tensor,
    level_ids: Tensor,
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::models::data_preprocessors::InstanceTensors;
    use crate::models::layers::fixtures::{assert_close, tensor, StateDict};
    use crate::models::ops::nms::tests::fixture;
    use crate::models::weights::{load_state_dict, Shapes, named_shapes};
    use detc::data::SampleMeta;
    use tch::nn::VarStore;

    const ANCHORS: &str = r#"{"type": "AnchorGenerator", "scales": [8], "ratios": [0.5, 1.0, 2.0],
                              "strides": [4, 8, 16, 32, 64]}"#;

    /// The CFGS of tests/models/two_stage_dense_reference.py.
    fn rpn_cfg(case: &str) -> (RPNHeadConfig, RpnTrainConfig) {
        let anchors: serde_json::Value = serde_json::from_str(ANCHORS).unwrap();
        let (head, train) = match case {
            "a" => (
                serde_json::json!({"in_channels": 8, "feat_channels": 8, "anchor_generator": anchors}),
                serde_json::json!({
                    "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.7, "neg_iou_thr": 0.3,
                                 "min_pos_iou": 0.3, "match_low_quality": true, "ignore_iof_thr": -1},
                    "sampler": {"type": "RandomSampler", "num": 100000, "pos_fraction": 0.5, "neg_pos_ub": -1,
                                "add_gt_as_proposals": false},
                    "allowed_border": -1, "pos_weight": -1, "debug": false}),
            ),
            _ => (
                serde_json::json!({
                    "in_channels": 8, "feat_channels": 8, "num_convs": 2, "anchor_generator": anchors,
                    "reg_decoded_bbox": true, "loss_bbox": {"type": "L1Loss", "loss_weight": 2.0},
                    "loss_cls": {"type": "CrossEntropyLoss", "use_sigmoid": true, "loss_weight": 0.5},
                    "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0],
                                   "target_stds": [0.5, 0.5, 1.0, 1.0]}}),
                serde_json::json!({
                    "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.3,
                                 "min_pos_iou": 0.3, "match_low_quality": true, "ignore_iof_thr": -1},
                    "sampler": null, "allowed_border": 0, "pos_weight": 2.0, "debug": false}),
            ),
        };
        (
            serde_json::from_value(head).unwrap(),
            serde_json::from_value(train).unwrap(),
        )
    }

    fn proposal_cfgs() -> (ProposalConfig, ProposalConfig) {
        let p = serde_json::json!({"nms_pre": 50, "max_per_img": 30, "nms": {"type": "nms", "iou_threshold": 0.7},
                                   "min_bbox_size": 0});
        let t = serde_json::json!({"nms_pre": -1, "max_per_img": 100, "nms": {"type": "nms", "iou_threshold": 0.5},
                                   "min_bbox_size": -1});
        (
            serde_json::from_value(p).unwrap(),
            serde_json::from_value(t).unwrap(),
        )
    }

    fn head_with_weights(case: &str, sd: Option<&StateDict>) -> (VarStore, RPNHead) {
        let (cfg, train) = rpn_cfg(case);
        let (proposal, test) = proposal_cfgs();
        let vs = VarStore::new(Device::Cpu);
        let head = RPNHead::new(
            &cfg,
            Some(&train),
            Some(&proposal),
            Some(&test),
            &(vs.root() / "rpn_head"),
        )
        .unwrap();
        if let Some(sd) = sd {
            let report = load_state_dict(&vs, "rpn_head", sd, Shapes::Refuse).unwrap();
            assert!(
                report.missing.is_empty() && report.unexpected.is_empty(),
                "{report:?}"
            );
        }
        (vs, head)
    }

    fn empty_instances() -> InstanceTensors {
        InstanceTensors {
            bboxes: Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
            labels: Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
            masks: None,
        }
    }

    fn sample(
        img: (usize, usize),
        pad: (usize, usize),
        bboxes: Tensor,
        labels: Tensor,
    ) -> DetDataSample {
        DetDataSample {
            meta: SampleMeta {
                img_shape: Some(img),
                pad_shape: Some(pad),
                // The reference's IMG_METAS (used only by a rescaled predict).
                scale_factor: Some(if img.0 == 60 { (0.45, 0.6) } else { (1.55, 1.6) }),
                ..SampleMeta::default()
            },
            batch_input_shape: (64, 96),
            gt_instances: InstanceTensors {
                bboxes,
                labels,
                masks: None,
            },
            ignored_instances: empty_instances(),
        }
    }

    /// The two images of the reference (IMG_METAS), with its ground truths.
    fn samples(fx: &StateDict, case: &str) -> Vec<DetDataSample> {
        let shapes = [((60, 90), (64, 96)), ((40, 62), (64, 64))];
        shapes
            .iter()
            .enumerate()
            .map(|(i, &(img, pad))| {
                let t = |k: &str| tensor(fx, &format!("rpn.{case}.gt.{i}.{k}"));
                sample(img, pad, t("bboxes").view([-1, 4]), t("labels"))
            })
            .collect()
    }

    /// Losses, their gradients and both kinds of proposals against mmdet's
    /// RPNHead (with mmcv's batched_nms), for the two reference configs.
    #[test]
    fn rpn_head_matches_mmdet() {
        let fx = fixture();
        // Case a again sampled as masks, as on a GPU (every anchor inside,
        // and no draw: its sampler wants more than there are).
        for (case, masks) in [("a", false), ("a", true), ("b", false)] {
            let start = Instant::now();
            let prefix = format!("rpn.{case}.sd.");
            let sd: StateDict = fx
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                .collect();
            let (vs, mut head) = head_with_weights(case, Some(&sd));
            head.train.as_mut().unwrap().masks_on_cpu = masks;
            let feats: Vec<Tensor> = (0..5)
                .map(|l| tensor(fx, &format!("rpn.{case}.feat.{l}")).set_requires_grad(true))
                .collect();
            let samples = samples(fx, case);
            let (losses, proposals) = head.loss_and_predict(&feats, &samples).unwrap();
            let keys: Vec<&String> = losses.keys().collect();
            assert_eq!(keys, ["loss_rpn_cls", "loss_rpn_bbox"]);
            let want = |k: &str| tensor(fx, &format!("rpn.{case}.{k}"));
            assert_close(
                &losses["loss_rpn_cls"],
                &want("loss_cls"),
                1e-7,
                1e-5,
                "loss_rpn_cls",
            );
            assert_close(
                &losses["loss_rpn_bbox"],
                &want("loss_bbox"),
                1e-7,
                1e-5,
                "loss_rpn_bbox",
            );
            for (i, p) in proposals.iter().enumerate() {
                assert!(!p.requires_grad());
                assert_close(
                    p,
                    &want(&format!("proposal.{i}")),
                    1e-4,
                    1e-5,
                    &format!("{case} proposals {i}"),
                );
            }
            (&losses["loss_rpn_cls"] + &losses["loss_rpn_bbox"]).backward();
            for (l, f) in feats.iter().enumerate() {
                assert_close(
                    &f.grad(),
                    &want(&format!("grad.feat.{l}")),
                    1e-6,
                    1e-4,
                    &format!("{case} grad feat {l}"),
                );
            }
            for (name, var) in vs.variables() {
                let key = format!("grad.sd.{}", name.strip_prefix("rpn_head.").unwrap());
                assert_close(
                    &var.grad(),
                    &want(&key),
                    1e-6,
                    1e-4,
                    &format!("{case} {key}"),
                );
            }
            let test = tch::no_grad(|| head.predict(&feats, &samples)).unwrap();
            for (i, p) in test.iter().enumerate() {
                assert_close(
                    p,
                    &want(&format!("test.{i}")),
                    1e-4,
                    1e-5,
                    &format!("{case} test proposals {i}"),
                );
            }
            let dets = tch::no_grad(|| head.predict_detections(&feats, &samples, true)).unwrap();
            for (i, d) in dets.iter().enumerate() {
                let what = format!("{case} rescaled detections {i}");
                assert_close(&d.bboxes, &want(&format!("rescaled.{i}.bboxes")), 1e-4, 1e-5, &what);
                assert_close(&d.scores, &want(&format!("rescaled.{i}.scores")), 1e-6, 1e-5, &what);
                assert_eq!(d.labels, want(&format!("rescaled.{i}.labels")), "{what}");
            }
            eprintln!("rpn_head_matches_mmdet case {case}: {:?}", start.elapsed());
        }
    }

    #[test]
    fn rpn_head_state_dict_names_and_init() {
        let (vs, head) = head_with_weights("a", None);
        let names: Vec<(String, Vec<i64>)> = named_shapes(&vs, "rpn_head");
        let want = [
            ("rpn_cls.bias", vec![3]),
            ("rpn_cls.weight", vec![3, 8, 1, 1]),
            ("rpn_conv.bias", vec![8]),
            ("rpn_conv.weight", vec![8, 8, 3, 3]),
            ("rpn_reg.bias", vec![12]),
            ("rpn_reg.weight", vec![12, 8, 1, 1]),
        ];
        assert_eq!(names, want.map(|(k, s)| (k.to_string(), s)));
        assert_eq!(head.cls_out_channels, 1);
        let w = &head.rpn_reg.weight;
        let std = f64::try_from(w.std(true)).unwrap();
        assert!(
            (0.005..0.02).contains(&std),
            "Normal(std=0.01) init, got std {std}"
        );
        assert_eq!(
            f64::try_from(head.rpn_cls.bias.as_ref().unwrap().abs().sum(Kind::Float)).unwrap(),
            0.0
        );
        let (vs, _) = head_with_weights("b", None);
        let names: Vec<String> = named_shapes(&vs, "rpn_head")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(names.contains(&"rpn_conv.0.conv.weight".to_string()));
        assert!(names.contains(&"rpn_conv.1.conv.bias".to_string()));
    }

    /// No ground truth in any image: every sampled anchor is a negative, the
    /// box loss is a zero that still reaches the head's parameters.
    #[test]
    fn rpn_head_trains_on_images_without_ground_truth() {
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(3);
        let (vs, head) = head_with_weights("a", None);
        let feats: Vec<Tensor> = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
            .iter()
            .map(|&(h, w)| {
                Tensor::randn([2, 8, h, w], (Kind::Float, Device::Cpu)).set_requires_grad(true)
            })
            .collect();
        let empty = || empty_instances();
        let samples: Vec<DetDataSample> = (0..2)
            .map(|_| {
                let e = empty();
                sample((60, 90), (64, 96), e.bboxes, e.labels)
            })
            .collect();
        let (losses, proposals) = head.loss_and_predict(&feats, &samples).unwrap();
        assert_eq!(f64::try_from(&losses["loss_rpn_bbox"]).unwrap(), 0.0);
        let cls = f64::try_from(&losses["loss_rpn_cls"]).unwrap();
        assert!(cls > 0.0 && cls.is_finite());
        (&losses["loss_rpn_cls"] + &losses["loss_rpn_bbox"]).backward();
        assert!(f64::try_from(feats[0].grad().abs().sum(Kind::Float)).unwrap() > 0.0);
        for (name, var) in vs.variables() {
            assert!(var.grad().defined(), "{name} has no gradient");
        }
        assert_eq!(proposals.len(), 2);
        assert!(proposals
            .iter()
            .all(|p| p.size()[1] == 4 && p.size()[0] <= 30 && p.size()[0] > 0));
        // A wrong number of levels or a sample without shapes is an error, not a panic.
        assert!(head.loss_and_predict(&feats[..4], &samples).is_err());
        let mut no_pad = samples;
        no_pad[0].meta.pad_shape = None;
        assert_eq!(
            head.loss_and_predict(&feats, &no_pad)
                .unwrap_err()
                .component,
            NAME
        );
    }
}
