//! `PseudoSampler` (`mmdet/models/task_modules/samplers/pseudo_sampler.py`)
//! and the `SamplingResult` it returns (`sampling_result.py`): no sampling at
//! all, the positives are the predictions matched to a ground truth and the
//! negatives the ones assigned to background. Sparse R-CNN and QueryInst use
//! it after the Hungarian assigner.
//!
//! Shape shorthand: `P` predictions (priors) and `G` ground truths of one
//! image, `Np`/`Nn` positives/negatives.

use tch::{Kind, Tensor};

use super::AssignResult;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::upload;

/// mmdet's `SamplingResult` with `avg_factor_with_neg=False` (as
/// `PseudoSampler` builds it).
#[derive(Debug)]
pub struct SamplingResult {
    /// (Np,) int64: indices of the positive priors, ascending.
    pub pos_inds: Tensor,
    /// (Nn,) int64: indices of the negative priors, ascending.
    pub neg_inds: Tensor,
    /// (Np, 4) the positive priors (x1y1x2y2).
    pub pos_priors: Tensor,
    /// (Nn, 4) the negative priors.
    pub neg_priors: Tensor,
    /// (Np,) uint8: whether a positive is a ground truth added as a prior (never, here).
    pub pos_is_gt: Tensor,
    /// G, the image's ground-truth count.
    pub num_gts: i64,
    /// (Np,) int64: index into the image's ground truths of each positive.
    pub pos_assigned_gt_inds: Tensor,
    /// (Np,) int64: the label of each positive's ground truth.
    pub pos_gt_labels: Tensor,
    /// (Np, 4) each positive's ground-truth box; (0, 4) when G is 0.
    pub pos_gt_bboxes: Tensor,
    /// `max(Np, 1)` and `max(Nn, 1)`, as mmdet counts them.
    pub num_pos: i64,
    pub num_neg: i64,
    /// `num_pos` (mmdet's `avg_factor` without negatives).
    pub avg_factor: i64,
}

impl SamplingResult {
    /// (Np + Nn, 4): the positive then the negative priors.
    pub fn priors(&self) -> ModelResult<Tensor> {
        Ok(Tensor::f_cat(&[&self.pos_priors, &self.neg_priors], 0)?)
    }

    /// mmdet's deprecated alias of `pos_priors`.
    pub fn pos_bboxes(&self) -> &Tensor {
        &self.pos_priors
    }
}

/// The sampler of Sparse R-CNN / QueryInst: takes every assigned prediction.
#[derive(Debug, Clone, Copy, Default)]
pub struct PseudoSampler;

impl PseudoSampler {
    /// `sample(assign_result, pred_instances, gt_instances)`: assign is the
    /// assignment of the image's P priors; priors: (P, 4); gt_bboxes: (G, 4)
    /// x1y1x2y2; gt_labels: (G,) (only checked: as in mmdet, the positives'
    /// labels come from the assignment).
    pub fn sample(
        assign: &AssignResult,
        priors: &Tensor,
        gt_bboxes: &Tensor,
        gt_labels: &Tensor,
    ) -> ModelResult<SamplingResult> {
        let (num_gts, num_priors) = check_inputs("PseudoSampler", assign, priors, gt_bboxes, gt_labels)?;
        let (pos_inds, neg_inds, pos_assigned_gt_inds) = match &assign.matches {
            // Matches made on the host go up without a synchronisation.
            Some(matches) => {
                let device = assign.gt_inds.device();
                let mut matched = vec![false; num_priors as usize];
                let (mut pos, mut gts) = (Vec::with_capacity(matches.len()), Vec::with_capacity(matches.len()));
                for &(prior, gt) in matches {
                    let slot = matched.get_mut(prior as usize).filter(|_| (0..num_gts).contains(&gt));
                    let Some(slot) = slot else {
                        return Err(ModelError::new(
                            "PseudoSampler",
                            format!("match ({prior}, {gt}) is outside {num_priors} priors and {num_gts} ground truths"),
                        ));
                    };
                    *slot = true;
                    pos.push(prior);
                    gts.push(gt);
                }
                let neg: Vec<i64> = (0..num_priors).filter(|&i| !matched[i as usize]).collect();
                (upload(&pos, device)?, upload(&neg, device)?, upload(&gts, device)?)
            }
            // nonzero() lists indices ascending and once each, so mmdet's
            // `.unique()` after it changes nothing.
            None => {
                let pos_inds = assign.gt_inds.f_gt(0)?.f_nonzero()?.f_view([-1])?;
                let neg_inds = assign.gt_inds.f_eq(0)?.f_nonzero()?.f_view([-1])?;
                let pos_assigned_gt_inds = assign.gt_inds.f_index_select(0, &pos_inds)?.f_sub_scalar(1)?;
                (pos_inds, neg_inds, pos_assigned_gt_inds)
            }
        };
        let pos_gt_bboxes = if gt_bboxes.numel() == 0 {
            if pos_inds.numel() != 0 {
                return Err(ModelError::new(
                    "PseudoSampler",
                    "positives were assigned to an image without ground truths",
                ));
            }
            gt_bboxes.f_view([-1, 4])?
        } else {
            gt_bboxes
                .f_view([-1, 4])?
                .f_index_select(0, &pos_assigned_gt_inds)?
        };
        let num_pos = (pos_inds.numel() as i64).max(1);
        Ok(SamplingResult {
            pos_priors: priors.f_index_select(0, &pos_inds)?,
            neg_priors: priors.f_index_select(0, &neg_inds)?,
            pos_is_gt: Tensor::f_zeros([pos_inds.numel() as i64], (Kind::Uint8, priors.device()))?,
            num_gts,
            pos_gt_labels: assign.labels.f_index_select(0, &pos_inds)?,
            pos_assigned_gt_inds,
            pos_gt_bboxes,
            num_pos,
            num_neg: (neg_inds.numel() as i64).max(1),
            avg_factor: num_pos,
            pos_inds,
            neg_inds,
        })
    }
}

/// The shapes a sampler's `sample` needs: ground truths (G, 4) and (G,),
/// an assignment of every prior. Returns `(G, P)`; `owner` names the sampler.
pub(super) fn check_inputs(
    owner: &str,
    assign: &AssignResult,
    priors: &Tensor,
    gt_bboxes: &Tensor,
    gt_labels: &Tensor,
) -> ModelResult<(i64, i64)> {
    let num_gts = gt_bboxes.size().first().copied().unwrap_or(0);
    if gt_labels.size() != [num_gts] || (num_gts > 0 && gt_bboxes.size() != [num_gts, 4]) {
        return Err(ModelError::new(
            owner,
            format!(
                "ground truths need bboxes (G, 4) and labels (G,), got {:?} and {:?}",
                gt_bboxes.size(),
                gt_labels.size()
            ),
        ));
    }
    let num_priors = priors.size().first().copied().unwrap_or(0);
    if assign.gt_inds.size() != [num_priors] || assign.labels.size() != [num_priors] {
        return Err(ModelError::new(
            owner,
            format!(
                "assignment of {:?} priors does not fit priors {:?}",
                assign.gt_inds.size(),
                priors.size()
            ),
        ));
    }
    Ok((num_gts, num_priors))
}

#[cfg(test)]
mod tests {
    // The comparison with mmdet's PseudoSampler on two images (one without
    // ground truths) is in roi_heads/bbox_heads/dii_head_loss.rs.
    use super::*;
    use tch::Device;

    fn assign(gt_inds: &[i64], labels: &[i64], num_gts: i64) -> AssignResult {
        AssignResult {
            num_gts,
            gt_inds: Tensor::from_slice(gt_inds),
            labels: Tensor::from_slice(labels),
            max_overlaps: None,
            matches: None,
        }
    }

    #[test]
    fn pseudo_sampler_splits_matched_and_background() {
        let priors = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]);
        let gts = Tensor::from_slice(&[0.0f32, 0.0, 5.0, 5.0, 1.0, 1.0, 9.0, 9.0]).view([2, 4]);
        let s = PseudoSampler::sample(
            &assign(&[0, 2, 1], &[-1, 4, 0], 2),
            &priors,
            &gts,
            &Tensor::from_slice(&[0i64, 4]),
        )
        .unwrap();
        assert_eq!(Vec::<i64>::try_from(&s.pos_inds).unwrap(), [1, 2]);
        assert_eq!(Vec::<i64>::try_from(&s.neg_inds).unwrap(), [0]);
        assert_eq!(
            Vec::<i64>::try_from(&s.pos_assigned_gt_inds).unwrap(),
            [1, 0]
        );
        assert_eq!(
            s.pos_gt_bboxes,
            gts.index_select(0, &Tensor::from_slice(&[1i64, 0]))
        );
        assert_eq!(
            s.priors().unwrap(),
            priors.index_select(0, &Tensor::from_slice(&[1i64, 2, 0]))
        );
    }

    /// Matches made on the host (the Hungarian assigner's) give what
    /// `nonzero` on the assignment gives, and are checked against the shapes.
    #[test]
    fn pseudo_sampler_takes_host_matches_as_nonzero_would() {
        let priors = Tensor::arange(20, (Kind::Float, Device::Cpu)).view([5, 4]);
        let gts = Tensor::from_slice(&[0.0f32, 0.0, 5.0, 5.0, 1.0, 1.0, 9.0, 9.0]).view([2, 4]);
        let labels = Tensor::from_slice(&[3i64, 4]);
        let on_device = assign(&[0, 2, 0, 1, 0], &[-1, 4, -1, 3, -1], 2);
        let on_host = AssignResult { matches: Some(vec![(1, 1), (3, 0)]), ..assign(&[0, 2, 0, 1, 0], &[-1, 4, -1, 3, -1], 2) };
        let want = PseudoSampler::sample(&on_device, &priors, &gts, &labels).unwrap();
        let got = PseudoSampler::sample(&on_host, &priors, &gts, &labels).unwrap();
        for (name, a, b) in [
            ("pos_inds", &got.pos_inds, &want.pos_inds),
            ("neg_inds", &got.neg_inds, &want.neg_inds),
            ("pos_assigned_gt_inds", &got.pos_assigned_gt_inds, &want.pos_assigned_gt_inds),
            ("pos_gt_labels", &got.pos_gt_labels, &want.pos_gt_labels),
            ("pos_gt_bboxes", &got.pos_gt_bboxes, &want.pos_gt_bboxes),
            ("pos_priors", &got.pos_priors, &want.pos_priors),
            ("neg_priors", &got.neg_priors, &want.neg_priors),
        ] {
            assert_eq!(a, b, "{name}");
        }
        assert_eq!((got.num_pos, got.num_neg, got.avg_factor), (want.num_pos, want.num_neg, want.avg_factor));
        let outside = AssignResult { matches: Some(vec![(5, 0)]), ..assign(&[0; 5], &[-1; 5], 2) };
        let err = PseudoSampler::sample(&outside, &priors, &gts, &labels).unwrap_err();
        assert!(err.to_string().contains("outside 5 priors"), "{err}");
    }

    #[test]
    fn pseudo_sampler_rejects_mismatched_inputs() {
        let priors = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        let no_gt = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let no_labels = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let short = assign(&[0, 0], &[-1, -1], 0);
        assert!(PseudoSampler::sample(&short, &priors, &no_gt, &no_labels).is_err());
        let ghost = assign(&[1, 0, 0], &[2, -1, -1], 0);
        let err = PseudoSampler::sample(&ghost, &priors, &no_gt, &no_labels).unwrap_err();
        assert_eq!(err.component, "PseudoSampler");
    }
}
