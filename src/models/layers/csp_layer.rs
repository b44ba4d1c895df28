//! The building blocks of RTMDet's CSPNeXt backbone and CSPNeXtPAFPN neck,
//! as `mmdet/models/layers/csp_layer.py`, `se_layer.py` (`ChannelAttention`),
//! `backbones/csp_darknet.py` (`SPPBottleneck`) and MMCV's
//! `DepthwiseSeparableConvModule`:
//!
//! - [`CspConv`]: a `ConvModule` (conv, norm, act), or a depthwise
//!   separable one (`depthwise_conv` k x k per channel, then
//!   `pointwise_conv` 1x1, each a ConvModule);
//! - [`CSPLayer`]: `main_conv` and `short_conv` (1x1 to `out * expand_ratio`
//!   channels), the main path through `blocks` of [`CSPNeXtBlock`]s (a 3x3
//!   conv, then a depthwise separable 5x5, with a residual when asked),
//!   both paths concatenated, gated by [`ChannelAttention`] when asked, and
//!   `final_conv` (1x1);
//! - [`SPPBottleneck`]: a 1x1 conv to half the channels, max pools of
//!   several sizes concatenated with their input, a 1x1 conv.
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` a map's size.

use tch::nn::{self, Init};
use tch::Tensor;

use super::{Activation, Conv2d, ConvGeom, ConvKind, ConvModule, ConvModuleOpts, ModelResult, NormSpec};

/// How a CSP module's convs start.
#[derive(Debug, Clone, Copy)]
pub enum CspInit {
    /// MMDetection's `Kaiming(a=sqrt(5), uniform, fan_in)` on every conv
    /// (torch's own conv init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))), bias 0:
    /// the CSPNeXt and CSPNeXtPAFPN default `init_cfg`.
    TorchUniform,
    /// N(0, std), bias 0 (RTMDet's head).
    Normal { std: f64 },
    /// What the modules start from without an `init_cfg` (or before a
    /// `Pretrained` one loads): MMCV ConvModule's Kaiming normal (fan-out,
    /// ReLU), bias 0; torch's own init for the attention's plain conv.
    ConvModule,
}

impl CspInit {
    /// The weight initialiser of a conv of weight shape `dims` (Cout, Cin/groups, k, k).
    pub fn weight(self, dims: [i64; 4]) -> Init {
        match self {
            CspInit::TorchUniform => {
                let bound = 1.0 / ((dims[1] * dims[2] * dims[3]) as f64).sqrt();
                Init::Uniform { lo: -bound, up: bound }
            }
            CspInit::Normal { std } => Init::Randn { mean: 0.0, stdev: std },
            CspInit::ConvModule => super::kaiming_normal_fan_out(&dims),
        }
    }
}

/// What every conv of a CSP module is built with.
#[derive(Debug, Clone)]
pub struct CspSpec {
    pub norm: NormSpec,
    pub act: Option<Activation>,
    pub init: CspInit,
    /// False in a frozen stage.
    pub trainable: bool,
}

impl CspSpec {
    /// A ConvModule `in_c -> out_c` of `geom` under `p` (norm, act, no bias).
    pub fn conv_module(&self, p: &nn::Path, in_c: i64, out_c: i64, geom: ConvGeom) -> ModelResult<ConvModule> {
        let opts = ConvModuleOpts {
            geom,
            bias: None,
            norm: Some(self.norm.clone()),
            act: self.act,
            init: self.init.weight([out_c, in_c / geom.groups, geom.kernel, geom.kernel]),
            conv: ConvKind::Plain,
        };
        ConvModule::with_trainable(p, in_c, out_c, &opts, self.trainable)
    }

    /// A `k`x`k` [`CspConv`] of `stride` with `k / 2` padding, depthwise
    /// separable when `depthwise`.
    pub fn conv(&self, p: &nn::Path, in_c: i64, out_c: i64, k: i64, stride: i64, depthwise: bool) -> ModelResult<CspConv> {
        let geom = ConvGeom::k(k).stride(stride).padding(k / 2);
        Ok(if depthwise {
            CspConv::Separable {
                depthwise: self.conv_module(&(p / "depthwise_conv"), in_c, in_c, geom.groups(in_c))?,
                pointwise: self.conv_module(&(p / "pointwise_conv"), in_c, out_c, ConvGeom::k(1))?,
            }
        } else {
            CspConv::Plain(self.conv_module(p, in_c, out_c, geom)?)
        })
    }
}

/// A `ConvModule`, or MMCV's `DepthwiseSeparableConvModule`.
#[derive(Debug)]
pub enum CspConv {
    Plain(ConvModule),
    Separable { depthwise: ConvModule, pointwise: ConvModule },
}

impl CspConv {
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        match self {
            CspConv::Plain(c) => c.forward_t(x, train),
            CspConv::Separable { depthwise, pointwise } => pointwise.forward_t(&depthwise.forward_t(x, train)?, train),
        }
    }
}

/// `ChannelAttention`: `x * hardsigmoid(fc(mean over H, W of x))`, `fc` a
/// biased 1x1 conv (C -> C).
#[derive(Debug)]
pub struct ChannelAttention {
    fc: Conv2d,
}

impl ChannelAttention {
    fn new(p: &nn::Path, c: i64, spec: &CspSpec) -> ModelResult<Self> {
        let fc = match spec.init {
            // A plain `nn.Conv2d`, not a ConvModule: torch's init, bias included.
            CspInit::ConvModule => super::make_conv_trainable(&(p / "fc"), c, c, ConvGeom::k(1), super::ConvInit::TorchDefault, spec.trainable)?,
            init => Conv2d::new(&(p / "fc"), c, c, ConvGeom::k(1), true, init.weight([c, c, 1, 1]), spec.trainable)?,
        };
        Ok(ChannelAttention { fc })
    }

    /// x: (N, C, H, W) -> the same, each channel scaled by its gate.
    fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let pooled = x.f_mean_dim(&[-2i64, -1][..], true, x.kind())?;
        Ok(x.f_mul(&self.fc.forward(&pooled)?.f_hardsigmoid()?)?)
    }
}

/// `CSPNeXtBlock`: a 3x3 conv (`conv1`, depthwise separable with
/// `use_depthwise`) and a depthwise separable 5x5 (`conv2`), plus the
/// input when `add_identity` and the channels agree.
#[derive(Debug)]
pub struct CSPNeXtBlock {
    conv1: CspConv,
    conv2: CspConv,
    add_identity: bool,
}

impl CSPNeXtBlock {
    fn new(p: &nn::Path, c: i64, add_identity: bool, depthwise: bool, spec: &CspSpec) -> ModelResult<Self> {
        Ok(CSPNeXtBlock {
            conv1: spec.conv(&(p / "conv1"), c, c, 3, 1, depthwise)?,
            conv2: spec.conv(&(p / "conv2"), c, c, 5, 1, true)?,
            add_identity,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let y = self.conv2.forward_t(&self.conv1.forward_t(x, train)?, train)?;
        Ok(if self.add_identity { y.f_add(x)? } else { y })
    }
}

/// What a [`CSPLayer`] is made of besides its channels.
#[derive(Debug, Clone, Copy)]
pub struct CspLayerOpts {
    pub num_blocks: i64,
    pub add_identity: bool,
    pub depthwise: bool,
    pub expand_ratio: f64,
    pub channel_attention: bool,
}

/// `CSPLayer` with CSPNeXt blocks (`use_cspnext_block=True`).
#[derive(Debug)]
pub struct CSPLayer {
    main_conv: ConvModule,
    short_conv: ConvModule,
    final_conv: ConvModule,
    blocks: Vec<CSPNeXtBlock>,
    attention: Option<ChannelAttention>,
}

impl CSPLayer {
    /// `in_c -> out_c` under `p`: `main_conv`, `short_conv`, `final_conv`,
    /// `blocks.{i}.*`, `attention.fc`.
    pub fn new(p: &nn::Path, in_c: i64, out_c: i64, opts: CspLayerOpts, spec: &CspSpec) -> ModelResult<Self> {
        // MMDetection's int(out_channels * expand_ratio).
        let mid = (out_c as f64 * opts.expand_ratio) as i64;
        let one = ConvGeom::k(1);
        let blocks = (0..opts.num_blocks)
            .map(|i| CSPNeXtBlock::new(&(p / "blocks" / i), mid, opts.add_identity, opts.depthwise, spec))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(CSPLayer {
            main_conv: spec.conv_module(&(p / "main_conv"), in_c, mid, one)?,
            short_conv: spec.conv_module(&(p / "short_conv"), in_c, mid, one)?,
            final_conv: spec.conv_module(&(p / "final_conv"), 2 * mid, out_c, one)?,
            blocks,
            attention: if opts.channel_attention { Some(ChannelAttention::new(&(p / "attention"), 2 * mid, spec)?) } else { None },
        })
    }

    /// x: (N, in_c, H, W) -> (N, out_c, H, W).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let short = self.short_conv.forward_t(x, train)?;
        let mut main = self.main_conv.forward_t(x, train)?;
        for block in &self.blocks {
            main = block.forward_t(&main, train)?;
        }
        let mut both = Tensor::f_cat(&[main, short], 1)?;
        if let Some(attention) = &self.attention {
            both = attention.forward(&both)?;
        }
        self.final_conv.forward_t(&both, train)
    }
}

/// `SPPBottleneck`: `conv1` (1x1 to half the channels), its max pools of
/// `kernel_sizes` (stride 1, same size) concatenated after it, `conv2` (1x1).
#[derive(Debug)]
pub struct SPPBottleneck {
    conv1: ConvModule,
    kernel_sizes: Vec<i64>,
    conv2: ConvModule,
}

impl SPPBottleneck {
    pub fn new(p: &nn::Path, in_c: i64, out_c: i64, kernel_sizes: &[i64], spec: &CspSpec) -> ModelResult<Self> {
        let mid = in_c / 2;
        let cat = mid * (kernel_sizes.len() as i64 + 1);
        Ok(SPPBottleneck {
            conv1: spec.conv_module(&(p / "conv1"), in_c, mid, ConvGeom::k(1))?,
            kernel_sizes: kernel_sizes.to_vec(),
            conv2: spec.conv_module(&(p / "conv2"), cat, out_c, ConvGeom::k(1))?,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let y = self.conv1.forward_t(x, train)?;
        let mut parts = vec![y.shallow_clone()];
        for &k in &self.kernel_sizes {
            parts.push(y.f_max_pool2d([k, k], [1, 1], [k / 2, k / 2], [1, 1], false)?);
        }
        self.conv2.forward_t(&Tensor::f_cat(&parts, 1)?, train)
    }
}

/// The `init_cfg` of a CSPNeXt or CSPNeXtPAFPN: MMDetection's default
/// `Kaiming` (`a=sqrt(5)`, uniform, `fan_in`, `leaky_relu`, bias 0: torch's
/// own conv init), null (the modules' own inits), or, for a backbone
/// (`pretrained_ok`), one `Pretrained` dict, returned to be loaded after the
/// build.
pub fn csp_init_cfg(
    init_cfg: Option<&detc::registry::models::common::OneOrMany<detc::registry::refs::InitCfg>>,
    owner: &str,
    pretrained_ok: bool,
) -> ModelResult<(CspInit, Option<detc::registry::models::weight_init::PretrainedInitConfig>)> {
    use detc::registry::models::weight_init::{Distribution, FanMode, KaimingInitConfig};
    let refuse = || {
        let also = if pretrained_ok { " or one `Pretrained` dict" } else { "" };
        super::ModelError::new(
            owner,
            format!("init_cfg must be MMDetection's default `Kaiming` (a: sqrt(5), distribution: uniform, mode: fan_in, nonlinearity: leaky_relu), null{also}"),
        )
    };
    let Some(init) = init_cfg else { return Ok((CspInit::ConvModule, None)) };
    let items = init.as_vec();
    let [item] = items.as_slice() else { return Err(refuse()) };
    let mut map = item.0.as_object().cloned().unwrap_or_default();
    match map.remove("type").as_ref().and_then(|t| t.as_str()) {
        Some("Pretrained") if pretrained_ok => {
            Ok((CspInit::ConvModule, crate::models::backbones::resnet::pretrained_init(None, Some(init), owner)?))
        }
        Some("Kaiming") => {
            let k: KaimingInitConfig = serde_json::from_value(serde_json::Value::Object(map)).map_err(|_| refuse())?;
            use detc::registry::models::common::StrOrList;
            let conv_layers = match &k.layer {
                Some(StrOrList::One(l)) => l == "Conv2d",
                Some(StrOrList::List(ls)) => ls.iter().any(|l| l == "Conv2d"),
                None => false,
            };
            let default = (k.a - 5f64.sqrt()).abs() < 1e-9
                && k.mode == FanMode::FanIn
                && k.nonlinearity == "leaky_relu"
                && k.distribution == Distribution::Uniform
                && k.bias == 0.0
                && k.bias_prob.is_none()
                && k.r#override.is_none()
                && conv_layers;
            if default { Ok((CspInit::TorchUniform, None)) } else { Err(refuse()) }
        }
        _ => Err(refuse()),
    }
}
