//! `AnchorGenerator` (`mmdet/models/task_modules/prior_generators/anchor_generator.py`)
//! and `anchor_inside_flags` (`prior_generators/utils.py`): the anchors of
//! anchor-based heads (RPN), level by level.
//!
//! Shape shorthand: `A` base anchors per location (ratios x scales), `H, W`
//! a level's feature size; a level's anchors are `(H*W*A, 4)` x1y1x2y2,
//! location-major (row by row, the `A` anchors of a location together).
//!
//! The base anchors are computed with the same float32 tensor ops as mmdet,
//! so anchors match it bit for bit.

use std::sync::Mutex;

use detc::registry::models::common::IntOrPair;
use detc::registry::models::task_modules::AnchorGeneratorConfig;
use detc::registry::refs::AnchorGeneratorCfg;
use tch::{Device, Kind, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "AnchorGenerator";

#[derive(Debug)]
pub struct AnchorGenerator {
    /// Stride of each level as `(w, h)` pixels.
    pub strides: Vec<(i64, i64)>,
    /// Per level the `(A, 4)` float32 anchors of the location at (0, 0), on the CPU.
    pub base_anchors: Vec<Tensor>,
    /// The last [`Self::grid_priors`] and [`Self::valid_flags`], by their arguments.
    grid: LastPriors<(Vec<(i64, i64)>, Device)>,
    flags: LastPriors<(Vec<(i64, i64)>, (i64, i64), Device)>,
}

/// The priors made for the last arguments, handed out again while the
/// arguments repeat: a training step asks for the anchors of the same
/// feature sizes as the last one (and for the valid flags of the same
/// padded shape for every image of it), and making them costs about 15
/// operators and a blocking upload of the base anchors per level. Callers
/// share the tensors and never write to them.
#[derive(Debug)]
struct LastPriors<K> {
    last: Mutex<Option<(K, Vec<Tensor>)>>,
}

impl<K> Default for LastPriors<K> {
    fn default() -> Self {
        LastPriors { last: Mutex::new(None) }
    }
}

impl<K: PartialEq> LastPriors<K> {
    fn get_or_make(&self, key: K, make: impl FnOnce() -> ModelResult<Vec<Tensor>>) -> ModelResult<Vec<Tensor>> {
        let share = |v: &[Tensor]| v.iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, v)) = last.as_ref() {
            if *k == key {
                return Ok(share(v));
            }
        }
        let made = make()?;
        *last = Some((key, share(&made)));
        Ok(made)
    }
}

impl AnchorGenerator {
    /// Builds from an `anchor_generator` config dict (`type: AnchorGenerator`
    /// or MMDetection 1.x's `LegacyAnchorGenerator`).
    pub fn from_cfg(cfg: &AnchorGeneratorCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "anchor_generator")? {
            NAME => Self::new(&parse_cfg(&cfg.0, NAME)?),
            "LegacyAnchorGenerator" => Self::build(&parse_cfg(&cfg.0, "LegacyAnchorGenerator")?, true),
            other => Err(ModelError::new(
                "anchor_generator",
                format!("type {other:?} is not supported (use AnchorGenerator or LegacyAnchorGenerator)"),
            )),
        }
    }

    /// Checks the config as mmdet's constructor does and makes the base anchors.
    pub fn new(cfg: &AnchorGeneratorConfig) -> ModelResult<Self> {
        Self::build(cfg, false)
    }

    /// `legacy`: `LegacyAnchorGenerator`'s base anchors, centred at
    /// `center_offset * (size - 1)`, sides `size - 1` wide, rounded.
    fn build(cfg: &AnchorGeneratorConfig, legacy: bool) -> ModelResult<Self> {
        let bad = |m: String| Err(ModelError::new(NAME, m));
        if !(0.0..=1.0).contains(&cfg.center_offset) {
            return bad(format!(
                "center_offset must be in [0, 1], got {}",
                cfg.center_offset
            ));
        }
        if cfg.center_offset != 0.0 && cfg.centers.is_some() {
            return bad("set centers or a non-zero center_offset, not both".into());
        }
        let strides: Vec<(i64, i64)> = cfg
            .strides
            .iter()
            .map(|s| match *s {
                IntOrPair::Int(v) => (v as i64, v as i64),
                IntOrPair::Pair((w, h)) => (w as i64, h as i64),
            })
            .collect();
        if strides.is_empty() || strides.iter().any(|&(w, h)| w < 1 || h < 1) {
            return bad(format!(
                "strides must be positive, one per level, got {strides:?}"
            ));
        }
        let levels = strides.len();
        let base_sizes: Vec<f64> = match &cfg.base_sizes {
            Some(b) => b.iter().map(|&v| v as f64).collect(),
            None => strides.iter().map(|&(w, h)| w.min(h) as f64).collect(),
        };
        if base_sizes.len() != levels {
            return bad(format!(
                "{} base_sizes for {levels} strides",
                base_sizes.len()
            ));
        }
        if let Some(c) = &cfg.centers {
            if c.len() != levels {
                return bad(format!("{} centers for {levels} strides", c.len()));
            }
        }
        let scales: Vec<f64> = match (&cfg.scales, cfg.octave_base_scale, cfg.scales_per_octave) {
            (Some(s), None, None) => s.clone(),
            (None, Some(base), Some(per)) if per >= 1 => (0..per)
                .map(|i| 2f64.powf(i as f64 / per as f64) * base)
                .collect(),
            _ => {
                return bad(
                    "set either scales or octave_base_scale with scales_per_octave (>= 1)".into(),
                )
            }
        };
        if scales.is_empty() || cfg.ratios.is_empty() {
            return bad("scales and ratios must not be empty".into());
        }
        let base_anchors = base_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let extent = if legacy { size - 1.0 } else { size };
                let center = match &cfg.centers {
                    Some(c) => c[i],
                    None => (cfg.center_offset * extent, cfg.center_offset * extent),
                };
                single_level_base_anchors(size, &scales, &cfg.ratios, cfg.scale_major, center, legacy)
            })
            .collect::<ModelResult<Vec<_>>>()?;
        Ok(AnchorGenerator {
            strides,
            base_anchors,
            grid: LastPriors::default(),
            flags: LastPriors::default(),
        })
    }

    pub fn num_levels(&self) -> usize {
        self.strides.len()
    }

    /// `num_base_priors`: `A` of each level.
    pub fn num_base_priors(&self) -> Vec<i64> {
        self.base_anchors.iter().map(|b| b.size()[0]).collect()
    }

    /// `single_level_grid_priors`: `featmap_size` `(H, W)` of level `level`
    /// -> (H*W*A, 4) float32 anchors on `device`.
    pub fn single_level_grid_priors(
        &self,
        featmap_size: (i64, i64),
        level: usize,
        device: Device,
    ) -> ModelResult<Tensor> {
        let (Some(&(stride_w, stride_h)), Some(base)) =
            (self.strides.get(level), self.base_anchors.get(level))
        else {
            return Err(ModelError::new(
                NAME,
                format!(
                    "level {level} is out of range ({} levels)",
                    self.num_levels()
                ),
            ));
        };
        let (h, w) = featmap_size;
        let shift_x = Tensor::f_arange(w, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_mul_scalar(stride_w)?;
        let shift_y = Tensor::f_arange(h, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_mul_scalar(stride_h)?;
        let (xx, yy) = meshgrid(&shift_x, &shift_y)?;
        let shifts = Tensor::f_stack(&[&xx, &yy, &xx, &yy], -1)?;
        Ok(base
            .f_to_device(device)?
            .f_unsqueeze(0)?
            .f_add(&shifts.f_unsqueeze(1)?)?
            .f_view([-1, 4])?)
    }

    /// `grid_priors`: per level the (H*W*A, 4) anchors of `featmap_sizes` `(H, W)`.
    pub fn grid_priors(
        &self,
        featmap_sizes: &[(i64, i64)],
        device: Device,
    ) -> ModelResult<Vec<Tensor>> {
        self.check_levels(featmap_sizes)?;
        self.grid.get_or_make((featmap_sizes.to_vec(), device), || {
            featmap_sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| self.single_level_grid_priors(s, i, device))
                .collect()
        })
    }

    /// `valid_flags`: per level (H*W*A,) bool, true for the locations inside
    /// `pad_shape` `(h, w)` (`ceil(h / stride)` rows, `ceil(w / stride)` columns).
    pub fn valid_flags(
        &self,
        featmap_sizes: &[(i64, i64)],
        pad_shape: (i64, i64),
        device: Device,
    ) -> ModelResult<Vec<Tensor>> {
        self.check_levels(featmap_sizes)?;
        self.flags
            .get_or_make((featmap_sizes.to_vec(), pad_shape, device), || self.make_valid_flags(featmap_sizes, pad_shape, device))
    }

    /// Whether [`Self::valid_flags`] is true everywhere: the padded image
    /// covers each level's whole feature map. Read on the host.
    pub fn all_valid(&self, featmap_sizes: &[(i64, i64)], pad_shape: (i64, i64)) -> bool {
        let (pad_h, pad_w) = pad_shape;
        let ceil_div = |a: i64, b: i64| (a + b - 1).div_euclid(b);
        featmap_sizes.len() == self.strides.len()
            && featmap_sizes.iter().zip(&self.strides).all(|(&(feat_h, feat_w), &(stride_w, stride_h))| {
                ceil_div(pad_h, stride_h) >= feat_h && ceil_div(pad_w, stride_w) >= feat_w
            })
    }

    fn make_valid_flags(
        &self,
        featmap_sizes: &[(i64, i64)],
        pad_shape: (i64, i64),
        device: Device,
    ) -> ModelResult<Vec<Tensor>> {
        let (pad_h, pad_w) = pad_shape;
        let ceil_div = |a: i64, b: i64| (a + b - 1).div_euclid(b);
        featmap_sizes
            .iter()
            .zip(&self.strides)
            .zip(self.num_base_priors())
            .map(|((&(feat_h, feat_w), &(stride_w, stride_h)), a)| {
                let valid_h = ceil_div(pad_h, stride_h).clamp(0, feat_h);
                let valid_w = ceil_div(pad_w, stride_w).clamp(0, feat_w);
                let opts = (Kind::Bool, device);
                let vx = Tensor::f_arange(feat_w, (Kind::Int64, device))?.f_lt(valid_w)?;
                let vy = Tensor::f_arange(feat_h, (Kind::Int64, device))?.f_lt(valid_h)?;
                let (vxx, vyy) = meshgrid(&vx.f_to_kind(opts.0)?, &vy.f_to_kind(opts.0)?)?;
                Ok(vxx
                    .f_logical_and(&vyy)?
                    .f_unsqueeze(1)?
                    .f_expand([feat_h * feat_w, a], false)?
                    .f_contiguous()?
                    .f_view([-1])?)
            })
            .collect()
    }

    fn check_levels(&self, featmap_sizes: &[(i64, i64)]) -> ModelResult<()> {
        if featmap_sizes.len() != self.num_levels() {
            return Err(ModelError::new(
                NAME,
                format!(
                    "{} feature maps for {} anchor levels (strides)",
                    featmap_sizes.len(),
                    self.num_levels()
                ),
            ));
        }
        Ok(())
    }
}

/// mmdet's `_meshgrid(x, y)` (row major): x (W,), y (H,) -> xx, yy (H*W,).
fn meshgrid(x: &Tensor, y: &Tensor) -> ModelResult<(Tensor, Tensor)> {
    let (w, h) = (x.size()[0], y.size()[0]);
    let xx = x.f_repeat([h])?;
    let yy = y.f_view([-1, 1])?.f_repeat([1, w])?.f_view([-1])?;
    Ok((xx, yy))
}

/// `gen_single_level_base_anchors`: (A, 4) float32 on the CPU, A = ratios x
/// scales (ratio-major when `scale_major`, i.e. scales vary fastest).
fn single_level_base_anchors(
    base_size: f64,
    scales: &[f64],
    ratios: &[f64],
    scale_major: bool,
    center: (f64, f64),
    legacy: bool,
) -> ModelResult<Tensor> {
    let f32_tensor = |v: &[f64]| Tensor::from_slice(v).f_to_kind(Kind::Float);
    let (scales, ratios) = (f32_tensor(scales)?, f32_tensor(ratios)?);
    let h_ratios = ratios.f_sqrt()?;
    let w_ratios = h_ratios.f_reciprocal()?;
    let outer = |a: &Tensor, b: &Tensor| -> ModelResult<Tensor> {
        Ok(a.f_mul_scalar(base_size)?
            .f_unsqueeze(1)?
            .f_mul(&b.f_unsqueeze(0)?)?
            .f_view([-1])?)
    };
    let (ws, hs) = if scale_major {
        (outer(&w_ratios, &scales)?, outer(&h_ratios, &scales)?)
    } else {
        (outer(&scales, &w_ratios)?, outer(&scales, &h_ratios)?)
    };
    let (half_w, half_h) = if legacy {
        (ws.f_sub_scalar(1.0)?.f_mul_scalar(0.5)?, hs.f_sub_scalar(1.0)?.f_mul_scalar(0.5)?)
    } else {
        (ws.f_mul_scalar(0.5)?, hs.f_mul_scalar(0.5)?)
    };
    let (cx, cy) = center;
    let anchors = Tensor::f_stack(
        &[
            half_w.f_neg()?.f_add_scalar(cx)?,
            half_h.f_neg()?.f_add_scalar(cy)?,
            half_w.f_add_scalar(cx)?,
            half_h.f_add_scalar(cy)?,
        ],
        -1,
    )?;
    Ok(if legacy { anchors.f_round()? } else { anchors })
}

/// `anchor_inside_flags`: `valid_flags` (N,) bool and-ed with "the anchor
/// lies inside `img_shape` `(h, w)` grown by `allowed_border` pixels"; a
/// negative `allowed_border` keeps `valid_flags` as they are.
pub fn anchor_inside_flags(
    flat_anchors: &Tensor,
    valid_flags: &Tensor,
    img_shape: (i64, i64),
    allowed_border: i64,
) -> ModelResult<Tensor> {
    if allowed_border < 0 {
        return Ok(valid_flags.shallow_clone());
    }
    let (h, w) = img_shape;
    let b = allowed_border;
    let col = |i: i64| flat_anchors.f_select(1, i);
    Ok(valid_flags
        .f_logical_and(&col(0)?.f_ge(-b)?)?
        .f_logical_and(&col(1)?.f_ge(-b)?)?
        .f_logical_and(&col(2)?.f_lt(w + b)?)?
        .f_logical_and(&col(3)?.f_lt(h + b)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, tensor};
    use crate::models::ops::nms::tests::{fixture, ints};

    fn generator(json: serde_json::Value) -> AnchorGenerator {
        let mut json = json;
        json["type"] = "AnchorGenerator".into();
        AnchorGenerator::from_cfg(&AnchorGeneratorCfg(json)).unwrap()
    }

    #[test]
    fn all_valid_agrees_with_the_flags() {
        let g = generator(serde_json::json!({"scales": [8], "ratios": [0.5, 1.0, 2.0], "strides": [4, 8, 16, 32, 64]}));
        // Pads that cover the maps exactly, or more, or leave rows out.
        let sizes = [(200, 200), (100, 100), (50, 50), (25, 25), (13, 13)];
        for pad in [(800, 800), (800, 1216), (768, 800), (832, 832)] {
            let flags = Tensor::cat(&g.valid_flags(&sizes, pad, Device::Cpu).unwrap(), 0);
            let every = flags.all().int64_value(&[]) == 1;
            assert_eq!(g.all_valid(&sizes, pad), every, "{pad:?}");
        }
        assert!(g.all_valid(&sizes, (800, 800)) && !g.all_valid(&sizes, (768, 800)));
        assert!(!g.all_valid(&sizes[..4], (800, 800)), "a missing level");
    }

    /// The cases of tests/models/two_stage_dense_reference.py (ANCHOR_CASES).
    #[test]
    fn anchors_and_valid_flags_match_mmdet() {
        let fx = fixture();
        let cases = [
            (
                "r50",
                serde_json::json!({"strides": [4, 8, 16, 32, 64], "ratios": [0.5, 1.0, 2.0], "scales": [8]}),
                vec![(56, 80), (28, 40), (14, 20), (7, 10), (4, 5)],
                (200, 300),
            ),
            (
                "odd",
                serde_json::json!({"strides": [[8, 16], 16], "ratios": [0.5, 1.0, 2.0],
                                   "octave_base_scale": 4, "scales_per_octave": 3,
                                   "base_sizes": [10, 20], "scale_major": false, "center_offset": 0.5}),
                vec![(5, 7), (3, 4)],
                (37, 45),
            ),
            (
                "centers",
                serde_json::json!({"strides": [8, 16], "ratios": [1.0, 0.3], "scales": [2, 3.5],
                                   "centers": [[3.0, 5.5], [1.0, 2.0]]}),
                vec![(4, 6), (2, 3)],
                (30, 20),
            ),
        ];
        for (name, json, sizes, pad) in cases {
            let g = generator(json);
            let grid = g.grid_priors(&sizes, Device::Cpu).unwrap();
            let valid = g.valid_flags(&sizes, pad, Device::Cpu).unwrap();
            for level in 0..sizes.len() {
                let key = |k: &str| format!("anchors.{name}.{k}.{level}");
                assert_close(
                    &g.base_anchors[level],
                    &tensor(fx, &key("base")),
                    0.0,
                    0.0,
                    &key("base"),
                );
                assert_close(
                    &grid[level],
                    &tensor(fx, &key("grid")),
                    0.0,
                    0.0,
                    &key("grid"),
                );
                assert_eq!(
                    ints(&valid[level]),
                    ints(&tensor(fx, &key("valid"))),
                    "{}",
                    key("valid")
                );
            }
        }
    }

    #[test]
    fn anchor_config_errors_name_the_generator() {
        let err = |json| {
            let mut json: serde_json::Value = json;
            json["type"] = "AnchorGenerator".into();
            AnchorGenerator::from_cfg(&AnchorGeneratorCfg(json)).unwrap_err()
        };
        let both = err(
            serde_json::json!({"strides": [4], "ratios": [1.0], "scales": [8],
                                          "octave_base_scale": 4, "scales_per_octave": 3}),
        );
        assert_eq!(both.component, NAME);
        let neither = err(serde_json::json!({"strides": [4], "ratios": [1.0]}));
        assert!(neither.message.contains("scales"), "{neither}");
        let sizes = err(
            serde_json::json!({"strides": [4, 8], "ratios": [1.0], "scales": [8], "base_sizes": [4]}),
        );
        assert!(sizes.message.contains("base_sizes"), "{sizes}");
        let g = generator(serde_json::json!({"strides": [4, 8], "ratios": [1.0], "scales": [8]}));
        assert!(g.grid_priors(&[(2, 2)], Device::Cpu).is_err());
        let other = AnchorGenerator::from_cfg(&AnchorGeneratorCfg(
            serde_json::json!({"type": "SSDAnchorGenerator"}),
        ));
        assert_eq!(other.unwrap_err().component, "anchor_generator");
    }

    #[test]
    fn inside_flags_honour_the_border() {
        let anchors = Tensor::from_slice(&[
            -2.0f32, 0.0, 5.0, 5.0, 0.0, 0.0, 10.0, 8.0, 1.0, 1.0, 3.0, 3.0,
        ])
        .view([3, 4]);
        let valid = Tensor::from_slice(&[true, true, false]);
        let flags = |border| ints(&anchor_inside_flags(&anchors, &valid, (8, 10), border).unwrap());
        assert_eq!(flags(-1), [1, 1, 0]);
        assert_eq!(flags(0), [0, 0, 0]);
        assert_eq!(flags(2), [1, 1, 0]);
    }
}
