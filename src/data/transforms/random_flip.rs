//! `RandomFlip` (`mmdet.datasets.transforms.RandomFlip` over MMCV's): picks a
//! direction or none with the configured probabilities (MMCV's
//! `_choose_direction`: a single `prob` is shared equally by the listed
//! directions), then flips the image, boxes (`x1' = w - x2`, `x2' = w - x1`
//! in float32, as `HorizontalBoxes.flip_`) and masks. Sets `flip` and
//! `flip_direction`.

use rand::Rng;

use super::{masks, need_image, Site, Transform};
use crate::data::image::flip_in_place;
use crate::data::{DataResult, Flip, Sample, SampleRng};
use crate::registry::data::{FlipDirection, FlipProb, RandomFlipConfig};
use crate::registry::models::common::OneOrMany;

/// Flips with a probability per direction.
#[derive(Debug, Clone)]
pub struct RandomFlip {
    /// `(direction, probability)`; no flip takes the rest.
    choices: Vec<(Flip, f64)>,
}

impl RandomFlip {
    pub fn new(cfg: RandomFlipConfig, at: Site<'_>) -> DataResult<Self> {
        if cfg.swap_seg_labels.is_some() {
            return Err(at.error("`swap_seg_labels` is not supported: detc loads no segmentation maps"));
        }
        let dirs: Vec<Flip> = cfg.direction.as_vec().into_iter().map(|d| to_flip(*d)).collect();
        let probs = match (&cfg.prob, &cfg.direction) {
            (FlipProb::One(p), _) => {
                if !(0.0..=1.0).contains(p) {
                    return Err(at.error(format!("prob {p} is not in [0, 1]")));
                }
                vec![p / dirs.len().max(1) as f64; dirs.len()]
            }
            (FlipProb::PerDirection(ps), OneOrMany::Many(_)) => {
                let sum: f64 = ps.iter().sum();
                if ps.len() != dirs.len() || !(0.0..=1.0).contains(&sum) {
                    return Err(at.error(format!(
                        "`prob` needs one probability per direction ({} given for {} directions) summing to at most 1",
                        ps.len(),
                        dirs.len()
                    )));
                }
                ps.clone()
            }
            (FlipProb::PerDirection(_), OneOrMany::One(_)) => {
                return Err(at.error("a list `prob` needs a list `direction` of the same length"))
            }
        };
        Ok(RandomFlip { choices: dirs.into_iter().zip(probs).collect() })
    }

    /// `np.random.choice(directions + [None], p=probs + [1 - sum])`.
    fn choose(&self, rng: &mut SampleRng) -> Option<Flip> {
        let u = rng.random::<f64>();
        let mut cumulative = 0.0;
        for &(dir, p) in &self.choices {
            cumulative += p;
            if u < cumulative {
                return Some(dir);
            }
        }
        None
    }
}

fn to_flip(d: FlipDirection) -> Flip {
    match d {
        FlipDirection::Horizontal => Flip::Horizontal,
        FlipDirection::Vertical => Flip::Vertical,
        FlipDirection::Diagonal => Flip::Diagonal,
    }
}

impl Transform for RandomFlip {
    fn apply(&self, mut sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        need_image("RandomFlip", &sample)?;
        let Some(dir) = self.choose(rng) else {
            sample.flip = false;
            sample.flip_direction = None;
            return Ok(Some(sample));
        };
        let (mut w, mut h) = (0.0, 0.0);
        if let Some(img) = sample.img.as_mut() {
            flip_in_place(img, dir);
            (w, h) = (img.width as f32, img.height as f32);
        }
        let (fx, fy) = (dir != Flip::Vertical, dir != Flip::Horizontal);
        for b in &mut sample.gt_bboxes {
            let [x1, y1, x2, y2] = *b;
            let (x1, x2) = if fx { (w - x2, w - x1) } else { (x1, x2) };
            let (y1, y2) = if fy { (h - y2, h - y1) } else { (y1, y2) };
            *b = [x1, y1, x2, y2];
        }
        if let Some(m) = &mut sample.gt_masks {
            masks::flip(m, dir);
        }
        sample.flip = true;
        sample.flip_direction = Some(dir);
        Ok(Some(sample))
    }
}
