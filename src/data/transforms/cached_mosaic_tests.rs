//! `CachedMosaic` against MMDetection 3.3.0 with fixed draws
//! (`tests/fixtures/mix_transforms.json`), on a hand-computed case, and
//! drawing its partners from the records.

use std::collections::BTreeSet;

use super::*;
use crate::data::sample_rng;
use crate::data::transforms::mix_test_support::{
    assert_output, fixture, fixture_sample, painted, record, with_partners,
};
use crate::data::Masks;

fn mosaic(cfg: serde_json::Value) -> CachedMosaic {
    let cfg: CachedMosaicConfig = serde_json::from_value(cfg).unwrap();
    CachedMosaic::new(cfg, Site { index: 2, name: NAME }).unwrap()
}

#[test]
fn mosaic_equals_mmdetection_for_fixed_draws() {
    let fx = fixture();
    for (i, case) in fx["mosaic"].as_array().unwrap().iter().enumerate() {
        let t = mosaic(case["cfg"].clone());
        let sample = fixture_sample(&fx, case["sample"].as_str().unwrap());
        let partners: Vec<Sample> =
            case["partners"].as_array().unwrap().iter().map(|p| fixture_sample(&fx, p.as_str().unwrap())).collect();
        let center = (case["center"][0].as_u64().unwrap() as usize, case["center"][1].as_u64().unwrap() as usize);
        let out = t.mosaic(sample, &[partners[0].clone(), partners[1].clone(), partners[2].clone()], center).unwrap();
        assert_output(&format!("mosaic case {i}"), &out, &case["out"], true);
    }
}

/// Four one-colour images; every number below is worked out by hand from
/// `Mosaic.transform` and `_mosaic_combine`.
#[test]
fn hand_made_mosaic_places_and_scales_boxes_by_the_formulas() {
    let records = [
        record(1, (16, 20), [1, 1, 1], &[([2.0, 4.0, 10.0, 12.0], 7)]),
        record(2, (4, 5), [2, 2, 2], &[([0.0, 0.0, 5.0, 4.0], 8)]),
        record(3, (8, 10), [3, 3, 3], &[([1.0, 1.0, 3.0, 3.0], 9), ([8.0, 0.0, 10.0, 2.0], 10)]),
        record(
            4,
            (20, 40),
            [4, 4, 4],
            &[([0.0, 0.0, 4.0, 4.0], 11), ([30.0, 10.0, 40.0, 20.0], 12), ([36.0, 0.0, 40.0, 4.0], 13)],
        ),
    ];
    let t = mosaic(serde_json::json!({"img_scale": [10, 8], "pad_val": 114}));
    let partners = [painted(&records, 1, true), painted(&records, 2, true), painted(&records, 3, true)];
    let out = t.mosaic(painted(&records, 0, true), &partners, (12, 6)).unwrap();
    // (2h, 2w) for img_scale (w, h).
    assert_eq!(out.img_shape, (16, 20));
    // Top left scaled by 1/2 and shifted by (2, -2); top right by 2 and (12, -2),
    // clipped; bottom left kept and shifted by (2, 6); bottom right scaled by
    // 1/4, shifted by (12, 6), clipped, and its third box, left on the
    // border, removed.
    assert_eq!(
        out.gt_bboxes,
        [
            [3.0, 0.0, 7.0, 4.0],
            [12.0, 0.0, 20.0, 6.0],
            [3.0, 7.0, 5.0, 9.0],
            [10.0, 6.0, 12.0, 8.0],
            [12.0, 6.0, 13.0, 7.0],
            [19.5, 8.5, 20.0, 11.0]
        ]
    );
    assert_eq!(out.gt_bboxes_labels, [7, 8, 9, 10, 11, 12]);
    assert_eq!(out.gt_ignore_flags, [false; 6]);
    let img = out.img.as_ref().unwrap();
    let px = |y: usize, x: usize| img.data[(y * 20 + x) * 3];
    let expected =
        [((0, 0), 114), ((3, 5), 1), ((3, 15), 2), ((10, 5), 3), ((8, 15), 4), ((12, 15), 114), ((15, 5), 114)];
    for ((y, x), v) in expected {
        assert_eq!(px(y, x), v, "pixel ({y}, {x})");
    }
    // The top right mask (its whole 4x5 image) covers rows 0..6, columns 12..20.
    let Some(Masks::Bitmap { data, count: 6, height: 16, width: 20 }) = &out.gt_masks else {
        panic!("{:?}", out.gt_masks)
    };
    let plane = &data[320..640];
    let set: Vec<usize> = (0..320).filter(|&i| plane[i] == 1).collect();
    let want: Vec<usize> = (0..6).flat_map(|y| (12..20).map(move |x| y * 20 + x)).collect();
    assert_eq!(set, want);
}

fn records() -> Vec<std::sync::Arc<crate::data::DataInfo>> {
    (0..6u8)
        .map(|i| record(i as u64, (12 + i as u32, 9 + 2 * i as u32), [10 * i; 3], &[([1.0, 1.0, 6.0, 7.0], i as i64)]))
        .collect()
}

#[test]
fn partners_come_from_the_records_and_the_stream_decides_them() {
    let records = records();
    let t = mosaic(serde_json::json!({"img_scale": [16, 12]}));
    let run = |seed: u64| {
        with_partners(&records, true, |partners| {
            t.apply(painted(&records, 2, true), &mut sample_rng(seed, 0, 2), partners).unwrap().unwrap()
        })
    };
    let mut seen = BTreeSet::new();
    for seed in 0..40 {
        let out = run(seed);
        assert_eq!(out, run(seed), "same stream, same mosaic");
        assert_eq!(out.img_shape, (24, 32));
        let colours: BTreeSet<u8> = out.img.as_ref().unwrap().data.iter().copied().collect();
        assert!(colours.iter().all(|c| *c == 114 || (c % 10 == 0 && *c < 60)), "{colours:?}");
        seen.extend(out.gt_bboxes_labels.iter().copied());
        let Some(Masks::Bitmap { count, height: 24, width: 32, .. }) = out.gt_masks else { panic!() };
        assert_eq!(count, out.gt_bboxes.len());
    }
    assert_eq!(seen, (0..6).collect(), "every record is drawn as a partner");
    assert_ne!(run(0), run(1));
}

#[test]
fn prob_zero_leaves_the_sample_unchanged() {
    let records = records();
    let t = mosaic(serde_json::json!({"prob": 0.0}));
    let sample = painted(&records, 1, false);
    let out = with_partners(&records, false, |p| t.apply(sample.clone(), &mut sample_rng(0, 0, 1), p)).unwrap();
    assert_eq!(out, Some(sample));
}
