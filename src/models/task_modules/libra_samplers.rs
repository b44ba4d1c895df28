//! Libra R-CNN's sampling (`mmdet/models/task_modules/samplers/`
//! `combined_sampler.py`, `instance_balanced_pos_sampler.py`,
//! `iou_balanced_neg_sampler.py`): `CombinedSampler` keeps `RandomSampler`'s
//! counts and lets `InstanceBalancedPosSampler` choose the positives (spread
//! over the ground truths they match) and `IoUBalancedNegSampler` the
//! negatives (spread over IoU intervals).
//!
//! MMDetection's quirks are kept, as a run must sample what it samples:
//! the instance-balanced top-up draws from all positives, those already
//! taken included (a set of tensors that never matches), so a draw may
//! repeat one and the positives come out fewer; and a `floor_thr` of -1
//! becomes 0 after the sampler's first draw (it is a field MMDetection
//! overwrites), which from then on leaves the zero-IoU negatives to the
//! top-up. Draws are `torch.randperm` on the CPU generator, as mmdet's.
//!
//! Shape shorthand: `B` boxes (ground truths added as proposals, then priors).

use std::cell::Cell;

use detc::registry::models::task_modules::{CombinedSamplerConfig, IoUBalancedNegSamplerConfig};
use detc::registry::refs::SamplerCfg;
use tch::{Device, Kind, Tensor};

use super::random_sampler::{choose, Side};
use super::{AssignResult, RandomSampler, SamplingResult};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::upload;

const NAME: &str = "CombinedSampler";

#[derive(Debug)]
enum PosSampler {
    Random,
    InstanceBalanced,
}

#[derive(Debug)]
enum NegSampler {
    Random,
    IoUBalanced { floor_thr: Cell<f64>, floor_fraction: f64, num_bins: i64 },
}

#[derive(Debug)]
pub struct CombinedSampler {
    counts: RandomSampler,
    pos: PosSampler,
    neg: NegSampler,
}

/// `random_choice`: `num` of `gallery` (indices, in its order) drawn by a CPU `randperm`.
fn random_choice(gallery: &[i64], num: usize) -> ModelResult<Vec<i64>> {
    let perm = Vec::<i64>::try_from(Tensor::f_randperm(gallery.len() as i64, (Kind::Int64, Device::Cpu))?.f_narrow(0, 0, num as i64)?)?;
    Ok(perm.iter().map(|&i| gallery[i as usize]).collect())
}

impl CombinedSampler {
    pub fn from_cfg(cfg: &SamplerCfg) -> ModelResult<Self> {
        let c: CombinedSamplerConfig = parse_cfg(&cfg.0, NAME)?;
        let pos = match cfg_type(&c.pos_sampler.0, "CombinedSampler.pos_sampler")? {
            "InstanceBalancedPosSampler" => PosSampler::InstanceBalanced,
            "RandomSampler" => PosSampler::Random,
            other => return Err(ModelError::new(NAME, format!("pos_sampler {other:?} is not supported (InstanceBalancedPosSampler, RandomSampler)"))),
        };
        let neg = match cfg_type(&c.neg_sampler.0, "CombinedSampler.neg_sampler")? {
            "IoUBalancedNegSampler" => {
                let n: IoUBalancedNegSamplerConfig = parse_cfg(&c.neg_sampler.0, "IoUBalancedNegSampler")?;
                if !(n.floor_thr >= 0.0 || n.floor_thr == -1.0) {
                    return Err(ModelError::new(NAME, format!("neg_sampler.floor_thr must be -1 or at least 0, got {}", n.floor_thr)));
                }
                NegSampler::IoUBalanced { floor_thr: Cell::new(n.floor_thr), floor_fraction: n.floor_fraction, num_bins: n.num_bins as i64 }
            }
            "RandomSampler" => NegSampler::Random,
            other => return Err(ModelError::new(NAME, format!("neg_sampler {other:?} is not supported (IoUBalancedNegSampler, RandomSampler)"))),
        };
        Ok(CombinedSampler { counts: RandomSampler::new(&c.sampling), pos, neg })
    }

    /// `sample`: as `RandomSampler.sample`, the positives and negatives
    /// chosen by the two samplers. The assignment needs `max_overlaps`
    /// (`MaxIoUAssigner`) for `IoUBalancedNegSampler`.
    pub fn sample(&self, assign: &AssignResult, priors: &Tensor, gt_bboxes: &Tensor, gt_labels: &Tensor) -> ModelResult<SamplingResult> {
        self.counts.sample_with(assign, priors, gt_bboxes, gt_labels, &mut |mask, num, side| match side {
            Side::Positive { gt_inds, .. } => match self.pos {
                PosSampler::Random => choose(mask, num),
                PosSampler::InstanceBalanced => sorted(instance_balanced(mask, gt_inds, num)?, mask.device()),
            },
            Side::Negative { max_overlaps, .. } => match &self.neg {
                NegSampler::Random => choose(mask, num),
                NegSampler::IoUBalanced { floor_thr, floor_fraction, num_bins } => {
                    let overlaps = max_overlaps.ok_or_else(|| {
                        ModelError::new(NAME, "IoUBalancedNegSampler needs the assigner's IoUs (MaxIoUAssigner)")
                    })?;
                    sorted(iou_balanced(mask, overlaps, num, floor_thr, *floor_fraction, *num_bins)?, mask.device())
                }
            },
        })
    }
}

/// The chosen indices without repeats, ascending (mmdet's `unique()`).
fn sorted(mut inds: Vec<i64>, device: Device) -> ModelResult<Tensor> {
    inds.sort_unstable();
    inds.dedup();
    Ok(upload(&inds, device)?)
}

/// `InstanceBalancedPosSampler._sample_pos` over the positives `mask` (B,)
/// with their `gt_inds` (B,).
fn instance_balanced(mask: &Tensor, gt_inds: &Tensor, num: i64) -> ModelResult<Vec<i64>> {
    let pos = Vec::<i64>::try_from(mask.f_nonzero()?.f_view([-1])?.f_to_device(Device::Cpu)?)?;
    let num = num.max(0) as usize;
    if pos.len() <= num {
        return Ok(pos);
    }
    let gt = Vec::<i64>::try_from(gt_inds.f_to_device(Device::Cpu)?)?;
    let mut unique: Vec<i64> = pos.iter().map(|&i| gt[i as usize]).collect();
    unique.sort_unstable();
    unique.dedup();
    // Python's round() rounds halves to even, as f64::round_ties_even.
    let per_gt = ((num as f64 / unique.len() as f64).round_ties_even() + 1.0) as usize;
    let mut sampled = Vec::new();
    for g in unique {
        let inds: Vec<i64> = (0..gt.len() as i64).filter(|&i| gt[i as usize] == g).collect();
        sampled.extend(if inds.len() > per_gt { random_choice(&inds, per_gt)? } else { inds });
    }
    if sampled.len() < num {
        // mmdet's `set(pos_inds) - set(sampled_inds)` compares tensor objects: nothing is removed.
        let extra = num - sampled.len();
        sampled.extend(if pos.len() > extra { random_choice(&pos, extra)? } else { pos });
    } else if sampled.len() > num {
        sampled = random_choice(&sampled, num)?;
    }
    Ok(sampled)
}

/// `IoUBalancedNegSampler._sample_neg` over the negatives `mask` (B,) with
/// the boxes' largest IoUs `overlaps` (B,).
fn iou_balanced(mask: &Tensor, overlaps: &Tensor, num: i64, floor_thr: &Cell<f64>, floor_fraction: f64, num_bins: i64) -> ModelResult<Vec<i64>> {
    let neg = Vec::<i64>::try_from(mask.f_nonzero()?.f_view([-1])?.f_to_device(Device::Cpu)?)?;
    let num = num.max(0) as usize;
    if neg.len() <= num {
        return Ok(neg);
    }
    let iou = Vec::<f64>::try_from(overlaps.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?)?;
    // Single precision, as mmdet compares its float32 numpy array.
    let iou: Vec<f64> = iou.iter().map(|&v| v as f32 as f64).collect();
    let thr = floor_thr.get();
    let (floor, sampling): (Vec<i64>, Vec<i64>) = if thr > 0.0 {
        (
            neg.iter().copied().filter(|&i| iou[i as usize] >= 0.0 && iou[i as usize] < thr).collect(),
            neg.iter().copied().filter(|&i| iou[i as usize] >= thr).collect(),
        )
    } else if thr == 0.0 {
        (
            neg.iter().copied().filter(|&i| iou[i as usize] == 0.0).collect(),
            neg.iter().copied().filter(|&i| iou[i as usize] > 0.0).collect(),
        )
    } else {
        floor_thr.set(0.0);
        (vec![], neg.iter().copied().filter(|&i| iou[i as usize] > thr).collect())
    };
    let expected_sampling = (num as f64 * (1.0 - floor_fraction)) as usize;
    let sampled_iou = if sampling.len() > expected_sampling {
        if num_bins >= 2 {
            via_interval(&iou, &sampling, expected_sampling, floor_thr.get(), num_bins)?
        } else {
            random_choice(&sampling, expected_sampling)?
        }
    } else {
        sampling
    };
    let expected_floor = num.saturating_sub(sampled_iou.len());
    let mut sampled = if floor.len() > expected_floor { random_choice(&floor, expected_floor)? } else { floor };
    sampled.extend(sampled_iou);
    top_up(sampled, &neg, num)
}

/// `sample_via_interval`: `num` of `full` spread over `num_bins` IoU
/// intervals from `floor` to the largest IoU of all boxes.
fn via_interval(iou: &[f64], full: &[i64], num: usize, floor: f64, num_bins: i64) -> ModelResult<Vec<i64>> {
    let max_iou = iou.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let interval = (max_iou - floor) / num_bins as f64;
    let per_bin = num / num_bins as usize;
    let mut sampled = Vec::new();
    for b in 0..num_bins {
        let (lo, hi) = (floor + b as f64 * interval, floor + (b + 1) as f64 * interval);
        let bin: Vec<i64> = full.iter().copied().filter(|&i| iou[i as usize] >= lo && iou[i as usize] < hi).collect();
        sampled.extend(if bin.len() > per_bin { random_choice(&bin, per_bin)? } else { bin });
    }
    top_up(sampled, full, num)
}

/// Tops `sampled` up to `num` with a draw from the rest of `all`.
fn top_up(mut sampled: Vec<i64>, all: &[i64], num: usize) -> ModelResult<Vec<i64>> {
    if sampled.len() < num {
        let extra = num - sampled.len();
        let mut taken = sampled.clone();
        taken.sort_unstable();
        let rest: Vec<i64> = all.iter().copied().filter(|i| taken.binary_search(i).is_err()).collect();
        sampled.extend(if rest.len() > extra { random_choice(&rest, extra)? } else { rest });
    }
    Ok(sampled)
}

#[cfg(test)]
#[path = "libra_samplers_tests.rs"]
mod tests;
