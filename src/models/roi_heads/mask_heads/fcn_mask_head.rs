//! `FCNMaskHead` (`mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`), the
//! mask branch of Mask R-CNN (He et al., 2017): `num_convs` 3x3 ConvModules
//! with ReLU, a x2 deconv + ReLU, and a 1x1 `conv_logits` with one map per
//! class (or one with `class_agnostic`). The loss is the binary cross-entropy
//! of each positive's ground-truth-class map against its `mask_size` target;
//! prediction pastes the detections' maps into the image (`ops::masks`).
//!
//! Shape shorthand: `R` RoIs (the positives in training, the detections in
//! prediction), `C` channels, `S` the RoI side (14), `K` classes.

use detc::data::SampleMeta;
use detc::registry::models::layers::UpsampleMethod;
use detc::registry::models::mask_heads::FCNMaskHeadConfig;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::models::data_preprocessors::MaskTensors;
use crate::models::layers::{
    kaiming_normal_fan_out, param, Activation, Conv2d, Deconv, ConvGeom, ConvKind, ConvModule, ConvModuleOpts,
    ModelError, ModelResult, NormSpec,
};
use crate::models::losses::cross_entropy_loss::CeMode;
use crate::models::losses::{cfg_type, CrossEntropyLoss, Loss, LossArgs};
use crate::models::ops::masks::predict_masks;
use crate::models::task_modules::SamplingResult;

use super::positive_mask_targets;

const NAME: &str = "FCNMaskHead";

#[derive(Debug)]
pub struct FCNMaskHead {
    convs: Vec<ConvModule>,
    upsample: Option<Deconv>,
    conv_logits: Conv2d,
    loss_mask: CrossEntropyLoss,
    pub num_classes: i64,
    /// Channels of the RoI features.
    pub in_channels: i64,
    /// One map for all classes (channel 0) instead of one per class.
    pub class_agnostic: bool,
}

/// Rejects the options detc does not implement, naming the key to change.
fn check_supported(cfg: &FCNMaskHeadConfig) -> ModelResult<()> {
    match cfg_type(&cfg.predictor_cfg.0, "FCNMaskHead.predictor_cfg")? {
        "Conv" | "Conv2d" => Ok(()),
        other => Err(ModelError::new(
            NAME,
            format!("predictor_cfg {other:?} is not supported (only Conv)"),
        )),
    }
}

/// The mask cross-entropy `loss_mask` must be (it takes the RoI labels).
fn build_loss(cfg: &FCNMaskHeadConfig) -> ModelResult<CrossEntropyLoss> {
    match Loss::from_cfg(&cfg.loss_mask)? {
        Loss::CrossEntropy(ce) if ce.mode == CeMode::Mask => Ok(ce),
        _ => Err(ModelError::new(
            NAME,
            "loss_mask must be {type: CrossEntropyLoss, use_mask: true}",
        )),
    }
}

impl FCNMaskHead {
    /// Builds under `p` (`roi_head.mask_head`): `convs.{i}.conv` (+ `bn` or
    /// `gn` with a `norm_cfg`; a `ConvWS` with `conv_cfg`), `upsample`, `conv_logits`, initialised as
    /// MMDetection's `init_weights`: Kaiming normal (fan_out, ReLU) on every
    /// conv weight (ConvModule's own init, and FCNMaskHead's for `upsample`
    /// and `conv_logits`), every bias 0.
    pub fn new(cfg: &FCNMaskHeadConfig, p: &nn::Path) -> ModelResult<Self> {
        check_supported(cfg)?;
        let in_c = cfg.in_channels as i64;
        let out_c = cfg.conv_out_channels as i64;
        let k = cfg.conv_kernel_size as i64;
        let norm = cfg
            .norm_cfg
            .as_ref()
            .map(|n| NormSpec::from_cfg(n, NAME))
            .transpose()?;
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let mut convs = Vec::with_capacity(cfg.num_convs as usize);
        for i in 0..cfg.num_convs as i64 {
            let cin = if i == 0 { in_c } else { out_c };
            let opts = ConvModuleOpts {
                geom: ConvGeom::k(k).padding((k - 1) / 2),
                bias: None,
                norm: norm.clone(),
                act: Some(Activation::Relu),
                init: kaiming_normal_fan_out(&[out_c, cin, k, k]),
                conv,
            };
            convs.push(ConvModule::new(&(p / "convs" / i), cin, out_c, &opts)?);
        }
        let up_in = if cfg.num_convs > 0 { out_c } else { in_c };
        let upsample = match (cfg.upsample_cfg.r#type, cfg.upsample_cfg.scale_factor) {
            (None, _) => None,
            (Some(UpsampleMethod::Deconv), Some(s)) => {
                let s = s as i64;
                let up = p / "upsample";
                let dims = [up_in, out_c, s, s];
                Some(Deconv {
                    weight: param(&up, "weight", &dims, kaiming_normal_fan_out(&dims), true)?,
                    bias: param(&up, "bias", &[out_c], Init::Const(0.0), true)?,
                    stride: s,
                })
            }
            (Some(m), s) => {
                return Err(ModelError::new(
                    NAME,
                    format!(
                        "upsample_cfg {m:?} (scale_factor {s:?}) is not supported (only deconv with a scale_factor, or null)"
                    ),
                ))
            }
        };
        let logits_in = if upsample.is_some() { out_c } else { up_in };
        let n_out = if cfg.class_agnostic {
            1
        } else {
            cfg.num_classes as i64
        };
        let conv_logits = Conv2d::new(
            &(p / "conv_logits"),
            logits_in,
            n_out,
            ConvGeom::k(1),
            true,
            kaiming_normal_fan_out(&[n_out, logits_in, 1, 1]),
            true,
        )?;
        Ok(FCNMaskHead {
            convs,
            upsample,
            conv_logits,
            loss_mask: build_loss(cfg)?,
            num_classes: cfg.num_classes as i64,
            in_channels: in_c,
            class_agnostic: cfg.class_agnostic,
        })
    }

    /// `forward`: RoI features (R, C, S, S) -> mask logits (R, K, 2S, 2S)
    /// ((R, 1, 2S, 2S) class-agnostic; no x2 without upsampling).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut x = x.shallow_clone();
        for conv in &self.convs {
            x = conv.forward_t(&x, train)?;
        }
        if let Some(up) = &self.upsample {
            x = up.forward(&x)?.f_relu()?;
        }
        self.conv_logits.forward(&x)
    }

    /// `get_targets`: each positive's GT mask cropped by its prior and resized
    /// to `mask_size` `(h, w)`, concatenated over images -> (R, h, w).
    pub fn get_targets(
        &self,
        sampling_results: &[SamplingResult],
        gt_masks: &[&MaskTensors],
        mask_size: (i64, i64),
    ) -> ModelResult<Tensor> {
        positive_mask_targets(NAME, sampling_results, gt_masks, mask_size)
    }

    /// `loss_and_target`: `loss_mask`, the mean binary cross-entropy of each
    /// positive's ground-truth-class map (channel 0 when class-agnostic)
    /// against its target; `mask_preds.sum()` (a zero keeping the graph) when
    /// there is no positive. mask_preds: (R, K, h, w) for the R positives of
    /// all images, in sampling-result order.
    pub fn loss_and_target(
        &self,
        mask_preds: &Tensor,
        sampling_results: &[SamplingResult],
        gt_masks: &[&MaskTensors],
        mask_size: (i64, i64),
    ) -> ModelResult<Tensor> {
        let mask_targets = self.get_targets(sampling_results, gt_masks, mask_size)?;
        self.loss_from_targets(mask_preds, &mask_targets, sampling_results)
    }

    /// The loss half of `loss_and_target`: `loss_mask` of the positives'
    /// (P, K, h, w) logits against their (P, h, w) `mask_targets`.
    pub fn loss_from_targets(&self, mask_preds: &Tensor, mask_targets: &Tensor, sampling_results: &[SamplingResult]) -> ModelResult<Tensor> {
        let labels: Vec<&Tensor> = sampling_results.iter().map(|r| &r.pos_gt_labels).collect();
        let pos_labels = Tensor::f_cat(&labels, 0)?.f_to_kind(Kind::Int64)?;
        if mask_preds.size().first() == Some(&0) {
            return Ok(mask_preds.f_sum(mask_preds.kind())?);
        }
        let labels = if self.class_agnostic {
            pos_labels.f_zeros_like()?
        } else {
            pos_labels
        };
        self.loss_mask
            .forward_mask(mask_preds, mask_targets, &labels, LossArgs::default())
    }

    /// `predict_by_feat` for one image: mask_preds (R, K, h, w) logits of the
    /// R detections, bboxes (R, 4) in the resized image, labels (R,) ->
    /// (R, H, W) masks thresholded at `mask_thr_binary` (bool; uint8
    /// `prob * 255` when negative), `(H, W)` the original image with
    /// `rescale`, else the resized one. The caller divides the boxes by
    /// `scale_factor` with `rescale`, as mmdet does in place.
    pub fn predict_by_feat(
        &self,
        mask_preds: &Tensor,
        bboxes: &Tensor,
        labels: &Tensor,
        meta: &SampleMeta,
        mask_thr_binary: f64,
        rescale: bool,
    ) -> ModelResult<Tensor> {
        predict_masks(mask_preds, bboxes, labels, meta, mask_thr_binary, rescale)
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::Device;

    use super::*;
    use crate::models::layers::fixtures::assert_close;
    use crate::models::roi_heads::standard_roi_head::tests::{fx, load, samples, sampling};

    /// CFG_MASK of tests/models/two_stage_roi_reference.py.
    fn mask_cfg(class_agnostic: bool) -> FCNMaskHeadConfig {
        serde_json::from_value(serde_json::json!({
            "num_convs": 2, "roi_feat_size": 14, "in_channels": 8, "conv_out_channels": 8,
            "num_classes": 3, "class_agnostic": class_agnostic
        }))
        .unwrap()
    }

    fn loaded(prefix: &str) -> (VarStore, FCNMaskHead) {
        let vs = VarStore::new(Device::Cpu);
        let head = FCNMaskHead::new(&mask_cfg(prefix == "maska"), &vs.root()).unwrap();
        load(&vs, prefix);
        (vs, head)
    }

    /// Forward (train mode), targets and loss on mmdet's positives, gradients.
    fn check_loss(prefix: &str) {
        let (vs, head) = loaded(prefix);
        let t = |k: &str| fx(&format!("{prefix}.{k}"));
        let feat = t("feat").set_requires_grad(true);
        let preds = head.forward_t(&feat, true).unwrap();
        assert_close(&preds, &t("preds"), 1e-5, 1e-5, &format!("{prefix} preds"));
        let samp = sampling("box");
        let data = samples();
        let masks: Vec<&MaskTensors> = data
            .iter()
            .map(|s| s.gt_instances.masks.as_ref().unwrap())
            .collect();
        let targets = head.get_targets(&samp, &masks, (28, 28)).unwrap();
        assert_eq!(targets, t("targets"), "{prefix} targets");
        let loss = head
            .loss_and_target(&preds, &samp, &masks, (28, 28))
            .unwrap();
        assert_close(&loss, &t("loss"), 1e-6, 1e-5, &format!("{prefix} loss"));
        loss.sum(Kind::Float).backward();
        let vars = vs.variables();
        let keys = [
            "convs.0.conv.weight",
            "upsample.weight",
            "conv_logits.weight",
        ];
        let grads = keys.iter().map(|k| (k.to_string(), vars[*k].grad()));
        for (key, got) in grads.chain([("feat".to_string(), feat.grad())]) {
            let want = t(&format!("grad.{key}"));
            let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
            assert_close(&got, &want, tol, 1e-5, &format!("{prefix} grad {key}"));
        }
    }

    #[test]
    fn fcn_mask_head_forward_loss_and_grads_equal_mmdet() {
        check_loss("mask");
    }

    #[test]
    fn fcn_mask_head_class_agnostic_loss_equals_mmdet() {
        check_loss("maska");
    }

    /// Kaiming normal (fan_out) weights, zero biases: mask.init.* holds
    /// mmdet's (mean, std, max |x|) of each.
    #[test]
    fn fcn_mask_head_init_follows_mmdet() {
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(5);
        let vs = VarStore::new(Device::Cpu);
        FCNMaskHead::new(&mask_cfg(false), &vs.root()).unwrap();
        for (name, t) in vs.variables() {
            assert_eq!(t.size(), fx(&format!("mask.sd.{name}")).size(), "{name}");
            if name.ends_with("bias") {
                assert_eq!(t.abs().max().double_value(&[]), 0.0, "{name}");
                continue;
            }
            let s = t.size();
            let fan_out = s[0] * s[2] * s[3];
            let want = (2.0 / fan_out as f64).sqrt();
            let mmdet = Vec::<f64>::try_from(fx(&format!("mask.init.{name}"))).unwrap()[1];
            let std = t.std(true).double_value(&[]);
            // Five standard errors of a sample std of n draws (conv_logits has
            // only 24: a fixed bound of 35% failed in a clean-clone run).
            let tol = (5.0 / (2.0 * (t.numel() as f64 - 1.0)).sqrt()).max(0.1);
            assert!((mmdet / want - 1.0).abs() < tol, "{name}: mmdet std {mmdet} vs {want}");
            assert!((std / want - 1.0).abs() < tol, "{name}: std {std} vs {want}");
        }
    }

    #[test]
    fn fcn_mask_head_predict_equals_mmdet() {
        let (_vs, head) = loaded("mask");
        let meta = &samples()[0].meta;
        let bboxes = fx("maskp.bboxes");
        let masks = head
            .predict_by_feat(
                &fx("maskp.preds"),
                &bboxes,
                &fx("maskp.labels"),
                meta,
                0.5,
                true,
            )
            .unwrap();
        assert_eq!(masks, fx("maskp.masks"));
        let rescaled = bboxes / Tensor::from_slice(&[1.25f32, 1.28, 1.25, 1.28]);
        assert_eq!(rescaled, fx("maskp.out_bboxes"));
    }

    #[test]
    fn fcn_mask_head_empty_positives_and_bad_configs() {
        let (_vs, head) = loaded("mask");
        let preds = Tensor::zeros([0, 3, 28, 28], (Kind::Float, Device::Cpu));
        let samp = sampling("boxnp");
        let data = samples();
        let masks: Vec<&MaskTensors> = data
            .iter()
            .map(|s| s.gt_instances.masks.as_ref().unwrap())
            .collect();
        let loss = head
            .loss_and_target(&preds, &samp, &masks, (28, 28))
            .unwrap();
        assert_eq!(loss.double_value(&[]), 0.0);
        let mut bad = mask_cfg(false);
        bad.loss_mask.0 = serde_json::json!({"type": "DiceLoss"});
        let err = FCNMaskHead::new(&bad, &VarStore::new(Device::Cpu).root()).unwrap_err();
        assert!(err.message.contains("use_mask"), "{err}");
        let mut bad = mask_cfg(false);
        bad.upsample_cfg.r#type = Some(UpsampleMethod::Carafe);
        assert!(FCNMaskHead::new(&bad, &VarStore::new(Device::Cpu).root()).is_err());
    }
}
