//! Detectors (`mmdet/models/detectors`): `SparseRCNN` and `QueryInst`.

// The engine commands consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod sparse_rcnn;

pub use sparse_rcnn::SparseRCNN;

use serde_json::Value;
use tch::nn;

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

/// A built detector (its parameters live in the `VarStore` of `p`).
#[derive(Debug)]
pub enum Detector {
    /// `SparseRCNN` or `QueryInst` (the same model with mask heads).
    Sparse(SparseRCNN),
}

impl Detector {
    /// The config's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Detector::Sparse(m) => m.name,
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
        other => Err(ModelError::new(
            "model",
            format!("detector {other:?} has no builder yet (SparseRCNN and QueryInst do)"),
        )),
    }
}

#[cfg(test)]
mod overfit_tests;

#[cfg(test)]
mod reference_tests;
