//! `RandomSampler` (`mmdet/models/task_modules/samplers/random_sampler.py`
//! on `base_sampler.py`): at most `num * pos_fraction` positives and the
//! rest negatives (bounded by `neg_pos_ub` per positive), each drawn
//! uniformly without replacement when there are more than wanted.
//!
//! Shape shorthand: `P` priors, `G` ground truths of one image, `Np`/`Nn`
//! sampled positives/negatives.
//!
//! Randomness: mmdet draws `torch.randperm(n)` on the CPU generator whatever
//! the boxes' device (a workaround it keeps for a CUDA randperm bug) and
//! moves the permutation over; so does this, through libtorch's global CPU
//! generator, so a run seeded like mmdet's draws the same samples.

use detc::registry::models::task_modules::RandomSamplerConfig;
use detc::registry::refs::SamplerCfg;
use tch::{Device, Kind, Tensor};

use super::pseudo_sampler::check_inputs;
use super::{AssignResult, SamplingResult};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "RandomSampler";

#[derive(Debug, Clone)]
pub struct RandomSampler {
    pub cfg: RandomSamplerConfig,
}

impl RandomSampler {
    /// Builds from a `sampler` config dict (`type: RandomSampler`).
    pub fn from_cfg(cfg: &SamplerCfg) -> ModelResult<Self> {
        match cfg_type(&cfg.0, "sampler")? {
            NAME => Ok(Self::new(&parse_cfg(&cfg.0, NAME)?)),
            other => Err(ModelError::new(
                "sampler",
                format!("expected RandomSampler, got {other:?}"),
            )),
        }
    }

    pub fn new(cfg: &RandomSamplerConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// `sample(assign_result, pred_instances, gt_instances)`: priors (P, 4),
    /// gt_bboxes (G, 4), gt_labels (G,). With `add_gt_as_proposals` the
    /// ground truths are put before the priors (`pos_is_gt`), as mmdet does;
    /// `avg_factor` counts positives and negatives (`avg_factor_with_neg`).
    /// The indices then refer to the G + P boxes; `pos_inds` and `neg_inds`
    /// are ascending (mmdet's `unique()`).
    pub fn sample(
        &self,
        assign: &AssignResult,
        priors: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
    ) -> ModelResult<SamplingResult> {
        self.sample_with(assign, priors, gt_bboxes, gt_labels, &mut |candidates, num, _| choose(candidates, num))
    }

    /// `BaseSampler.sample` with its own choice of samples, as
    /// `OHEMSampler` overrides `_sample_pos` / `_sample_neg`:
    /// `pick(candidates, num, side)` gets the mask of the positive (or
    /// negative) candidates among the G + P boxes and returns at most `num`
    /// of their indices, ascending; `side` carries the boxes and their labels
    /// (the background, `-1`, for negatives: the caller knows the class count).
    pub fn sample_with(
        &self,
        assign: &AssignResult,
        priors: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
        pick: &mut dyn FnMut(&Tensor, i64, Side) -> ModelResult<Tensor>,
    ) -> ModelResult<SamplingResult> {
        let (num_gts, num_priors) = check_inputs(NAME, assign, priors, gt_bboxes, gt_labels)?;
        let device = priors.device();
        let priors = priors.f_view([-1, 4])?;
        // `assign_result.add_gt_`: the ground truths become positives of themselves.
        let added = self.cfg.add_gt_as_proposals && num_gts > 0;
        let max_overlaps = match &assign.max_overlaps {
            Some(m) if added => Some(Tensor::f_cat(&[&Tensor::f_ones([num_gts], (m.kind(), device))?, m], 0)?),
            Some(m) => Some(m.shallow_clone()),
            None => None,
        };
        let (priors, gt_inds, labels, gt_flags) = if added {
            let own = Tensor::f_arange_start(1, num_gts + 1, (Kind::Int64, device))?;
            (
                Tensor::f_cat(&[&gt_bboxes.f_to_kind(priors.kind())?, &priors], 0)?,
                Tensor::f_cat(&[&own, &assign.gt_inds], 0)?,
                Tensor::f_cat(&[&gt_labels.f_to_kind(Kind::Int64)?, &assign.labels], 0)?,
                Tensor::f_cat(
                    &[
                        Tensor::f_ones([num_gts], (Kind::Uint8, device))?,
                        Tensor::f_zeros([num_priors], (Kind::Uint8, device))?,
                    ],
                    0,
                )?,
            )
        } else {
            (
                priors,
                assign.gt_inds.shallow_clone(),
                assign.labels.shallow_clone(),
                Tensor::f_zeros([num_priors], (Kind::Uint8, device))?,
            )
        };
        let num_expected_pos = (self.cfg.num as f64 * self.cfg.pos_fraction) as i64;
        let pos_inds = pick(&gt_inds.f_gt(0)?, num_expected_pos, Side::Positive { boxes: &priors, labels: &labels, gt_inds: &gt_inds })?;
        let num_pos = pos_inds.numel() as i64;
        let mut num_expected_neg = self.cfg.num as i64 - num_pos;
        if self.cfg.neg_pos_ub >= 0 {
            let bound = (self.cfg.neg_pos_ub as f64 * num_pos.max(1) as f64) as i64;
            num_expected_neg = num_expected_neg.min(bound);
        }
        let neg_inds = pick(&gt_inds.f_eq(0)?, num_expected_neg, Side::Negative { boxes: &priors, max_overlaps: max_overlaps.as_ref() })?;
        let pos_assigned_gt_inds = gt_inds.f_index_select(0, &pos_inds)?.f_sub_scalar(1)?;
        let pos_gt_bboxes = if num_gts == 0 {
            if num_pos != 0 {
                return Err(ModelError::new(
                    NAME,
                    "positives were assigned to an image without ground truths",
                ));
            }
            gt_bboxes.f_view([-1, 4])?
        } else {
            gt_bboxes.f_index_select(0, &pos_assigned_gt_inds)?
        };
        let (num_pos, num_neg) = (num_pos.max(1), (neg_inds.numel() as i64).max(1));
        Ok(SamplingResult {
            pos_priors: priors.f_index_select(0, &pos_inds)?,
            neg_priors: priors.f_index_select(0, &neg_inds)?,
            pos_is_gt: gt_flags.f_index_select(0, &pos_inds)?,
            num_gts,
            pos_gt_labels: labels.f_index_select(0, &pos_inds)?,
            pos_assigned_gt_inds,
            pos_gt_bboxes,
            num_pos,
            num_neg,
            avg_factor: num_pos + num_neg,
            pos_inds,
            neg_inds,
        })
    }
}

/// The candidates a [`RandomSampler::sample_with`] pick chooses from: all
/// G + P boxes (ground truths first when added), and for positives the
/// label of each, and the assignment's ground-truth index (`k + 1`) and
/// largest IoU of every box (a ground truth added as a proposal has IoU 1).
pub enum Side<'a> {
    Positive { boxes: &'a Tensor, labels: &'a Tensor, gt_inds: &'a Tensor },
    Negative { boxes: &'a Tensor, max_overlaps: Option<&'a Tensor> },
}

/// `_sample_pos` / `_sample_neg` then `unique()`: the indices where `mask`
/// holds, all of them when at most `num` (ascending), else `num` of them
/// drawn by a `randperm` (ascending after mmdet's `unique`). The draw is on
/// the gallery's device: on the CPU it is MMDetection's own (a CPU
/// `randperm`); on CUDA the CUDA generator draws the same uniform subset
/// without a host permutation of every candidate (about 200 000 negative
/// anchors per image for an RPN), its transfer and a wait for the device.
pub fn choose(mask: &Tensor, num: i64) -> ModelResult<Tensor> {
    let gallery = mask.f_nonzero()?.f_view([-1])?;
    let n = gallery.numel() as i64;
    if n <= num {
        return Ok(gallery);
    }
    let perm = Tensor::f_randperm(n, (Kind::Int64, gallery.device()))?.f_narrow(0, 0, num.max(0))?;
    // The permutation has no repeats, so mmdet's `unique()` only sorts.
    let (picked, _) = gallery.f_index_select(0, &perm)?.f_sort(0, false)?;
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, tensor};
    use crate::models::ops::nms::tests::{fixture, ints};
    use crate::models::task_modules::MaxIoUAssigner;
    use detc::registry::refs::AssignerCfg;

    fn sampler(json: serde_json::Value) -> RandomSampler {
        let mut json = json;
        json["type"] = NAME.into();
        RandomSampler::from_cfg(&SamplerCfg(json)).unwrap()
    }

    /// With `num` above the candidates nothing is drawn, so mmdet's result is
    /// exact: ground truths prepended, `pos_is_gt`, the gathered targets.
    #[test]
    fn sampling_without_a_draw_matches_mmdet() {
        let fx = fixture();
        let (priors, gts, labels) = (
            tensor(fx, "assign.priors"),
            tensor(fx, "assign.gts"),
            tensor(fx, "assign.labels"),
        );
        let a = MaxIoUAssigner::from_cfg(&AssignerCfg(serde_json::json!({
            "type": "MaxIoUAssigner", "pos_iou_thr": 0.7, "neg_iou_thr": 0.3, "min_pos_iou": 0.3})))
        .unwrap();
        let assign = a.assign(&priors, &gts, &labels, None).unwrap();
        let s = sampler(serde_json::json!({"num": 1000, "pos_fraction": 0.25}))
            .sample(&assign, &priors, &gts, &labels)
            .unwrap();
        let want = |k: &str| tensor(fx, &format!("sample.{k}"));
        for (k, got) in [
            ("pos_inds", &s.pos_inds),
            ("neg_inds", &s.neg_inds),
            ("pos_is_gt", &s.pos_is_gt),
            ("pos_assigned_gt_inds", &s.pos_assigned_gt_inds),
            ("pos_gt_labels", &s.pos_gt_labels),
        ] {
            assert_eq!(ints(got), ints(&want(k)), "{k}");
        }
        assert_close(
            &s.pos_gt_bboxes,
            &want("pos_gt_bboxes"),
            0.0,
            0.0,
            "pos_gt_bboxes",
        );
        assert_close(&s.pos_priors, &want("pos_priors"), 0.0, 0.0, "pos_priors");
        assert_eq!(s.avg_factor, want("avg_factor").int64_value(&[]));
    }

    /// P priors, positives on every 10th (ground truth i % G), ignored on
    /// every 7th, negatives elsewhere.
    fn synthetic(p: i64, g: i64) -> (AssignResult, Tensor, Tensor, Tensor) {
        let gt_inds: Vec<i64> = (0..p)
            .map(|i| {
                if g > 0 && i % 10 == 0 {
                    i / 10 % g + 1
                } else if i % 7 == 0 {
                    -1
                } else {
                    0
                }
            })
            .collect();
        let labels: Vec<i64> = gt_inds
            .iter()
            .map(|&k| if k > 0 { 2 * k } else { -1 })
            .collect();
        let priors = Tensor::arange(p * 4, (Kind::Float, Device::Cpu)).view([p, 4]);
        let gts = Tensor::arange(g * 4, (Kind::Float, Device::Cpu)).view([g, 4]) * -1.0;
        let gt_labels = Tensor::arange_start_step(2, 2 * g + 2, 2, (Kind::Int64, Device::Cpu));
        let a = AssignResult {
            num_gts: g,
            gt_inds: Tensor::from_slice(&gt_inds),
            labels: Tensor::from_slice(&labels),
            max_overlaps: None,
            matches: None,
        };
        (a, priors, gts, gt_labels)
    }

    fn strictly_ascending(v: &[i64]) -> bool {
        v.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn random_sampling_keeps_counts_fractions_and_sources() {
        let (assign, priors, gts, labels) = synthetic(600, 4);
        let all_gt = ints(&assign.gt_inds);
        let s = sampler(
            serde_json::json!({"num": 64, "pos_fraction": 0.25, "add_gt_as_proposals": false}),
        )
        .sample(&assign, &priors, &gts, &labels)
        .unwrap();
        let (pos, neg) = (ints(&s.pos_inds), ints(&s.neg_inds));
        assert_eq!((pos.len(), neg.len(), s.avg_factor), (16, 48, 64));
        assert!(strictly_ascending(&pos) && strictly_ascending(&neg));
        assert!(pos.iter().all(|&i| all_gt[i as usize] > 0));
        assert!(neg.iter().all(|&i| all_gt[i as usize] == 0));
        let assigned = ints(&s.pos_assigned_gt_inds);
        assert!(pos
            .iter()
            .zip(&assigned)
            .all(|(&i, &k)| all_gt[i as usize] == k + 1));
        assert_eq!(
            ints(&s.pos_gt_labels),
            assigned.iter().map(|k| 2 * (k + 1)).collect::<Vec<_>>()
        );
        assert_eq!(
            s.pos_gt_bboxes,
            gts.index_select(0, &s.pos_assigned_gt_inds)
        );
        assert_eq!(s.pos_priors, priors.index_select(0, &s.pos_inds));
        assert_eq!(ints(&s.pos_is_gt), vec![0; 16]);

        // Ground truths as proposals: indices over G + P boxes, the first G are gts.
        let s = sampler(serde_json::json!({"num": 64, "pos_fraction": 0.5}))
            .sample(&assign, &priors, &gts, &labels)
            .unwrap();
        let pos = ints(&s.pos_inds);
        assert_eq!(pos.len(), 32);
        for ((&i, &is_gt), &k) in pos
            .iter()
            .zip(&ints(&s.pos_is_gt))
            .zip(&ints(&s.pos_assigned_gt_inds))
        {
            if i < 4 {
                assert_eq!((is_gt, k), (1, i));
                assert_eq!(
                    s.pos_priors
                        .get(pos.iter().position(|&p| p == i).unwrap() as i64),
                    gts.get(i)
                );
            } else {
                assert_eq!((is_gt, all_gt[(i - 4) as usize]), (0, k + 1));
            }
        }
        assert!(ints(&s.neg_inds)
            .iter()
            .all(|&i| i >= 4 && all_gt[(i - 4) as usize] == 0));

        // neg_pos_ub caps the negatives per positive.
        let (few, priors, gts, labels) = synthetic(25, 2);
        let s = sampler(
            serde_json::json!({"num": 64, "pos_fraction": 0.5, "neg_pos_ub": 2,
                                           "add_gt_as_proposals": false}),
        )
        .sample(&few, &priors, &gts, &labels)
        .unwrap();
        assert_eq!((s.pos_inds.numel(), s.neg_inds.numel()), (3, 6));
    }

    #[test]
    fn sampling_an_image_without_ground_truth_takes_negatives_only() {
        let (assign, priors, gts, labels) = synthetic(300, 0);
        let s = sampler(serde_json::json!({"num": 50, "pos_fraction": 0.5}))
            .sample(&assign, &priors, &gts, &labels)
            .unwrap();
        assert_eq!((s.pos_inds.numel(), s.neg_inds.numel()), (0, 50));
        assert_eq!((s.num_pos, s.num_neg, s.avg_factor), (1, 50, 51));
        assert_eq!(s.pos_gt_bboxes.size(), [0, 4]);
        let wrong =
            RandomSampler::from_cfg(&SamplerCfg(serde_json::json!({"type": "PseudoSampler"})));
        assert_eq!(wrong.unwrap_err().component, "sampler");
        let short = AssignResult {
            num_gts: 0,
            gt_inds: Tensor::from_slice(&[0i64]),
            labels: Tensor::from_slice(&[-1i64]),
            max_overlaps: None,
            matches: None,
        };
        assert!(sampler(serde_json::json!({"num": 5, "pos_fraction": 0.5}))
            .sample(&short, &priors, &gts, &labels)
            .is_err());
    }
}
