//! Transformer bricks of Sparse R-CNN / QueryInst, named as torch, MMCV and
//! MMDetection name them so that state-dict keys match: torch's [`Linear`]
//! and [`LayerNorm`], MMCV's [`MultiheadAttention`] and [`Ffn`]
//! (`mmcv/cnn/bricks/transformer.py`, each with its own residual), and
//! MMDetection's [`DynamicConv`] (`mmdet/models/layers/transformer/utils.py`),
//! the per-proposal 1x1 convolution whose weights a linear layer generates
//! from the proposal feature (Sun et al., 2021, <https://arxiv.org/abs/2011.12450>).
//!
//! Shape shorthand: `R` proposals of all images (`N*P`), `L` sequence length
//! (proposals of one image), `N` batch, `E`/`C` channels, `S` the RoI side.
//!
//! Dropout follows torch (active only when `train`), although the configs
//! detc ships use 0.0.

use detc::registry::models::layers::DynamicConvConfig;
use detc::registry::refs::NormCfg;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::{param, xavier_uniform, Activation, ModelError, ModelResult};

/// How a brick initialises its matrices (parameters with more than one dim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixInit {
    /// What torch's constructor does (`nn.Linear`: kaiming_uniform(a=√5),
    /// i.e. U(±1/√fan_in); `nn.MultiheadAttention`: xavier_uniform in_proj).
    TorchDefault,
    /// `nn.init.xavier_uniform_` on every matrix, as the `init_weights` of
    /// `DIIHead` and `DynamicMaskHead` do after construction.
    XavierUniform,
}

impl MatrixInit {
    /// The initialiser of a `(out, in)` linear weight.
    fn linear_weight(self, out_f: i64, in_f: i64) -> Init {
        match self {
            MatrixInit::TorchDefault => torch_linear_uniform(in_f),
            MatrixInit::XavierUniform => xavier_uniform(&[out_f, in_f]),
        }
    }
}

/// torch's default for `nn.Linear` weight and bias: U(±1/√fan_in).
pub fn torch_linear_uniform(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// `nn.Linear`: `weight` (out, in) and an optional `bias` (out,).
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer whose weight follows `init` and whose bias has torch's
    /// default U(±1/√in) (neither MMDetection init touches it).
    pub fn new(
        p: &nn::Path,
        in_f: i64,
        out_f: i64,
        bias: bool,
        init: MatrixInit,
    ) -> ModelResult<Self> {
        let weight = param(
            p,
            "weight",
            &[out_f, in_f],
            init.linear_weight(out_f, in_f),
            true,
        )?;
        let bias = if bias {
            Some(param(
                p,
                "bias",
                &[out_f],
                torch_linear_uniform(in_f),
                true,
            )?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// x: (..., in) -> (..., out).
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        Ok(x.f_linear(&self.weight, self.bias.as_ref())?)
    }
}

/// `nn.LayerNorm` over the last dim: `weight` = 1, `bias` = 0.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(p: &nn::Path, dim: i64, eps: f64) -> ModelResult<Self> {
        Self::with_trainable(p, dim, eps, true)
    }

    /// A layer norm whose weight and bias train only when `trainable` (a
    /// frozen stage's are fixed).
    pub fn with_trainable(p: &nn::Path, dim: i64, eps: f64, trainable: bool) -> ModelResult<Self> {
        Ok(LayerNorm {
            weight: param(p, "weight", &[dim], Init::Const(1.0), trainable)?,
            bias: param(p, "bias", &[dim], Init::Const(0.0), trainable)?,
            eps,
        })
    }

    /// A layer norm from a `norm_cfg` (`{type: LN, eps?: f}`), as mmcv's
    /// `build_norm_layer` builds one; `owner` names the component in errors.
    pub fn from_cfg(p: &nn::Path, dim: i64, cfg: &NormCfg, owner: &str) -> ModelResult<Self> {
        LayerNorm::new(p, dim, Self::eps_of(cfg, owner)?)
    }

    /// The `eps` of an `LN` `norm_cfg` (1e-5 by default); other norms and
    /// keys are refused.
    pub fn eps_of(cfg: &NormCfg, owner: &str) -> ModelResult<f64> {
        let obj = cfg
            .0
            .as_object()
            .ok_or_else(|| ModelError::new(owner, "norm_cfg must be a dict"))?;
        match obj.get("type").and_then(|t| t.as_str()) {
            Some("LN") | Some("LayerNorm") => {}
            other => {
                return Err(ModelError::new(
                    owner,
                    format!("norm_cfg type {other:?} is not supported here (only LN)"),
                ))
            }
        }
        let mut eps = 1e-5;
        for (k, v) in obj {
            match (k.as_str(), v.as_f64()) {
                ("type", _) => {}
                // Frozen LayerNorm parameters are not built; trainable is the default.
                ("requires_grad", _) if v.as_bool() == Some(true) => {}
                ("requires_grad", _) => {
                    return Err(ModelError::new(
                        owner,
                        "norm_cfg requires_grad: false (a frozen LayerNorm) is not supported",
                    ))
                }
                ("eps", Some(e)) => eps = e,
                _ => {
                    return Err(ModelError::new(
                        owner,
                        format!("norm_cfg key `{k}` is not supported for LN"),
                    ))
                }
            }
        }
        Ok(eps)
    }

    /// x: (..., C) -> (..., C).
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let c = self.weight.size()[0];
        Ok(x.f_layer_norm([c], Some(&self.weight), Some(&self.bias), self.eps, true)?)
    }
}

/// MMCV's `MultiheadAttention` around torch's `nn.MultiheadAttention`
/// (sequence first, `batch_first=False`): names `attn.in_proj_weight`,
/// `attn.in_proj_bias`, `attn.out_proj.weight`, `attn.out_proj.bias`; the
/// output is `identity + dropout(proj_drop(attn(q, q, q)))`.
#[derive(Debug)]
pub struct MultiheadAttention {
    pub in_proj_weight: Tensor,
    pub in_proj_bias: Tensor,
    pub out_proj: Linear,
    pub num_heads: i64,
    /// Dropout on the attention weights (torch's `dropout`, MMCV's `attn_drop`).
    pub attn_drop: f64,
    /// MMCV's `proj_drop` and `dropout_layer` probabilities (0 in DIIHead).
    pub proj_drop: f64,
    pub drop_prob: f64,
}

impl MultiheadAttention {
    /// `MultiheadAttention(embed_dims, num_heads, attn_drop)` as DIIHead
    /// builds it. torch initialises `in_proj_weight` with xavier_uniform, both
    /// biases with 0 and `out_proj.weight` as a Linear (`init` may replace it).
    pub fn new(
        p: &nn::Path,
        embed_dims: i64,
        num_heads: i64,
        attn_drop: f64,
        init: MatrixInit,
    ) -> ModelResult<Self> {
        if num_heads < 1 || embed_dims % num_heads != 0 {
            return Err(ModelError::new(
                "MultiheadAttention",
                format!("embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})"),
            ));
        }
        let a = p / "attn";
        let dims = [3 * embed_dims, embed_dims];
        let in_proj_weight = param(&a, "in_proj_weight", &dims, xavier_uniform(&dims), true)?;
        let in_proj_bias = param(
            &a,
            "in_proj_bias",
            &[3 * embed_dims],
            Init::Const(0.0),
            true,
        )?;
        let op = &a / "out_proj";
        let out_proj = Linear {
            weight: param(
                &op,
                "weight",
                &[embed_dims, embed_dims],
                init.linear_weight(embed_dims, embed_dims),
                true,
            )?,
            bias: Some(param(&op, "bias", &[embed_dims], Init::Const(0.0), true)?),
        };
        Ok(MultiheadAttention {
            in_proj_weight,
            in_proj_bias,
            out_proj,
            num_heads,
            attn_drop,
            proj_drop: 0.0,
            drop_prob: 0.0,
        })
    }

    /// Self-attention with the identity residual.
    /// query: (L, N, E) -> (L, N, E).
    pub fn forward_t(&self, query: &Tensor, train: bool) -> ModelResult<Tensor> {
        let (l, n, e) = query.size3().map_err(|_| {
            ModelError::new(
                "MultiheadAttention",
                format!("query must be (L, N, E), got {:?}", query.size()),
            )
        })?;
        let h = self.num_heads;
        let hd = e / h;
        // (L, N, E) -> (L, N, 3E) -> 3 x (L, N, E)
        let qkv = query.f_linear(&self.in_proj_weight, Some(&self.in_proj_bias))?;
        let heads = |i: i64| -> ModelResult<Tensor> {
            // (L, N, E) -> (L, N*H, hd) -> (N*H, L, hd)
            Ok(qkv
                .f_narrow(-1, i * e, e)?
                .f_contiguous()?
                .f_view([l, n * h, hd])?
                .f_transpose(0, 1)?)
        };
        let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
        // torch scales q by sqrt(1 / hd) before the product.
        let q = q.f_mul_scalar((1.0 / hd as f64).sqrt())?;
        // (N*H, L, hd) x (N*H, hd, L) -> (N*H, L, L)
        let w = q
            .f_bmm(&k.f_transpose(-2, -1)?)?
            .f_softmax(-1, q.kind())?;
        let w = dropout(&w, self.attn_drop, train)?;
        // (N*H, L, L) x (N*H, L, hd) -> (N*H, L, hd) -> (L, N*H, hd) -> (L, N, E)
        let out = w
            .f_bmm(&v)?
            .f_transpose(0, 1)?
            .f_contiguous()?
            .f_view([l, n, e])?;
        let out = self.out_proj.forward(&out)?;
        let out = dropout(
            &dropout(&out, self.proj_drop, train)?,
            self.drop_prob,
            train,
        )?;
        Ok(query.f_add(&out)?)
    }
}

/// torch's dropout: identity when not training or when `p` is 0.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> ModelResult<Tensor> {
    if !train || p == 0.0 {
        return Ok(x.shallow_clone());
    }
    Ok(x.f_dropout(p, train)?)
}

/// MMCV's `FFN`: `num_fcs - 1` blocks `Linear, act, Dropout` (names
/// `layers.{i}.0`), a last `Linear` (`layers.{num_fcs-1}`) and a Dropout,
/// then `identity + out` when `add_identity`.
#[derive(Debug)]
pub struct Ffn {
    pub hidden: Vec<Linear>,
    pub out: Linear,
    pub act: Option<Activation>,
    pub ffn_drop: f64,
    pub add_identity: bool,
}

impl Ffn {
    pub fn new(
        p: &nn::Path,
        embed_dims: i64,
        feedforward_channels: i64,
        num_fcs: i64,
        act: Option<Activation>,
        ffn_drop: f64,
        init: MatrixInit,
    ) -> ModelResult<Self> {
        if num_fcs < 2 {
            return Err(ModelError::new(
                "FFN",
                format!("num_fcs should be no less than 2, got {num_fcs}"),
            ));
        }
        let layers = p / "layers";
        let mut hidden = Vec::new();
        let mut in_c = embed_dims;
        for i in 0..num_fcs - 1 {
            let lp = &layers / i / 0;
            hidden.push(Linear::new(&lp, in_c, feedforward_channels, true, init)?);
            in_c = feedforward_channels;
        }
        let out = Linear::new(
            &(&layers / (num_fcs - 1)),
            feedforward_channels,
            embed_dims,
            true,
            init,
        )?;
        Ok(Ffn {
            hidden,
            out,
            act,
            ffn_drop,
            add_identity: true,
        })
    }

    /// x: (..., E) -> (..., E), with `x` as the identity.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let mut y = x.shallow_clone();
        for fc in &self.hidden {
            y = fc.forward(&y)?;
            if let Some(act) = self.act {
                y = act.forward(&y)?;
            }
            y = dropout(&y, self.ffn_drop, train)?;
        }
        let y = dropout(&self.out.forward(&y)?, self.ffn_drop, train)?;
        if self.add_identity {
            Ok(x.f_add(&y)?)
        } else {
            Ok(y)
        }
    }
}

/// MMDetection's `DynamicConv`: `dynamic_layer` turns each proposal feature
/// into the weights of two per-proposal 1x1 convs (in -> feat -> out), each
/// followed by `norm_in`/`norm_out` and the activation; with `with_proj` the
/// (S*S, out) map is flattened and projected by `fc_layer` + `fc_norm` + act.
#[derive(Debug)]
pub struct DynamicConv {
    pub in_channels: i64,
    pub feat_channels: i64,
    pub out_channels: i64,
    pub input_feat_shape: i64,
    pub dynamic_layer: Linear,
    pub norm_in: LayerNorm,
    pub norm_out: LayerNorm,
    pub act: Option<Activation>,
    /// `fc_layer` and `fc_norm`, present when `with_proj`.
    pub proj: Option<(Linear, LayerNorm)>,
}

impl DynamicConv {
    /// Built as torch constructs it (the owner's `init_weights` may then
    /// re-initialise; see [`DynamicConv::with_init`]).
    pub fn new(cfg: &DynamicConvConfig, p: &nn::Path) -> ModelResult<Self> {
        Self::with_init(cfg, p, MatrixInit::TorchDefault)
    }

    /// As [`DynamicConv::new`], with the matrices drawn by `init`.
    pub fn with_init(cfg: &DynamicConvConfig, p: &nn::Path, init: MatrixInit) -> ModelResult<Self> {
        let in_c = cfg.in_channels as i64;
        let feat = cfg.feat_channels as i64;
        let out_c = cfg
            .out_channels
            .filter(|&c| c > 0)
            .unwrap_or(cfg.in_channels) as i64;
        let s = cfg.input_feat_shape as i64;
        let norm_cfg = cfg.norm_cfg.as_ref().ok_or_else(|| {
            ModelError::new(
                "DynamicConv",
                "norm_cfg must be set (MMDetection builds it unconditionally)",
            )
        })?;
        let dynamic_layer = Linear::new(
            &(p / "dynamic_layer"),
            in_c,
            in_c * feat + out_c * feat,
            true,
            init,
        )?;
        let norm_in = LayerNorm::from_cfg(&(p / "norm_in"), feat, norm_cfg, "DynamicConv")?;
        let norm_out = LayerNorm::from_cfg(&(p / "norm_out"), out_c, norm_cfg, "DynamicConv")?;
        let act = Activation::from_cfg(cfg.act_cfg.as_ref(), "DynamicConv")?;
        let proj = if cfg.with_proj {
            Some((
                Linear::new(&(p / "fc_layer"), out_c * s * s, out_c, true, init)?,
                LayerNorm::from_cfg(&(p / "fc_norm"), out_c, norm_cfg, "DynamicConv")?,
            ))
        } else {
            None
        };
        Ok(DynamicConv {
            in_channels: in_c,
            feat_channels: feat,
            out_channels: out_c,
            input_feat_shape: s,
            dynamic_layer,
            norm_in,
            norm_out,
            act,
            proj,
        })
    }

    fn activate(&self, x: Tensor) -> ModelResult<Tensor> {
        match self.act {
            Some(a) => a.forward(&x),
            None => Ok(x),
        }
    }

    /// param_feature: (R, C_in); input_feature: (R, C_in, S, S).
    /// Returns (R, out) with `with_proj`, else (R, S*S, out).
    pub fn forward(&self, param_feature: &Tensor, input_feature: &Tensor) -> ModelResult<Tensor> {
        let (r, c, h, w) = input_feature
            .size4()
            .map_err(|_| self.shape_err(param_feature, input_feature))?;
        if c != self.in_channels
            || param_feature.size() != [r, self.in_channels]
            || (self.proj.is_some() && h * w != self.input_feat_shape * self.input_feat_shape)
        {
            return Err(self.shape_err(param_feature, input_feature));
        }
        let (n_in, n_out) = (
            self.in_channels * self.feat_channels,
            self.out_channels * self.feat_channels,
        );
        // (R, C, S, S) -> (R, C, S*S) -> (R, S*S, C)
        let x = input_feature.f_flatten(2, -1)?.f_permute([0, 2, 1])?;
        let params = self.dynamic_layer.forward(param_feature)?;
        // (R, n_in + n_out) -> (R, C_in, feat) and (R, feat, out)
        let param_in =
            params
                .f_narrow(1, 0, n_in)?
                .f_view([-1, self.in_channels, self.feat_channels])?;
        let param_out =
            params
                .f_narrow(1, n_in, n_out)?
                .f_view([-1, self.feat_channels, self.out_channels])?;
        // (R, S*S, C_in) x (R, C_in, feat) -> (R, S*S, feat)
        let f = self.activate(self.norm_in.forward(&x.f_bmm(&param_in)?)?)?;
        // (R, S*S, feat) x (R, feat, out) -> (R, S*S, out)
        let f = self.activate(self.norm_out.forward(&f.f_bmm(&param_out)?)?)?;
        match &self.proj {
            Some((fc_layer, fc_norm)) => {
                // (R, S*S, out) -> (R, S*S*out) -> (R, out)
                let f = fc_layer.forward(&f.f_flatten(1, -1)?)?;
                self.activate(fc_norm.forward(&f)?)
            }
            None => Ok(f),
        }
    }

    fn shape_err(&self, param_feature: &Tensor, input_feature: &Tensor) -> ModelError {
        ModelError::new(
            "DynamicConv",
            format!(
                "expects param_feature (R, {c}) and input_feature (R, {c}, {s}, {s}), got {:?} and {:?}",
                param_feature.size(),
                input_feature.size(),
                c = self.in_channels,
                s = self.input_feat_shape
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, tensor};
    use crate::models::roi_heads::bbox_heads::dii_head::tests::fixture;
    use crate::models::weights::{load_state_dict, Shapes, with_prefix};
    use tch::{nn::VarStore, Device};

    fn load(vs: &VarStore, prefix: &str) {
        let sd = with_prefix(fixture(), prefix).unwrap();
        let report = load_state_dict(vs, "", &sd, Shapes::Refuse).unwrap();
        assert!(report.is_exact(), "{prefix}: {report:?}");
    }

    #[test]
    fn dynamic_conv_without_proj_equals_mmdet() {
        let fx = fixture();
        let cfg: DynamicConvConfig = serde_json::from_value(serde_json::json!({
            "in_channels": 8, "feat_channels": 4, "input_feat_shape": 5, "with_proj": false
        }))
        .unwrap();
        let vs = VarStore::new(Device::Cpu);
        let dc = DynamicConv::new(&cfg, &vs.root()).unwrap();
        load(&vs, "dc.sd");
        let out = dc
            .forward(&tensor(fx, "dc.param"), &tensor(fx, "dc.input"))
            .unwrap();
        assert_close(
            &out,
            &tensor(fx, "dc.out"),
            1e-6,
            1e-5,
            "DynamicConv(with_proj=False)",
        );
        let bad = dc.forward(
            &tensor(fx, "dc.param"),
            &tensor(fx, "dc.input").narrow(1, 0, 4),
        );
        assert_eq!(bad.unwrap_err().component, "DynamicConv");
    }

    #[test]
    fn ffn_with_three_fcs_equals_mmcv() {
        let fx = fixture();
        let vs = VarStore::new(Device::Cpu);
        let ffn = Ffn::new(
            &vs.root(),
            8,
            12,
            3,
            Some(Activation::Relu),
            0.0,
            MatrixInit::TorchDefault,
        )
        .unwrap();
        load(&vs, "ffn.sd");
        let out = ffn.forward_t(&tensor(fx, "ffn.in"), true).unwrap();
        assert_close(&out, &tensor(fx, "ffn.out"), 1e-6, 1e-5, "FFN(num_fcs=3)");
    }

    #[test]
    fn linear_torch_default_init_is_uniform_in_one_over_sqrt_fan_in() {
        let vs = VarStore::new(Device::Cpu);
        let l = Linear::new(&vs.root(), 64, 32, true, MatrixInit::TorchDefault).unwrap();
        let max = |t: &Tensor| t.abs().max().double_value(&[]);
        assert!(max(&l.weight) <= 0.125 && max(&l.weight) > 0.1);
        assert!(max(l.bias.as_ref().unwrap()) <= 0.125);
    }

    #[test]
    fn dropout_acts_only_in_training() {
        let _seeded = crate::models::layers::fixtures::seeded();
        let vs = VarStore::new(Device::Cpu);
        let mha = MultiheadAttention::new(&vs.root(), 8, 2, 0.5, MatrixInit::TorchDefault).unwrap();
        let x = Tensor::randn([3, 2, 8], (Kind::Float, Device::Cpu));
        let a = mha.forward_t(&x, false).unwrap();
        let b = mha.forward_t(&x, false).unwrap();
        assert_eq!(a, b);
        tch::manual_seed(0);
        let t = mha.forward_t(&x, true).unwrap();
        assert!((t - &a).abs().max().double_value(&[]) > 0.0);
    }
}
