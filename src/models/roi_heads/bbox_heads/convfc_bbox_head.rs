//! `Shared2FCBBoxHead` (`mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py`
//! on `bbox_head.py`'s `BBoxHead`): the box head of Faster and Mask R-CNN.
//! Each RoI feature is flattened and passes two shared fully connected
//! layers with ReLU, then `fc_cls` (`K + 1` logits, the last the background)
//! and `fc_reg` (`4K` class-specific deltas, or 4 with `reg_class_agnostic`).
//! Targets and losses are in `bbox_head_loss.rs`, prediction in
//! `bbox_head_predict.rs`.
//!
//! Shape shorthand: `R` RoIs, `C` channels, `S` the RoI side, `K` classes,
//! `F` `fc_out_channels`.

use detc::registry::models::bbox_heads::Shared2FCBBoxHeadConfig;
use detc::registry::models::common::IntOrPair;
use detc::registry::models::layers::LinearType;
use detc::registry::models::task_modules::DeltaXYWHBBoxCoderConfig;
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::transformer::Linear;
use crate::models::layers::{param, xavier_uniform, ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg, Loss};
use crate::models::ops::DeltaXYWHBBoxCoder;

pub(crate) const NAME: &str = "Shared2FCBBoxHead";

/// The R-CNN box head with two shared fully connected layers.
#[derive(Debug)]
pub struct Shared2FCBBoxHead {
    pub num_classes: i64,
    /// Channels of the RoI features.
    pub in_channels: i64,
    /// One box per RoI instead of one per class.
    pub reg_class_agnostic: bool,
    /// `loss_bbox` compares decoded boxes (IoU losses) instead of deltas.
    pub reg_decoded_bbox: bool,
    /// Encodes the regression targets and decodes `bbox_pred`.
    pub bbox_coder: DeltaXYWHBBoxCoder,
    /// Classification loss over the `K + 1` logits.
    pub loss_cls: Loss,
    /// Regression loss on the positives.
    pub loss_bbox: Loss,
    /// `(h, w)` of the pooled RoI feature.
    pub roi_feat_size: (i64, i64),
    with_avg_pool: bool,
    shared_fcs: Vec<Linear>,
    fc_cls: Linear,
    fc_reg: Linear,
}

/// A `nn.Linear` under `p` with MMEngine's init: the weight from `init`, bias 0.
fn linear(p: &nn::Path, in_f: i64, out_f: i64, init: Init) -> ModelResult<Linear> {
    Ok(Linear {
        weight: param(p, "weight", &[out_f, in_f], init, true)?,
        bias: Some(param(p, "bias", &[out_f], Init::Const(0.0), true)?),
    })
}

fn pair(size: IntOrPair) -> (i64, i64) {
    match size {
        IntOrPair::Int(s) => (s as i64, s as i64),
        IntOrPair::Pair((h, w)) => (h as i64, w as i64),
    }
}

fn build_coder(cfg: &Shared2FCBBoxHeadConfig) -> ModelResult<DeltaXYWHBBoxCoder> {
    match cfg_type(&cfg.bbox_coder.0, "Shared2FCBBoxHead.bbox_coder")? {
        "DeltaXYWHBBoxCoder" => {
            let c: DeltaXYWHBBoxCoderConfig = parse_cfg(&cfg.bbox_coder.0, "DeltaXYWHBBoxCoder")?;
            Ok(DeltaXYWHBBoxCoder::new(&c))
        }
        other => Err(ModelError::new(
            "Shared2FCBBoxHead.bbox_coder",
            format!("bbox coder {other:?} is not supported (only DeltaXYWHBBoxCoder)"),
        )),
    }
}

/// Rejects the options detc does not implement, naming the key to change.
fn check_supported(cfg: &Shared2FCBBoxHeadConfig) -> ModelResult<()> {
    let unsupported = if !cfg.with_cls || !cfg.with_reg {
        Some("with_cls and with_reg must both be true")
    } else if [&cfg.cls_predictor_cfg, &cfg.reg_predictor_cfg].iter().any(|p| {
        // nn.Linear takes no NormedLinear keys (MMDetection fails on them).
        p.r#type != LinearType::Linear || p.tempearture.is_some() || p.power.is_some() || p.eps.is_some()
    }) {
        Some("cls_predictor_cfg and reg_predictor_cfg must be {type: Linear}, without NormedLinear's tempearture/power/eps")
    } else if cfg.predict_box_type != "hbox" {
        Some("predict_box_type must be hbox")
    } else if cfg.init_cfg.is_some() {
        Some("init_cfg must be null (MMDetection's default Xavier/Normal init)")
    } else {
        None
    };
    match unsupported {
        Some(msg) => Err(ModelError::new(
            NAME,
            format!("{msg} (detc supports no other)"),
        )),
        None => Ok(()),
    }
}

impl Shared2FCBBoxHead {
    /// Builds under `p` (`roi_head.bbox_head`): `shared_fcs.{0,1}`, `fc_cls`,
    /// `fc_reg`, initialised as MMDetection's default `init_cfg`: Xavier
    /// uniform on the shared fcs, N(0, 0.01) on `fc_cls`, N(0, 0.001) on
    /// `fc_reg`, every bias 0.
    pub fn new(cfg: &Shared2FCBBoxHeadConfig, p: &nn::Path) -> ModelResult<Self> {
        check_supported(cfg)?;
        let roi_feat_size = pair(cfg.roi_feat_size);
        let fc = cfg.fc_out_channels as i64;
        let mut in_f = cfg.in_channels as i64;
        if !cfg.with_avg_pool {
            in_f *= roi_feat_size.0 * roi_feat_size.1;
        }
        let mut shared_fcs = Vec::with_capacity(2);
        for i in 0..2 {
            let fan_in = if i == 0 { in_f } else { fc };
            shared_fcs.push(linear(
                &(p / "shared_fcs" / i),
                fan_in,
                fc,
                xavier_uniform(&[fc, fan_in]),
            )?);
        }
        let k = cfg.num_classes as i64;
        let reg_out = if cfg.reg_class_agnostic { 4 } else { 4 * k };
        let normal = |stdev| Init::Randn { mean: 0.0, stdev };
        Ok(Shared2FCBBoxHead {
            num_classes: k,
            in_channels: cfg.in_channels as i64,
            reg_class_agnostic: cfg.reg_class_agnostic,
            reg_decoded_bbox: cfg.reg_decoded_bbox,
            bbox_coder: build_coder(cfg)?,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            roi_feat_size,
            with_avg_pool: cfg.with_avg_pool,
            shared_fcs,
            fc_cls: linear(&(p / "fc_cls"), fc, k + 1, normal(0.01))?,
            fc_reg: linear(&(p / "fc_reg"), fc, reg_out, normal(0.001))?,
        })
    }

    /// `forward`: RoI features (R, C, S, S) -> `cls_score` (R, K + 1) and
    /// `bbox_pred` (R, 4K), or (R, 4) with `reg_class_agnostic`.
    pub fn forward(&self, x: &Tensor) -> ModelResult<(Tensor, Tensor)> {
        let (sh, sw) = self.roi_feat_size;
        if x.dim() != 4 || x.size()[2..] != [sh, sw] {
            return Err(ModelError::new(
                NAME,
                format!(
                    "RoI features must be (R, C, {sh}, {sw}) (the roi_feat_size), got {:?}",
                    x.size()
                ),
            ));
        }
        let mut x = if self.with_avg_pool {
            // nn.AvgPool2d(roi_feat_size): one window over the whole RoI.
            x.f_avg_pool2d([sh, sw], [sh, sw], [0, 0], false, true, None::<i64>)?
        } else {
            x.shallow_clone()
        };
        x = x.f_flatten(1, -1)?;
        for fc in &self.shared_fcs {
            x = fc.forward(&x)?.f_relu()?;
        }
        Ok((self.fc_cls.forward(&x)?, self.fc_reg.forward(&x)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    use super::*;
    use crate::models::layers::fixtures::assert_close;
    use crate::models::roi_heads::standard_roi_head::tests::{fx, load};

    /// CFG_BOX / CFG_AGN of tests/models/two_stage_roi_reference.py.
    pub(crate) fn box_cfg(agnostic: bool) -> Shared2FCBBoxHeadConfig {
        let mut cfg = serde_json::json!({
            "in_channels": 8, "fc_out_channels": 16, "roi_feat_size": 7, "num_classes": 3,
            "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}
        });
        if agnostic {
            cfg["reg_class_agnostic"] = serde_json::json!(true);
            cfg["reg_decoded_bbox"] = serde_json::json!(true);
            cfg["loss_bbox"] = serde_json::json!({"type": "GIoULoss", "loss_weight": 2.0});
        }
        serde_json::from_value(cfg).unwrap()
    }

    /// The fixture head `prefix` (`box` or `agn`) with mmdet's weights.
    pub(crate) fn loaded(prefix: &str) -> (VarStore, Shared2FCBBoxHead) {
        let vs = VarStore::new(Device::Cpu);
        let head = Shared2FCBBoxHead::new(&box_cfg(prefix == "agn"), &vs.root()).unwrap();
        load(&vs, prefix);
        (vs, head)
    }

    #[test]
    fn shared2fc_forward_equals_mmdet() {
        for prefix in ["box", "agn"] {
            let (_vs, head) = loaded(prefix);
            let (cls, reg) = head.forward(&fx(&format!("{prefix}.feat"))).unwrap();
            assert_close(
                &cls,
                &fx(&format!("{prefix}.cls_score")),
                1e-6,
                1e-5,
                "cls_score",
            );
            assert_close(
                &reg,
                &fx(&format!("{prefix}.bbox_pred")),
                1e-6,
                1e-5,
                "bbox_pred",
            );
        }
    }

    /// Names and shapes as mmdet's; Xavier-uniform shared fcs, N(0, 0.01)
    /// fc_cls, N(0, 0.001) fc_reg, zero biases (box.init.*: mean, std, max |x|).
    #[test]
    fn shared2fc_init_follows_mmdet() {
        let vs = VarStore::new(Device::Cpu);
        Shared2FCBBoxHead::new(&box_cfg(false), &vs.root()).unwrap();
        for (name, t) in vs.variables() {
            let want = fx(&format!("box.init.{name}"));
            let want = Vec::<f64>::try_from(want).unwrap();
            assert_eq!(t.size(), fx(&format!("box.sd.{name}")).size(), "{name}");
            let (std, max) = (
                t.std(true).double_value(&[]),
                t.abs().max().double_value(&[]),
            );
            if name.ends_with("bias") {
                assert_eq!(max, 0.0, "{name}");
            } else if name.starts_with("shared_fcs") {
                let s = t.size();
                // float32 draws: the largest may round up past the f64 bound.
                let bound = (6.0 / (s[0] + s[1]) as f64).sqrt();
                assert!(
                    max <= bound * (1.0 + 1e-6) && max > 0.8 * bound,
                    "{name}: xavier bound {bound}, max {max}"
                );
            } else {
                assert!(
                    (std / want[1] - 1.0).abs() < 0.5,
                    "{name}: std {std}, mmdet {}",
                    want[1]
                );
            }
        }
    }

    #[test]
    fn shared2fc_rejects_bad_inputs_and_configs() {
        let (_vs, head) = loaded("box");
        let err = head
            .forward(&Tensor::zeros([2, 8, 14, 14], (Kind::Float, Device::Cpu)))
            .unwrap_err();
        assert!(err.message.contains("roi_feat_size"), "{err}");
        let mut bad = box_cfg(false);
        bad.with_cls = false;
        let err = Shared2FCBBoxHead::new(&bad, &VarStore::new(Device::Cpu).root()).unwrap_err();
        assert!(err.message.contains("with_cls"), "{err}");
        let mut bad = box_cfg(false);
        bad.bbox_coder.0["type"] = serde_json::json!("TBLRBBoxCoder");
        assert!(Shared2FCBBoxHead::new(&bad, &VarStore::new(Device::Cpu).root()).is_err());
    }
}
