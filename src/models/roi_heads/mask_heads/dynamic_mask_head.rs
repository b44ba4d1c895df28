//! `DynamicMaskHead` (`mmdet/models/roi_heads/mask_heads/dynamic_mask_head.py`),
//! QueryInst's mask branch: a `DynamicConv` conditioned on each proposal's
//! attention feature, then `FCNMaskHead`'s layers (`num_convs` 3x3
//! ConvModules, a x2 deconv + ReLU, a 1x1 `conv_logits` with one map per
//! class) and a Dice loss on the ground-truth class's sigmoid.
//!
//! Shape shorthand: `R` RoIs (positive proposals in training), `C` channels,
//! `S` the RoI feature side (14), `K` classes.

use detc::registry::models::common::IntOrPair;
use detc::registry::models::layers::{DynamicConvConfig, UpsampleMethod};
use detc::registry::models::mask_heads::DynamicMaskHeadConfig;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use crate::models::data_preprocessors::MaskTensors;
use crate::models::layers::transformer::{DynamicConv, MatrixInit};
use crate::models::layers::{
    param, xavier_uniform, Activation, Deconv, ConvGeom, ConvModule, ConvModuleOpts, ModelError,
    ModelResult, NormSpec,
};
use crate::models::losses::{cfg_type, parse_cfg, Loss, LossArgs};
use crate::models::task_modules::SamplingResult;

use super::positive_mask_targets;

const NAME: &str = "DynamicMaskHead";

#[derive(Debug)]
pub struct DynamicMaskHead {
    instance_interactive_conv: DynamicConv,
    convs: Vec<ConvModule>,
    upsample: Option<Deconv>,
    conv_logits_weight: Tensor,
    conv_logits_bias: Tensor,
    loss_mask: Loss,
    pub num_classes: i64,
    in_channels: i64,
}

impl DynamicMaskHead {
    /// Builds under `p` (e.g. `roi_head.mask_head.0`) with the head's own
    /// initialisation: Xavier-uniform on every weight of dim > 1 (the dynamic
    /// conv's too), `conv_logits.bias` = 0, BatchNorm weight 1 / bias 0, and the
    /// deconv bias left at torch's default U(±1/sqrt(fan_in)). (`init_cfg`
    /// must be null, as MMDetection asserts.)
    pub fn new(cfg: &DynamicMaskHeadConfig, p: &nn::Path) -> ModelResult<Self> {
        if cfg.class_agnostic {
            return Err(ModelError::new(NAME, "class_agnostic must be false"));
        }
        if cfg.conv_cfg.is_some() {
            return Err(ModelError::new(
                NAME,
                "conv_cfg is not supported (only the default Conv2d)",
            ));
        }
        match cfg_type(&cfg.predictor_cfg.0, "predictor_cfg")? {
            "Conv" | "Conv2d" => {}
            other => {
                return Err(ModelError::new(
                    NAME,
                    format!("predictor_cfg {other:?} is not supported (only Conv)"),
                ))
            }
        }
        let roi = match cfg.roi_feat_size {
            IntOrPair::Int(s) => s as i64,
            IntOrPair::Pair((h, w)) if h == w => h as i64,
            IntOrPair::Pair(hw) => {
                return Err(ModelError::new(
                    NAME,
                    format!("roi_feat_size {hw:?} must be square"),
                ))
            }
        };
        let dc_cfg: DynamicConvConfig = parse_cfg(&cfg.dynamic_conv_cfg.0, "DynamicConv")?;
        if dc_cfg.with_proj || dc_cfg.input_feat_shape as i64 != roi {
            return Err(ModelError::new(
                NAME,
                format!("dynamic_conv_cfg needs with_proj: false and input_feat_shape: {roi} (the roi_feat_size)"),
            ));
        }
        let instance_interactive_conv = DynamicConv::with_init(
            &dc_cfg,
            &(p / "instance_interactive_conv"),
            MatrixInit::XavierUniform,
        )?;
        let in_c = cfg.in_channels as i64;
        let out_c = cfg.conv_out_channels as i64;
        let k = cfg.conv_kernel_size as i64;
        let norm = cfg
            .norm_cfg
            .as_ref()
            .map(|n| NormSpec::from_cfg(n, NAME))
            .transpose()?;
        let mut convs = Vec::new();
        for i in 0..cfg.num_convs as i64 {
            let cin = if i == 0 { in_c } else { out_c };
            let opts = ConvModuleOpts {
                geom: ConvGeom::k(k).padding((k - 1) / 2),
                bias: None,
                norm: norm.clone(),
                act: Some(Activation::Relu),
                init: xavier_uniform(&[out_c, cin, k, k]),
                conv: Default::default(),
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
                // torch's fan_in of a transposed conv weight is size(1) * k * k.
                let bound = 1.0 / ((out_c * s * s) as f64).sqrt();
                Some(Deconv {
                    weight: param(&up, "weight", &dims, xavier_uniform(&dims), true)?,
                    bias: param(&up, "bias", &[out_c], Init::Uniform { lo: -bound, up: bound }, true)?,
                    stride: s,
                })
            }
            (Some(m), s) => {
                return Err(ModelError::new(
                    NAME,
                    format!("upsample_cfg {m:?} (scale_factor {s:?}) is not supported (only deconv with a scale_factor)"),
                ))
            }
        };
        let logits_in = if upsample.is_some() { out_c } else { up_in };
        let n_cls = cfg.num_classes as i64;
        let lp = p / "conv_logits";
        let dims = [n_cls, logits_in, 1, 1];
        Ok(DynamicMaskHead {
            instance_interactive_conv,
            convs,
            upsample,
            conv_logits_weight: param(&lp, "weight", &dims, xavier_uniform(&dims), true)?,
            conv_logits_bias: param(&lp, "bias", &[n_cls], Init::Const(0.0), true)?,
            loss_mask: Loss::from_cfg(&cfg.loss_mask)?,
            num_classes: n_cls,
            in_channels: in_c,
        })
    }

    /// roi_feat (R, C, S, S), proposal_feat (R, C) -> mask logits (R, K, 2S, 2S).
    pub fn forward_t(
        &self,
        roi_feat: &Tensor,
        proposal_feat: &Tensor,
        train: bool,
    ) -> ModelResult<Tensor> {
        let proposal_feat = proposal_feat.f_reshape([-1, self.in_channels])?;
        // (R, S*S, C) -> (R, C, S*S) -> (R, C, S, S)
        let iic = self
            .instance_interactive_conv
            .forward(&proposal_feat, roi_feat)?;
        let mut x = iic.f_permute([0, 2, 1])?.f_reshape(roi_feat.size())?;
        for conv in &self.convs {
            x = conv.forward_t(&x, train)?;
        }
        if let Some(up) = &self.upsample {
            x = up.forward(&x)?.f_relu()?;
        }
        Ok(x.f_conv2d(
            &self.conv_logits_weight,
            Some(&self.conv_logits_bias),
            [1; 2],
            [0; 2],
            [1; 2],
            1,
        )?)
    }

    /// `loss_and_target`: Dice loss between the sigmoid of each positive's
    /// ground-truth-class map and its `mask_size` target (the GT mask cropped
    /// by the positive's box and resized), normalised by
    /// `max(reduce_mean(num_pos), 1)`.
    pub fn loss_and_target(
        &self,
        mask_preds: &Tensor,
        sampling_results: &[SamplingResult],
        gt_masks: &[&MaskTensors],
        mask_size: (i64, i64),
        reduce_mean: &dyn Fn(f64) -> ModelResult<f64>,
    ) -> ModelResult<Tensor> {
        let mask_targets = positive_mask_targets(NAME, sampling_results, gt_masks, mask_size)?;
        let labels: Vec<Tensor> = sampling_results
            .iter()
            .map(|r| r.pos_gt_labels.shallow_clone())
            .collect();
        let pos_labels = Tensor::f_cat(&labels, 0)?;
        let num_pos = pos_labels.size()[0];
        let avg_factor = reduce_mean(num_pos as f64)?.max(1.0);
        if mask_preds.size()[0] == 0 {
            return Ok(mask_preds.f_sum(Kind::Float)?);
        }
        let rows = Tensor::f_arange(num_pos, (Kind::Int64, mask_preds.device()))?;
        let pred = mask_preds
            .f_index(&[Some(rows), Some(pos_labels.f_to_kind(Kind::Int64)?)])?
            .f_sigmoid()?;
        self.loss_mask.forward(
            &pred,
            &mask_targets.f_to_kind(pred.kind())?,
            LossArgs::default().avg_factor(avg_factor),
        )
    }
}
