//! `DyHead` (Dai et al., "Dynamic Head: Unifying Object Detection Heads
//! with Attentions", <https://arxiv.org/abs/2106.08322>) as
//! `mmdet/models/necks/dyhead.py`: `num_blocks` blocks
//! (`dyhead_blocks.{i}`), each mapping the pyramid to a pyramid.
//!
//! In a block, level `l`'s `spatial_conv_offset` (3x3) gives the offsets and
//! sigmoid masks of three modulated deformable 3x3 convs, each followed by a
//! GroupNorm of 16 groups: `spatial_conv_mid` on level `l`,
//! `spatial_conv_low` (stride 2) on the finer level `l - 1`, and
//! `spatial_conv_high` on the coarser level `l + 1`, upsampled (bilinear,
//! corners aligned) to level `l`. Each is weighed by the scale attention
//! (`hsigmoid(relu(conv(mean over H, W)))`, one number per image) and their
//! mean goes through DyReLU (`task_attn_module`): `max(x * a1 + b1, x * a2
//! + b2)` with per-channel coefficients from the pooled input.
//!
//! The coarser level's conv has half the level's size, yet takes the
//! level's offsets and masks: MMCV's kernel reads each image's offset and
//! mask buffers as if they had the output's size, i.e. their first
//! `18 * Ho * Wo` (`9 * Ho * Wo`) values in memory order (the original
//! DyHead's kernel does the same). detc reads them the same way, so that
//! trained DyHead weights keep their meaning.
//!
//! Shape shorthand: `N` images, `C` channels, level `l` of `H_l x W_l`.

use detc::registry::models::necks::DyHeadConfig;
use detc::registry::refs::NormCfg;
use tch::nn::{self, Init};
use tch::Tensor;

use crate::models::layers::deform_conv::deform_conv2d;
use crate::models::layers::{param, Conv2d, ConvGeom, ModelError, ModelResult, Norm, NormSpec};

const NAME: &str = "DyHead";
/// Offsets (y, x) and masks of a 3x3 kernel.
const OFFSET_DIM: i64 = 2 * 9;
const MASK_DIM: i64 = 9;

/// MMCV's `HSigmoid(bias=3.0, divisor=6.0)`: `clamp((x + 3) / 6, 0, 1)`.
fn hsigmoid(x: &Tensor) -> ModelResult<Tensor> {
    Ok(x.f_add_scalar(3.0)?.f_div_scalar(6.0)?.f_clamp(0.0, 1.0)?)
}

/// A 1x1 or 3x3 `nn.Conv2d` of the block, N(0, 0.01) with bias 0.
fn conv(p: &nn::Path, in_c: i64, out_c: i64, geom: ConvGeom, std: f64) -> ModelResult<Conv2d> {
    let init = if std == 0.0 { Init::Const(0.0) } else { Init::Randn { mean: 0.0, stdev: std } };
    Conv2d::new(p, in_c, out_c, geom, true, init, true)
}

/// `DyDCNv2`: a modulated deformable 3x3 conv without bias (`conv.weight`,
/// MMCV's U(-1/sqrt(C * 9), +)) and a GroupNorm (`norm`).
#[derive(Debug)]
struct DyDcn {
    weight: Tensor,
    stride: i64,
    norm: Norm,
}

impl DyDcn {
    fn new(p: &nn::Path, in_c: i64, out_c: i64, stride: i64, gn: &NormSpec) -> ModelResult<Self> {
        let bound = 1.0 / ((in_c * 9) as f64).sqrt();
        let weight = param(&(p / "conv"), "weight", &[out_c, in_c, 3, 3], Init::Uniform { lo: -bound, up: bound }, true)?;
        Ok(DyDcn { weight, stride, norm: Norm::new(&(p / "norm"), out_c, gn, true)? })
    }

    /// x: (N, C, H, W) with the offset (N, 18, Ho', Wo') and mask (N, 9,
    /// Ho', Wo') of another level; read as MMCV's kernel reads them when
    /// their size is not the output's.
    fn forward(&self, x: &Tensor, offset: &Tensor, mask: &Tensor) -> ModelResult<Tensor> {
        let geom = ConvGeom::k(3).stride(self.stride).padding(1);
        let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
        let (ho, wo) = ((h + 2 - 3) / self.stride + 1, (w + 2 - 3) / self.stride + 1);
        let fit = |t: &Tensor, c: i64| -> ModelResult<Tensor> {
            if t.size()[2] == ho && t.size()[3] == wo {
                return Ok(t.shallow_clone());
            }
            let flat = t.f_reshape([n, -1])?;
            if flat.size()[1] < c * ho * wo {
                return Err(ModelError::new(NAME, "a level is larger than the one its offsets come from"));
            }
            Ok(flat.f_narrow(1, 0, c * ho * wo)?.f_reshape([n, c, ho, wo])?)
        };
        let y = deform_conv2d(x, &fit(offset, OFFSET_DIM)?, Some(&fit(mask, MASK_DIM)?), &self.weight, None, geom, 1)?;
        self.norm.forward_t(&y, true)
    }
}

/// `DyReLU(C)` (`task_attn_module`): `conv1` (C -> C/4, ReLU) and `conv2`
/// (C/4 -> 4C, HSigmoid) on the pooled input give a1, b1, a2, b2.
#[derive(Debug)]
struct DyRelu {
    conv1: Conv2d,
    conv2: Conv2d,
    channels: i64,
}

impl DyRelu {
    fn new(p: &nn::Path, c: i64) -> ModelResult<Self> {
        let mid = c / 4;
        Ok(DyRelu {
            conv1: conv(&(p / "conv1" / "conv"), c, mid, ConvGeom::k(1), 0.01)?,
            conv2: conv(&(p / "conv2" / "conv"), mid, 4 * c, ConvGeom::k(1), 0.01)?,
            channels: c,
        })
    }

    fn forward(&self, x: &Tensor) -> ModelResult<Tensor> {
        let pooled = x.f_mean_dim(&[-2i64, -1][..], true, x.kind())?;
        let coeffs = hsigmoid(&self.conv2.forward(&self.conv1.forward(&pooled)?.f_relu()?)?)?.f_sub_scalar(0.5)?;
        let parts = coeffs.f_split(self.channels, 1)?;
        let a1 = parts[0].f_mul_scalar(2.0)?.f_add_scalar(1.0)?;
        let a2 = parts[2].f_mul_scalar(2.0)?;
        Ok(x.f_mul(&a1)?.f_add(&parts[1])?.f_maximum(&x.f_mul(&a2)?.f_add(&parts[3])?)?)
    }
}

/// `DyHeadBlock`.
#[derive(Debug)]
struct Block {
    high: DyDcn,
    mid: DyDcn,
    low: DyDcn,
    offset: Conv2d,
    /// `scale_attn_module.1`: C -> 1.
    scale: Conv2d,
    task: DyRelu,
}

impl Block {
    fn new(p: &nn::Path, in_c: i64, out_c: i64, zero_init_offset: bool, gn: &NormSpec) -> ModelResult<Self> {
        let k3 = ConvGeom::k(3).padding(1);
        Ok(Block {
            high: DyDcn::new(&(p / "spatial_conv_high"), in_c, out_c, 1, gn)?,
            mid: DyDcn::new(&(p / "spatial_conv_mid"), in_c, out_c, 1, gn)?,
            low: DyDcn::new(&(p / "spatial_conv_low"), in_c, out_c, 2, gn)?,
            offset: conv(&(p / "spatial_conv_offset"), in_c, OFFSET_DIM + MASK_DIM, k3, if zero_init_offset { 0.0 } else { 0.01 })?,
            scale: conv(&(p / "scale_attn_module" / 1), out_c, 1, ConvGeom::k(1), 0.01)?,
            task: DyRelu::new(&(p / "task_attn_module"), out_c)?,
        })
    }

    /// The scale attention's weighting of `x`.
    fn weighed(&self, x: &Tensor) -> ModelResult<Tensor> {
        let pooled = x.f_mean_dim(&[-2i64, -1][..], true, x.kind())?;
        Ok(x.f_mul(&hsigmoid(&self.scale.forward(&pooled)?.f_relu()?)?)?)
    }

    fn forward(&self, x: &[Tensor]) -> ModelResult<Vec<Tensor>> {
        let mut outs = Vec::with_capacity(x.len());
        for (l, level) in x.iter().enumerate() {
            let om = self.offset.forward(level)?;
            let offset = om.f_narrow(1, 0, OFFSET_DIM)?;
            let mask = om.f_narrow(1, OFFSET_DIM, MASK_DIM)?.f_sigmoid()?;
            let mut sum = self.weighed(&self.mid.forward(level, &offset, &mask)?)?;
            let mut count = 1.0;
            if l > 0 {
                sum = sum.f_add(&self.weighed(&self.low.forward(&x[l - 1], &offset, &mask)?)?)?;
                count += 1.0;
            }
            if l + 1 < x.len() {
                let (h, w) = (level.size()[2], level.size()[3]);
                let high = self.high.forward(&x[l + 1], &offset, &mask)?.f_upsample_bilinear2d([h, w], true, None, None)?;
                sum = sum.f_add(&self.weighed(&high)?)?;
                count += 1.0;
            }
            outs.push(self.task.forward(&sum.f_div_scalar(count)?)?);
        }
        Ok(outs)
    }
}

#[derive(Debug)]
pub struct DyHead {
    blocks: Vec<Block>,
}

impl DyHead {
    pub fn new(cfg: &DyHeadConfig, p: nn::Path) -> ModelResult<Self> {
        let gn = NormSpec::from_cfg(&NormCfg(serde_json::json!({"type": "GN", "num_groups": 16, "requires_grad": true})), NAME)?;
        let (in_c, out_c) = (cfg.in_channels as i64, cfg.out_channels as i64);
        if out_c % 16 != 0 || out_c < 4 {
            return Err(ModelError::new(NAME, format!("out_channels {out_c} must be a multiple of 16 (GroupNorm of 16 groups)")));
        }
        let blocks = (0..cfg.num_blocks as i64)
            .map(|i| Block::new(&(&p / "dyhead_blocks" / i), if i == 0 { in_c } else { out_c }, out_c, cfg.zero_init_offset, &gn))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(DyHead { blocks })
    }

    /// The pyramid, finest first -> the same levels of `out_channels`.
    /// (GroupNorm has no running statistics: train and eval agree.)
    pub fn forward_t(&self, inputs: &[Tensor], _train: bool) -> ModelResult<Vec<Tensor>> {
        let mut x: Vec<Tensor> = inputs.iter().map(Tensor::shallow_clone).collect();
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
#[path = "dyhead_tests.rs"]
mod tests;
