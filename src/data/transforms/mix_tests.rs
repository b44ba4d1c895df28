//! Pipelines with multi-image transforms: RTMDet's training pipeline on a
//! small shapes dataset through `apply_with`, and what `Pipeline::check`
//! refuses.

use std::path::Path;

use serde_json::{json, Value};

use super::Pipeline;
use crate::data::coco::CocoDataset;
use crate::data::shapes::{write_dataset, ShapesOptions};
use crate::data::{sample_rng, Masks, Sample};

/// RTMDet-Ins's training pipeline (`rtmdet-ins_s_8xb32-300e_coco.py`) at a
/// tenth of its scale, with bitmap masks.
fn rtmdet_pipeline() -> Vec<Value> {
    vec![
        json!({"type": "LoadImageFromFile"}),
        json!({"type": "LoadAnnotations", "with_bbox": true, "with_mask": true, "poly2mask": true}),
        json!({"type": "CachedMosaic", "img_scale": [64, 64], "pad_val": 114.0}),
        json!({"type": "RandomResize", "scale": [128, 128], "ratio_range": [0.5, 2.0], "keep_ratio": true}),
        json!({"type": "RandomCrop", "crop_size": [64, 64], "recompute_bbox": true, "allow_negative_crop": true}),
        json!({"type": "YOLOXHSVRandomAug"}),
        json!({"type": "RandomFlip", "prob": 0.5}),
        json!({"type": "Pad", "size": [64, 64], "pad_val": {"img": [114, 114, 114]}}),
        json!({"type": "CachedMixUp", "img_scale": [64, 64], "ratio_range": [1.0, 1.0], "max_cached_images": 20,
               "pad_val": [114, 114, 114]}),
        json!({"type": "FilterAnnotations", "min_gt_bbox_wh": [1, 1]}),
        json!({"type": "PackDetInputs"}),
    ]
}

fn shapes(dir: &Path) -> CocoDataset {
    write_dataset(dir, &ShapesOptions { train: 6, val: 0, size: 48, seed: 3 }).unwrap();
    let cfg = json!({
        "type": "CocoDataset", "data_root": dir, "ann_file": "annotations/instances_train.json",
        "data_prefix": {"img": "train/"}, "metainfo": {"classes": crate::data::shapes::CLASSES},
    });
    CocoDataset::from_config(&cfg, dir).unwrap()
}

#[test]
fn rtmdet_pipeline_mixes_dataset_images_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = shapes(dir.path());
    let pipeline = Pipeline::from_config(&rtmdet_pipeline()).unwrap();
    assert!(pipeline.mixes());
    let run = |i: usize, epoch: u64| {
        pipeline.apply_with(Sample::new(dataset.get(i), i), &mut sample_rng(9, epoch, i), &dataset).unwrap()
    };
    let (mut instances, mut dropped) = (0, 0);
    for i in 0..dataset.len() {
        // FilterAnnotations drops a sample whose boxes are all too small.
        let Some(packed) = run(i, 0) else {
            dropped += 1;
            continue;
        };
        assert_eq!((packed.inputs.height, packed.inputs.width, packed.inputs.channels), (64, 64, 3));
        let gt = &packed.gt_instances;
        assert_eq!(gt.labels.len(), gt.bboxes.len());
        let Some(Masks::Bitmap { count, height: 64, width: 64, .. }) = gt.masks else { panic!("{:?}", gt.masks) };
        assert_eq!(count, gt.bboxes.len());
        for b in &gt.bboxes {
            assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= 64.0 && b[3] <= 64.0 && b[2] - b[0] > 1.0, "{b:?}");
        }
        instances += gt.bboxes.len();
        // A function of (seed, epoch, index) only.
        assert_eq!(run(i, 0), Some(packed.clone()));
        assert_ne!(run(i, 1), Some(packed));
    }
    assert!(dropped < 2, "{dropped} of {} samples dropped", dataset.len());
    assert!(instances > 2 * dataset.len(), "mosaic and mix-up gather instances: {instances}");
    // Without the dataset, the pipeline says why it cannot run.
    let err = pipeline.apply(Sample::new(dataset.get(0), 0), &mut sample_rng(0, 0, 0)).unwrap_err();
    assert!(err.message.contains("pipeline transform 2 (`CachedMosaic`) mixes in other images"), "{err}");
}

/// `Pipeline::check` names the transform and the value at fault.
#[test]
fn check_refuses_what_mmdetection_asserts_against() {
    let with = |i: usize, key: &str, value: Value| {
        let mut p = rtmdet_pipeline();
        p[i][key] = value;
        Pipeline::check(&p).unwrap_err()
    };
    let cases = [
        (
            with(2, "max_cached_images", json!(3)),
            2,
            "transform 2 (`CachedMosaic`): max_cached_images 3 must be at least 4",
        ),
        (
            with(8, "max_cached_images", json!(1)),
            8,
            "transform 8 (`CachedMixUp`): max_cached_images 1 must be at least 2",
        ),
        (with(2, "prob", json!(1.5)), 2, "transform 2 (`CachedMosaic`): prob 1.5 is not in [0, 1]"),
        (with(8, "prob", json!(-0.1)), 8, "transform 8 (`CachedMixUp`): prob -0.1 is not in [0, 1]"),
        (with(2, "center_ratio_range", json!([0.5, 2.5])), 2, "center_ratio_range (0.5, 2.5) must lie in [0, 2]"),
        (with(8, "ratio_range", json!([0.0, 1.0])), 8, "ratio_range (0, 1): the jitter ratios must be positive"),
        (with(8, "pad_val", json!(300)), 8, "pad_val 300 is not in [0, 255]"),
        (with(2, "img_scale", json!([64, 0])), 2, "img_scale (64, 0)"),
        (with(5, "hue_delta", json!(-1)), 5, "transform 5 (`YOLOXHSVRandomAug`): hue_delta -1 is not in 0..=255"),
        (with(2, "max_cached", json!(40)), 2, "transform 2 (`CachedMosaic`): unknown field `max_cached`"),
        (with(8, "img_scale", json!(640)), 8, "transform 8 (`CachedMixUp`): invalid type"),
    ];
    for (err, index, message) in cases {
        assert_eq!(err.0, Some(index), "{}", err.1);
        assert!(err.1.message.contains(message), "{}", err.1);
    }
}

#[test]
fn mixing_transforms_stay_at_the_top_level_and_refuse_polygons() {
    let mut p = rtmdet_pipeline();
    p[2] = json!({"type": "RandomChoice", "transforms": [[{"type": "CachedMosaic"}], [{"type": "Pad", "size": [64, 64]}]]});
    let (index, err) = Pipeline::check(&p).unwrap_err();
    assert_eq!(index, Some(2));
    assert!(
        err.message.contains("`CachedMosaic` mixes in other images and must be a step of the pipeline itself"),
        "{err}"
    );

    let mut p = rtmdet_pipeline();
    p[1]["poly2mask"] = json!(false);
    p.remove(4); // RandomCrop, refused first otherwise
    let (index, err) = Pipeline::check(&p).unwrap_err();
    assert_eq!(index, Some(2));
    assert!(err.message.contains("`CachedMosaic` cannot place the polygon masks of transform 1"), "{err}");
    assert!(err.message.contains("load bitmap masks with `poly2mask: true`"), "{err}");
}
