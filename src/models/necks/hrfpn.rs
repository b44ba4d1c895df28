//! `HRFPN` (the HRNetV2p pyramid of Sun et al., 2019) as
//! `mmdet/models/necks/hrfpn.py`: the branches upsampled bilinearly to the
//! first one's size and concatenated, a 1x1 `reduction_conv`, then level `i`
//! pooled by `2^i` (average or max) and a 3x3 `fpn_convs.{i}` per level.
//! Names: `reduction_conv.conv.{weight,bias}`, `fpn_convs.{i}.conv.{weight,bias}`.
//!
//! Shape shorthand: `N` images, `Ci` channels of branch `i`, `C` the output
//! channels, `H, W` the first branch's size.

use detc::registry::models::common::StrOrList;
use detc::registry::models::necks::{HRFPNConfig, PoolingType};
use detc::registry::models::weight_init::Caffe2XavierInitConfig;
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::{kaiming_normal_fan_out, ConvGeom, ConvKind, ConvModule, ConvModuleOpts, ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "HRFPN";

/// The output convs' initialiser. MMDetection's default `init_cfg`,
/// `Caffe2Xavier` on `Conv2d`, is Kaiming uniform with `a = 1`, fan-in:
/// U(-sqrt(3 / fan_in), sqrt(3 / fan_in)). It reaches `fpn_convs` only: MMEngine
/// then runs `reduction_conv`'s own `ConvModule.init_weights` (a direct
/// child), which redraws it Kaiming normal fan-out, as `init_cfg: null`
/// leaves every conv.
fn fpn_conv_init(cfg: &HRFPNConfig) -> ModelResult<Option<()>> {
    let Some(init) = &cfg.init_cfg else { return Ok(None) };
    let unsupported = || {
        ModelError::new(NAME, "init_cfg must be {type: Caffe2Xavier, layer: Conv2d} (MMDetection's default) or null; other initialisers are not supported yet")
    };
    let items = init.as_vec();
    let [one] = items.as_slice() else { return Err(unsupported()) };
    if cfg_type(&one.0, "HRFPN.init_cfg")? != "Caffe2Xavier" {
        return Err(unsupported());
    }
    let c: Caffe2XavierInitConfig = parse_cfg(&one.0, "HRFPN.init_cfg")?;
    let on_conv = match &c.layer {
        None => true,
        Some(StrOrList::One(s)) => s == "Conv2d",
        Some(StrOrList::List(v)) => v.iter().any(|s| s == "Conv2d"),
    };
    if !on_conv || c.r#override.is_some() || c.bias != 0.0 || c.bias_prob.is_some() {
        return Err(unsupported());
    }
    Ok(Some(()))
}

/// mmdet's `HRFPN` (named as its `type:`).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug)]
pub struct HRFPN {
    reduction_conv: ConvModule,
    fpn_convs: Vec<ConvModule>,
    pooling: PoolingType,
    num_ins: usize,
    /// Channels of every output level.
    pub out_channels: i64,
}

impl HRFPN {
    pub fn new(cfg: &HRFPNConfig, p: nn::Path) -> ModelResult<Self> {
        if cfg.with_cp {
            return Err(ModelError::new(NAME, "with_cp is not supported yet (set it to false)"));
        }
        let caffe2_xavier = fpn_conv_init(cfg)?.is_some();
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let out_c = cfg.out_channels as i64;
        let in_c: i64 = cfg.in_channels.iter().map(|&c| c as i64).sum();
        let opts = |geom: ConvGeom, init: Init| ConvModuleOpts { geom, bias: None, norm: None, act: None, init, conv };
        let reduction_conv = ConvModule::new(&(&p / "reduction_conv"), in_c, out_c, &opts(ConvGeom::k(1), kaiming_normal_fan_out(&[out_c, in_c, 1, 1])))?;
        let geom = ConvGeom::k(3).padding(1).stride(cfg.stride as i64);
        let dims = [out_c, out_c, 3, 3];
        let init = if caffe2_xavier {
            let bound = (3.0 / (out_c * 9) as f64).sqrt();
            Init::Uniform { lo: -bound, up: bound }
        } else {
            kaiming_normal_fan_out(&dims)
        };
        let fpn_convs = (0..cfg.num_outs as i64)
            .map(|i| ConvModule::new(&(&p / "fpn_convs" / i), out_c, out_c, &opts(geom, init)))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(HRFPN { reduction_conv, fpn_convs, pooling: cfg.pooling_type, num_ins: cfg.in_channels.len(), out_channels: out_c })
    }

    /// inputs: the HRNet branches, (N, Ci, H / 2^i, W / 2^i) -> `num_outs`
    /// maps (N, C, H / 2^i, W / 2^i) (with the output convs' stride).
    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> ModelResult<Vec<Tensor>> {
        if inputs.len() != self.num_ins {
            return Err(ModelError::new(NAME, format!("expected {} input branches, got {}", self.num_ins, inputs.len())));
        }
        let mut ups = vec![inputs[0].shallow_clone()];
        for (i, x) in inputs.iter().enumerate().skip(1) {
            // F.interpolate(scale_factor=2**i, mode='bilinear'), align_corners False.
            let s = (1i64 << i) as f64;
            let (_, _, h, w) = x.size4()?;
            ups.push(x.f_upsample_bilinear2d([h << i, w << i], false, Some(s), Some(s))?);
        }
        let out = self.reduction_conv.forward_t(&Tensor::f_cat(&ups, 1)?, train)?;
        let mut outs = Vec::with_capacity(self.fpn_convs.len());
        for (i, conv) in self.fpn_convs.iter().enumerate() {
            let level = if i == 0 {
                out.shallow_clone()
            } else {
                let k = 1i64 << i;
                match self.pooling {
                    PoolingType::Avg => out.f_avg_pool2d([k, k], [k, k], [0, 0], false, true, None::<i64>)?,
                    PoolingType::Max => out.f_max_pool2d([k, k], [k, k], [0, 0], [1, 1], false)?,
                }
            };
            outs.push(conv.forward_t(&level, train)?);
        }
        Ok(outs)
    }
}
