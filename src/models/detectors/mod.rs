//! Detectors (`mmdet/models/detectors`): `SparseRCNN` and `QueryInst`,
//! `FasterRCNN` and `MaskRCNN`, behind one [`Detector`] the engine drives.

// The engine commands consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod parts;
pub mod single_stage;
pub mod sparse_rcnn;
pub mod two_stage;

pub use single_stage::SingleStageDetector;
pub use sparse_rcnn::SparseRCNN;
pub use two_stage::TwoStageDetector;

use detc::registry::models::data_preprocessors::DetDataPreprocessorConfig;
use indexmap::IndexMap;
use serde_json::Value;
use tch::{nn, Tensor};

use crate::models::data_preprocessors::DetBatch;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::roi_heads::sparse_roi_head::ReduceMean;
use crate::models::roi_heads::DetInstances;

/// A built detector (its parameters live in the `VarStore` of `p`).
#[derive(Debug)]
pub enum Detector {
    /// `SparseRCNN` or `QueryInst` (the same model with mask heads).
    Sparse(SparseRCNN),
    /// `FasterRCNN`, `MaskRCNN` or `CascadeRCNN`.
    TwoStage(TwoStageDetector),
    /// `RetinaNet`, `FCOS` or `RPN`.
    SingleStage(SingleStageDetector),
}

impl Detector {
    /// The config's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Detector::Sparse(m) => m.name,
            Detector::TwoStage(m) => m.name,
            Detector::SingleStage(m) => m.name,
        }
    }

    /// The `data_preprocessor` config (the preprocessor is built per device).
    pub fn data_preprocessor(&self) -> Option<&DetDataPreprocessorConfig> {
        match self {
            Detector::Sparse(m) => m.data_preprocessor.as_ref(),
            Detector::TwoStage(m) => m.data_preprocessor.as_ref(),
            Detector::SingleStage(m) => m.data_preprocessor.as_ref(),
        }
    }

    /// Loads the `Pretrained` `init_cfg`s (the backbone's, a shared head's):
    /// one key report per checkpoint loaded.
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Vec<detc::checkpoint::KeyReport>> {
        match self {
            Detector::Sparse(m) => Ok(m.init_weights(vs)?.into_iter().collect()),
            Detector::TwoStage(m) => m.init_weights(vs),
            Detector::SingleStage(m) => m.init_weights(vs),
        }
    }

    /// Tells the model the current (0-based) training epoch, as MMEngine's
    /// message hub does (TOOD's head switches its assignment by it).
    pub fn set_epoch(&self, epoch: u64) {
        if let Detector::SingleStage(m) = self {
            m.set_epoch(epoch);
        }
    }

    /// `loss` in train mode: the named losses (and logged values such as
    /// `acc`). `reduce_mean` is the mean of a count over the processes
    /// (the normaliser Sparse R-CNN's losses share across GPUs).
    pub fn loss(&self, batch: &DetBatch, reduce_mean: ReduceMean) -> ModelResult<IndexMap<String, Tensor>> {
        match self {
            Detector::Sparse(m) => m.loss(batch, reduce_mean),
            // Faster/Mask R-CNN normalise per process, as MMDetection's do.
            Detector::TwoStage(m) => m.loss(batch),
            Detector::SingleStage(m) => m.loss(batch, reduce_mean),
        }
    }

    /// `predict` in eval mode (run it under `tch::no_grad`).
    pub fn predict(&self, batch: &DetBatch, rescale: bool) -> ModelResult<Vec<DetInstances>> {
        match self {
            Detector::Sparse(m) => m.predict(batch, rescale),
            Detector::TwoStage(m) => m.predict(batch, rescale),
            Detector::SingleStage(m) => m.predict(batch, rescale),
        }
    }
}

/// MMEngine's `BaseModel.parse_losses`: the sum of every entry whose key
/// contains `loss` (`pos_acc` and the like are logged, not optimised).
pub fn parse_losses(losses: &indexmap::IndexMap<String, tch::Tensor>) -> ModelResult<tch::Tensor> {
    let mut total: Option<tch::Tensor> = None;
    for (_, value) in losses.iter().filter(|(k, _)| k.contains("loss")) {
        let v = value.f_sum(value.kind())?;
        total = Some(match total {
            Some(t) => t.f_add(&v)?,
            None => v,
        });
    }
    total.ok_or_else(|| ModelError::new("model", "the model returned no loss"))
}

/// Builds the detector of a resolved `model:` section under `p`, with
/// MMDetection's parameter names (`backbone.*`, `neck.*`, `rpn_head.*`, `roi_head.*`).
pub fn build(model: &Value, p: nn::Path) -> ModelResult<Detector> {
    match cfg_type(model, "model")? {
        "SparseRCNN" => Ok(Detector::Sparse(SparseRCNN::from_sparse_rcnn_config(&parse_cfg(model, "SparseRCNN")?, &p)?)),
        "QueryInst" => Ok(Detector::Sparse(SparseRCNN::from_query_inst_config(&parse_cfg(model, "QueryInst")?, &p)?)),
        name @ ("FasterRCNN" | "MaskRCNN" | "MaskScoringRCNN" | "CascadeRCNN") => {
            let name = match name {
                "FasterRCNN" => "FasterRCNN",
                "MaskRCNN" => "MaskRCNN",
                "MaskScoringRCNN" => "MaskScoringRCNN",
                _ => "CascadeRCNN",
            };
            Ok(Detector::TwoStage(TwoStageDetector::new(name, &parse_cfg(model, name)?, &p)?))
        }
        "RetinaNet" => Ok(Detector::SingleStage(SingleStageDetector::new("RetinaNet", &parse_cfg(model, "RetinaNet")?, &p)?)),
        "FCOS" => Ok(Detector::SingleStage(SingleStageDetector::new("FCOS", &parse_cfg(model, "FCOS")?, &p)?)),
        "ATSS" => Ok(Detector::SingleStage(SingleStageDetector::new("ATSS", &parse_cfg(model, "ATSS")?, &p)?)),
        "GFL" => Ok(Detector::SingleStage(SingleStageDetector::new("GFL", &parse_cfg(model, "GFL")?, &p)?)),
        "VFNet" => Ok(Detector::SingleStage(SingleStageDetector::new("VFNet", &parse_cfg(model, "VFNet")?, &p)?)),
        "CenterNet" => Ok(Detector::SingleStage(SingleStageDetector::new("CenterNet", &parse_cfg(model, "CenterNet")?, &p)?)),
        "TOOD" => Ok(Detector::SingleStage(SingleStageDetector::tood(&parse_cfg(model, "TOOD")?, &p)?)),
        "FOVEA" => Ok(Detector::SingleStage(SingleStageDetector::fovea(&parse_cfg(model, "FOVEA")?, &p)?)),
        "RepPointsDetector" => Ok(Detector::SingleStage(SingleStageDetector::reppoints(&parse_cfg(model, "RepPointsDetector")?, &p)?)),
        "RTMDet" => Ok(Detector::SingleStage(SingleStageDetector::new("RTMDet", &parse_cfg(model, "RTMDet")?, &p)?)),
        "RPN" => Ok(Detector::SingleStage(SingleStageDetector::rpn(&parse_cfg(model, "RPN")?, &p)?)),
        other => Err(ModelError::new(
            "model",
            format!("detector {other:?} has no builder (SparseRCNN, QueryInst, FasterRCNN, MaskRCNN, MaskScoringRCNN, CascadeRCNN, RetinaNet, FCOS, ATSS, GFL and RPN do)"),
        )),
    }
}

#[cfg(test)]
mod channels_last_tests;

#[cfg(test)]
mod overfit_tests;

#[cfg(test)]
mod reference_tests;
