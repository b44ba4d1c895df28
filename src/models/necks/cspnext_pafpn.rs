//! `CSPNeXtPAFPN`, RTMDet's neck, as `mmdet/models/necks/cspnext_pafpn.py`.
//!
//! Top-down, from the coarsest level: the running map goes through a 1x1
//! `reduce_layers.{j}` to the next finer level's channels (and replaces
//! itself), is upsampled, concatenated with that level's input and fused by
//! `top_down_blocks.{j}` (a CSP layer without residuals). Bottom-up, from
//! the finest fused map: a stride-2 3x3 `downsamples.{i}`, concatenated with
//! the next coarser top-down map (the reduced one for the coarsest level),
//! fused by `bottom_up_blocks.{i}`. Each level then goes through a 3x3
//! `out_convs.{i}` to `out_channels`.
//!
//! Shape shorthand: `N` images, `L` levels, level `l` of `C_l` channels.

use detc::registry::models::necks::{CSPNeXtPAFPNConfig, InterpolateMode};
use detc::registry::models::common::FloatOrPair;
use tch::nn;
use tch::Tensor;

use crate::models::layers::csp_layer::{csp_init_cfg, CSPLayer, CspConv, CspLayerOpts, CspSpec};
use crate::models::layers::{Activation, ConvGeom, ConvKind, ConvModule, ModelError, ModelResult, NormSpec};

const NAME: &str = "CSPNeXtPAFPN";

#[derive(Debug)]
pub struct CSPNeXtPAFPN {
    /// Coarsest first: `reduce_layers.{j}` maps level `L-1-j` to level `L-2-j`'s channels.
    reduce_layers: Vec<ConvModule>,
    top_down_blocks: Vec<CSPLayer>,
    downsamples: Vec<CspConv>,
    bottom_up_blocks: Vec<CSPLayer>,
    out_convs: Vec<CspConv>,
    /// The upsampling's integer scale factor (nearest).
    scale: i64,
}

impl CSPNeXtPAFPN {
    pub fn new(cfg: &CSPNeXtPAFPNConfig, p: nn::Path) -> ModelResult<Self> {
        if ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)? != ConvKind::Plain {
            return Err(ModelError::new(NAME, "conv_cfg is not supported (leave it null)"));
        }
        let up = &cfg.upsample_cfg;
        let scale = match (up.mode, up.scale_factor) {
            (InterpolateMode::Nearest, Some(FloatOrPair::Float(s))) if s == 2.0 => 2,
            _ => return Err(ModelError::new(NAME, "upsample_cfg must be nearest upsampling by scale_factor 2 (the default)")),
        };
        let (init, _) = csp_init_cfg(cfg.init_cfg.as_ref(), NAME, false)?;
        let spec = CspSpec {
            norm: NormSpec::from_cfg(&cfg.norm_cfg, NAME)?,
            act: Activation::from_cfg(Some(&cfg.act_cfg), NAME)?,
            init,
            trainable: true,
        };
        let c: Vec<i64> = cfg.in_channels.iter().map(|&c| c as i64).collect();
        let l = c.len();
        let dw = cfg.use_depthwise;
        let opts = CspLayerOpts {
            num_blocks: cfg.num_csp_blocks as i64,
            add_identity: false,
            depthwise: dw,
            expand_ratio: cfg.expand_ratio,
            channel_attention: false,
        };
        let (mut reduce_layers, mut top_down_blocks) = (vec![], vec![]);
        for (j, idx) in (1..l).rev().enumerate() {
            reduce_layers.push(spec.conv_module(&(&p / "reduce_layers" / j), c[idx], c[idx - 1], ConvGeom::k(1))?);
            top_down_blocks.push(CSPLayer::new(&(&p / "top_down_blocks" / j), c[idx - 1] * 2, c[idx - 1], opts, &spec)?);
        }
        let (mut downsamples, mut bottom_up_blocks) = (vec![], vec![]);
        for idx in 0..l - 1 {
            downsamples.push(spec.conv(&(&p / "downsamples" / idx), c[idx], c[idx], 3, 2, dw)?);
            bottom_up_blocks.push(CSPLayer::new(&(&p / "bottom_up_blocks" / idx), c[idx] * 2, c[idx + 1], opts, &spec)?);
        }
        let out_convs = (0..l)
            .map(|i| spec.conv(&(&p / "out_convs" / i), c[i], cfg.out_channels as i64, 3, 1, dw))
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(CSPNeXtPAFPN { reduce_layers, top_down_blocks, downsamples, bottom_up_blocks, out_convs, scale })
    }

    /// The backbone's `L` maps, finest first -> `L` maps of `out_channels`.
    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> ModelResult<Vec<Tensor>> {
        let l = self.out_convs.len();
        if inputs.len() != l {
            return Err(ModelError::new(NAME, format!("expected {l} input levels (in_channels), got {}", inputs.len())));
        }
        // inner[0] is the running (coarsest so far) map; finer maps go in front.
        let mut inner = vec![inputs[l - 1].shallow_clone()];
        for (j, idx) in (1..l).rev().enumerate() {
            let high = self.reduce_layers[j].forward_t(&inner[0], train)?;
            let (h, w) = (high.size()[2], high.size()[3]);
            let s = self.scale as f64;
            let upsampled = high.f_upsample_nearest2d([h * self.scale, w * self.scale], Some(s), Some(s))?;
            inner[0] = high;
            let fused = self.top_down_blocks[j].forward_t(&Tensor::f_cat(&[upsampled, inputs[idx - 1].shallow_clone()], 1)?, train)?;
            inner.insert(0, fused);
        }
        let mut outs = vec![inner[0].shallow_clone()];
        for idx in 0..l - 1 {
            let down = self.downsamples[idx].forward_t(&outs[idx], train)?;
            let fused = self.bottom_up_blocks[idx].forward_t(&Tensor::f_cat(&[down, inner[idx + 1].shallow_clone()], 1)?, train)?;
            outs.push(fused);
        }
        outs.iter().zip(&self.out_convs).map(|(x, conv)| conv.forward_t(x, train)).collect()
    }
}

#[cfg(test)]
#[path = "cspnext_pafpn_tests.rs"]
mod tests;
