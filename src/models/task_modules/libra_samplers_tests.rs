//! Libra R-CNN's samplers on hand-built assignments whose counts
//! MMDetection's algorithm fixes (its draws are random; these counts are
//! not): the instance-balanced positives per ground truth, the IoU-balanced
//! negatives per interval and the top-up, the `floor_thr` of -1 turning 0
//! after the first draw, and the combined counts.

use std::cell::Cell;

use tch::{Kind, Tensor};

use super::*;

fn mask(n: i64, on: &[i64]) -> Tensor {
    let m = Tensor::zeros([n], (Kind::Bool, Device::Cpu));
    m.index_fill(0, &Tensor::from_slice(on), 1)
}

#[test]
fn instance_balanced_positives_take_at_most_round_num_over_g_plus_one_per_ground_truth() {
    let _seed = crate::models::layers::fixtures::seeded();
    // Ground truth 1 matches 10 boxes, 2 matches 2, 3 matches 1; num 6: 3 per ground truth.
    let gt: Vec<i64> = [vec![1; 10], vec![2; 2], vec![3; 1], vec![0; 5]].concat();
    let n = gt.len() as i64;
    let on: Vec<i64> = (0..13).collect();
    let picked = instance_balanced(&mask(n, &on), &Tensor::from_slice(&gt), 6).unwrap();
    let count = |g: i64| picked.iter().filter(|&&i| gt[i as usize] == g).count();
    assert_eq!((picked.len(), count(1), count(2), count(3)), (6, 3, 2, 1));
    // Fewer positives than wanted: all of them.
    assert_eq!(instance_balanced(&mask(n, &[0, 11]), &Tensor::from_slice(&gt), 6).unwrap(), vec![0, 11]);
}

#[test]
fn iou_balanced_negatives_fill_each_interval_then_top_up() {
    let _seed = crate::models::layers::fixtures::seeded();
    // 30 negatives below 0.3, 10 in [0.3, 0.5), one positive at 0.9: intervals of 0.3 up to it.
    let mut iou: Vec<f32> = (0..30).map(|i| i as f32 / 100.0).collect();
    iou.extend((0..10).map(|i| 0.3 + i as f32 / 50.0));
    iou.push(0.9);
    let n = iou.len() as i64;
    let negs: Vec<i64> = (0..40).collect();
    let overlaps = Tensor::from_slice(&iou);
    let floor = Cell::new(-1.0);
    let picked = iou_balanced(&mask(n, &negs), &overlaps, 12, &floor, 0.0, 3).unwrap();
    let high = picked.iter().filter(|&&i| i >= 30).count();
    assert_eq!(picked.len(), 12);
    assert!(high >= 4 && high <= 8, "4 per interval, the 4 of the top-up anywhere: {high} in [0.3, 0.5)");
    assert!(picked.iter().all(|&i| i < 40));
    // MMDetection overwrites floor_thr -1 with 0 on the first draw.
    assert_eq!(floor.get(), 0.0);
    // From then on the zero-IoU negative (box 0) only enters through the floor share.
    let again = iou_balanced(&mask(n, &negs), &overlaps, 39, &floor, 0.0, 3).unwrap();
    assert_eq!(again.len(), 39);
}

#[test]
fn combined_sampler_keeps_random_samplers_counts() {
    let _seed = crate::models::layers::fixtures::seeded();
    let cfg = SamplerCfg(serde_json::json!({
        "type": "CombinedSampler", "num": 8, "pos_fraction": 0.25, "add_gt_as_proposals": true,
        "pos_sampler": {"type": "InstanceBalancedPosSampler"},
        "neg_sampler": {"type": "IoUBalancedNegSampler", "floor_thr": -1, "floor_fraction": 0, "num_bins": 3}}));
    let sampler = CombinedSampler::from_cfg(&cfg).unwrap();
    let priors = Tensor::from_slice(&(0..20).map(|i| [i as f32, 0.0, i as f32 + 10.0, 10.0]).collect::<Vec<_>>().concat()).view([20, 4]);
    let gt_inds: Vec<i64> = [vec![1; 5], vec![0; 15]].concat();
    let assign = AssignResult {
        num_gts: 1,
        gt_inds: Tensor::from_slice(&gt_inds),
        labels: Tensor::from_slice(&[vec![2i64; 5], vec![-1; 15]].concat()),
        max_overlaps: Some(Tensor::from_slice(&(0..20).map(|i| if i < 5 { 0.8f32 } else { (i as f32) / 50.0 }).collect::<Vec<_>>())),
        matches: None,
    };
    let gts = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0]).view([1, 4]);
    let res = sampler.sample(&assign, &priors, &gts, &Tensor::from_slice(&[2i64])).unwrap();
    // 2 positives (8 * 0.25) among the ground truth and its 5 boxes, 6 negatives.
    assert_eq!((res.pos_inds.numel(), res.neg_inds.numel()), (2, 6));
    // Without the assigner's IoUs the negatives cannot be balanced.
    let bare = AssignResult { max_overlaps: None, ..assign };
    assert!(sampler.sample(&bare, &priors, &gts, &Tensor::from_slice(&[2i64])).is_err());
}
