//! `FasterRCNN`, `MaskRCNN` and `CascadeRCNN`
//! (`mmdet/models/detectors/two_stage.py`): a backbone and neck, an `RPNHead`
//! that proposes boxes from anchors, and an RoI head that classifies and
//! refines them: `StandardRoIHead` (Mask R-CNN adds the mask branch) or
//! `CascadeRoIHead` (Cascade R-CNN; Cascade Mask R-CNN with mask heads).
//! The parameters are named as MMDetection's: `backbone.*`, `neck.*`,
//! `rpn_head.*`, `roi_head.*`.

use detc::registry::models::data_preprocessors::DetDataPreprocessorConfig;
use detc::registry::models::dense_heads::RPNHeadConfig;
use detc::registry::models::detectors::TwoStageDetectorConfig;
use detc::registry::models::common::OneOrMany;
use detc::registry::models::roi_heads::{CascadeRoIHeadConfig, MaskScoringRoIHeadConfig, StandardRoIHeadConfig};
use indexmap::IndexMap;
use tch::{nn, Tensor};

use super::parts::{build_backbone, build_neck, extract_feat, preprocessor_config, roi_feats};
use crate::models::backbones::Backbone;
use crate::models::data_preprocessors::{DetBatch, DetDataSample};
use crate::models::dense_heads::RPNHead;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::necks::Neck;
use crate::models::roi_heads::{CascadeRoIHead, DetInstances, StandardRoIHead};

/// The second stage of a two-stage detector.
#[derive(Debug)]
pub enum RoiHead {
    Standard(StandardRoIHead),
    Cascade(CascadeRoIHead),
}

impl RoiHead {
    pub fn with_mask(&self) -> bool {
        match self {
            RoiHead::Standard(h) => h.with_mask(),
            RoiHead::Cascade(h) => h.with_mask(),
        }
    }

    fn loss(&self, x: &[Tensor], proposals: Vec<Tensor>, samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        match self {
            RoiHead::Standard(h) => h.loss(x, proposals, samples),
            RoiHead::Cascade(h) => h.loss(x, proposals, samples),
        }
    }

    fn predict(
        &self,
        x: &[Tensor],
        proposals: Vec<Tensor>,
        samples: &[DetDataSample],
        rescale: bool,
    ) -> ModelResult<Vec<DetInstances>> {
        match self {
            RoiHead::Standard(h) => h.predict(x, proposals, samples, rescale),
            RoiHead::Cascade(h) => h.predict(x, proposals, samples, rescale),
        }
    }
}

#[derive(Debug)]
pub struct TwoStageDetector {
    /// `FasterRCNN`, `MaskRCNN` or `CascadeRCNN`.
    pub name: &'static str,
    pub backbone: Backbone,
    pub neck: Option<Neck>,
    pub rpn_head: RPNHead,
    pub roi_head: RoiHead,
    /// The `data_preprocessor` config (the preprocessor itself is built per device).
    pub data_preprocessor: Option<DetDataPreprocessorConfig>,
}

impl TwoStageDetector {
    /// Builds `name` (`FasterRCNN` / `MaskRCNN`) from its config under `p`
    /// (the model root). As `TwoStageDetector.__init__`, the RPN head gets
    /// `train_cfg.rpn` and `test_cfg.rpn`, proposals while training follow
    /// `train_cfg.rpn_proposal` (`test_cfg.rpn` when absent), and the RoI head
    /// gets `train_cfg.rcnn` and `test_cfg.rcnn`.
    pub fn new(
        name: &'static str,
        cfg: &TwoStageDetectorConfig,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        let backbone = build_backbone(&cfg.backbone, name, p)?;
        let neck = build_neck(cfg.neck.as_ref(), name, p)?;
        let (train, test) = (&cfg.train_cfg, &cfg.test_cfg);
        let rpn_head = match cfg_type(&cfg.rpn_head.0, "rpn_head")? {
            "RPNHead" => RPNHead::new(
                &parse_cfg::<RPNHeadConfig>(&cfg.rpn_head.0, "RPNHead")?,
                Some(&train.rpn),
                Some(train.rpn_proposal.as_ref().unwrap_or(&test.rpn)),
                Some(&test.rpn),
                &(p / "rpn_head"),
            )?,
            other => {
                return Err(ModelError::new(
                    name,
                    format!("rpn_head {other:?} is not supported (only RPNHead)"),
                ))
            }
        };
        let roi_head = match cfg_type(&cfg.roi_head.0, "roi_head")? {
            kind @ ("StandardRoIHead" | "MaskScoringRoIHead") => {
                let OneOrMany::One(rcnn) = &train.rcnn else {
                    return Err(ModelError::new(
                        name,
                        format!("train_cfg.rcnn is a list: {kind} takes one dict (a list, one per stage, is for CascadeRoIHead)"),
                    ));
                };
                let (roi, roi_p) = (&cfg.roi_head.0, p / "roi_head");
                RoiHead::Standard(match kind {
                    "StandardRoIHead" => StandardRoIHead::new(&parse_cfg::<StandardRoIHeadConfig>(roi, kind)?, Some(rcnn), Some(&test.rcnn), &roi_p)?,
                    _ => StandardRoIHead::mask_scoring(&parse_cfg::<MaskScoringRoIHeadConfig>(roi, kind)?, Some(rcnn), Some(&test.rcnn), &roi_p)?,
                })
            }
            "CascadeRoIHead" => {
                let rcnn: Vec<_> = train.rcnn.as_vec().into_iter().cloned().collect();
                RoiHead::Cascade(CascadeRoIHead::new(
                    &parse_cfg::<CascadeRoIHeadConfig>(&cfg.roi_head.0, "CascadeRoIHead")?,
                    Some(&rcnn),
                    Some(&test.rcnn),
                    &(p / "roi_head"),
                )?)
            }
            other => {
                return Err(ModelError::new(
                    name,
                    format!("roi_head {other:?} is not supported (StandardRoIHead, MaskScoringRoIHead or CascadeRoIHead)"),
                ))
            }
        };
        if matches!(name, "MaskRCNN" | "MaskScoringRCNN") && !roi_head.with_mask() {
            return Err(ModelError::new(
                name,
                "roi_head needs a mask_head (FCNMaskHead); use FasterRCNN for boxes only",
            ));
        }
        Ok(TwoStageDetector {
            name,
            backbone,
            neck,
            rpn_head,
            roi_head,
            data_preprocessor: preprocessor_config(cfg.data_preprocessor.as_ref(), name)?,
        })
    }

    /// Loads the backbone's and the shared head's `Pretrained` `init_cfg`s,
    /// if any (MMEngine's `init_weights`; the other parts are initialised
    /// when built): one key report per checkpoint loaded.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Vec<detc::checkpoint::KeyReport>> {
        let shared = match &self.roi_head {
            RoiHead::Standard(h) => h.init_weights(vs)?,
            RoiHead::Cascade(_) => None,
        };
        Ok(self.backbone.init_weights(vs)?.into_iter().chain(shared).collect())
    }

    /// `extract_feat`: backbone, then neck.
    pub fn extract_feat(&self, inputs: &Tensor, train: bool) -> ModelResult<Vec<Tensor>> {
        extract_feat(&self.backbone, self.neck.as_ref(), inputs, train)
    }

    /// `loss`: the RPN's `loss_rpn_cls`, `loss_rpn_bbox`, then the RoI head's
    /// `loss_cls`, `acc`, `loss_bbox` (and `loss_mask`), trained on the
    /// RPN's detached proposals.
    pub fn loss(&self, batch: &DetBatch) -> ModelResult<IndexMap<String, Tensor>> {
        let x = self.extract_feat(&batch.inputs, true)?;
        crate::engine::profile::section("backbone and neck");
        let (mut losses, proposals) = self.rpn_head.loss_and_predict(&x, &batch.data_samples)?;
        losses.extend(self.roi_head.loss(&roi_feats(&x)?, proposals, &batch.data_samples)?);
        Ok(losses)
    }

    /// `predict` in eval mode (run it under `tch::no_grad`): per image the
    /// detections after the RoI head's `test_cfg`, in original-image pixels
    /// with `rescale`.
    pub fn predict(&self, batch: &DetBatch, rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let x = self.extract_feat(&batch.inputs, false)?;
        let proposals = self.rpn_head.predict(&x, &batch.data_samples)?;
        self.roi_head
            .predict(&roi_feats(&x)?, proposals, &batch.data_samples, rescale)
    }
}
