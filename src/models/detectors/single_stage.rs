//! `RetinaNet` (`mmdet/models/detectors/retinanet.py`, a
//! `SingleStageDetector`): a backbone, a neck and a dense head that predicts
//! the detections directly; and `RPN` (`rpn.py`), the same with an
//! `RPNHead` whose proposals are the detections (class 0). The parameters
//! are named as MMDetection's: `backbone.*`, `neck.*`, `bbox_head.*` (also
//! the RPN's head).

use detc::registry::models::data_preprocessors::DetDataPreprocessorConfig;
use detc::registry::models::dense_heads::{ATSSHeadConfig, FCOSHeadConfig, FreeAnchorRetinaHeadConfig, GFLHeadConfig, RPNHeadConfig, RTMDetSepBNHeadConfig, RetinaHeadConfig, TOODHeadConfig, VFNetHeadConfig, FoveaHeadConfig, RepPointsHeadConfig, CenterNetUpdateHeadConfig};
use detc::registry::models::detectors::{RPNConfig, SingleStageDetectorConfig, TOODConfig, FOVEAConfig, RepPointsDetectorConfig};
use indexmap::IndexMap;
use tch::{nn, Tensor};

use super::parts::{build_backbone, build_neck, extract_feat, preprocessor_config};
use crate::models::backbones::Backbone;
use crate::models::data_preprocessors::DetBatch;
use crate::models::dense_heads::{ATSSHead, FCOSHead, FreeAnchorRetinaHead, GFLHead, RPNHead, RTMDetSepBNHead, RetinaHead, TOODHead, VFNetHead, FoveaHead, RepPointsHead, CenterNetUpdateHead};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::necks::Neck;
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;

/// The dense head of a single-stage detector.
#[derive(Debug)]
pub enum DenseHead {
    Retina(RetinaHead),
    Fcos(FCOSHead),
    Atss(ATSSHead),
    Gfl(GFLHead),
    Vfnet(VFNetHead),
    Tood(TOODHead),
    Fovea(FoveaHead),
    RepPoints(RepPointsHead),
    CenterNet(CenterNetUpdateHead),
    Rtm(RTMDetSepBNHead),
    FreeAnchor(FreeAnchorRetinaHead),
    /// The `RPN` detector's head.
    Rpn(RPNHead),
}

#[derive(Debug)]
pub struct SingleStageDetector {
    /// The config's `type` (`RetinaNet`, `RPN`).
    pub name: &'static str,
    pub backbone: Backbone,
    pub neck: Option<Neck>,
    pub bbox_head: DenseHead,
    pub data_preprocessor: Option<DetDataPreprocessorConfig>,
}

impl SingleStageDetector {
    /// Builds under `p`; the detector's `train_cfg` and `test_cfg` go to the head.
    pub fn new(name: &'static str, cfg: &SingleStageDetectorConfig, p: &nn::Path) -> ModelResult<Self> {
        let backbone = build_backbone(&cfg.backbone, name, p)?;
        let neck = build_neck(cfg.neck.as_ref(), name, p)?;
        let bbox_head = match cfg_type(&cfg.bbox_head.0, "bbox_head")? {
            "RetinaHead" => DenseHead::Retina(RetinaHead::new(
                &parse_cfg::<RetinaHeadConfig>(&cfg.bbox_head.0, "RetinaHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?),
            "FCOSHead" => {
                if cfg.train_cfg.is_some() {
                    return Err(ModelError::new(name, "FCOSHead assigns its own targets: model.train_cfg must be null"));
                }
                DenseHead::Fcos(FCOSHead::new(
                    &parse_cfg::<FCOSHeadConfig>(&cfg.bbox_head.0, "FCOSHead")?,
                    cfg.test_cfg.as_ref(),
                    &(p / "bbox_head"),
                )?)
            }
            "ATSSHead" => DenseHead::Atss(ATSSHead::new(
                &parse_cfg::<ATSSHeadConfig>(&cfg.bbox_head.0, "ATSSHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?),
            "GFLHead" => DenseHead::Gfl(GFLHead::new(
                &parse_cfg::<GFLHeadConfig>(&cfg.bbox_head.0, "GFLHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?),
            "VFNetHead" => DenseHead::Vfnet(VFNetHead::new(
                &parse_cfg::<VFNetHeadConfig>(&cfg.bbox_head.0, "VFNetHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?),
            "CenterNetUpdateHead" => {
                if cfg.train_cfg.is_some() {
                    return Err(ModelError::new(name, "CenterNetUpdateHead assigns its own targets: model.train_cfg must be null"));
                }
                DenseHead::CenterNet(CenterNetUpdateHead::new(
                    &parse_cfg::<CenterNetUpdateHeadConfig>(&cfg.bbox_head.0, "CenterNetUpdateHead")?,
                    cfg.test_cfg.as_ref(),
                    &(p / "bbox_head"),
                )?)
            }
            "FreeAnchorRetinaHead" => DenseHead::FreeAnchor(FreeAnchorRetinaHead::new(
                &parse_cfg::<FreeAnchorRetinaHeadConfig>(&cfg.bbox_head.0, "FreeAnchorRetinaHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?),
            "RTMDetSepBNHead" => DenseHead::Rtm(RTMDetSepBNHead::new(
                &parse_cfg::<RTMDetSepBNHeadConfig>(&cfg.bbox_head.0, "RTMDetSepBNHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?),
            other => {
                return Err(ModelError::new(
                    name,
                    format!("bbox_head {other:?} is not supported (RetinaHead, FreeAnchorRetinaHead, FCOSHead, ATSSHead, GFLHead, VFNetHead, CenterNetUpdateHead and RTMDetSepBNHead are)"),
                ))
            }
        };
        Ok(SingleStageDetector {
            name,
            backbone,
            neck,
            bbox_head,
            data_preprocessor: preprocessor_config(cfg.data_preprocessor.as_ref(), name)?,
        })
    }

    /// `RPN`: the `rpn_head` built as `bbox_head`, with `train_cfg.rpn` and
    /// `test_cfg.rpn`.
    pub fn rpn(cfg: &RPNConfig, p: &nn::Path) -> ModelResult<Self> {
        const NAME: &str = "RPN";
        let bbox_head = match cfg_type(&cfg.rpn_head.0, "rpn_head")? {
            "RPNHead" => RPNHead::new(
                &parse_cfg::<RPNHeadConfig>(&cfg.rpn_head.0, "RPNHead")?,
                Some(&cfg.train_cfg.rpn),
                None,
                Some(&cfg.test_cfg.rpn),
                &(p / "bbox_head"),
            )?,
            other => return Err(ModelError::new(NAME, format!("rpn_head {other:?} is not supported (only RPNHead)"))),
        };
        Ok(SingleStageDetector {
            name: NAME,
            backbone: build_backbone(&cfg.backbone, NAME, p)?,
            neck: build_neck(cfg.neck.as_ref(), NAME, p)?,
            bbox_head: DenseHead::Rpn(bbox_head),
            data_preprocessor: preprocessor_config(cfg.data_preprocessor.as_ref(), NAME)?,
        })
    }

    /// `TOOD`: a `TOODHead`, whose `train_cfg` has two assignments.
    pub fn tood(cfg: &TOODConfig, p: &nn::Path) -> ModelResult<Self> {
        const NAME: &str = "TOOD";
        let bbox_head = match cfg_type(&cfg.bbox_head.0, "bbox_head")? {
            "TOODHead" => TOODHead::new(
                &parse_cfg::<TOODHeadConfig>(&cfg.bbox_head.0, "TOODHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?,
            other => return Err(ModelError::new(NAME, format!("bbox_head {other:?} is not supported (only TOODHead)"))),
        };
        Ok(SingleStageDetector {
            name: NAME,
            backbone: build_backbone(&cfg.backbone, NAME, p)?,
            neck: build_neck(cfg.neck.as_ref(), NAME, p)?,
            bbox_head: DenseHead::Tood(bbox_head),
            data_preprocessor: preprocessor_config(cfg.data_preprocessor.as_ref(), NAME)?,
        })
    }

    /// `FOVEA`: a `FoveaHead`, which assigns its own targets (`train_cfg` is empty).
    pub fn fovea(cfg: &FOVEAConfig, p: &nn::Path) -> ModelResult<Self> {
        const NAME: &str = "FOVEA";
        let bbox_head = match cfg_type(&cfg.bbox_head.0, "bbox_head")? {
            "FoveaHead" => FoveaHead::new(&parse_cfg::<FoveaHeadConfig>(&cfg.bbox_head.0, "FoveaHead")?, cfg.test_cfg.as_ref(), &(p / "bbox_head"))?,
            other => return Err(ModelError::new(NAME, format!("bbox_head {other:?} is not supported (only FoveaHead)"))),
        };
        Ok(SingleStageDetector {
            name: NAME,
            backbone: build_backbone(&cfg.backbone, NAME, p)?,
            neck: build_neck(cfg.neck.as_ref(), NAME, p)?,
            bbox_head: DenseHead::Fovea(bbox_head),
            data_preprocessor: preprocessor_config(cfg.data_preprocessor.as_ref(), NAME)?,
        })
    }

    /// `RepPointsDetector`: a `RepPointsHead`, whose `train_cfg` assigns two stages.
    pub fn reppoints(cfg: &RepPointsDetectorConfig, p: &nn::Path) -> ModelResult<Self> {
        const NAME: &str = "RepPointsDetector";
        let bbox_head = match cfg_type(&cfg.bbox_head.0, "bbox_head")? {
            "RepPointsHead" => RepPointsHead::new(
                &parse_cfg::<RepPointsHeadConfig>(&cfg.bbox_head.0, "RepPointsHead")?,
                cfg.train_cfg.as_ref(),
                cfg.test_cfg.as_ref(),
                &(p / "bbox_head"),
            )?,
            other => return Err(ModelError::new(NAME, format!("bbox_head {other:?} is not supported (only RepPointsHead)"))),
        };
        Ok(SingleStageDetector {
            name: NAME,
            backbone: build_backbone(&cfg.backbone, NAME, p)?,
            neck: build_neck(cfg.neck.as_ref(), NAME, p)?,
            bbox_head: DenseHead::RepPoints(bbox_head),
            data_preprocessor: preprocessor_config(cfg.data_preprocessor.as_ref(), NAME)?,
        })
    }

    /// Tells the head the current (0-based) training epoch (TOOD's
    /// assignment changes after `initial_epoch`).
    pub fn set_epoch(&self, epoch: u64) {
        if let DenseHead::Tood(head) = &self.bbox_head {
            head.set_epoch(epoch);
        }
    }

    /// Loads the backbone's `Pretrained` `init_cfg`, if any.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Vec<detc::checkpoint::KeyReport>> {
        Ok(self.backbone.init_weights(vs)?.into_iter().collect())
    }

    /// `loss`: the head's `loss_cls` and `loss_bbox` (and FCOS's and ATSS's
    /// `loss_centerness`, GFL's `loss_dfl`, normalised by counts averaged over the processes
    /// with `reduce_mean`; `loss_rpn_cls` and `loss_rpn_bbox` for the RPN,
    /// every ground truth of class 0).
    pub fn loss(&self, batch: &DetBatch, reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        let x = extract_feat(&self.backbone, self.neck.as_ref(), &batch.inputs, true)?;
        match &self.bbox_head {
            DenseHead::Retina(head) => head.loss(&x, &batch.data_samples),
            DenseHead::Fcos(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::Atss(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::Gfl(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::Vfnet(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::Tood(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::Fovea(head) => head.loss(&x, &batch.data_samples),
            DenseHead::RepPoints(head) => head.loss(&x, &batch.data_samples),
            DenseHead::CenterNet(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::Rtm(head) => head.loss(&x, &batch.data_samples, reduce_mean),
            DenseHead::FreeAnchor(head) => head.loss(&x, &batch.data_samples),
            DenseHead::Rpn(head) => {
                let (cls, reg) = head.forward(&x)?;
                head.loss_by_feat(&cls, &reg, &batch.data_samples)
            }
        }
    }

    /// `predict` in eval mode (run it under `tch::no_grad`).
    pub fn predict(&self, batch: &DetBatch, rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let x = extract_feat(&self.backbone, self.neck.as_ref(), &batch.inputs, false)?;
        match &self.bbox_head {
            DenseHead::Retina(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Fcos(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Atss(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Gfl(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Vfnet(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Tood(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Fovea(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::RepPoints(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::CenterNet(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Rtm(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::FreeAnchor(head) => head.predict(&x, &batch.data_samples, rescale),
            DenseHead::Rpn(head) => head.predict_detections(&x, &batch.data_samples, rescale),
        }
    }
}
