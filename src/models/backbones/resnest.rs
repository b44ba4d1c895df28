//! The split-attention conv of `ResNeSt` (Zhang et al., "ResNeSt:
//! Split-Attention Networks", <https://arxiv.org/abs/2004.08955>) as
//! `mmdet/models/backbones/resnest.py`'s `SplitAttentionConv2d`: a grouped
//! 3x3 conv producing `radix` splits of the channels, then per cardinal
//! group an attention over the splits from their globally pooled sum (two
//! 1x1 convs, `fc1` and `fc2`, a softmax over the radix), and the splits
//! summed with those weights. Names: `conv`, `bn0`, `fc1`, `bn1`, `fc2`.
//! `ResNet::resnest` builds the rest of the backbone (ResNetV1d's deep stem
//! and average-pool shortcuts, the 3x3 average pool after this conv).
//!
//! Shape shorthand: `N` images, `C` channels, `R` the radix, `H, W` sizes.

use tch::nn;
use tch::Tensor;

use crate::models::layers::{kaiming_normal_fan_out, Conv2d, ConvGeom, ModelResult, Norm, NormSpec};

/// ResNeSt's settings of its bottlenecks' split-attention conv.
#[derive(Debug, Clone, Copy)]
pub struct SplitSpec {
    pub radix: i64,
    pub reduction_factor: i64,
    /// Stride with a 3x3 average pool after the conv (`avd_layer`) instead of in it.
    pub avg_down_stride: bool,
}

#[derive(Debug)]
pub struct SplitAttentionConv2d {
    conv: Conv2d,
    norm0: Norm,
    fc1: Conv2d,
    norm1: Norm,
    fc2: Conv2d,
    radix: i64,
    groups: i64,
}

impl SplitAttentionConv2d {
    /// `channels` in and out (`in_c`, `channels`), geometry `geom` (its
    /// groups the cardinality), under `p` (a bottleneck's `conv2`).
    pub fn new(p: &nn::Path, in_c: i64, channels: i64, geom: ConvGeom, split: SplitSpec, norm: &NormSpec, trainable: bool) -> ModelResult<Self> {
        let (radix, groups) = (split.radix, geom.groups);
        let inter = (in_c * radix / split.reduction_factor).max(32);
        let kaiming = |dims: [i64; 4]| kaiming_normal_fan_out(&dims);
        let conv_geom = geom.groups(groups * radix);
        let conv = Conv2d::new(
            &(p / "conv"),
            in_c,
            channels * radix,
            conv_geom,
            false,
            kaiming([channels * radix, in_c / (groups * radix), geom.kernel, geom.kernel]),
            trainable,
        )?;
        let fc = |name: &str, cin: i64, cout: i64| {
            Conv2d::new(&(p / name), cin, cout, ConvGeom::k(1).groups(groups), true, kaiming([cout, cin / groups, 1, 1]), trainable)
        };
        Ok(SplitAttentionConv2d {
            conv,
            norm0: Norm::new(&(p / format!("{}0", norm.abbr())), channels * radix, norm, trainable)?,
            fc1: fc("fc1", channels, inter)?,
            norm1: Norm::new(&(p / format!("{}1", norm.abbr())), inter, norm, trainable)?,
            fc2: fc("fc2", inter, channels * radix)?,
            radix,
            groups,
        })
    }

    /// x: (N, Cin, H, W) -> (N, C, H', W'); `train` switches the batch norms.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let x = self.norm0.forward_t(&self.conv.forward(x)?, train)?.f_relu()?;
        let (n, rc, h, w) = x.size4()?;
        let r = self.radix;
        let splits = x.f_reshape([n, r, rc / r, h, w])?;
        let gap = if r > 1 { splits.f_sum_dim_intlist(1, false, x.kind())? } else { x.shallow_clone() };
        let gap = gap.f_adaptive_avg_pool2d([1, 1])?;
        let gap = self.norm1.forward_t(&self.fc1.forward(&gap)?, train)?.f_relu()?;
        let atten = self.fc2.forward(&gap)?;
        // RSoftmax: per cardinal group, a softmax over the radix (a sigmoid for one split).
        let atten = if r > 1 {
            atten.f_reshape([n, self.groups, r, -1])?.f_transpose(1, 2)?.f_softmax(1, atten.kind())?.f_reshape([n, -1])?
        } else {
            atten.f_sigmoid()?
        };
        let atten = atten.f_reshape([n, -1, 1, 1])?;
        Ok(if r > 1 {
            atten.f_reshape([n, r, -1, 1, 1])?.f_mul(&splits)?.f_sum_dim_intlist(1, false, x.kind())?
        } else {
            atten.f_mul(&x)?
        })
    }
}
