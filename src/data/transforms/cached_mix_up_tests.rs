//! `CachedMixUp` against MMDetection 3.3.0 with fixed draws
//! (`tests/fixtures/mix_transforms.json`), and on hand-computed cases.

use super::*;
use crate::data::sample_rng;
use crate::data::transforms::mix_test_support::{
    assert_output, fixture, fixture_sample, painted, record, with_partners,
};

fn mix_up(cfg: serde_json::Value) -> CachedMixUp {
    let cfg: CachedMixUpConfig = serde_json::from_value(cfg).unwrap();
    CachedMixUp::new(cfg, Site { index: 5, name: NAME }).unwrap()
}

fn draws(jit_factor: f64, flip: bool) -> MixUpDraws {
    MixUpDraws { jit_factor, flip }
}

#[test]
fn mix_up_equals_mmdetection_for_fixed_draws() {
    let fx = fixture();
    let mut masks_compared = 0;
    for (i, case) in fx["mixup"].as_array().unwrap().iter().enumerate() {
        let t = mix_up(case["cfg"].clone());
        let sample = fixture_sample(&fx, case["sample"].as_str().unwrap());
        let partner = fixture_sample(&fx, case["partner"].as_str().unwrap());
        let d = draws(case["jit_factor"].as_f64().unwrap(), case["flip"].as_bool().unwrap());
        let offset = (case["offset"][0].as_u64().unwrap() as usize, case["offset"][1].as_u64().unwrap() as usize);
        let out = t.mix(sample, &partner, d, |_| offset).unwrap();
        // Where MMDetection misplaces the partner's masks (see the module
        // docs), only their count and shape are compared.
        let masks = case["masks_as_mmdet"].as_bool().unwrap();
        masks_compared += usize::from(masks);
        assert_output(&format!("mix-up case {i} ({})", case["cfg"]), &out, &case["out"], masks);
    }
    assert!(masks_compared >= 3);
}

#[test]
fn blend_is_the_truncated_mean_with_a_constant_partner() {
    let records = [
        record(0, (8, 10), [10, 21, 200], &[([0.0, 0.0, 4.0, 4.0], 1)]),
        record(1, (8, 10), [31, 0, 255], &[([2.0, 2.0, 6.0, 6.0], 2)]),
        record(2, (4, 10), [31, 0, 255], &[([2.0, 1.0, 6.0, 3.0], 3)]),
    ];
    let t = mix_up(serde_json::json!({"img_scale": [10, 8], "pad_val": 114}));
    let sample = painted(&records, 0, false);
    // The partner fills `img_scale`: every pixel is the mean, rounded down.
    let out = t.mix(sample.clone(), &painted(&records, 1, false), draws(1.0, false), |_| (0, 0)).unwrap();
    let img = out.img.as_ref().unwrap();
    assert!(img.data.chunks_exact(3).all(|p| p == [20, 10, 227]), "{:?}", &img.data[..12]);
    assert_eq!(out.gt_bboxes, [[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]]);
    assert_eq!(out.gt_bboxes_labels, [1, 2]);
    // A partner half as high leaves the padding (114) in the lower half;
    // flipped, its box is mirrored across the canvas width.
    let out = t.mix(sample, &painted(&records, 2, false), draws(1.0, true), |_| (0, 0)).unwrap();
    let img = out.img.as_ref().unwrap();
    for (i, p) in img.data.chunks_exact(3).enumerate() {
        let want = if i / 10 < 4 { [20, 10, 227] } else { [62, 67, 157] };
        assert_eq!(p, want, "pixel {i}");
    }
    assert_eq!(out.gt_bboxes, [[0.0, 0.0, 4.0, 4.0], [4.0, 1.0, 8.0, 3.0]]);
}

/// Partner boxes scaled by 1.5, shifted by the crop offset (5, 4), clipped
/// to the 6x8 sample; those left outside are removed.
#[test]
fn partner_boxes_are_scaled_shifted_clipped_and_filtered() {
    let records = [
        record(0, (6, 8), [0, 0, 0], &[([0.0, 0.0, 8.0, 6.0], 0)]),
        record(
            1,
            (8, 10),
            [90, 90, 90],
            &[([0.0, 0.0, 2.0, 2.0], 1), ([7.0, 5.0, 10.0, 8.0], 2), ([3.0, 0.0, 9.0, 4.0], 3)],
        ),
    ];
    let (sample, partner) = (painted(&records, 0, true), painted(&records, 1, true));
    let t = mix_up(serde_json::json!({"img_scale": [10, 8]}));
    let mut margins = None;
    let out = t.mix(sample.clone(), &partner, draws(1.5, false), |m| {
        margins = Some(m);
        (4, 5)
    });
    let out = out.unwrap();
    // The jittered canvas is 12x15 around the 6x8 sample.
    assert_eq!(margins, Some((6, 7)));
    assert_eq!(out.gt_bboxes, [[0.0, 0.0, 8.0, 6.0], [5.5, 3.5, 8.0, 6.0], [0.0, 0.0, 8.0, 2.0]]);
    assert_eq!(out.gt_bboxes_labels, [0, 2, 3]);
    // The partner's mask of box 2 is cut from the same window as its image:
    // rescaled rows 8..12 and columns 11..15 land on rows 4..6, columns 6..8.
    let Some(crate::data::Masks::Bitmap { data, count: 3, height: 6, width: 8 }) = &out.gt_masks else {
        panic!("{:?}", out.gt_masks)
    };
    let set: Vec<(usize, usize)> = (0..48).filter(|&i| data[48 + i] == 1).map(|i| (i / 8, i % 8)).collect();
    assert_eq!(set, [(4, 6), (4, 7), (5, 6), (5, 7)]);
    // Without clipping the boxes keep their extent; the first is still outside.
    let t = mix_up(serde_json::json!({"img_scale": [10, 8], "bbox_clip_border": false}));
    let out = t.mix(sample, &partner, draws(1.5, false), |_| (4, 5)).unwrap();
    assert_eq!(out.gt_bboxes, [[0.0, 0.0, 8.0, 6.0], [5.5, 3.5, 10.0, 8.0], [-0.5, -4.0, 8.5, 2.0]]);
}

#[test]
fn partners_without_boxes_are_redrawn_then_given_up() {
    let mut records: Vec<_> = (0..4).map(|i| record(i, (8, 8), [50; 3], &[])).collect();
    records[0] = record(0, (8, 8), [0; 3], &[([1.0, 1.0, 5.0, 5.0], 0)]);
    let t = mix_up(serde_json::json!({"img_scale": [8, 8], "max_iters": 3}));
    let sample = painted(&records, 0, false);
    // Every record but the sample's own lacks boxes; the sample's is drawn
    // within three tries for some streams and mixes in, otherwise nothing happens.
    let (mut mixed, mut kept) = (0, 0);
    for seed in 0..64 {
        let out = with_partners(&records, false, |p| t.apply(sample.clone(), &mut sample_rng(seed, 0, 0), p))
            .unwrap()
            .unwrap();
        if out == sample {
            kept += 1;
        } else {
            assert_eq!(out.gt_bboxes.len(), 2);
            mixed += 1;
        }
    }
    // P(no box in 3 draws) = (3/4)^3 ~ 0.42.
    assert!(kept > 10 && mixed > 10, "kept {kept}, mixed {mixed}");
}

#[test]
fn same_stream_same_mix_up_and_prob_zero_skips() {
    let records: Vec<_> = (0..5u8)
        .map(|i| record(i as u64, (10 + i as u32, 12), [40 * i; 3], &[([1.0, 2.0, 9.0, 8.0], i as i64)]))
        .collect();
    let t = mix_up(serde_json::json!({"img_scale": [12, 10], "ratio_range": [0.5, 1.5]}));
    let sample = painted(&records, 3, true);
    let run = |seed: u64| {
        with_partners(&records, true, |p| t.apply(sample.clone(), &mut sample_rng(seed, 1, 3), p)).unwrap().unwrap()
    };
    for seed in 0..10 {
        let out = run(seed);
        assert_eq!(out, run(seed));
        assert_eq!(out.img_shape, (13, 12));
        assert_eq!(out.gt_bboxes_labels[0], 3);
    }
    assert_ne!(run(0), run(1));
    let never = mix_up(serde_json::json!({"prob": 0.0}));
    let out = with_partners(&records, true, |p| never.apply(sample.clone(), &mut sample_rng(0, 0, 3), p)).unwrap();
    assert_eq!(out, Some(sample));
}
