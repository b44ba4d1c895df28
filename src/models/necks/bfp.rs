//! `BFP`, the balanced feature pyramid of Libra R-CNN (Pang et al., "Libra
//! R-CNN: Towards Balanced Learning for Object Detection",
//! <https://arxiv.org/abs/1904.02701>; `mmdet/models/necks/bfp.py`): every
//! level resized to `refine_level`'s size (adaptive max pooling from finer
//! levels, nearest upsampling from coarser ones), averaged, refined (a
//! ConvModule or a `NonLocal2d`), then resized back onto each level
//! (nearest upsampling to finer levels, adaptive max pooling to coarser)
//! and added to it. Names: `refine.*`.
//!
//! Shape shorthand: `N` images, `C` channels, `Hi, Wi` level sizes.

use detc::registry::models::necks::{BFPConfig, BfpRefine};
use tch::nn;
use tch::Tensor;

use crate::models::layers::non_local::NonLocal2d;
use crate::models::layers::{kaiming_normal_fan_out, Activation, ConvGeom, ConvKind, ConvModule, ConvModuleOpts, ModelError, ModelResult, NormSpec};

const NAME: &str = "BFP";

#[derive(Debug)]
enum Refine {
    Conv(ConvModule),
    NonLocal(NonLocal2d),
}

/// mmdet's `BFP` (named as its `type:`).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug)]
pub struct BFP {
    num_levels: usize,
    refine_level: usize,
    refine: Option<Refine>,
}

impl BFP {
    /// Builds under `p`. The refinement keeps its own init (a ConvModule's
    /// Kaiming, NonLocal2d's), as MMEngine runs it after BFP's Xavier.
    pub fn new(cfg: &BFPConfig, p: nn::Path) -> ModelResult<Self> {
        let (num_levels, refine_level) = (cfg.num_levels as usize, cfg.refine_level as usize);
        if refine_level >= num_levels {
            return Err(ModelError::new(NAME, format!("refine_level {refine_level} must be below num_levels {num_levels}")));
        }
        let c = cfg.in_channels as i64;
        let norm = cfg.norm_cfg.as_ref().map(|n| NormSpec::from_cfg(n, NAME)).transpose()?;
        let conv = ConvKind::from_cfg(cfg.conv_cfg.as_ref(), NAME)?;
        let refine = match cfg.refine_type {
            None => None,
            Some(BfpRefine::Conv) => {
                let opts = ConvModuleOpts {
                    geom: ConvGeom::k(3).padding(1),
                    bias: None,
                    norm,
                    act: Some(Activation::Relu),
                    init: kaiming_normal_fan_out(&[c, c, 3, 3]),
                    conv,
                };
                Some(Refine::Conv(ConvModule::new(&(&p / "refine"), c, c, &opts)?))
            }
            Some(BfpRefine::NonLocal) => Some(Refine::NonLocal(NonLocal2d::new(&(&p / "refine"), c, 1, false, norm.as_ref(), conv)?)),
        };
        Ok(BFP { num_levels, refine_level, refine })
    }

    /// inputs: `num_levels` maps (N, C, Hi, Wi) -> the same shapes.
    pub fn forward_t(&self, inputs: &[Tensor], train: bool) -> ModelResult<Vec<Tensor>> {
        if inputs.len() != self.num_levels {
            return Err(ModelError::new(NAME, format!("{} levels for num_levels {}", inputs.len(), self.num_levels)));
        }
        let size = |t: &Tensor| -> ModelResult<[i64; 2]> {
            let (_, _, h, w) = t.size4()?;
            Ok([h, w])
        };
        let gather = size(&inputs[self.refine_level])?;
        let mut bsf: Option<Tensor> = None;
        for (i, x) in inputs.iter().enumerate() {
            let g = if i < self.refine_level {
                x.f_adaptive_max_pool2d(gather)?.0
            } else {
                x.f_upsample_nearest2d(gather, None, None)?
            };
            bsf = Some(match bsf {
                None => g,
                Some(acc) => acc.f_add(&g)?,
            });
        }
        let mut bsf = bsf.ok_or_else(|| ModelError::new(NAME, "no level"))?.f_div_scalar(self.num_levels as f64)?;
        bsf = match &self.refine {
            None => bsf,
            Some(Refine::Conv(conv)) => conv.forward_t(&bsf, train)?,
            Some(Refine::NonLocal(nl)) => nl.forward_t(&bsf, train)?,
        };
        inputs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let out = size(x)?;
                let residual = if i < self.refine_level {
                    bsf.f_upsample_nearest2d(out, None, None)?
                } else {
                    bsf.f_adaptive_max_pool2d(out)?.0
                };
                Ok(residual.f_add(x)?)
            })
            .collect()
    }
}
