//! `RPNHead` (`mmdet/models/dense_heads/rpn_head.py`, on `AnchorHead`).

use detc::registry::models::dense_heads::RPNHeadConfig;
use detc::registry::models::train_test::{ProposalConfig, RpnTrainConfig};
use indexmap::IndexMap;
use tch::{nn, Tensor};

use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::ModelResult;

#[derive(Debug)]
pub struct RPNHead {}

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
        let _ = (cfg, train_cfg, proposal_cfg, test_cfg, p);
        todo!("issue 7: RPNHead::new")
    }

    /// `loss_and_predict`: `{loss_rpn_cls, loss_rpn_bbox}` (each summed over
    /// levels) and per image the (P, 4) detached proposals (the
    /// `rpn_proposal` settings). Every ground truth is class 0 here.
    pub fn loss_and_predict(
        &self,
        x: &[Tensor],
        samples: &[DetDataSample],
    ) -> ModelResult<(IndexMap<String, Tensor>, Vec<Tensor>)> {
        let _ = (x, samples);
        todo!("issue 7: RPNHead::loss_and_predict")
    }

    /// `predict(rescale=False)`: per image the (P, 4) proposals in pixels of
    /// the resized image (the `test_cfg` settings).
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample]) -> ModelResult<Vec<Tensor>> {
        let _ = (x, samples);
        todo!("issue 7: RPNHead::predict")
    }
}
