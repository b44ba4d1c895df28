//! The multi-scale 3x3 stage of `Res2Net`'s `Bottle2neck` (Gao et al.,
//! "Res2Net: A New Multi-scale Backbone Architecture",
//! <https://arxiv.org/abs/1904.01169>) as `mmdet/models/backbones/res2net.py`:
//! the 1x1 conv's output split into `scales` groups of `width` channels;
//! group 0 goes through a 3x3 conv, and each next group through its own
//! after adding the previous group's output (hierarchical residuals; the
//! first block of a stage, `stage_type='stage'`, adds nothing); the last
//! group is passed on as it is (average-pooled when that first block
//! strides). Names under the block: `convs.{i}`, `bns.{i}`.
//! `ResNet::res2net` builds the rest (ResNetV1d's deep stem and
//! average-pool shortcuts, the 1x1 convs of the bottlenecks).
//!
//! Shape shorthand: `N` images, `w` the width of a group, `s` the scales.

use tch::nn;
use tch::Tensor;

use crate::models::layers::{kaiming_normal_fan_out, Conv2d, ConvGeom, ConvKind, ModelResult, Norm, NormSpec};

/// Res2Net's settings of its bottlenecks.
#[derive(Debug, Clone, Copy)]
pub struct Res2Spec {
    pub scales: i64,
    pub base_width: i64,
}

#[derive(Debug)]
pub struct Res2Scales {
    convs: Vec<(Conv2d, Norm)>,
    width: i64,
    /// The first block of a stage: its groups are not chained.
    first: bool,
    stride: i64,
}

impl Res2Scales {
    /// `scales - 1` 3x3 convs of `width` channels with `stride` and
    /// `dilation`, under the block's path `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &nn::Path,
        width: i64,
        spec: Res2Spec,
        stride: i64,
        dilation: i64,
        first: bool,
        norm: &NormSpec,
        conv: ConvKind,
        trainable: bool,
    ) -> ModelResult<Self> {
        let geom = ConvGeom::k(3).stride(stride).padding(dilation).dilation(dilation);
        let convs = (0..spec.scales - 1)
            .map(|i| {
                let c = Conv2d::new(&(p / "convs" / i), width, width, geom, false, kaiming_normal_fan_out(&[width, width, 3, 3]), trainable)?
                    .with_kind(conv);
                Ok((c, Norm::new(&(p / "bns" / i), width, norm, trainable)?))
            })
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(Res2Scales { convs, width, first, stride })
    }

    /// x: (N, w * s, H, W) -> (N, w * s, H / stride, W / stride).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        let groups = x.f_split(self.width, 1)?;
        let mut outs = Vec::with_capacity(groups.len());
        let mut sp: Option<Tensor> = None;
        for (i, (conv, norm)) in self.convs.iter().enumerate() {
            let input = match (&sp, self.first || i == 0) {
                (Some(prev), false) => prev.f_add(&groups[i])?,
                _ => groups[i].shallow_clone(),
            };
            let y = norm.forward_t(&conv.forward(&input.f_contiguous()?)?, train)?.f_relu()?;
            outs.push(y.shallow_clone());
            sp = Some(y);
        }
        let last = &groups[groups.len() - 1];
        outs.push(if self.first && self.stride != 1 {
            // nn.AvgPool2d(3, stride, padding=1)
            last.f_avg_pool2d([3, 3], [self.stride, self.stride], [1, 1], false, true, None::<i64>)?
        } else {
            last.shallow_clone()
        });
        Ok(Tensor::f_cat(&outs, 1)?)
    }
}
