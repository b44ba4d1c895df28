//! `ConvFCBBoxHead` (`mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py`
//! on `bbox_head.py`'s `BBoxHead`): the box head of Faster and Mask R-CNN
//! and the cascades. RoI features pass shared 3x3 ConvModules and fully
//! connected layers with ReLU, then each branch's own convs and fcs, then
//! `fc_cls` (`K + 1` logits, the last the background) and `fc_reg` (`4K`
//! class-specific deltas, or 4 with `reg_class_agnostic`).
//! `Shared2FCBBoxHead` is two shared fcs, `Shared4Conv1FCBBoxHead` four
//! shared convs (with `conv_cfg` / `norm_cfg`, e.g. GN) and one fc.
//! Targets and losses are in `bbox_head_loss.rs`, prediction in
//! `bbox_head_predict.rs`.
//!
//! Shape shorthand: `R` RoIs, `C` channels, `S` the RoI side, `K` classes,
//! `F` `fc_out_channels`.

use detc::registry::models::bbox_heads::{BBoxHeadConfig, ConvFCBBoxHeadConfig, Shared2FCBBoxHeadConfig};
use detc::registry::models::common::IntOrPair;
use detc::registry::models::layers::LinearType;
use detc::registry::models::task_modules::DeltaXYWHBBoxCoderConfig;
use detc::registry::refs::BBoxHeadCfg;
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::transformer::Linear;
use crate::models::layers::{
    kaiming_normal_fan_out, param, xavier_uniform, Activation, ConvGeom, ConvKind, ConvModule, ConvModuleOpts,
    ModelError, ModelResult, NormSpec,
};
use crate::models::losses::{cfg_type, parse_cfg, Loss};
use crate::models::ops::DeltaXYWHBBoxCoder;

/// Errors of the losses and predictions name the base class, where they live.
pub(crate) const NAME: &str = "BBoxHead";

/// How many convs and fcs each part has (`ConvFCBBoxHead`'s six counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    pub shared_convs: usize,
    pub shared_fcs: usize,
    pub cls_convs: usize,
    pub cls_fcs: usize,
    pub reg_convs: usize,
    pub reg_fcs: usize,
}

impl Layout {
    const SHARED_2FC: Layout = Layout { shared_convs: 0, shared_fcs: 2, cls_convs: 0, cls_fcs: 0, reg_convs: 0, reg_fcs: 0 };
    const SHARED_4CONV_1FC: Layout = Layout { shared_convs: 4, shared_fcs: 1, cls_convs: 0, cls_fcs: 0, reg_convs: 0, reg_fcs: 0 };
    /// `BBoxHead` itself: `fc_cls` and `fc_reg` on the RoI feature.
    const NONE: Layout = Layout { shared_convs: 0, shared_fcs: 0, cls_convs: 0, cls_fcs: 0, reg_convs: 0, reg_fcs: 0 };

    fn of(cfg: &ConvFCBBoxHeadConfig) -> Self {
        Layout {
            shared_convs: cfg.num_shared_convs as usize,
            shared_fcs: cfg.num_shared_fcs as usize,
            cls_convs: cfg.num_cls_convs as usize,
            cls_fcs: cfg.num_cls_fcs as usize,
            reg_convs: cfg.num_reg_convs as usize,
            reg_fcs: cfg.num_reg_fcs as usize,
        }
    }

    /// `ConvFCBBoxHead.__init__`'s assertions, as errors.
    fn check(&self) -> ModelResult<()> {
        let l = self;
        if l.shared_convs + l.shared_fcs + l.cls_convs + l.cls_fcs + l.reg_convs + l.reg_fcs == 0 {
            return Err(ModelError::new("ConvFCBBoxHead", "needs at least one conv or fc (all six num_* are 0)"));
        }
        if (l.cls_convs > 0 || l.reg_convs > 0) && l.shared_fcs > 0 {
            return Err(ModelError::new("ConvFCBBoxHead", "num_cls_convs / num_reg_convs need num_shared_fcs: 0"));
        }
        Ok(())
    }
}

/// A part of the head: its 3x3 ConvModules, then (after the average pool
/// and flattening) its fully connected layers, each followed by ReLU.
#[derive(Debug)]
struct Branch {
    convs: Vec<ConvModule>,
    fcs: Vec<Linear>,
}

/// The R-CNN box head.
#[derive(Debug)]
pub struct ConvFCBBoxHead {
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
    shared: Branch,
    cls: Branch,
    reg: Branch,
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

fn build_coder(cfg: &BBoxHeadConfig) -> ModelResult<DeltaXYWHBBoxCoder> {
    DeltaXYWHBBoxCoder::from_cfg(&cfg.bbox_coder, "bbox_head.bbox_coder")
}

/// Rejects the options detc does not implement, naming the key to change.
fn check_supported(cfg: &BBoxHeadConfig, owner: &str) -> ModelResult<()> {
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
        Some(msg) => Err(ModelError::new(owner, format!("{msg} (detc supports no other)"))),
        None => Ok(()),
    }
}

/// Builds the `bbox_head` a `StandardRoIHead` or a cascade stage names under `p`.
pub fn build_bbox_head(cfg: &BBoxHeadCfg, p: &nn::Path) -> ModelResult<ConvFCBBoxHead> {
    match cfg_type(&cfg.0, "bbox_head")? {
        name @ "Shared2FCBBoxHead" => ConvFCBBoxHead::new(&parse_cfg(&cfg.0, name)?, Layout::SHARED_2FC, name, p),
        name @ "Shared4Conv1FCBBoxHead" => {
            let c: detc::registry::models::bbox_heads::Shared4Conv1FCBBoxHeadConfig = parse_cfg(&cfg.0, name)?;
            ConvFCBBoxHead::new(&c.head, Layout::SHARED_4CONV_1FC, name, p)
        }
        name @ "ConvFCBBoxHead" => {
            let c: ConvFCBBoxHeadConfig = parse_cfg(&cfg.0, name)?;
            let layout = Layout::of(&c);
            layout.check()?;
            ConvFCBBoxHead::new(&c.head, layout, name, p)
        }
        name @ "BBoxHead" => {
            let head: BBoxHeadConfig = parse_cfg(&cfg.0, name)?;
            // No convs or fcs: their widths and layers are unused.
            let plain = Shared2FCBBoxHeadConfig { fc_out_channels: 1024, conv_out_channels: 256, conv_cfg: None, norm_cfg: None, head };
            ConvFCBBoxHead::new(&plain, Layout::NONE, name, p)
        }
        other => Err(ModelError::new(
            "bbox_head",
            format!("{other:?} is not supported (Shared2FCBBoxHead, Shared4Conv1FCBBoxHead, ConvFCBBoxHead, BBoxHead)"),
        )),
    }
}

impl ConvFCBBoxHead {
    /// Builds under `p` (`roi_head.bbox_head`) the parts `layout` counts
    /// (`shared_convs.{i}`, `shared_fcs.{i}`, `cls_convs`/`cls_fcs`,
    /// `reg_convs`/`reg_fcs`), then `fc_cls`, `fc_reg`, initialised as
    /// MMDetection's: the convs as ConvModule does (Kaiming normal, fan-out,
    /// norms 1), Xavier uniform on the fcs, N(0, 0.01) on `fc_cls`, N(0,
    /// 0.001) on `fc_reg`, every bias 0. `owner` (the `type`) names the head in errors.
    pub fn new(widths: &Shared2FCBBoxHeadConfig, layout: Layout, owner: &str, p: &nn::Path) -> ModelResult<Self> {
        let cfg = &widths.head;
        check_supported(cfg, owner)?;
        let roi_feat_size = pair(cfg.roi_feat_size);
        let area = roi_feat_size.0 * roi_feat_size.1;
        let conv_opts = ConvModuleOpts {
            geom: ConvGeom::k(3).padding(1),
            bias: None,
            norm: widths.norm_cfg.as_ref().map(|n| NormSpec::from_cfg(n, owner)).transpose()?,
            act: Some(Activation::Relu),
            // Replaced per conv below: the dims differ.
            init: Init::Const(0.0),
            conv: ConvKind::from_cfg(widths.conv_cfg.as_ref(), owner)?,
        };
        let dims = BranchDims {
            conv_out: widths.conv_out_channels as i64,
            fc_out: widths.fc_out_channels as i64,
            area,
            with_avg_pool: cfg.with_avg_pool,
            no_shared_fcs: layout.shared_fcs == 0,
        };
        let (shared, shared_out) =
            dims.branch(p, "shared", layout.shared_convs, layout.shared_fcs, cfg.in_channels as i64, true, &conv_opts)?;
        let (cls, mut cls_last) = dims.branch(p, "cls", layout.cls_convs, layout.cls_fcs, shared_out, false, &conv_opts)?;
        let (reg, mut reg_last) = dims.branch(p, "reg", layout.reg_convs, layout.reg_fcs, shared_out, false, &conv_opts)?;
        if layout.shared_fcs == 0 && !cfg.with_avg_pool {
            if layout.cls_fcs == 0 {
                cls_last *= area;
            }
            if layout.reg_fcs == 0 {
                reg_last *= area;
            }
        }
        let k = cfg.num_classes as i64;
        let reg_out = if cfg.reg_class_agnostic { 4 } else { 4 * k };
        let normal = |stdev| Init::Randn { mean: 0.0, stdev };
        Ok(ConvFCBBoxHead {
            num_classes: k,
            in_channels: cfg.in_channels as i64,
            reg_class_agnostic: cfg.reg_class_agnostic,
            reg_decoded_bbox: cfg.reg_decoded_bbox,
            bbox_coder: build_coder(cfg)?,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_bbox: Loss::from_cfg(&cfg.loss_bbox)?,
            roi_feat_size,
            with_avg_pool: cfg.with_avg_pool,
            shared,
            cls,
            reg,
            fc_cls: linear(&(p / "fc_cls"), cls_last, k + 1, normal(0.01))?,
            fc_reg: linear(&(p / "fc_reg"), reg_last, reg_out, normal(0.001))?,
        })
    }

    /// `forward`: RoI features (R, C, S, S) -> `cls_score` (R, K + 1) and
    /// `bbox_pred` (R, 4K), or (R, 4) with `reg_class_agnostic`. `train`
    /// switches the convs' batch norms (if any) to batch statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<(Tensor, Tensor)> {
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
        let mut x = x.shallow_clone();
        for conv in &self.shared.convs {
            x = conv.forward_t(&x, train)?;
        }
        if !self.shared.fcs.is_empty() {
            x = self.flatten(&x)?;
            for fc in &self.shared.fcs {
                x = fc.forward(&x)?.f_relu()?;
            }
        }
        let cls = self.branch_forward(&self.cls, &x, train)?;
        let reg = self.branch_forward(&self.reg, &x, train)?;
        Ok((self.fc_cls.forward(&cls)?, self.fc_reg.forward(&reg)?))
    }

    /// (R, C, h, w) -> (R, C * h * w), average-pooled first (to (R, C)) with
    /// `with_avg_pool`: `nn.AvgPool2d(roi_feat_size)`, one window over the RoI.
    fn flatten(&self, x: &Tensor) -> ModelResult<Tensor> {
        let (sh, sw) = self.roi_feat_size;
        let x = if self.with_avg_pool {
            x.f_avg_pool2d([sh, sw], [sh, sw], [0, 0], false, true, None::<i64>)?
        } else {
            x.shallow_clone()
        };
        Ok(x.f_flatten(1, -1)?)
    }

    fn branch_forward(&self, branch: &Branch, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut x = x.shallow_clone();
        for conv in &branch.convs {
            x = conv.forward_t(&x, train)?;
        }
        if x.dim() > 2 {
            x = self.flatten(&x)?;
        }
        for fc in &branch.fcs {
            x = fc.forward(&x)?.f_relu()?;
        }
        Ok(x)
    }
}

/// What `_add_conv_fc_branch` needs to size a branch's layers.
struct BranchDims {
    conv_out: i64,
    fc_out: i64,
    area: i64,
    with_avg_pool: bool,
    no_shared_fcs: bool,
}

impl BranchDims {
    /// `_add_conv_fc_branch`: `convs` ConvModules then `fcs` fcs under
    /// `{part}_convs` / `{part}_fcs`, from `in_c` channels; returns the
    /// branch and the width of its output.
    #[allow(clippy::too_many_arguments)]
    fn branch(
        &self,
        p: &nn::Path,
        part: &str,
        convs: usize,
        fcs: usize,
        in_c: i64,
        is_shared: bool,
        opts: &ConvModuleOpts,
    ) -> ModelResult<(Branch, i64)> {
        let mut last = in_c;
        let mut branch = Branch { convs: Vec::with_capacity(convs), fcs: Vec::with_capacity(fcs) };
        for i in 0..convs {
            let cin = if i == 0 { last } else { self.conv_out };
            let opts = ConvModuleOpts { init: kaiming_normal_fan_out(&[self.conv_out, cin, 3, 3]), ..opts.clone() };
            branch.convs.push(ConvModule::new(&(p / format!("{part}_convs") / i), cin, self.conv_out, &opts)?);
        }
        if convs > 0 {
            last = self.conv_out;
        }
        if fcs > 0 {
            if (is_shared || self.no_shared_fcs) && !self.with_avg_pool {
                last *= self.area;
            }
            for i in 0..fcs {
                let fan_in = if i == 0 { last } else { self.fc_out };
                let fc_p = p / format!("{part}_fcs") / i;
                branch.fcs.push(linear(&fc_p, fan_in, self.fc_out, xavier_uniform(&[self.fc_out, fan_in]))?);
            }
            last = self.fc_out;
        }
        Ok((branch, last))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    use super::*;
    use crate::models::layers::fixtures::assert_close;
    use crate::models::roi_heads::standard_roi_head::tests::{fx, load};

    pub(crate) fn shared2fc(cfg: &Shared2FCBBoxHeadConfig, p: &nn::Path) -> ModelResult<ConvFCBBoxHead> {
        ConvFCBBoxHead::new(cfg, Layout::SHARED_2FC, "Shared2FCBBoxHead", p)
    }

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
    pub(crate) fn loaded(prefix: &str) -> (VarStore, ConvFCBBoxHead) {
        let vs = VarStore::new(Device::Cpu);
        let head = shared2fc(&box_cfg(prefix == "agn"), &vs.root()).unwrap();
        load(&vs, prefix);
        (vs, head)
    }

    #[test]
    fn shared2fc_forward_equals_mmdet() {
        for prefix in ["box", "agn"] {
            let (_vs, head) = loaded(prefix);
            let (cls, reg) = head.forward_t(&fx(&format!("{prefix}.feat")), true).unwrap();
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
        shared2fc(&box_cfg(false), &vs.root()).unwrap();
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
            .forward_t(&Tensor::zeros([2, 8, 14, 14], (Kind::Float, Device::Cpu)), false)
            .unwrap_err();
        assert!(err.message.contains("roi_feat_size"), "{err}");
        let mut bad = box_cfg(false);
        bad.head.with_cls = false;
        let err = shared2fc(&bad, &VarStore::new(Device::Cpu).root()).unwrap_err();
        assert!(err.message.contains("with_cls"), "{err}");
        let mut bad = box_cfg(false);
        bad.head.bbox_coder.0["type"] = serde_json::json!("TBLRBBoxCoder");
        assert!(shared2fc(&bad, &VarStore::new(Device::Cpu).root()).is_err());
    }
}
