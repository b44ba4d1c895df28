//! `RandomResize` and `RandomChoiceResize` (`mmcv.transforms`): draw a target
//! scale per sample, then resize as `Resize` with that scale.
//!
//! `RandomResize` with `scale: (w, h)` and `ratio_range: (lo, hi)` draws a
//! ratio uniformly in `[lo, hi)` and uses `(int(w * r), int(h * r))`; with
//! `scale: [(w0, h0), (w1, h1)]` it draws each side uniformly from the
//! integers between the two (inclusive). `RandomChoiceResize` draws one of
//! `scales` uniformly. Only `resize_type: Resize` is supported.

use rand::Rng;

use super::resize::ResizeOp;
use super::{Site, Transform};
use crate::data::{DataResult, Sample, SampleRng};
use crate::registry::data::{RandomChoiceResizeConfig, RandomResizeConfig, RandomScale};

fn check_resize_type(resize_type: &str, at: Site<'_>) -> DataResult<()> {
    if resize_type == "Resize" {
        Ok(())
    } else {
        Err(at.error(format!("resize_type `{resize_type}` is not supported; use `Resize`")))
    }
}

/// How `RandomResize` draws its scale.
#[derive(Debug, Clone)]
enum Draw {
    Ratio { scale: (usize, usize), lo: f64, hi: f64 },
    Range { w: (usize, usize), h: (usize, usize) },
}

/// Resizes to a randomly drawn scale.
#[derive(Debug, Clone)]
pub struct RandomResize {
    draw: Draw,
    op: ResizeOp,
}

impl RandomResize {
    pub fn new(cfg: RandomResizeConfig, at: Site<'_>) -> DataResult<Self> {
        check_resize_type(&cfg.resize_type, at)?;
        let draw = match (cfg.scale, cfg.ratio_range) {
            (RandomScale::Pair((w, h)), Some((lo, hi))) => {
                if lo.is_nan() || hi.is_nan() || lo > hi || lo <= 0.0 {
                    return Err(at.error(format!("ratio_range ({lo}, {hi}) must be positive with the minimum first")));
                }
                Draw::Ratio { scale: (w as usize, h as usize), lo, hi }
            }
            (RandomScale::Pair(_), None) => {
                return Err(at.error("a single `scale` needs `ratio_range`; or give two scales to draw between"))
            }
            (RandomScale::Range([(w0, h0), (w1, h1)]), _) => Draw::Range {
                w: (w0.min(w1) as usize, w0.max(w1) as usize),
                h: (h0.min(h1) as usize, h0.max(h1) as usize),
            },
        };
        let op = ResizeOp::new(cfg.backend, cfg.interpolation, cfg.keep_ratio, cfg.clip_object_border, at)?;
        Ok(RandomResize { draw, op })
    }
}

impl Transform for RandomResize {
    fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let scale = match &self.draw {
            Draw::Ratio { scale, lo, hi } => {
                let r = rng.random::<f64>() * (hi - lo) + lo;
                ((scale.0 as f64 * r) as usize, (scale.1 as f64 * r) as usize)
            }
            Draw::Range { w, h } => (rng.random_range(w.0..=w.1), rng.random_range(h.0..=h.1)),
        };
        self.op.resize("RandomResize", sample, scale).map(Some)
    }
}

/// Resizes to one of several scales, drawn uniformly.
#[derive(Debug, Clone)]
pub struct RandomChoiceResize {
    scales: Vec<(usize, usize)>,
    op: ResizeOp,
}

impl RandomChoiceResize {
    pub fn new(cfg: RandomChoiceResizeConfig, at: Site<'_>) -> DataResult<Self> {
        check_resize_type(&cfg.resize_type, at)?;
        let scales: Vec<(usize, usize)> =
            cfg.scales.as_vec().into_iter().map(|&(w, h)| (w as usize, h as usize)).collect();
        if scales.is_empty() {
            return Err(at.error("`scales` is empty"));
        }
        let op = ResizeOp::new(cfg.backend, cfg.interpolation, cfg.keep_ratio, cfg.clip_object_border, at)?;
        Ok(RandomChoiceResize { scales, op })
    }
}

impl Transform for RandomChoiceResize {
    fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let scale = self.scales[rng.random_range(0..self.scales.len())];
        self.op.resize("RandomChoiceResize", sample, scale).map(Some)
    }
}
