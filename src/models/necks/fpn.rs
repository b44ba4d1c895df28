//! `FPN` (Lin et al., "Feature Pyramid Networks for Object Detection",
//! <https://arxiv.org/abs/1612.03144>) as `mmdet/models/necks/fpn.py`:
//! 1x1 lateral convs, a nearest-upsampling top-down path, 3x3 output convs,
//! and extra levels by max pooling or stride-2 convs. Names:
//! `lateral_convs.{i}.conv.weight/bias`, `fpn_convs.{i}.conv.weight/bias`
//! (extra convs continue the `fpn_convs` numbering). And `PAFPN` (Liu et
//! al., "Path Aggregation Network for Instance Segmentation",
//! <https://arxiv.org/abs/1803.01534>, `mmdet/models/necks/pafpn.py`): the
//! same with a bottom-up path after the output convs, each level plus a
//! stride-2 3x3 conv of the one below (`downsample_convs.{i}`), then a 3x3
//! conv (`pafpn_convs.{i}`), before the extra levels.
//!
//! Shape shorthand: `N` images, `Ci` input channels of level `i`, `C` the
//! output channels, `Hi, Wi` level sizes.

use detc::registry::models::common::{FloatOrPair, StrOrList};
use detc::registry::models::necks::{AddExtraConvs, ExtraConvsSource, FPNConfig, InterpolateMode};
use detc::registry::models::weight_init::{Caffe2XavierInitConfig, Distribution, XavierInitConfig};
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::{
    caffe2_xavier, kaiming_normal_fan_out, xavier, Activation, ConvGeom, ConvKind, ConvModule, ConvModuleOpts, ModelError,
    ModelResult, NormSpec,
};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "FPN";

/// How FPN's convs start (their biases at 0 either way). mmdet's default
/// `init_cfg` is Xavier uniform on `Conv2d`; other gains and the normal
/// distribution are the same initialiser. With `init_cfg: null` MMEngine
/// initialises nothing and the convs keep what MMCV's `ConvModule` gave
/// them when built: Kaiming normal, fan-out, for ReLU.
#[derive(Debug, Clone, Copy)]
enum ConvInit {
    Xavier { gain: f64, uniform: bool },
    /// MMEngine's `Caffe2Xavier` (the CenterNet configs' FPN): Kaiming uniform, `a = 1`, fan-in.
    Caffe2Xavier,
    ConvModuleDefault,
}

impl ConvInit {
    fn weight(self, dims: &[i64]) -> Init {
        match self {
            ConvInit::Xavier { gain, uniform } => xavier(dims, gain, uniform),
            ConvInit::Caffe2Xavier => caffe2_xavier(dims.iter().skip(1).product()),
            ConvInit::ConvModuleDefault => kaiming_normal_fan_out(dims),
        }
    }
}

/// `init_cfg`: one `Xavier` or `Caffe2Xavier` on `Conv2d` (bias 0, no
/// override), or null. Any other initialiser is an error rather than
/// silently not applied.
fn conv_init(cfg: &FPNConfig) -> ModelResult<ConvInit> {
    let Some(init) = &cfg.init_cfg else {
        return Ok(ConvInit::ConvModuleDefault);
    };
    let unsupported = || {
        ModelError::new(
            NAME,
            "init_cfg must be one Xavier or Caffe2Xavier dict on Conv2d with bias 0 (MMDetection's default: \
             {type: Xavier, layer: Conv2d, distribution: uniform}) or null; other initialisers \
             are not supported yet",
        )
    };
    let items = init.as_vec();
    let [one] = items.as_slice() else {
        return Err(unsupported());
    };
    let on_conv = |layer: &Option<StrOrList>| match layer {
        None => true,
        Some(StrOrList::One(s)) => s == "Conv2d",
        Some(StrOrList::List(v)) => v.iter().any(|s| s == "Conv2d"),
    };
    match cfg_type(&one.0, "FPN.init_cfg")? {
        "Xavier" => {}
        "Caffe2Xavier" => {
            let c: Caffe2XavierInitConfig = parse_cfg(&one.0, "FPN.init_cfg")?;
            if !on_conv(&c.layer) || c.r#override.is_some() || c.bias != 0.0 || c.bias_prob.is_some() {
                return Err(unsupported());
            }
            return Ok(ConvInit::Caffe2Xavier);
        }
        _ => return Err(unsupported()),
    }
    let x: XavierInitConfig = parse_cfg(&one.0, "FPN.init_cfg")?;
    if !on_conv(&x.layer) || x.r#override.is_some() || x.bias != 0.0 || x.bias_prob.is_some() {
        return Err(unsupported());
    }
    Ok(ConvInit::Xavier {
        gain: x.gain,
        uniform: x.distribution == Distribution::Uniform,
    })
}

/// PAFPN's bottom-up path: one of each conv per level above the first.
#[derive(Debug)]
struct BottomUp {
    downsample_convs: Vec<ConvModule>,
    pafpn_convs: Vec<ConvModule>,
}

/// mmdet's `FPN` (named as its `type:`), or `PAFPN` with a bottom-up path.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug)]
pub struct FPN {
    lateral_convs: Vec<ConvModule>,
    fpn_convs: Vec<ConvModule>,
    bottom_up: Option<BottomUp>,
    in_channels: Vec<i64>,
    start_level: usize,
    backbone_end_level: usize,
    num_outs: usize,
    extra: Option<ExtraConvsSource>,
    relu_before_extra_convs: bool,
    scale_factor: Option<(f64, f64)>,
    /// Channels of every output level.
    pub out_channels: i64,
}

impl FPN {
    /// Builds the convs under `p` (e.g. `root / "neck"`), initialised as
    /// `init_cfg` says (see [`ConvInit`]).
    pub fn new(cfg: &FPNConfig, p: nn::Path) -> ModelResult<Self> {
        let init = conv_init(cfg)?;
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let in_channels: Vec<i64> = cfg.in_channels.iter().map(|&c| c as i64).collect();
        let (num_ins, num_outs, start) = (
            in_channels.len(),
            cfg.num_outs as usize,
            cfg.start_level as usize,
        );
        let backbone_end_level = end_level(cfg, num_ins)?;
        if start >= backbone_end_level {
            return Err(ModelError::new(
                NAME,
                format!("start_level {start} must be below the end level {backbone_end_level}"),
            ));
        }
        let extra = match cfg.add_extra_convs {
            AddExtraConvs::Flag(false) => None,
            AddExtraConvs::Flag(true) => Some(ExtraConvsSource::OnInput),
            AddExtraConvs::Source(s) => Some(s),
        };
        let opts =
            |geom: ConvGeom, norm: Option<NormSpec>, cin: i64| -> ModelResult<ConvModuleOpts> {
                Ok(ConvModuleOpts {
                    geom,
                    bias: None,
                    norm,
                    act: Activation::from_cfg(cfg.act_cfg.as_ref(), NAME)?,
                    init: init.weight(&[cfg.out_channels as i64, cin, geom.kernel, geom.kernel]),
                    conv,
                })
            };
        let norm = cfg
            .norm_cfg
            .as_ref()
            .map(|n| NormSpec::from_cfg(n, NAME))
            .transpose()?;
        let out_c = cfg.out_channels as i64;
        let (mut lateral_convs, mut fpn_convs) = (Vec::new(), Vec::new());
        for (k, i) in (start..backbone_end_level).enumerate() {
            let lat_norm = if cfg.no_norm_on_lateral {
                None
            } else {
                norm.clone()
            };
            let lo = opts(ConvGeom::k(1), lat_norm, in_channels[i])?;
            lateral_convs.push(ConvModule::new(
                &(&p / "lateral_convs" / k),
                in_channels[i],
                out_c,
                &lo,
            )?);
            let fo = opts(ConvGeom::k(3).padding(1), norm.clone(), out_c)?;
            fpn_convs.push(ConvModule::new(&(&p / "fpn_convs" / k), out_c, out_c, &fo)?);
        }
        let extra_levels = num_outs as i64 - backbone_end_level as i64 + start as i64;
        if let Some(src) = extra {
            for e in 0..extra_levels.max(0) as usize {
                let cin = if e == 0 && src == ExtraConvsSource::OnInput {
                    in_channels[backbone_end_level - 1]
                } else {
                    out_c
                };
                let o = opts(ConvGeom::k(3).stride(2).padding(1), norm.clone(), cin)?;
                fpn_convs.push(ConvModule::new(
                    &(&p / "fpn_convs" / fpn_convs.len()),
                    cin,
                    out_c,
                    &o,
                )?);
            }
        }
        if cfg.upsample_cfg.mode != InterpolateMode::Nearest {
            return Err(ModelError::new(
                NAME,
                "upsample_cfg.mode other than `nearest` is not supported yet",
            ));
        }
        if cfg.upsample_cfg.align_corners.is_some() {
            // torch's F.interpolate raises for align_corners with `nearest`.
            return Err(ModelError::new(
                NAME,
                "upsample_cfg.align_corners applies to bilinear/bicubic only: remove it for `nearest`",
            ));
        }
        let scale_factor = cfg.upsample_cfg.scale_factor.map(|s| match s {
            FloatOrPair::Float(f) => (f, f),
            FloatOrPair::Pair(pair) => pair,
        });
        Ok(FPN {
            lateral_convs,
            fpn_convs,
            bottom_up: None,
            in_channels,
            start_level: start,
            backbone_end_level,
            num_outs,
            extra,
            relu_before_extra_convs: cfg.relu_before_extra_convs,
            scale_factor,
            out_channels: out_c,
        })
    }

    /// `PAFPN`: the FPN of `cfg` and its bottom-up path, under `p`. Its
    /// top-down path always upsamples to the finer level's size (nearest):
    /// MMDetection's PAFPN takes no `upsample_cfg`.
    pub fn pafpn(cfg: &FPNConfig, p: nn::Path) -> ModelResult<Self> {
        let defaults: FPNConfig = serde_json::from_value(serde_json::json!({"in_channels": [1], "out_channels": 1, "num_outs": 1}))
            .map_err(|e| ModelError::new("PAFPN", e.to_string()))?;
        if serde_json::to_value(&cfg.upsample_cfg).ok() != serde_json::to_value(&defaults.upsample_cfg).ok() {
            return Err(ModelError::new("PAFPN", "upsample_cfg is not an option of PAFPN (remove it)"));
        }
        let mut fpn = FPN::new(cfg, p.clone())?;
        let init = conv_init(cfg)?;
        let out_c = fpn.out_channels;
        let norm = cfg.norm_cfg.as_ref().map(|n| NormSpec::from_cfg(n, "PAFPN")).transpose()?;
        let opts = |geom: ConvGeom| -> ModelResult<ConvModuleOpts> {
            Ok(ConvModuleOpts {
                geom,
                bias: None,
                norm: norm.clone(),
                act: Activation::from_cfg(cfg.act_cfg.as_ref(), "PAFPN")?,
                init: init.weight(&[out_c, out_c, 3, 3]),
                conv: ConvKind::from_cfg(cfg.conv_cfg.as_ref(), "PAFPN")?,
            })
        };
        let (mut downsample_convs, mut pafpn_convs) = (Vec::new(), Vec::new());
        for k in 0..fpn.lateral_convs.len().saturating_sub(1) {
            downsample_convs.push(ConvModule::new(&(&p / "downsample_convs" / k), out_c, out_c, &opts(ConvGeom::k(3).stride(2).padding(1))?)?);
            pafpn_convs.push(ConvModule::new(&(&p / "pafpn_convs" / k), out_c, out_c, &opts(ConvGeom::k(3).padding(1))?)?);
        }
        fpn.bottom_up = Some(BottomUp { downsample_convs, pafpn_convs });
        Ok(fpn)
    }

    /// inputs: the backbone levels, (N, Ci, Hi, Wi) each -> `num_outs` maps
    /// of (N, C, H', W'), finest first.
    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> ModelResult<Vec<Tensor>> {
        if inputs.len() != self.in_channels.len() {
            return Err(ModelError::new(
                NAME,
                format!(
                    "expected {} input levels, got {}",
                    self.in_channels.len(),
                    inputs.len()
                ),
            ));
        }
        let mut laterals = Vec::with_capacity(self.lateral_convs.len());
        for (k, conv) in self.lateral_convs.iter().enumerate() {
            laterals.push(conv.forward_t(&inputs[k + self.start_level], train)?);
        }
        // top-down: laterals[i-1] += upsample(laterals[i])
        for i in (1..laterals.len()).rev() {
            let up = self.upsample(&laterals[i], &laterals[i - 1])?;
            laterals[i - 1] = laterals[i - 1].f_add(&up)?;
        }
        let used = laterals.len();
        let mut outs = Vec::with_capacity(self.num_outs);
        for (k, lat) in laterals.iter().enumerate() {
            outs.push(self.fpn_convs[k].forward_t(lat, train)?);
        }
        if let Some(bu) = &self.bottom_up {
            // PAFPN: outs[i + 1] += downsample(outs[i]), bottom up, then a conv above the first.
            for (i, down) in bu.downsample_convs.iter().enumerate() {
                outs[i + 1] = outs[i + 1].f_add(&down.forward_t(&outs[i], train)?)?;
            }
            for (i, conv) in bu.pafpn_convs.iter().enumerate() {
                outs[i + 1] = conv.forward_t(&outs[i + 1], train)?;
            }
        }
        if self.num_outs > used {
            match self.extra {
                None => {
                    for _ in used..self.num_outs {
                        let last = outs
                            .last()
                            .map(|t| t.f_max_pool2d([1, 1], [2, 2], [0, 0], [1, 1], false));
                        outs.push(
                            last.transpose()?
                                .ok_or_else(|| ModelError::new(NAME, "no level to pool"))?,
                        );
                    }
                }
                Some(src) => self.extra_convs(src, inputs, &laterals, &mut outs, train)?,
            }
        }
        Ok(outs)
    }

    fn extra_convs(
        &self,
        src: ExtraConvsSource,
        inputs: &[Tensor],
        laterals: &[Tensor],
        outs: &mut Vec<Tensor>,
        train: bool,
    ) -> ModelResult<()> {
        let used = laterals.len();
        let source = match src {
            ExtraConvsSource::OnInput => &inputs[self.backbone_end_level - 1],
            ExtraConvsSource::OnLateral => &laterals[used - 1],
            ExtraConvsSource::OnOutput => &outs[used - 1],
        }
        .shallow_clone();
        outs.push(self.fpn_convs[used].forward_t(&source, train)?);
        for i in used + 1..self.num_outs {
            let prev = &outs[outs.len() - 1];
            let x = if self.relu_before_extra_convs {
                prev.f_relu()?
            } else {
                prev.shallow_clone()
            };
            outs.push(self.fpn_convs[i].forward_t(&x, train)?);
        }
        Ok(())
    }

    /// `F.interpolate(x, **upsample_cfg)` with mmdet's choice: the fixed
    /// `scale_factor` when configured, else the size of the finer level.
    /// x: (N, C, h, w), like: (N, C, H, W) -> (N, C, H, W) (or scaled).
    fn upsample(&self, x: &Tensor, like: &Tensor) -> ModelResult<Tensor> {
        let (_, _, h, w) = x.size4()?;
        let (_, _, th, tw) = like.size4()?;
        Ok(match self.scale_factor {
            Some((sh, sw)) => {
                let size = [
                    (h as f64 * sh).floor() as i64,
                    (w as f64 * sw).floor() as i64,
                ];
                x.f_upsample_nearest2d(size, Some(sh), Some(sw))?
            }
            None => x.f_upsample_nearest2d([th, tw], None, None)?,
        })
    }
}

/// mmdet's `backbone_end_level` (exclusive) from `end_level`, with its checks.
fn end_level(cfg: &FPNConfig, num_ins: usize) -> ModelResult<usize> {
    let (num_outs, start) = (cfg.num_outs as usize, cfg.start_level as usize);
    if cfg.end_level == -1 || cfg.end_level == num_ins as i64 - 1 {
        if num_outs + start < num_ins {
            return Err(ModelError::new(
                NAME,
                format!(
                    "num_outs {num_outs} must be at least len(in_channels) - start_level = {}",
                    num_ins - start
                ),
            ));
        }
        Ok(num_ins)
    } else {
        let end = cfg.end_level;
        if end < 0 || end as usize >= num_ins {
            return Err(ModelError::new(
                NAME,
                format!("end_level {end} must be below len(in_channels) {num_ins}"),
            ));
        }
        if num_outs as i64 != end - start as i64 + 1 {
            return Err(ModelError::new(
                NAME,
                format!("num_outs {num_outs} must equal end_level - start_level + 1"),
            ));
        }
        Ok(end as usize + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{self, assert_close, tensor};
    use crate::models::weights::{load_state_dict, Shapes, named_shapes, with_prefix};
    use tch::Device;

    /// The configs of tests/models/make_fixtures.py FPN_CASES.
    fn cases() -> Vec<(&'static str, serde_json::Value)> {
        let ch = serde_json::json!([8, 16, 32, 64]);
        vec![
            (
                "a",
                serde_json::json!({"in_channels": ch, "out_channels": 8, "num_outs": 4, "add_extra_convs": "on_input"}),
            ),
            (
                "b",
                serde_json::json!({"in_channels": ch, "out_channels": 8, "num_outs": 5}),
            ),
            (
                "c",
                serde_json::json!({"in_channels": ch, "out_channels": 8, "num_outs": 5, "start_level": 1,
                                      "add_extra_convs": "on_output", "relu_before_extra_convs": true}),
            ),
            (
                "d",
                serde_json::json!({"in_channels": ch, "out_channels": 8, "num_outs": 6, "add_extra_convs": "on_lateral"}),
            ),
            (
                "e",
                serde_json::json!({"in_channels": ch, "out_channels": 8, "num_outs": 4,
                                      "upsample_cfg": {"mode": "nearest", "scale_factor": 2.0}}),
            ),
        ]
    }

    #[test]
    fn fpn_names_and_outputs_equal_mmdet() {
        let fx = &fixtures::get().fpn;
        for (key, json) in cases() {
            let cfg: FPNConfig = serde_json::from_value(json).unwrap();
            let vs = nn::VarStore::new(Device::Cpu);
            let fpn = FPN::new(&cfg, vs.root() / "neck").unwrap();
            let sd = with_prefix(fx, &format!("{key}.sd")).unwrap();
            let report = load_state_dict(&vs, "neck", &sd, Shapes::Refuse).unwrap();
            assert!(report.is_exact(), "{key}: {report:?}");
            let inputs: Vec<Tensor> = (0..4)
                .map(|i| tensor(fx, &format!("{key}.in.{i}")))
                .collect();
            let outs = fpn.forward_t(&inputs, false).unwrap();
            let n_ref = fx
                .keys()
                .filter(|k| k.starts_with(&format!("{key}.out.")))
                .count();
            assert_eq!(outs.len(), n_ref, "{key}: number of outputs");
            for (i, y) in outs.iter().enumerate() {
                assert_close(
                    y,
                    &tensor(fx, &format!("{key}.out.{i}")),
                    1e-5,
                    1e-5,
                    &format!("FPN {key} out {i}"),
                );
            }
        }
    }

    #[test]
    fn fpn_queryinst_names_and_init() {
        let cfg: FPNConfig = serde_json::from_value(serde_json::json!({
            "in_channels": [256, 512, 1024, 2048], "out_channels": 256, "num_outs": 4, "add_extra_convs": "on_input"
        }))
        .unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        FPN::new(&cfg, vs.root()).unwrap();
        let names: Vec<String> = named_shapes(&vs, "").into_iter().map(|(k, _)| k).collect();
        let mut want: Vec<String> = (0..4)
            .flat_map(|i| {
                ["lateral_convs", "fpn_convs"]
                    .map(|m| [format!("{m}.{i}.conv.weight"), format!("{m}.{i}.conv.bias")])
            })
            .flatten()
            .collect();
        want.sort();
        assert_eq!(names, want);
        let vars = vs.variables();
        // Xavier uniform bound sqrt(6 / (fan_in + fan_out)), bias 0. The
        // draws are float32: the largest may round up past the f64 bound.
        let bound = (6.0f64 / (2048.0 + 256.0)).sqrt();
        let max = vars["lateral_convs.3.conv.weight"].abs().max().double_value(&[]);
        assert!(max <= bound * (1.0 + 1e-6) && max > bound * 0.9, "max {max}, bound {bound}");
        assert_eq!(
            vars["fpn_convs.0.conv.bias"]
                .abs()
                .sum(tch::Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn init_cfg_null_keeps_conv_module_init_and_unsupported_options_are_errors() {
        let cfg = |init: serde_json::Value| -> FPNConfig {
            serde_json::from_value(serde_json::json!({
                "in_channels": [64, 128], "out_channels": 64, "num_outs": 2, "init_cfg": init
            }))
            .unwrap()
        };
        // null: MMCV ConvModule's own init, Kaiming normal fan-out: std sqrt(2 / (64 * 9)).
        let _guard = fixtures::seeded();
        let vs = nn::VarStore::new(Device::Cpu);
        FPN::new(&cfg(serde_json::Value::Null), vs.root()).unwrap();
        let std = vs.variables()["fpn_convs.0.conv.weight"]
            .std(true)
            .double_value(&[]);
        let want = (2.0f64 / (64.0 * 9.0)).sqrt();
        assert!((std / want - 1.0).abs() < 0.05, "{std} vs {want}");
        // Xavier normal with a gain: std gain * sqrt(2 / (fan_in + fan_out)).
        let vs = nn::VarStore::new(Device::Cpu);
        let xavier = serde_json::json!({"type": "Xavier", "layer": "Conv2d", "gain": 2.0});
        FPN::new(&cfg(xavier), vs.root()).unwrap();
        let std = vs.variables()["fpn_convs.0.conv.weight"]
            .std(true)
            .double_value(&[]);
        let want = 2.0 * (2.0f64 / (2.0 * 64.0 * 9.0)).sqrt();
        assert!((std / want - 1.0).abs() < 0.05, "{std} vs {want}");
        for other in [
            serde_json::json!({"type": "Normal", "layer": "Conv2d", "std": 0.01}),
            serde_json::json!({"type": "Xavier", "layer": "Linear"}),
            serde_json::json!({"type": "Xavier", "layer": "Conv2d", "bias": 0.5}),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let err = FPN::new(&cfg(other.clone()), vs.root()).unwrap_err();
            assert!(err.to_string().contains("init_cfg"), "{other}: {err}");
        }
        // Neither are convs other than Conv2d, nor align_corners with `nearest`.
        for (key, value) in [
            (
                "conv_cfg",
                serde_json::json!({"type": "Conv2d", "padding_mode": "reflect"}),
            ),
            (
                "upsample_cfg",
                serde_json::json!({"mode": "nearest", "align_corners": false}),
            ),
        ] {
            let mut json =
                serde_json::json!({"in_channels": [64, 128], "out_channels": 64, "num_outs": 2});
            json[key] = value;
            let vs = nn::VarStore::new(Device::Cpu);
            let err = FPN::new(&serde_json::from_value(json).unwrap(), vs.root()).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }
}
