//! `ResLayer` (`mmdet/models/roi_heads/shared_heads/res_layer.py`): a
//! ResNet stage run on every pooled RoI feature, the `shared_head` of the C4
//! configs' `StandardRoIHead` (the backbone stops after `layer3`; `layer4`
//! turns each 14x14 RoI of 1024 channels into 7x7 of 2048 for the box and
//! mask heads). Named `shared_head.layer{stage + 1}.*` as MMDetection names it,
//! so a ResNet checkpoint's `layer4.*` loads into it.

use detc::checkpoint::KeyReport;
use detc::registry::models::roi_heads::ResLayerConfig;
use detc::registry::models::weight_init::PretrainedInitConfig;
use tch::{nn, Tensor};

use crate::models::backbones::resnet::{pretrained_init, ResStage};
use crate::models::layers::{ModelError, ModelResult, NormSpec};

const NAME: &str = "ResLayer";

#[derive(Debug)]
pub struct ResLayer {
    stage: ResStage,
    /// Channels of the output.
    pub out_channels: i64,
    /// Channels the input must have.
    pub in_channels: i64,
    /// Spatial downsampling of the RoI feature (`stride`).
    pub stride: i64,
    norm_eval: bool,
    scope: String,
    pretrained: Option<PretrainedInitConfig>,
}

impl ResLayer {
    /// Builds under `p` (`roi_head.shared_head`).
    pub fn new(cfg: &ResLayerConfig, p: &nn::Path) -> ModelResult<Self> {
        if cfg.with_cp {
            return Err(ModelError::new(NAME, "with_cp (gradient checkpointing) is not supported yet"));
        }
        let norm = NormSpec::from_backbone_cfg(&cfg.norm_cfg, NAME)?;
        let stride = cfg.stride as i64;
        let (stage, out_channels) =
            ResStage::res_layer(p, cfg.depth, cfg.stage as usize, stride, cfg.dilation as i64, cfg.style, &norm)?;
        if cfg.init_cfg.is_some() && cfg.pretrained.is_some() {
            return Err(ModelError::new(NAME, "init_cfg and pretrained cannot be specified at the same time"));
        }
        Ok(ResLayer {
            stage,
            in_channels: out_channels / 2,
            out_channels,
            stride,
            norm_eval: cfg.norm_eval,
            scope: p.components().collect::<Vec<_>>().join("."),
            pretrained: pretrained_init(cfg.pretrained.as_ref(), cfg.init_cfg.as_ref(), NAME)?,
        })
    }

    /// x: (R, Cin, S, S) -> (R, Cout, S / stride, S / stride). With
    /// `norm_eval` the batch norms keep their running statistics in training
    /// (MMDetection's `ResLayer.train`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        self.stage.forward_t(x, train && !self.norm_eval)
    }

    /// Loads the `Pretrained` `init_cfg` (a ResNet checkpoint: its
    /// `layer{stage + 1}.*` entries load, the others are reported unexpected,
    /// as MMEngine's `load_checkpoint` reports them).
    pub fn init_weights(&self, vs: &nn::VarStore) -> ModelResult<Option<KeyReport>> {
        match &self.pretrained {
            Some(pt) => crate::models::weights::load_pretrained(vs, &self.scope, &pt.checkpoint, pt.prefix.as_deref()).map(Some),
            None => Ok(None),
        }
    }
}
