//! Sampling as masks, for the anchor heads on a GPU: the same choice as
//! `RandomSampler` / `PseudoSampler` (`sample` there), given as (P,) masks
//! of the sampled positives and negatives and a device count for
//! `avg_factor`, so nothing is read back to the host. The index form
//! (`pos_inds` from a `nonzero`, the counts as numbers) waits for the GPU
//! to finish the backbone at the first image's sampling; this lets the host
//! go on queueing the RPN's targets, losses and proposals meanwhile.
//!
//! `RandomSampler`'s draw is a uniform subset of the wanted size, as its
//! `randperm` draws, from the device's generator: the `k` smallest of a
//! uniform key per candidate (non-candidates keyed above every candidate).
//!
//! Shape shorthand: `P` priors (anchors) of one image.

use tch::{Kind, Tensor};

use super::RandomSampler;
use crate::models::layers::{ModelError, ModelResult};

/// One image's sampling: `pos` and `neg` (P,) bool, `avg_factor` a 0-dim
/// float32 tensor (mmdet's `SamplingResult.avg_factor`: positives and
/// negatives each counted at least once, or the positives alone for the
/// pseudo sampler).
pub struct SampledMasks {
    pub pos: Tensor,
    pub neg: Tensor,
    pub avg_factor: Tensor,
}

impl RandomSampler {
    /// [`RandomSampler::sample`] of an assignment's `gt_inds` (P,) (0
    /// background, -1 ignored, k + 1 ground truth k), as masks; the ground
    /// truths are not anchors, so `add_gt_as_proposals` must be off.
    pub fn sample_masks(&self, gt_inds: &Tensor) -> ModelResult<SampledMasks> {
        if self.cfg.add_gt_as_proposals {
            return Err(ModelError::new("RandomSampler", "sampling as masks needs add_gt_as_proposals: false"));
        }
        let num_expected_pos = (self.cfg.num as f64 * self.cfg.pos_fraction) as i64;
        let pos = draw(&gt_inds.f_gt(0)?, num_expected_pos, None)?;
        let num_pos = pos.f_sum(Kind::Int64)?;
        // `num - num_pos`, bounded by `neg_pos_ub * max(num_pos, 1)`.
        let mut num_expected_neg = num_pos.f_neg()?.f_add_scalar(self.cfg.num as i64)?;
        if self.cfg.neg_pos_ub >= 0 {
            let bound = num_pos.f_clamp_min(1)?.f_to_kind(Kind::Double)?.f_mul_scalar(self.cfg.neg_pos_ub as f64)?.f_floor()?;
            num_expected_neg = num_expected_neg.f_minimum(&bound.f_to_kind(Kind::Int64)?)?;
        }
        let neg = draw(&gt_inds.f_eq(0)?, self.cfg.num as i64, Some(&num_expected_neg))?;
        let avg_factor = num_pos.f_clamp_min(1)?.f_add(&neg.f_sum(Kind::Int64)?.f_clamp_min(1)?)?.f_to_kind(Kind::Float)?;
        Ok(SampledMasks { pos, neg, avg_factor })
    }
}

/// `PseudoSampler.sample` as masks: every positive and every negative.
pub fn pseudo_sample_masks(gt_inds: &Tensor) -> ModelResult<SampledMasks> {
    let pos = gt_inds.f_gt(0)?;
    let avg_factor = pos.f_sum(Kind::Int64)?.f_clamp_min(1)?.f_to_kind(Kind::Float)?;
    Ok(SampledMasks { pos, neg: gt_inds.f_eq(0)?, avg_factor })
}

/// A uniform subset of the `candidates` (P,) mask, of `min(count, k)`
/// elements, or `min(count, k, limit)` with a device `limit`.
fn draw(candidates: &Tensor, k: i64, limit: Option<&Tensor>) -> ModelResult<Tensor> {
    let p = candidates.size()[0];
    let k = k.min(p);
    if k <= 0 {
        return Ok(candidates.f_zeros_like()?);
    }
    // Keys in [0, 1) for candidates and 2 for the rest: the k smallest, in
    // ascending order, are a uniform random order of the candidates first.
    let keys = Tensor::f_rand([p], (Kind::Float, candidates.device()))?
        .f_masked_fill(&candidates.f_logical_not()?, 2.0)?;
    let (smallest, order) = keys.f_topk(k, 0, false, true)?;
    let mut take = smallest.f_lt(1.5)?;
    if let Some(limit) = limit {
        let rank = Tensor::f_arange(k, (Kind::Int64, candidates.device()))?;
        take = take.f_logical_and(&rank.f_lt_tensor(limit)?)?;
    }
    Ok(candidates.f_zeros_like()?.f_scatter(0, &order, &take)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::task_modules::pseudo_sampler::PseudoSampler;
    use crate::models::task_modules::AssignResult;
    use detc::registry::refs::SamplerCfg;
    use tch::Device;

    fn sampler(num: i64, pos_fraction: f64, neg_pos_ub: i64) -> RandomSampler {
        RandomSampler::from_cfg(&SamplerCfg(serde_json::json!({
            "type": "RandomSampler", "num": num, "pos_fraction": pos_fraction,
            "neg_pos_ub": neg_pos_ub, "add_gt_as_proposals": false})))
        .unwrap()
    }

    /// P priors: positives (ground truth i % 3 + 1) on every `pos_every`-th,
    /// ignored on every 7th, negatives elsewhere.
    fn gt_inds(p: i64, pos_every: i64) -> Tensor {
        let v: Vec<i64> = (0..p)
            .map(|i| if i % pos_every == 0 { i % 3 + 1 } else if i % 7 == 0 { -1 } else { 0 })
            .collect();
        Tensor::from_slice(&v)
    }

    fn indices(mask: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(mask.nonzero().view([-1])).unwrap()
    }

    fn count(mask: &Tensor) -> i64 {
        mask.sum(Kind::Int64).int64_value(&[])
    }

    /// With fewer candidates than wanted nothing is drawn: the masks hold
    /// exactly the index sampler's `pos_inds` and `neg_inds`, and the count
    /// its `avg_factor`.
    #[test]
    fn masks_without_a_draw_equal_the_index_samplers() {
        let inds = gt_inds(60, 10);
        let assign = AssignResult {
            num_gts: 3,
            labels: inds.f_gt(0).unwrap().to_kind(Kind::Int64) * 2 - 1,
            gt_inds: inds.shallow_clone(),
            max_overlaps: None,
            matches: None,
        };
        let priors = Tensor::arange(60 * 4, (Kind::Float, Device::Cpu)).view([60, 4]);
        let gts = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[1i64, 1, 1]);
        let random = sampler(1000, 0.25, -1);
        let by_index = random.sample(&assign, &priors, &gts, &labels).unwrap();
        let masks = random.sample_masks(&inds).unwrap();
        assert_eq!(indices(&masks.pos), Vec::<i64>::try_from(&by_index.pos_inds).unwrap());
        assert_eq!(indices(&masks.neg), Vec::<i64>::try_from(&by_index.neg_inds).unwrap());
        assert_eq!(masks.avg_factor.double_value(&[]), by_index.avg_factor as f64);
        let by_index = PseudoSampler::sample(&assign, &priors, &gts, &labels).unwrap();
        let masks = pseudo_sample_masks(&inds).unwrap();
        assert_eq!(indices(&masks.pos), Vec::<i64>::try_from(&by_index.pos_inds).unwrap());
        assert_eq!(indices(&masks.neg), Vec::<i64>::try_from(&by_index.neg_inds).unwrap());
        assert_eq!(masks.avg_factor.double_value(&[]), by_index.avg_factor as f64);
    }

    /// With more candidates than wanted: `num * pos_fraction` positives and
    /// the rest negatives (at most `neg_pos_ub` per positive), all among the
    /// candidates, each candidate drawn about equally often.
    #[test]
    fn drawn_masks_have_the_samplers_counts_and_are_uniform() {
        tch::manual_seed(3);
        let inds = gt_inds(2000, 4);
        let (is_pos, is_neg) = (inds.f_gt(0).unwrap(), inds.f_eq(0).unwrap());
        let mut hits = Tensor::zeros([2000], (Kind::Int64, Device::Cpu));
        let rounds = 400;
        for _ in 0..rounds {
            let m = sampler(256, 0.5, -1).sample_masks(&inds).unwrap();
            assert_eq!((count(&m.pos), count(&m.neg)), (128, 128));
            assert_eq!(count(&m.pos.logical_and(&is_pos)), 128);
            assert_eq!(count(&m.neg.logical_and(&is_neg)), 128);
            assert_eq!(m.avg_factor.double_value(&[]), 256.0);
            hits += m.pos.to_kind(Kind::Int64) + m.neg.to_kind(Kind::Int64);
        }
        // Each of the 500 positives is drawn with probability 128/500, each
        // negative with 128/n_neg: the hit counts stay near their means.
        for (mask, n) in [(&is_pos, count(&is_pos)), (&is_neg, count(&is_neg))] {
            let mean = rounds as f64 * 128.0 / n as f64;
            let h = hits.masked_select(mask).to_kind(Kind::Double);
            let (lo, hi) = (h.min().double_value(&[]), h.max().double_value(&[]));
            assert!(lo > mean * 0.3 && hi < mean * 2.0, "hits {lo}..{hi} around {mean}");
        }
        // Few positives: the negatives fill up to num, or stop at neg_pos_ub
        // per positive; without positives the bound counts one.
        let few = gt_inds(2000, 1000);
        let m = sampler(256, 0.5, -1).sample_masks(&few).unwrap();
        assert_eq!((count(&m.pos), count(&m.neg)), (2, 254));
        let m = sampler(256, 0.5, 3).sample_masks(&few).unwrap();
        assert_eq!((count(&m.pos), count(&m.neg), m.avg_factor.double_value(&[]) as i64), (2, 6, 8));
        let none = few.f_clamp_max(0).unwrap();
        let m = sampler(256, 0.5, 3).sample_masks(&none).unwrap();
        assert_eq!((count(&m.pos), count(&m.neg), m.avg_factor.double_value(&[]) as i64), (0, 3, 4));
    }
}
