//! Shared bricks of the models, named as MMCV names them so that state-dict
//! keys match MMDetection's: a [`Conv2d`] (`weight`, `bias`), a
//! [`BatchNorm2d`] with torch's five entries (`weight`, `bias`,
//! `running_mean`, `running_var`, `num_batches_tracked`), and MMCV's
//! [`ConvModule`] (`conv` + `bn`/`gn` + activation, `mmcv/cnn/bricks/conv_module.py`).
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` feature height and width.
//!
//! tch's own `nn::conv2d` / `nn::batch_norm2d` are not used: tch's batch norm
//! has no `num_batches_tracked`, initialises its weight uniformly (torch uses
//! ones), and neither can create frozen (non-trainable) parameters, which
//! `frozen_stages` and `norm_cfg.requires_grad: false` need.

// The detectors consume these; until they land the binary reads only part of them.
#![allow(dead_code, unused_imports)]

pub mod context_block;
pub mod csp_layer;
pub mod deform_conv;
pub mod error;
pub mod generalized_attention;
#[cfg(test)]
pub mod fixtures;
pub mod non_local;
pub mod norm;
pub mod transformer;

pub use error::{ModelError, ModelResult};
pub use norm::{BatchNorm2d, GroupNorm, Norm, NormSpec};

use detc::registry::models::layers::{Conv2dConfig, ConvWSConfig, GeluApproximate, GeluConfig, PaddingMode};
use detc::registry::refs::{ActivationCfg, ConvCfg};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Creates a parameter `name` under `p`, trainable (in the optimizer, with
/// gradients) or frozen (`requires_grad = false`, outside the optimizer).
pub fn param(
    p: &nn::Path,
    name: &str,
    dims: &[i64],
    init: Init,
    trainable: bool,
) -> ModelResult<Tensor> {
    let t = nn::init::f_init(init, dims, p.device(), Kind::Float)?;
    Ok(p.add(name, t, trainable))
}

/// The dtype to reduce `kind` values in: float64 for float64 (a run in
/// `DETC_DTYPE=float64`), else float32 (also for half inputs under autocast).
pub fn reduction_kind(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// A buffer (never trainable): BatchNorm's running statistics.
pub fn buffer(p: &nn::Path, name: &str, t: Tensor) -> Tensor {
    p.add(name, t.to_device(p.device()), false)
}

/// The names of `vs` that repeat a tensor another name already holds (a
/// conv shared across levels, as RTMDet's head registers it under each
/// level's name): every name but the first in sort order of each storage.
/// Checkpoints keep them all, as PyTorch's state dict does; the parameter
/// trains once, under its first name.
pub fn shared_aliases(vs: &nn::VarStore) -> std::collections::HashSet<String> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen = std::collections::HashSet::new();
    named
        .into_iter()
        .filter(|(_, t)| t.numel() > 0 && !seen.insert((t.data_ptr() as usize, t.size())))
        .map(|(name, _)| name)
        .collect()
}

/// `nn.init.xavier_uniform_` with gain 1 for a conv or linear weight of `dims`
/// (`[out, in, kh, kw]` or `[out, in]`): U(-b, b), b = sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform(dims: &[i64]) -> Init {
    xavier(dims, 1.0, true)
}

/// `nn.init.xavier_uniform_` (U(-b, b), b = gain * sqrt(6 / (fan_in +
/// fan_out))) or `xavier_normal_` (N(0, gain * sqrt(2 / (fan_in + fan_out))))
/// for a weight of `dims`.
pub fn xavier(dims: &[i64], gain: f64, uniform: bool) -> Init {
    let receptive: i64 = dims.iter().skip(2).product();
    let fan_in = dims.get(1).copied().unwrap_or(1) * receptive;
    let fan_out = dims.first().copied().unwrap_or(1) * receptive;
    let fans = (fan_in + fan_out).max(1) as f64;
    if uniform {
        let bound = gain * (6.0 / fans).sqrt();
        Init::Uniform {
            lo: -bound,
            up: bound,
        }
    } else {
        Init::Randn {
            mean: 0.0,
            stdev: gain * (2.0 / fans).sqrt(),
        }
    }
}

/// MMEngine's `Caffe2Xavier` (Kaiming uniform with `a = 1`, fan-in) of a
/// weight with `fan_in` inputs: U(+-sqrt(3 / fan_in)).
pub fn caffe2_xavier(fan_in: i64) -> Init {
    let bound = (3.0 / fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// MMEngine's `KaimingInit` default (`mode='fan_out'`, `nonlinearity='relu'`,
/// normal): N(0, sqrt(2 / fan_out)).
pub fn kaiming_normal_fan_out(dims: &[i64]) -> Init {
    let receptive: i64 = dims.iter().skip(2).product();
    let fan_out = dims.first().copied().unwrap_or(1) * receptive;
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_out.max(1) as f64).sqrt(),
    }
}

/// Geometry of a 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub dilation: i64,
    pub groups: i64,
}

impl ConvGeom {
    /// A `k`x`k` conv with stride 1, no padding.
    pub fn k(kernel: i64) -> Self {
        ConvGeom {
            kernel,
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
    pub fn stride(self, stride: i64) -> Self {
        ConvGeom { stride, ..self }
    }
    pub fn padding(self, padding: i64) -> Self {
        ConvGeom { padding, ..self }
    }
    pub fn dilation(self, dilation: i64) -> Self {
        ConvGeom { dilation, ..self }
    }
    pub fn groups(self, groups: i64) -> Self {
        ConvGeom { groups, ..self }
    }
}

/// `nn.ConvTranspose2d(Cin, Cout, s, stride=s)` (the mask heads' `deconv`
/// upsampling): `weight` (Cin, Cout, s, s), `bias` (Cout,).
#[derive(Debug)]
pub struct Deconv {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: i64,
}

impl Deconv {
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        Ok(x.f_conv_transpose2d(
            &self.weight,
            Some(&self.bias),
            [self.stride; 2],
            [0; 2],
            [0; 2],
            1,
            [1; 2],
        )?)
    }
}

/// A parsed `conv_cfg`: torch's `Conv2d` (null, `Conv`, `Conv2d`) or MMCV's
/// weight-standardised `ConvWS` (`ConvWS2d`, Qiao et al., 2019).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ConvKind {
    #[default]
    Plain,
    /// Each output channel's weights standardised to mean 0, (unbiased) std
    /// 1 before every convolution: `(w - mean) / (std + eps)`.
    Standardized { eps: f64 },
}

impl ConvKind {
    /// Parses a `conv_cfg` of the component `owner` (named in errors).
    pub fn from_cfg(cfg: Option<&ConvCfg>, owner: &str) -> ModelResult<Self> {
        let Some(cfg) = cfg else { return Ok(ConvKind::Plain) };
        let mut map = cfg.0.as_object().cloned().ok_or_else(|| ModelError::new(owner, "conv_cfg must be a dict"))?;
        let kind = map.remove("type").and_then(|t| t.as_str().map(str::to_string));
        let invalid = |e: serde_json::Error| ModelError::new(owner, format!("invalid conv_cfg: {e}"));
        match kind.as_deref() {
            Some("Conv" | "Conv2d") => {
                let c: Conv2dConfig = serde_json::from_value(serde_json::Value::Object(map)).map_err(invalid)?;
                match c.padding_mode {
                    None | Some(PaddingMode::Zeros) => Ok(ConvKind::Plain),
                    Some(other) => Err(ModelError::new(owner, format!("conv_cfg padding_mode {other:?} is not supported (zeros only)"))),
                }
            }
            Some("ConvWS") => {
                let c: ConvWSConfig = serde_json::from_value(serde_json::Value::Object(map)).map_err(invalid)?;
                Ok(ConvKind::Standardized { eps: c.eps })
            }
            other => Err(ModelError::new(owner, format!("conv_cfg type {other:?} is not supported (Conv2d, ConvWS)"))),
        }
    }
}

/// `nn.Conv2d`: `weight` `(out, in/groups, k, k)` and an optional `bias` `(out,)`.
/// As `ConvWS2d` its weight is standardised in every forward pass (the
/// parameter keeps the raw weight, and its name).
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub geom: ConvGeom,
    pub kind: ConvKind,
}

impl Conv2d {
    /// A conv whose weight is drawn from `init` and whose bias (when `bias`) is 0,
    /// as MMEngine's initialisers leave it.
    pub fn new(
        p: &nn::Path,
        in_c: i64,
        out_c: i64,
        geom: ConvGeom,
        bias: bool,
        init: Init,
        trainable: bool,
    ) -> ModelResult<Self> {
        let dims = [out_c, in_c / geom.groups.max(1), geom.kernel, geom.kernel];
        let weight = param(p, "weight", &dims, init, trainable)?;
        let bias = if bias {
            Some(param(p, "bias", &[out_c], Init::Const(0.0), trainable)?)
        } else {
            None
        };
        Ok(Conv2d { weight, bias, geom, kind: ConvKind::Plain })
    }

    /// The same conv as `kind` (`conv_cfg`): the parameters are the same.
    pub fn with_kind(self, kind: ConvKind) -> Self {
        Conv2d { kind, ..self }
    }

    /// The weight the convolution uses: MMCV's `conv_ws_2d` standardisation
    /// for `ConvWS`, per output channel over its `in/groups * k * k` values.
    fn effective_weight(&self) -> ModelResult<Tensor> {
        let ConvKind::Standardized { eps } = self.kind else { return Ok(self.weight.shallow_clone()) };
        let c = self.weight.size()[0];
        let flat = self.weight.f_reshape([c, -1])?;
        let mean = flat.f_mean_dim(1, true, None)?.f_view([c, 1, 1, 1])?;
        let std = flat.f_std_correction(1, 1, true)?.f_view([c, 1, 1, 1])?;
        Ok(self.weight.f_sub(&mean)?.f_div(&std.f_add_scalar(eps)?)?)
    }

    /// x: (N, Cin, H, W) -> (N, Cout, H', W').
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let g = self.geom;
        Ok(x.f_conv2d(
            &self.effective_weight()?,
            self.bias.as_ref(),
            [g.stride; 2],
            [g.padding; 2],
            [g.dilation; 2],
            g.groups,
        )?)
    }
}

/// How a biased conv starts: mmdet's `init_cfg` (`Normal` on `Conv2d`, bias
/// a constant), torch's own `Conv2d` init when `init_cfg` is null, or one of
/// MMEngine's initialisers.
#[derive(Debug, Clone, Copy)]
pub enum ConvInit {
    Normal { mean: f64, std: f64, bias: f64 },
    TorchDefault,
    /// MMCV `ConvModule`'s own: Kaiming normal (fan-out, ReLU), bias 0.
    Kaiming,
    /// `kaiming_init(mode='fan_in')`: N(0, sqrt(2 / fan_in)), bias 0.
    KaimingFanIn,
    /// `constant_init(val=0)`: weight and bias 0.
    Zeros,
    /// MMEngine's `Caffe2Xavier` (Kaiming uniform, `a = 1`, fan-in): U(+-sqrt(3 / fan_in)), bias 0.
    Caffe2Xavier,
}

/// A trainable biased conv under `p` initialised as `init` says.
pub fn make_conv(p: &nn::Path, in_c: i64, out_c: i64, geom: ConvGeom, init: ConvInit) -> ModelResult<Conv2d> {
    make_conv_trainable(p, in_c, out_c, geom, init, true)
}

/// A biased conv under `p` initialised as `init` says, frozen unless `trainable`.
pub fn make_conv_trainable(
    p: &nn::Path,
    in_c: i64,
    out_c: i64,
    geom: ConvGeom,
    init: ConvInit,
    trainable: bool,
) -> ModelResult<Conv2d> {
    let fan_in = in_c / geom.groups.max(1) * geom.kernel * geom.kernel;
    // torch's `reset_parameters`: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), bias the same.
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let (w_init, bias) = match init {
        ConvInit::Normal { mean, std, bias } => (Init::Randn { mean, stdev: std }, Some(bias)),
        ConvInit::TorchDefault => (Init::Uniform { lo: -bound, up: bound }, None),
        ConvInit::Kaiming => (kaiming_normal_fan_out(&[out_c, in_c / geom.groups.max(1), geom.kernel, geom.kernel]), Some(0.0)),
        ConvInit::KaimingFanIn => (Init::Randn { mean: 0.0, stdev: (2.0 / fan_in.max(1) as f64).sqrt() }, Some(0.0)),
        ConvInit::Zeros => (Init::Const(0.0), Some(0.0)),
        ConvInit::Caffe2Xavier => (caffe2_xavier(fan_in), Some(0.0)),
    };
    let conv = Conv2d::new(p, in_c, out_c, geom, true, w_init, trainable)?;
    if let Some(b) = &conv.bias {
        tch::no_grad(|| -> ModelResult<()> {
            let mut b = b.shallow_clone();
            match bias {
                Some(v) => {
                    let _ = b.f_fill_(v)?;
                }
                None => {
                    let _ = b.f_uniform_(-bound, bound)?;
                }
            }
            Ok(())
        })?;
    }
    Ok(conv)
}

/// The activations `act_cfg` may name here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// `SiLU` / MMCV's `Swish`: `x * sigmoid(x)`.
    Silu,
    /// `GELU`: the exact erf form, or the tanh approximation.
    Gelu { tanh: bool },
}

impl Activation {
    /// Parses an `act_cfg` dict; `None` (null) means no activation.
    pub fn from_cfg(cfg: Option<&ActivationCfg>, owner: &str) -> ModelResult<Option<Self>> {
        let Some(cfg) = cfg else { return Ok(None) };
        match cfg.0.get("type").and_then(|t| t.as_str()) {
            Some("ReLU") => Ok(Some(Activation::Relu)),
            Some("SiLU" | "Swish") => Ok(Some(Activation::Silu)),
            Some("GELU") => {
                let mut map = cfg.0.as_object().cloned().unwrap_or_default();
                map.remove("type");
                let gelu: GeluConfig = serde_json::from_value(serde_json::Value::Object(map))
                    .map_err(|e| ModelError::new(owner, format!("invalid act_cfg: {e}")))?;
                Ok(Some(Activation::Gelu { tanh: gelu.approximate == GeluApproximate::Tanh }))
            }
            other => Err(ModelError::new(
                owner,
                format!("act_cfg type {other:?} is not supported yet (ReLU, SiLU, Swish, GELU)"),
            )),
        }
    }

    pub fn forward(self, x: &Tensor) -> ModelResult<Tensor> {
        match self {
            Activation::Relu => Ok(x.f_relu()?),
            Activation::Silu => Ok(x.f_silu()?),
            Activation::Gelu { tanh } => Ok(x.f_gelu(if tanh { "tanh" } else { "none" })?),
        }
    }
}

/// Options of a [`ConvModule`] beyond its channels.
#[derive(Debug, Clone)]
pub struct ConvModuleOpts {
    pub geom: ConvGeom,
    /// `bias='auto'` when `None`: a bias exactly when there is no norm layer.
    pub bias: Option<bool>,
    pub norm: Option<NormSpec>,
    pub act: Option<Activation>,
    /// Initialiser of the conv weight (the bias starts at 0).
    pub init: Init,
    /// `conv_cfg`: a plain or a weight-standardised conv.
    pub conv: ConvKind,
}

/// MMCV's `ConvModule` in its default order (conv, norm, act): names
/// `conv.weight`, `conv.bias`, `bn.*` (or `gn.*`).
#[derive(Debug)]
pub struct ConvModule {
    pub conv: Conv2d,
    pub norm: Option<Norm>,
    pub act: Option<Activation>,
}

impl ConvModule {
    pub fn new(p: &nn::Path, in_c: i64, out_c: i64, opts: &ConvModuleOpts) -> ModelResult<Self> {
        Self::with_trainable(p, in_c, out_c, opts, true)
    }

    /// As [`ConvModule::new`]; `trainable: false` for a frozen stage.
    pub fn with_trainable(p: &nn::Path, in_c: i64, out_c: i64, opts: &ConvModuleOpts, trainable: bool) -> ModelResult<Self> {
        let bias = opts.bias.unwrap_or(opts.norm.is_none());
        let conv = Conv2d::new(&(p / "conv"), in_c, out_c, opts.geom, bias, opts.init, trainable)?.with_kind(opts.conv);
        let norm = match &opts.norm {
            Some(spec) => Some(Norm::new(&(p / spec.abbr()), out_c, spec, trainable)?),
            None => None,
        };
        Ok(ConvModule {
            conv,
            norm,
            act: opts.act,
        })
    }

    /// x: (N, Cin, H, W) -> (N, Cout, H', W'); `train` switches batch statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut y = self.conv.forward(x)?;
        if let Some(norm) = &self.norm {
            y = norm.forward_t(&y, train)?;
        }
        if let Some(act) = self.act {
            y = act.forward(&y)?;
        }
        Ok(y)
    }
}
