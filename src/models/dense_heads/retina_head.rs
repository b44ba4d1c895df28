//! `RetinaHead` (`mmdet/models/dense_heads/retina_head.py`, on `AnchorHead`
//! and `BaseDenseHead`): per level `stacked_convs` 3x3 convs (+ ReLU) for
//! classification and as many for regression, then per anchor `K` sigmoid
//! class scores (`retina_cls`) and 4 box deltas (`retina_reg`). Training is
//! `AnchorHead`'s (`anchor_head.rs`); testing is `BaseDenseHead`'s: per
//! level the top `nms_pre` (anchor, class) scores above `score_thr`, the
//! boxes decoded, rescaled, filtered by size, then per-class NMS.
//!
//! Shape shorthand: `N` images, `A` anchors per location, `K` classes,
//! `H, W` a level's size, `k` detections of an image.

use detc::registry::models::common::{OneOrMany, StrOrList};
use detc::registry::models::dense_heads::RetinaHeadConfig;
use detc::registry::models::train_test::{DenseTestConfig, RpnTrainConfig};
use detc::registry::models::weight_init::NormalInitConfig;
use indexmap::IndexMap;
use tch::{nn, Tensor};

use super::anchor_head::{anchors_and_coder, featmap_sizes, AnchorLoss, AnchorTrain};
use super::base_dense_head::{AnchorPrediction, DenseTest};
use crate::models::layers::{make_conv, ConvInit};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{Activation, Conv2d, ConvGeom, ConvModule, ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg, Loss};
use crate::models::ops::DeltaXYWHBBoxCoder;
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::AnchorGenerator;

const NAME: &str = "RetinaHead";

#[derive(Debug)]
pub struct RetinaHead {
    cls_convs: Vec<ConvModule>,
    reg_convs: Vec<ConvModule>,
    retina_cls: Conv2d,
    retina_reg: Conv2d,
    pub prior_generator: AnchorGenerator,
    pub bbox_coder: DeltaXYWHBBoxCoder,
    pub loss_cls: Loss,
    pub loss_bbox: Loss,
    pub num_classes: i64,
    reg_decoded_bbox: bool,
    use_sigmoid_cls: bool,
    cls_out_channels: i64,
    train: Option<AnchorTrain>,
    test: Option<DenseTest>,
}

/// A dense head's default `init_cfg`: `Normal` on every `Conv2d`,
/// optionally overridden (another std, a bias from `bias_prob`) for the
/// classifier `cls_name` of the head `owner`. Returns the init of the convs
/// and of the classifier; null is torch's (and ConvModule's) own init.
pub(super) fn conv_inits(
    init: Option<&OneOrMany<detc::registry::refs::InitCfg>>,
    owner: &str,
    cls_name: &str,
) -> ModelResult<(ConvInit, ConvInit)> {
    let Some(init) = init else { return Ok((ConvInit::TorchDefault, ConvInit::TorchDefault)) };
    let unsupported = || {
        ModelError::new(owner, format!("init_cfg must be one Normal dict on Conv2d (with an optional Normal override on {cls_name}), or null"))
    };
    let items = init.as_vec();
    let [one] = items.as_slice() else { return Err(unsupported()) };
    let what = format!("{owner}.init_cfg");
    if cfg_type(&one.0, &what)? != "Normal" {
        return Err(unsupported());
    }
    let n: NormalInitConfig = parse_cfg(&one.0, &what)?;
    let on_conv = match &n.layer {
        None => true,
        Some(StrOrList::One(s)) => s == "Conv2d",
        Some(StrOrList::List(v)) => v.iter().any(|s| s == "Conv2d"),
    };
    if !on_conv {
        return Err(unsupported());
    }
    let normal = |n: &NormalInitConfig| ConvInit::Normal {
        mean: n.mean,
        std: n.std,
        bias: n.bias_prob.map_or(n.bias, |p| -((1.0 - p) / p).ln()),
    };
    let convs = normal(&n);
    let cls = match &n.r#override {
        None => convs,
        Some(o) => {
            let items = o.as_vec();
            let [one] = items.as_slice() else { return Err(unsupported()) };
            let o: NormalInitConfig = parse_cfg(&one.0, &format!("{what}.override"))?;
            if o.name.as_deref() != Some(cls_name) {
                return Err(unsupported());
            }
            normal(&o)
        }
    };
    Ok((convs, cls))
}

impl RetinaHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}.conv`, `reg_convs.{i}.conv`,
    /// `retina_cls`, `retina_reg`. `train_cfg` / `test_cfg` are the detector's.
    pub fn new(
        cfg: &RetinaHeadConfig,
        train_cfg: Option<&RpnTrainConfig>,
        test_cfg: Option<&DenseTestConfig>,
        p: &nn::Path,
    ) -> ModelResult<Self> {
        if cfg.conv_cfg.is_some() || cfg.norm_cfg.is_some() {
            return Err(ModelError::new(NAME, "conv_cfg and norm_cfg are not supported yet (set them to null)"));
        }
        let use_sigmoid_cls = cfg.loss_cls.0.get("use_sigmoid").and_then(|v| v.as_bool()).unwrap_or(false);
        let k = cfg.num_classes as i64;
        let cls_out_channels = if use_sigmoid_cls { k } else { k + 1 };
        let (prior_generator, a, bbox_coder) = anchors_and_coder(&cfg.anchor_generator, &cfg.bbox_coder, NAME)?;
        let (conv_init, cls_init) = conv_inits(cfg.init_cfg.as_ref(), NAME, "retina_cls")?;
        let feat = cfg.feat_channels as i64;
        let k3 = ConvGeom::k(3).padding(1);
        let stack = |name: &str| -> ModelResult<Vec<ConvModule>> {
            (0..cfg.stacked_convs as i64)
                .map(|i| {
                    let c_in = if i == 0 { cfg.in_channels as i64 } else { feat };
                    // Without an init_cfg, ConvModule's own Kaiming init.
                    let init = match conv_init {
                        ConvInit::TorchDefault => ConvInit::Kaiming,
                        other => other,
                    };
                    Ok(ConvModule { conv: make_conv(&(p / name / i / "conv"), c_in, feat, k3, init)?, norm: None, act: Some(Activation::Relu) })
                })
                .collect()
        };
        let last = if cfg.stacked_convs > 0 { feat } else { cfg.in_channels as i64 };
        Ok(RetinaHead {
            cls_convs: stack("cls_convs")?,
            reg_convs: stack("reg_convs")?,
            retina_cls: make_conv(&(p / "retina_cls"), last, a * cls_out_channels, k3, cls_init)?,
            retina_reg: make_conv(&(p / "retina_reg"), last, a * 4, k3, conv_init)?,
            prior_generator,
            bbox_coder,
            loss_cls: Loss::from_cfg_at(&cfg.loss_cls, &(p / "loss_cls"))?,
            loss_bbox: Loss::from_cfg_at(&cfg.loss_bbox, &(p / "loss_bbox"))?,
            num_classes: k,
            reg_decoded_bbox: cfg.reg_decoded_bbox,
            use_sigmoid_cls,
            cls_out_channels,
            train: train_cfg.or(cfg.train_cfg.as_ref()).map(|t| AnchorTrain::new(t, NAME)).transpose()?,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// `forward`: per level x (N, Cin, H, W) -> cls_scores (N, A*K, H, W) and
    /// bbox_preds (N, A*4, H, W).
    pub fn forward(&self, x: &[Tensor]) -> ModelResult<(Vec<Tensor>, Vec<Tensor>)> {
        if x.len() != self.prior_generator.num_levels() {
            return Err(ModelError::new(
                NAME,
                format!("{} feature levels for {} anchor strides", x.len(), self.prior_generator.num_levels()),
            ));
        }
        let (mut cls, mut reg) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
        for level in x {
            let (mut c, mut r) = (level.shallow_clone(), level.shallow_clone());
            for conv in &self.cls_convs {
                c = conv.forward_t(&c, true)?;
            }
            for conv in &self.reg_convs {
                r = conv.forward_t(&r, true)?;
            }
            cls.push(self.retina_cls.forward(&c)?);
            reg.push(self.retina_reg.forward(&r)?);
        }
        Ok((cls, reg))
    }

    /// `loss`: `loss_cls` and `loss_bbox`, each summed over levels.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
        let (cls_scores, bbox_preds) = self.forward(x)?;
        let anchor_loss = AnchorLoss {
            prior_generator: &self.prior_generator,
            bbox_coder: &self.bbox_coder,
            loss_cls: &self.loss_cls,
            loss_bbox: &self.loss_bbox,
            reg_decoded_bbox: self.reg_decoded_bbox,
            cls_out_channels: self.cls_out_channels,
            num_classes: self.num_classes,
            class_agnostic: false,
            owner: NAME,
        };
        let (loss_cls, loss_bbox) = anchor_loss.loss_by_feat(train, &cls_scores, &bbox_preds, samples)?;
        Ok(IndexMap::from([("loss_cls".to_string(), loss_cls), ("loss_bbox".to_string(), loss_bbox)]))
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let (cls_scores, bbox_preds) = self.forward(x)?;
        let sizes = featmap_sizes(&cls_scores);
        let priors = self.prior_generator.grid_priors(&sizes, cls_scores[0].device())?;
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let image = |maps: &[Tensor]| -> ModelResult<Vec<Tensor>> {
                    maps.iter().map(|m| Ok(m.f_get(i as i64)?.f_detach()?)).collect()
                };
                let prediction = AnchorPrediction {
                    coder: &self.bbox_coder,
                    num_classes: self.num_classes,
                    use_sigmoid_cls: self.use_sigmoid_cls,
                    owner: NAME,
                };
                prediction.predict_single(&image(&cls_scores)?, &image(&bbox_preds)?, None, &priors, sample, cfg, rescale)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use tch::nn::VarStore;
    use tch::Device;

    use super::*;
    use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
    use crate::models::weights::{load_state_dict, with_prefix, Shapes};

    fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/retina_reference.py", "detc-retina", "retina.pth"))
    }

    fn fx(key: &str) -> Tensor {
        tensor(fixture(), key)
    }

    /// `CFG` of the reference script.
    fn retina_cfg() -> (RetinaHeadConfig, RpnTrainConfig, DenseTestConfig) {
        let head = serde_json::json!({
            "num_classes": 3, "in_channels": 8, "stacked_convs": 2, "feat_channels": 8,
            "anchor_generator": {"type": "AnchorGenerator", "octave_base_scale": 4, "scales_per_octave": 2,
                                 "ratios": [0.5, 1.0, 2.0], "strides": [8, 16, 32]},
            "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0, 0.0, 0.0, 0.0],
                           "target_stds": [1.0, 1.0, 1.0, 1.0]},
            "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 1.0},
            "loss_bbox": {"type": "L1Loss", "loss_weight": 1.0}
        });
        let train = serde_json::json!({
            "assigner": {"type": "MaxIoUAssigner", "pos_iou_thr": 0.5, "neg_iou_thr": 0.4, "min_pos_iou": 0,
                         "ignore_iof_thr": -1},
            "sampler": {"type": "PseudoSampler"}, "allowed_border": -1, "pos_weight": -1, "debug": false
        });
        let test = serde_json::json!({"nms_pre": 50, "min_bbox_size": 0, "score_thr": 0.05,
                                      "nms": {"type": "nms", "iou_threshold": 0.5}, "max_per_img": 20});
        (serde_json::from_value(head).unwrap(), serde_json::from_value(train).unwrap(), serde_json::from_value(test).unwrap())
    }

    fn samples() -> Vec<DetDataSample> {
        crate::models::dense_heads::base_dense_head::reference_samples(fx)
    }

    /// MMDetection's names and shapes, its init (N(0, 0.01) convs, zero
    /// biases but `retina_cls`'s prior-probability bias); then on its
    /// perturbed weights the two losses (an image without ground truth in
    /// the batch), every gradient, and the detections with and without
    /// rescaling.
    #[test]
    fn retina_head_equals_mmdet() {
        let (cfg, train, test) = retina_cfg();
        let vs = VarStore::new(Device::Cpu);
        let head = RetinaHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
        let ours = vs.variables();
        let init = with_prefix(fixture(), "init").unwrap();
        assert_eq!(ours.len(), init.len(), "number of state-dict entries");
        for (name, t) in &init {
            let want = crate::models::weights::to_tensor(t).unwrap();
            assert_eq!(ours[name].size(), want.size(), "{name}");
            if name.ends_with("bias") {
                assert_eq!(ours[name], want, "initial {name}");
            } else {
                let std = ours[name].std(true).double_value(&[]);
                assert!((std / 0.01 - 1.0).abs() < 0.35, "{name}: std {std}");
            }
        }
        let report = load_state_dict(&vs, "", &with_prefix(fixture(), "sd").unwrap(), Shapes::Refuse).unwrap();
        assert!(report.is_exact(), "{report:?}");

        let x: Vec<Tensor> = (0..3).map(|l| fx(&format!("x.{l}")).set_requires_grad(true)).collect();
        let losses = head.loss(&x, &samples()).unwrap();
        assert_eq!(losses.keys().collect::<Vec<_>>(), ["loss_cls", "loss_bbox"]);
        for (name, v) in &losses {
            assert_close(v, &fx(&format!("loss.{name}")), 1e-6, 1e-5, name);
        }
        (&losses["loss_cls"] + &losses["loss_bbox"]).backward();
        crate::models::dense_heads::base_dense_head::check_grads_and_predictions(fx, "", &vs, &x, |x, rescale| {
            head.predict(x, &samples(), rescale).unwrap()
        });
    }

    /// The same losses and gradients with the anchors sampled as masks, as
    /// on a GPU (the pseudo sampler's every positive and negative).
    #[test]
    fn retina_head_sampled_as_masks_equals_mmdet() {
        let (cfg, train, test) = retina_cfg();
        let vs = VarStore::new(Device::Cpu);
        let mut head = RetinaHead::new(&cfg, Some(&train), Some(&test), &vs.root()).unwrap();
        head.train.as_mut().unwrap().masks_on_cpu = true;
        let report = load_state_dict(&vs, "", &with_prefix(fixture(), "sd").unwrap(), Shapes::Refuse).unwrap();
        assert!(report.is_exact(), "{report:?}");
        let x: Vec<Tensor> = (0..3).map(|l| fx(&format!("x.{l}")).set_requires_grad(true)).collect();
        let losses = head.loss(&x, &samples()).unwrap();
        for (name, v) in &losses {
            assert_close(v, &fx(&format!("loss.{name}")), 1e-6, 1e-5, name);
        }
        (&losses["loss_cls"] + &losses["loss_bbox"]).backward();
        crate::models::dense_heads::base_dense_head::check_grads_and_predictions(fx, "", &vs, &x, |x, rescale| {
            head.predict(x, &samples(), rescale).unwrap()
        });
    }
}
