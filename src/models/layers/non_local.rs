//! MMCV's `NonLocal2d` (Wang et al., "Non-local Neural Networks",
//! <https://arxiv.org/abs/1711.07971>; `mmcv/cnn/bricks/non_local.py`) in its
//! `embedded_gaussian` mode: every position attends to every other through
//! 1x1 `theta` / `phi` embeddings (softmax of their dot products, divided by
//! sqrt(C') with `use_scale`), gathers the `g` features, and adds them back
//! through `conv_out` (zero at start, so the block starts as the identity).
//!
//! Shape shorthand: `N` images, `C` channels, `C'` inner channels
//! (`C / reduction`), `H, W` the map.

use tch::nn::{self, Init};
use tch::Tensor;

use super::{Conv2d, ConvGeom, ConvKind, ConvModule, ModelResult, Norm, NormSpec};

#[derive(Debug)]
pub struct NonLocal2d {
    g: ConvModule,
    theta: ConvModule,
    phi: ConvModule,
    conv_out: ConvModule,
    inter_channels: i64,
    use_scale: bool,
}

impl NonLocal2d {
    /// Builds under `p` for `c` channels with MMCV's own init (`g`, `theta`,
    /// `phi` N(0, 0.01), `conv_out`, or its norm, zero), which it keeps
    /// under an owner's `init_cfg` (MMEngine runs the block's `init_weights` after).
    pub fn new(p: &nn::Path, c: i64, reduction: i64, use_scale: bool, norm: Option<&NormSpec>, conv: ConvKind) -> ModelResult<Self> {
        let inter = (c / reduction).max(1);
        let k1 = ConvGeom::k(1);
        let embed = |name: &str, cin: i64, cout: i64| -> ModelResult<ConvModule> {
            let conv = Conv2d::new(&(p / name / "conv"), cin, cout, k1, true, Init::Randn { mean: 0.0, stdev: 0.01 }, true)?.with_kind(conv);
            Ok(ConvModule { conv, norm: None, act: None })
        };
        let out = p / "conv_out";
        let conv_out = match norm {
            None => ConvModule { conv: Conv2d::new(&(&out / "conv"), inter, c, k1, true, Init::Const(0.0), true)?.with_kind(conv), norm: None, act: None },
            Some(spec) => ConvModule {
                conv: Conv2d::new(&(&out / "conv"), inter, c, k1, false, Init::Randn { mean: 0.0, stdev: (2.0 / c as f64).sqrt() }, true)?
                    .with_kind(conv),
                norm: Some(Norm::with_weight(&(&out / spec.abbr()), c, spec, true, 0.0)?),
                act: None,
            },
        };
        Ok(NonLocal2d {
            g: embed("g", c, inter)?,
            theta: embed("theta", c, inter)?,
            phi: embed("phi", c, inter)?,
            conv_out,
            inter_channels: inter,
            use_scale,
        })
    }

    /// x: (N, C, H, W) -> (N, C, H, W).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let (n, _, h, w) = x.size4()?;
        let c = self.inter_channels;
        let flat = |m: &ConvModule| -> ModelResult<Tensor> { Ok(m.forward_t(x, train)?.f_reshape([n, c, h * w])?) };
        let g = flat(&self.g)?.f_permute([0, 2, 1])?;
        let theta = flat(&self.theta)?.f_permute([0, 2, 1])?;
        let phi = flat(&self.phi)?;
        let mut pairwise = theta.f_matmul(&phi)?;
        if self.use_scale {
            pairwise = pairwise.f_div_scalar((c as f64).sqrt())?;
        }
        let y = pairwise.f_softmax(-1, pairwise.kind())?.f_matmul(&g)?;
        let y = y.f_permute([0, 2, 1])?.f_contiguous()?.f_reshape([n, c, h, w])?;
        Ok(x.f_add(&self.conv_out.forward_t(&y, train)?)?)
    }
}
