//! Deformable convolutions as MMCV builds them for a `dcn` config:
//! `DCN` (`DeformConv2dPack`, Dai et al., 2017) and `DCNv2`
//! (`ModulatedDeformConv2dPack`, Zhu et al., 2019). Each kernel tap samples
//! the input at its regular position plus a learned offset, predicted per
//! output position by a plain conv `conv_offset` of the same geometry; v2
//! also predicts a sigmoid mask that scales each tap.
//!
//! [`deform_conv2d`] is the operator, written with tensor ops (so that
//! autograd gives its backward, on CPU and CUDA alike). Its sampling is
//! MMCV's (and torchvision's) bilinear interpolation: a tap at `(y, x)`
//! reads 0 unless `-1 < y < H` and `-1 < x < W`, and a corner outside the
//! map counts 0. Positions are computed in float32 whatever the input's
//! dtype, so that half-precision runs still address pixels exactly.
//!
//! Shape shorthand: `N` images, `C` input channels, `H, W` input height and
//! width, `K = kh * kw` kernel taps, `G` deformable groups, `L = Ho * Wo`
//! output positions.

use detc::registry::models::layers::{DeformConvConfig, ModulatedDeformConvConfig};
use detc::registry::refs::ConvCfg;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::{kaiming_normal_fan_out, param, reduction_kind, Conv2d, ConvGeom, ModelError, ModelResult};

/// A parsed `dcn` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeformSpec {
    /// `DCNv2`: taps scaled by a predicted mask.
    pub modulated: bool,
    pub deform_groups: i64,
}

impl DeformSpec {
    /// Parses a `dcn` dict (`DCN` or `DCNv2`) of the component `owner`.
    pub fn from_cfg(cfg: &ConvCfg, owner: &str) -> ModelResult<Self> {
        let mut map = cfg.0.as_object().cloned().ok_or_else(|| ModelError::new(owner, "dcn must be a dict"))?;
        let kind = map.remove("type").and_then(|t| t.as_str().map(str::to_string));
        let invalid = |e: serde_json::Error| ModelError::new(owner, format!("invalid dcn: {e}"));
        let rest = serde_json::Value::Object(map);
        // MMCV's `deprecated_api_warning`: `deformable_groups` becomes
        // `deform_groups`, and both at once is an error.
        let set = rest.get("deform_groups").is_some();
        let groups = |new: u32, old: Option<u32>| -> ModelResult<u32> {
            match old {
                Some(_) if set => Err(ModelError::new(owner, "set deform_groups or its old name deformable_groups, not both")),
                Some(g) => Ok(g),
                None => Ok(new),
            }
        };
        let (modulated, deform_groups, fallback) = match kind.as_deref() {
            Some("DCN") => {
                let c: DeformConvConfig = serde_json::from_value(rest).map_err(invalid)?;
                (false, groups(c.deform_groups, c.deformable_groups)?, c.fallback_on_stride)
            }
            Some("DCNv2") => {
                let c: ModulatedDeformConvConfig = serde_json::from_value(rest).map_err(invalid)?;
                (true, groups(c.deform_groups, c.deformable_groups)?, c.fallback_on_stride)
            }
            other => return Err(ModelError::new(owner, format!("dcn type {other:?} is not supported (DCN, DCNv2)"))),
        };
        if fallback {
            return Err(ModelError::new(owner, "dcn fallback_on_stride must be false"));
        }
        Ok(DeformSpec { modulated, deform_groups: deform_groups as i64 })
    }

    /// Channels of `conv_offset`'s output: (y, x) offsets per tap and group,
    /// and for v2 a mask value each.
    fn offset_channels(&self, taps: i64) -> i64 {
        self.deform_groups * taps * if self.modulated { 3 } else { 2 }
    }
}

/// How a [`DeformConv2d`]'s parameters start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeformInit {
    /// Inside a backbone without a `Pretrained` checkpoint, as MMDetection's
    /// ResNet leaves it. `DCN`: the weight `kaiming_uniform_` (fan-in, ReLU
    /// gain), `conv_offset` Kaiming normal fan-out (the backbone's `Conv2d`
    /// init reaches it). `DCNv2`: its own `init_weights`, the weight
    /// U(-1/sqrt(C k k), 1/sqrt(C k k)) and `conv_offset` zero.
    Scratch,
    /// Before a checkpoint is loaded: `conv_offset` zero (as constructed),
    /// so a checkpoint without offsets starts from a regular conv.
    ForCheckpoint,
}

/// `DeformConv2dPack` / `ModulatedDeformConv2dPack`: `weight` (Cout, C /
/// groups, k, k), `bias` (DCNv2 only, optional), `conv_offset.{weight,bias}`.
#[derive(Debug)]
pub struct DeformConv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub conv_offset: Conv2d,
    pub geom: ConvGeom,
    pub spec: DeformSpec,
}

impl DeformConv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        in_c: i64,
        out_c: i64,
        geom: ConvGeom,
        bias: bool,
        spec: DeformSpec,
        init: DeformInit,
        trainable: bool,
    ) -> ModelResult<Self> {
        let owner = if spec.modulated { "DCNv2" } else { "DCN" };
        let groups = geom.groups.max(1);
        if in_c % groups != 0 || out_c % groups != 0 || in_c % spec.deform_groups != 0 {
            return Err(ModelError::new(
                owner,
                format!("{in_c} -> {out_c} channels do not split into {groups} groups and {} deform_groups", spec.deform_groups),
            ));
        }
        if bias && !spec.modulated {
            return Err(ModelError::new(owner, "DCN has no bias (use DCNv2)"));
        }
        let k = geom.kernel;
        let dims = [out_c, in_c / groups, k, k];
        let weight_init = if spec.modulated {
            let bound = 1.0 / ((in_c * k * k) as f64).sqrt();
            Init::Uniform { lo: -bound, up: bound }
        } else {
            // kaiming_uniform_(nonlinearity='relu'): bound sqrt(6 / fan_in).
            let bound = (6.0 / ((in_c / groups) * k * k) as f64).sqrt();
            Init::Uniform { lo: -bound, up: bound }
        };
        let weight = param(p, "weight", &dims, weight_init, trainable)?;
        let bias = if bias { Some(param(p, "bias", &[out_c], Init::Const(0.0), trainable)?) } else { None };
        let offset_c = spec.offset_channels(k * k);
        let offset_init = match init {
            DeformInit::Scratch if !spec.modulated => kaiming_normal_fan_out(&[offset_c, in_c, k, k]),
            _ => Init::Const(0.0),
        };
        let conv_offset = Conv2d::new(&(p / "conv_offset"), in_c, offset_c, ConvGeom { groups: 1, ..geom }, true, offset_init, trainable)?;
        Ok(DeformConv2d { weight, bias, conv_offset, geom, spec })
    }

    /// x: (N, C, H, W) -> (N, Cout, Ho, Wo).
    pub fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let out = self.conv_offset.forward(x)?;
        let g = self.spec.deform_groups;
        let taps = self.geom.kernel * self.geom.kernel;
        let (offset, mask) = if self.spec.modulated {
            // MMCV: o1, o2, mask = chunk(3); offset = cat(o1, o2); mask = sigmoid(mask).
            let parts = out.f_split(g * taps, 1)?;
            (Tensor::f_cat(&[&parts[0], &parts[1]], 1)?, Some(parts[2].f_sigmoid()?))
        } else {
            (out, None)
        };
        deform_conv2d(x, &offset, mask.as_ref(), &self.weight, self.bias.as_ref(), self.geom, g)
    }
}

/// MMCV's `deform_conv2d` / `modulated_deform_conv2d` (torchvision's
/// `deform_conv2d`). `offset`: (N, G * 2K, Ho, Wo), for group `g` and tap
/// `t = i * kw + j` the y offset at channel `g * 2K + 2t` and the x offset at
/// `g * 2K + 2t + 1`; `mask`: (N, G * K, Ho, Wo) or none; `weight`: (Cout,
/// C / groups, kh, kw). Returns (N, Cout, Ho, Wo) in the offset's dtype.
pub fn deform_conv2d(
    x: &Tensor,
    offset: &Tensor,
    mask: Option<&Tensor>,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geom: ConvGeom,
    deform_groups: i64,
) -> ModelResult<Tensor> {
    let err = |m: String| ModelError::new("deform_conv2d", m);
    let (n, c, h, w) = x.size4().map_err(|e| err(format!("input must be (N, C, H, W): {e}")))?;
    let (cout, c_per_group, kh, kw) = weight.size4().map_err(|e| err(format!("weight must be 4-D: {e}")))?;
    let (g, taps) = (deform_groups, kh * kw);
    let (_, offset_c, ho, wo) = offset.size4().map_err(|e| err(format!("offset must be 4-D: {e}")))?;
    if offset_c != g * 2 * taps || c % g != 0 || c % c_per_group != 0 {
        return Err(err(format!(
            "offset has {offset_c} channels for {g} groups of {taps} taps, input {c} channels, weight {c_per_group} per group"
        )));
    }
    let span = |size: i64, k: i64| (size + 2 * geom.padding - geom.dilation * (k - 1) - 1) / geom.stride + 1;
    if (ho, wo) != (span(h, kh), span(w, kw)) {
        return Err(err(format!("offset is {ho}x{wo}, the conv's output {}x{}", span(h, kh), span(w, kw))));
    }
    let out_kind = offset.kind();
    // Sampling positions, float32: y[n, g, t, ho, wo] = ho*s - p + i*d + dy.
    let pos_kind = reduction_kind(out_kind);
    let off = offset.f_to_kind(pos_kind)?.f_reshape([n, g, taps, 2, ho, wo])?;
    let opts = (pos_kind, x.device());
    let tap = Tensor::f_arange(taps, opts)?;
    let tap_y = tap.f_div_scalar_mode(kw, "floor")?.f_mul_scalar(geom.dilation)?.f_reshape([taps, 1, 1])?;
    let tap_x = tap.f_remainder(kw)?.f_mul_scalar(geom.dilation)?.f_reshape([taps, 1, 1])?;
    let row = Tensor::f_arange(ho, opts)?.f_mul_scalar(geom.stride)?.f_sub_scalar(geom.padding)?.f_reshape([1, ho, 1]);
    let col = Tensor::f_arange(wo, opts)?.f_mul_scalar(geom.stride)?.f_sub_scalar(geom.padding)?.f_reshape([1, 1, wo]);
    let y = off.f_select(3, 0)?.f_add(&tap_y.f_add(&row?)?)?; // (N, G, K, Ho, Wo)
    let xs = off.f_select(3, 1)?.f_add(&tap_x.f_add(&col?)?)?;
    let inside = y
        .f_gt(-1.0)?
        .f_logical_and(&y.f_lt(h as f64)?)?
        .f_logical_and(&xs.f_gt(-1.0)?)?
        .f_logical_and(&xs.f_lt(w as f64)?)?;
    let (y0, x0) = (y.f_floor()?, xs.f_floor()?);
    // floor() has no gradient: the weights carry d/dy and d/dx.
    let (ly, lx) = (y.f_sub(&y0)?, xs.f_sub(&x0)?);
    let (hy, hx) = (ly.f_neg()?.f_add_scalar(1.0)?, lx.f_neg()?.f_add_scalar(1.0)?);
    let input = x.f_to_kind(pos_kind)?.f_reshape([n, g, c / g, h * w])?;
    let mut sampled: Option<Tensor> = None;
    for (dy, dx, wy, wx) in [(0.0, 0.0, &hy, &hx), (0.0, 1.0, &hy, &lx), (1.0, 0.0, &ly, &hx), (1.0, 1.0, &ly, &lx)] {
        let (yc, xc) = (y0.f_add_scalar(dy)?, x0.f_add_scalar(dx)?);
        let valid = yc
            .f_ge(0.0)?
            .f_logical_and(&yc.f_le((h - 1) as f64)?)?
            .f_logical_and(&xc.f_ge(0.0)?)?
            .f_logical_and(&xc.f_le((w - 1) as f64)?)?
            .f_logical_and(&inside)?;
        let index = yc
            .f_clamp(0.0, (h - 1) as f64)?
            .f_mul_scalar(w)?
            .f_add(&xc.f_clamp(0.0, (w - 1) as f64)?)?
            .f_to_kind(Kind::Int64)?
            .f_reshape([n, g, 1, taps * ho * wo])?
            .f_expand([n, g, c / g, taps * ho * wo], false)?;
        let weight_c = wy.f_mul(wx)?.f_mul(&valid.f_to_kind(pos_kind)?)?.f_reshape([n, g, 1, taps * ho * wo])?;
        let term = input.f_gather(3, &index, false)?.f_mul(&weight_c)?;
        sampled = Some(match sampled {
            Some(s) => s.f_add(&term)?,
            None => term,
        });
    }
    let mut columns = sampled.expect("four corners").f_reshape([n, g, c / g, taps, ho * wo])?;
    if let Some(mask) = mask {
        let m = mask.f_to_kind(pos_kind)?.f_reshape([n, g, 1, taps, ho * wo])?;
        columns = columns.f_mul(&m)?;
    }
    // (N, C * K, L) as the weight's (C / groups, kh, kw) order, per conv group.
    let groups = c / c_per_group;
    let columns = columns.f_reshape([n, groups, c_per_group * taps, ho * wo])?;
    let wmat = weight.f_to_kind(pos_kind)?.f_reshape([1, groups, cout / groups, c_per_group * taps])?;
    let mut out = wmat.f_matmul(&columns)?.f_reshape([n, cout, ho, wo])?;
    if let Some(b) = bias {
        out = out.f_add(&b.f_to_kind(pos_kind)?.f_reshape([1, cout, 1, 1])?)?;
    }
    Ok(out.f_to_kind(out_kind)?)
}
