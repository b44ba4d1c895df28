//! `MlvlPointGenerator` (`mmdet/models/task_modules/prior_generators/point_generator.py`):
//! one prior point per location of each level, `((x + offset) * stride_w,
//! (y + offset) * stride_h)`, row by row, optionally with the level's
//! strides as two more columns (what RTMDet's assigner reads).

use detc::registry::models::common::IntOrPair;
use detc::registry::models::task_modules::MlvlPointGeneratorConfig;
use detc::registry::refs::AnchorGeneratorCfg;
use tch::{Device, Kind, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "MlvlPointGenerator";

#[derive(Debug, Clone)]
pub struct MlvlPointGenerator {
    /// `(stride_w, stride_h)` per level.
    pub strides: Vec<(i64, i64)>,
    pub offset: f64,
}

impl MlvlPointGenerator {
    /// From a head's `anchor_generator` (which must be an `MlvlPointGenerator`).
    pub fn from_cfg(cfg: &AnchorGeneratorCfg, owner: &str) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "anchor_generator")? {
            NAME => {
                let c: MlvlPointGeneratorConfig = parse_cfg(&cfg.0, NAME)?;
                // MMDetection's `_pair`: one number is both strides; a pair is (w, h).
                let strides = c
                    .strides
                    .iter()
                    .map(|s| match *s {
                        IntOrPair::Int(v) => (v as i64, v as i64),
                        IntOrPair::Pair((w, h)) => (w as i64, h as i64),
                    })
                    .collect();
                Ok(MlvlPointGenerator { strides, offset: c.offset })
            }
            other => Err(ModelError::new(owner, format!("anchor_generator {other:?} is not supported here (use MlvlPointGenerator)"))),
        }
    }

    pub fn num_levels(&self) -> usize {
        self.strides.len()
    }

    fn check_levels(&self, featmap_sizes: &[(i64, i64)]) -> ModelResult<()> {
        if featmap_sizes.len() != self.num_levels() {
            return Err(ModelError::new(NAME, format!("{} feature maps for {} levels (strides)", featmap_sizes.len(), self.num_levels())));
        }
        Ok(())
    }

    /// `grid_priors`: per level the (H*W, 2) points of `featmap_sizes`
    /// `(H, W)`, or (H*W, 4) with the strides `(stride_w, stride_h)` when `with_stride`.
    pub fn grid_priors(&self, featmap_sizes: &[(i64, i64)], device: Device, with_stride: bool) -> ModelResult<Vec<Tensor>> {
        self.check_levels(featmap_sizes)?;
        featmap_sizes
            .iter()
            .zip(&self.strides)
            .map(|(&(h, w), &(sw, sh))| {
                let opts = (Kind::Float, device);
                let xs = Tensor::f_arange(w, opts)?.f_add_scalar(self.offset)?.f_mul_scalar(sw)?;
                let ys = Tensor::f_arange(h, opts)?.f_add_scalar(self.offset)?.f_mul_scalar(sh)?;
                let xx = xs.f_repeat([h])?;
                let yy = ys.f_view([-1, 1])?.f_repeat([1, w])?.f_view([-1])?;
                let mut cols = vec![xx, yy];
                if with_stride {
                    cols.push(Tensor::f_full([h * w], sw as f64, opts)?);
                    cols.push(Tensor::f_full([h * w], sh as f64, opts)?);
                }
                Ok(Tensor::f_stack(&cols, -1)?)
            })
            .collect()
    }

    /// `valid_flags`: per level (H*W,) bool, true for the locations inside
    /// `pad_shape` `(h, w)` (`ceil(h / stride_h)` rows, `ceil(w / stride_w)` columns).
    pub fn valid_flags(&self, featmap_sizes: &[(i64, i64)], pad_shape: (i64, i64), device: Device) -> ModelResult<Vec<Tensor>> {
        self.check_levels(featmap_sizes)?;
        let (pad_h, pad_w) = pad_shape;
        let ceil_div = |a: i64, b: i64| (a + b - 1).div_euclid(b);
        featmap_sizes
            .iter()
            .zip(&self.strides)
            .map(|(&(h, w), &(sw, sh))| {
                let valid_h = ceil_div(pad_h, sh).clamp(0, h);
                let valid_w = ceil_div(pad_w, sw).clamp(0, w);
                let vx = Tensor::f_arange(w, (Kind::Int64, device))?.f_lt(valid_w)?;
                let vy = Tensor::f_arange(h, (Kind::Int64, device))?.f_lt(valid_h)?;
                Ok(vy.f_view([-1, 1])?.f_logical_and(&vx.f_view([1, -1])?)?.f_view([-1])?)
            })
            .collect()
    }
}
