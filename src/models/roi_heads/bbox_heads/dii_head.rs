//! `DIIHead` (`mmdet/models/roi_heads/bbox_heads/dii_head.py`), the dynamic
//! instance interactive head of Sparse R-CNN (Sun et al., 2021,
//! <https://arxiv.org/abs/2011.12450>) and QueryInst, one per stage:
//! self-attention over each image's proposal features, a [`DynamicConv`]
//! between each proposal feature and its RoI feature, an FFN, then a
//! classification branch and a box-delta branch. Its targets and losses are
//! in `dii_head_loss.rs`.
//!
//! Shape shorthand: `N` images, `P` proposals per image, `C` channels
//! (`in_channels`), `S` the RoI side, `K` class scores (`num_classes` with a
//! sigmoid loss, `num_classes + 1` with softmax).

use detc::registry::models::bbox_heads::DIIHeadConfig;
use detc::registry::models::layers::DynamicConvConfig;
use detc::registry::models::task_modules::DeltaXYWHBBoxCoderConfig;
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::transformer::{
    dropout, torch_linear_uniform, DynamicConv, Ffn, LayerNorm, Linear, MatrixInit,
    MultiheadAttention,
};
use crate::models::layers::{param, Activation, ModelError, ModelResult};
use crate::models::losses::cross_entropy_loss::CeMode;
use crate::models::losses::{cfg_type, parse_cfg, Loss};
use crate::models::ops::DeltaXYWHBBoxCoder;

/// What [`DIIHead::forward_t`] returns, as mmdet's `forward` tuple.
#[derive(Debug)]
pub struct DIIOutput {
    /// (N, P, K) class logits.
    pub cls_score: Tensor,
    /// (N, P, 4) box deltas for the bbox coder.
    pub bbox_pred: Tensor,
    /// (N, P, C) object features, the next stage's proposal features.
    pub obj_feat: Tensor,
    /// (N, P, C) features after self-attention (QueryInst's mask head input).
    pub attn_feats: Tensor,
}

/// One `Linear(C, C, bias=False)` + `LayerNorm` + ReLU block of the cls/reg
/// branches (mmdet's `ModuleList` entries `3i`, `3i+1`; ReLU has no weights).
#[derive(Debug)]
struct FcBlock {
    fc: Linear,
    norm: LayerNorm,
}

impl FcBlock {
    fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        Ok(self.norm.forward(&self.fc.forward(x)?)?.f_relu()?)
    }
}

/// Sparse R-CNN / QueryInst box head of one stage.
#[derive(Debug)]
pub struct DIIHead {
    pub num_classes: i64,
    pub in_channels: i64,
    /// Sigmoid class logits (K = `num_classes`) or softmax with background.
    pub use_sigmoid: bool,
    dropout: f64,
    attention: MultiheadAttention,
    attention_norm: LayerNorm,
    instance_interactive_conv: DynamicConv,
    instance_interactive_conv_norm: LayerNorm,
    ffn: Ffn,
    ffn_norm: LayerNorm,
    cls_fcs: Vec<FcBlock>,
    fc_cls: Linear,
    reg_fcs: Vec<FcBlock>,
    fc_reg: Linear,
    /// Classification loss (QueryInst: sigmoid `FocalLoss`).
    pub loss_cls: Loss,
    /// L1 loss on boxes normalised by the image size.
    pub loss_bbox: Loss,
    /// IoU loss (GIoU) on the decoded boxes.
    pub loss_iou: Loss,
    /// Decodes `bbox_pred` against the stage's proposals.
    pub bbox_coder: DeltaXYWHBBoxCoder,
}

/// Whether a classification loss is sigmoid-based (mmdet's `loss_cls.use_sigmoid`).
fn loss_uses_sigmoid(loss: &Loss) -> ModelResult<bool> {
    match loss {
        Loss::Focal(_) => Ok(true),
        Loss::CrossEntropy(ce) => Ok(ce.mode == CeMode::Sigmoid),
        _ => Err(ModelError::new(
            "DIIHead",
            "loss_cls must be FocalLoss or CrossEntropyLoss (it needs `use_sigmoid`)",
        )),
    }
}

fn build_coder(cfg: &DIIHeadConfig) -> ModelResult<DeltaXYWHBBoxCoder> {
    DeltaXYWHBBoxCoder::from_cfg(&cfg.bbox_coder, "DIIHead.bbox_coder")
}

fn dynamic_conv_cfg(cfg: &DIIHeadConfig) -> ModelResult<DynamicConvConfig> {
    let ty = cfg_type(&cfg.dynamic_conv_cfg.0, "DIIHead.dynamic_conv_cfg")?;
    if ty != "DynamicConv" {
        return Err(ModelError::new(
            "DIIHead.dynamic_conv_cfg",
            format!("expected type DynamicConv, got {ty:?}"),
        ));
    }
    let dc: DynamicConvConfig = parse_cfg(&cfg.dynamic_conv_cfg.0, "DynamicConv")?;
    let out = dc.out_channels.unwrap_or(dc.in_channels);
    if dc.in_channels != cfg.in_channels || out != cfg.in_channels {
        return Err(ModelError::new(
            "DIIHead.dynamic_conv_cfg",
            format!(
                "in_channels ({}) and out_channels ({out}) must equal the head's in_channels ({})",
                dc.in_channels, cfg.in_channels
            ),
        ));
    }
    Ok(dc)
}

impl DIIHead {
    /// Builds the head with MMDetection's names and the state its
    /// `init_weights` leaves: xavier_uniform on every matrix; LayerNorms 1/0;
    /// the attention biases 0; `fc_reg.bias` 0 and `fc_cls.bias` 0 (BBoxHead's
    /// Normal init), or `bias_init_with_prob(0.01)` with a sigmoid loss; the
    /// other biases keep torch's U(±1/√in).
    pub fn new(cfg: &DIIHeadConfig, p: nn::Path) -> ModelResult<Self> {
        let c = cfg.in_channels as i64;
        let x = MatrixInit::XavierUniform;
        let loss_cls = Loss::from_cfg(&cfg.loss_cls)?;
        let use_sigmoid = loss_uses_sigmoid(&loss_cls)?;
        let num_classes = cfg.num_classes as i64;
        let ffn_act = Activation::from_cfg(Some(&cfg.ffn_act_cfg), "DIIHead.ffn_act_cfg")?;
        let dc = dynamic_conv_cfg(cfg)?;
        let blocks = |name: &str, n: u32| -> ModelResult<Vec<FcBlock>> {
            (0..n as i64)
                .map(|i| {
                    Ok(FcBlock {
                        fc: Linear::new(&(&p / name / (3 * i)), c, c, false, x)?,
                        norm: LayerNorm::new(&(&p / name / (3 * i + 1)), c, 1e-5)?,
                    })
                })
                .collect()
        };
        let cls_out = if use_sigmoid {
            num_classes
        } else {
            num_classes + 1
        };
        let cls_bias = if use_sigmoid {
            Init::Const(-((1.0f64 - 0.01) / 0.01).ln())
        } else if cfg.with_cls {
            Init::Const(0.0)
        } else {
            torch_linear_uniform(c)
        };
        let reg_bias = if cfg.with_reg {
            Init::Const(0.0)
        } else {
            torch_linear_uniform(c)
        };
        Ok(DIIHead {
            num_classes,
            in_channels: c,
            use_sigmoid,
            dropout: cfg.dropout,
            attention: MultiheadAttention::new(
                &(&p / "attention"),
                c,
                cfg.num_heads as i64,
                cfg.dropout,
                x,
            )?,
            attention_norm: LayerNorm::new(&(&p / "attention_norm"), c, 1e-5)?,
            instance_interactive_conv: DynamicConv::with_init(
                &dc,
                &(&p / "instance_interactive_conv"),
                x,
            )?,
            instance_interactive_conv_norm: LayerNorm::new(
                &(&p / "instance_interactive_conv_norm"),
                c,
                1e-5,
            )?,
            ffn: Ffn::new(
                &(&p / "ffn"),
                c,
                cfg.feedforward_channels as i64,
                cfg.num_ffn_fcs as i64,
                ffn_act,
                cfg.dropout,
                x,
            )?,
            ffn_norm: LayerNorm::new(&(&p / "ffn_norm"), c, 1e-5)?,
            cls_fcs: blocks("cls_fcs", cfg.num_cls_fcs)?,
            fc_cls: linear_with_bias(&(&p / "fc_cls"), c, cls_out, cls_bias)?,
            reg_fcs: blocks("reg_fcs", cfg.num_reg_fcs)?,
            fc_reg: linear_with_bias(&(&p / "fc_reg"), c, 4, reg_bias)?,
            loss_cls,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            loss_iou: Loss::from_cfg(&cfg.loss_iou)?,
            bbox_coder: build_coder(cfg)?,
        })
    }

    /// Whether the class scores are sigmoid logits (K = `num_classes`) rather
    /// than softmax logits with a background column (K = `num_classes + 1`).
    pub fn use_sigmoid(&self) -> bool {
        self.use_sigmoid
    }

    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// roi_feat: (N*P, C, S, S) image-major RoI features; proposal_feat:
    /// (N, P, C) the previous stage's object features. `train` switches dropout.
    pub fn forward_t(
        &self,
        roi_feat: &Tensor,
        proposal_feat: &Tensor,
        train: bool,
    ) -> ModelResult<DIIOutput> {
        let (n, p, c) = proposal_feat
            .size3()
            .map_err(|_| self.shape_err(roi_feat, proposal_feat))?;
        if c != self.in_channels || roi_feat.size().first() != Some(&(n * p)) {
            return Err(self.shape_err(roi_feat, proposal_feat));
        }
        // Self-attention, sequence first: (N, P, C) -> (P, N, C) -> (N, P, C)
        let attended = self
            .attention
            .forward_t(&proposal_feat.f_permute([1, 0, 2])?, train)?;
        let attn_feats = self
            .attention_norm
            .forward(&attended)?
            .f_permute([1, 0, 2])?;
        // Instance interaction: (N, P, C) -> (N*P, C)
        let feat = attn_feats.f_reshape([-1, c])?;
        let iic = self.instance_interactive_conv.forward(&feat, roi_feat)?;
        let obj_feat = self
            .instance_interactive_conv_norm
            .forward(&feat.f_add(&dropout(&iic, self.dropout, train)?)?)?;
        let obj_feat = self
            .ffn_norm
            .forward(&self.ffn.forward_t(&obj_feat, train)?)?;
        let (mut cls_feat, mut reg_feat) = (obj_feat.shallow_clone(), obj_feat.shallow_clone());
        for block in &self.cls_fcs {
            cls_feat = block.forward(&cls_feat)?;
        }
        for block in &self.reg_fcs {
            reg_feat = block.forward(&reg_feat)?;
        }
        // (N*P, K) -> (N, P, K); (N*P, 4) -> (N, P, 4); (N*P, C) -> (N, P, C)
        Ok(DIIOutput {
            cls_score: self.fc_cls.forward(&cls_feat)?.f_view([n, p, -1])?,
            bbox_pred: self.fc_reg.forward(&reg_feat)?.f_view([n, p, 4])?,
            obj_feat: obj_feat.f_view([n, p, c])?,
            attn_feats,
        })
    }

    fn shape_err(&self, roi_feat: &Tensor, proposal_feat: &Tensor) -> ModelError {
        ModelError::new(
            "DIIHead",
            format!(
                "expects roi_feat (N*P, {c}, S, S) and proposal_feat (N, P, {c}), got {:?} and {:?}",
                roi_feat.size(),
                proposal_feat.size(),
                c = self.in_channels
            ),
        )
    }
}

/// A `Linear(in, out)` with a xavier weight and the given bias init.
fn linear_with_bias(p: &nn::Path, in_f: i64, out_f: i64, bias: Init) -> ModelResult<Linear> {
    let mut l = Linear::new(p, in_f, out_f, false, MatrixInit::XavierUniform)?;
    l.bias = Some(param(p, "bias", &[out_f], bias, true)?);
    Ok(l)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::models::layers::fixtures::{assert_close, script_state_dict, tensor, StateDict};
    use crate::models::weights::{load_state_dict, Shapes, named_shapes, with_prefix};
    use tch::{nn::VarStore, Device, Kind};

    /// tests/models/dii_head_reference.py's output, made once per test process.
    pub(crate) fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/dii_head_reference.py", "detc-dii-head", "dii_head.pth"))
    }

    fn cfg(json: serde_json::Value) -> DIIHeadConfig {
        let mut base = serde_json::json!({
            "loss_bbox": {"type": "L1Loss", "loss_weight": 5.0},
            "loss_iou": {"type": "GIoULoss", "loss_weight": 2.0},
            "loss_cls": {"type": "FocalLoss", "use_sigmoid": true, "gamma": 2.0, "alpha": 0.25, "loss_weight": 2.0},
            "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "clip_border": false,
                           "target_means": [0.0, 0.0, 0.0, 0.0], "target_stds": [0.5, 0.5, 1.0, 1.0]}
        });
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    /// The CFG of tests/models/dii_head_reference.py.
    pub(crate) fn tiny_cfg() -> DIIHeadConfig {
        cfg(serde_json::json!({
            "num_classes": 5, "num_heads": 2, "feedforward_channels": 32, "in_channels": 16,
            "dynamic_conv_cfg": {"type": "DynamicConv", "in_channels": 16, "feat_channels": 4,
                                 "out_channels": 16, "input_feat_shape": 7,
                                 "act_cfg": {"type": "ReLU", "inplace": true}, "norm_cfg": {"type": "LN"}}
        }))
    }

    /// The tiny head with mmdet's initialised weights loaded (exactly: no
    /// missing or unexpected key).
    pub(crate) fn loaded_head() -> (VarStore, DIIHead) {
        let vs = VarStore::new(Device::Cpu);
        let head = DIIHead::new(&tiny_cfg(), vs.root()).unwrap();
        let sd = with_prefix(fixture(), "sd").unwrap();
        let report = load_state_dict(&vs, "", &sd, Shapes::Refuse).unwrap();
        assert!(report.is_exact(), "{report:?}");
        (vs, head)
    }

    #[test]
    fn dii_head_forward_equals_mmdet_in_train_and_eval() {
        let fx = fixture();
        let (_vs, head) = loaded_head();
        let (roi, feat) = (tensor(fx, "in.roi_feat"), tensor(fx, "in.proposal_feat"));
        for mode in ["train", "eval"] {
            let out = tch::no_grad(|| head.forward_t(&roi, &feat, mode == "train")).unwrap();
            let got = [
                ("cls_score", &out.cls_score),
                ("bbox_pred", &out.bbox_pred),
                ("obj_feat", &out.obj_feat),
                ("attn_feats", &out.attn_feats),
            ];
            for (name, t) in got {
                assert_close(
                    t,
                    &tensor(fx, &format!("{mode}.{name}")),
                    1e-6,
                    1e-5,
                    &format!("{mode} {name}"),
                );
            }
        }
    }

    #[test]
    fn dii_head_queryinst_names_and_shapes_equal_mmdet() {
        let queryinst = cfg(serde_json::json!({"num_classes": 80}));
        let vs = VarStore::new(Device::Cpu);
        DIIHead::new(&queryinst, vs.root()).unwrap();
        let mut want: Vec<(String, Vec<i64>)> = fixture()
            .keys()
            .filter_map(|k| k.strip_prefix("shape."))
            .map(|k| {
                (
                    k.to_string(),
                    Vec::<i64>::try_from(tensor(fixture(), &format!("shape.{k}"))).unwrap(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(named_shapes(&vs, ""), want);
    }

    #[test]
    fn dii_head_init_follows_mmdet_init_weights() {
        let fx = fixture();
        let vs = VarStore::new(Device::Cpu);
        let head = DIIHead::new(&tiny_cfg(), vs.root()).unwrap();
        assert!(head.use_sigmoid() && head.num_classes() == 5);
        let vars = vs.variables();
        let max_abs = |t: &Tensor| t.abs().max().double_value(&[]);
        for (name, t) in &vars {
            let size = t.size();
            if size.len() > 1 {
                // float32 draws: the largest may round up past the f64 bound.
                let bound = (6.0 / (size[0] + size[1]) as f64).sqrt();
                assert!(
                    max_abs(t) <= bound * (1.0 + 1e-6) && max_abs(t) > 0.5 * bound,
                    "{name}: xavier bound {bound}"
                );
            } else if let Some(want) = fx.get(&format!("init.const.{name}")) {
                let want = crate::models::weights::to_tensor(want).unwrap();
                assert_eq!(t.to_kind(Kind::Float), want, "{name}: constant init");
            } else {
                let bound = tensor(fx, &format!("init.bound.{name}")).double_value(&[]);
                assert!(max_abs(t) <= bound + 1e-7, "{name}: torch bound {bound}");
                assert!(
                    t.std(true).double_value(&[]) > 0.0,
                    "{name}: drawn, not constant"
                );
            }
        }
        let fc_cls_bias = &vars["fc_cls.bias"];
        assert!(
            (fc_cls_bias - (-(99.0f64).ln()))
                .abs()
                .max()
                .double_value(&[])
                < 1e-6
        );
    }

    #[test]
    fn dii_head_rejects_bad_shapes_and_configs() {
        let vs = VarStore::new(Device::Cpu);
        let head = DIIHead::new(&tiny_cfg(), vs.root()).unwrap();
        let roi = Tensor::zeros([6, 16, 7, 7], (Kind::Float, Device::Cpu));
        let feat = Tensor::zeros([2, 2, 16], (Kind::Float, Device::Cpu));
        let err = head.forward_t(&roi, &feat, false).unwrap_err();
        assert_eq!(err.component, "DIIHead");
        let mut bad = tiny_cfg();
        bad.num_heads = 3;
        let err = DIIHead::new(&bad, VarStore::new(Device::Cpu).root()).unwrap_err();
        assert!(err.message.contains("divisible"), "{err}");
        let mut bad = tiny_cfg();
        bad.dynamic_conv_cfg.0["out_channels"] = serde_json::json!(8);
        assert!(DIIHead::new(&bad, VarStore::new(Device::Cpu).root()).is_err());
    }
}
