//! `YOLOXHSVRandomAug` against MMDetection 3.3.0 / OpenCV 4.10
//! (`tests/fixtures/hsv_aug.json`, written by `tests/data/hsv_reference.py`).

use super::*;
use crate::data::sample_rng;
use crate::data::transforms::mix_test_support::unhex;

#[test]
fn hsv_gains_equal_mmdetection_and_opencv_bit_for_bit() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hsv_aug.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (h, w) = (fixture["height"].as_u64().unwrap() as usize, fixture["width"].as_u64().unwrap() as usize);
    let img = Image { data: unhex(fixture["image"].as_str().unwrap()), height: h, width: w, channels: 3 };
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let gains: Vec<i16> = case["gains"].as_array().unwrap().iter().map(|g| g.as_i64().unwrap() as i16).collect();
        let expected = unhex(case["output"].as_str().unwrap());
        let out = augment_hsv(&img, [gains[0], gains[1], gains[2]]);
        let wrong: Vec<usize> =
            (0..h * w).filter(|&p| out.data[3 * p..3 * p + 3] != expected[3 * p..3 * p + 3]).collect();
        assert!(wrong.is_empty(), "gains {gains:?}: pixels {wrong:?} differ from cv2");
    }
}

#[test]
fn gains_are_drawn_within_the_deltas_and_sometimes_zero() {
    let cfg = YOLOXHSVRandomAugConfig { hue_delta: 5, saturation_delta: 30, value_delta: 30 };
    let aug = YOLOXHSVRandomAug::new(cfg, Site { index: 0, name: NAME }).unwrap();
    let mut rng = sample_rng(0, 0, 0);
    let (mut zeros, mut extremes) = ([0; 3], [0; 3]);
    for _ in 0..4000 {
        let g = aug.gains(&mut rng);
        for (i, limit) in [4, 29, 29].into_iter().enumerate() {
            assert!((-limit..=limit).contains(&g[i]), "{g:?}");
            zeros[i] += usize::from(g[i] == 0);
            extremes[i] += usize::from(g[i].abs() == limit);
        }
    }
    // Half the gains are switched off, a few more truncate to 0.
    assert!(zeros.iter().all(|&z| (1900..2500).contains(&z)), "{zeros:?}");
    assert!(extremes.iter().all(|&e| e > 20), "{extremes:?}");
    // Same stream, same gains.
    assert_eq!(aug.gains(&mut sample_rng(3, 1, 4)), aug.gains(&mut sample_rng(3, 1, 4)));
}

#[test]
fn deltas_and_grey_images_are_refused() {
    let at = Site { index: 3, name: NAME };
    let cfg = YOLOXHSVRandomAugConfig { hue_delta: 5, saturation_delta: 300, value_delta: 30 };
    let err = YOLOXHSVRandomAug::new(cfg, at).unwrap_err();
    assert!(err.message.contains("transform 3 (`YOLOXHSVRandomAug`): saturation_delta 300"), "{err}");
    let aug =
        YOLOXHSVRandomAug::new(YOLOXHSVRandomAugConfig { hue_delta: 5, saturation_delta: 30, value_delta: 30 }, at)
            .unwrap();
    let info = crate::data::DataInfo { img_id: 1, img_path: "grey.png".into(), height: 2, width: 2, instances: vec![] };
    let mut sample = Sample::new(std::sync::Arc::new(info), 0);
    sample.img = Some(Image { data: vec![9; 4], height: 2, width: 2, channels: 1 });
    let err = aug.apply(sample, &mut sample_rng(0, 0, 0)).unwrap_err();
    assert!(err.message.contains("1 channel(s)"), "{err}");
}
