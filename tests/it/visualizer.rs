//! The visualizer's backends in a tiny run with both of MMDetection's usual
//! ones and `DetVisualizationHook(draw=True)`: `TensorboardVisBackend`'s
//! event file, read back by the `tensorboard` package's own loader, holds
//! the scalars of `scalars.json` (as float32) and the drawn validation
//! images, and the config as text; `LocalVisBackend` writes those images as
//! `vis_image/val_img_{step}.png` and the config as `config.py`, which
//! MMEngine's `Config.fromfile` reads back to the run's config.

use serde_json::{json, Value};

use std::path::Path;

use detc::data::image::{read_image, ColorMode};

use crate::support::{
    ask_python, file_names, python_stdout, root, run_dir, shapes_data, shapes_val_annotations,
    train_briefly,
};

const CONFIG: &str = "\
_base_: [ROOT]/configs/demo/faster-rcnn_r18_shapes.yaml
visualizer:
  vis_backends:
    - type: LocalVisBackend
    - type: TensorboardVisBackend
default_hooks:
  visualization: {draw: true, interval: 2, score_thr: 0.0}
";

#[test]
fn the_backends_keep_scalars_drawings_and_the_config() {
    let dir = crate::support::tree(&[("tb.yaml", CONFIG)]);
    shapes_data(dir.path(), 8, 2);
    train_briefly(dir.path(), Path::new("tb.yaml"), 2);
    let vis_data = run_dir(&dir.path().join("work")).join("vis_data");

    // (tag, step, value) of every scalar of scalars.json, in order.
    let mut expected = vec![];
    for line in std::fs::read_to_string(vis_data.join("scalars.json"))
        .unwrap()
        .lines()
    {
        let record: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        let step = record["step"].as_u64().unwrap();
        for (tag, value) in record.iter().filter(|(tag, _)| tag.as_str() != "step") {
            expected.push((tag.clone(), step, value.as_f64().unwrap() as f32));
        }
    }
    let reader = root().join("tests/engine/tensorboard_reader.py");
    let records: Vec<Value> = python_stdout(&[reader.as_os_str(), vis_data.as_os_str()])
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let texts: Vec<&Value> = records.iter().filter(|r| r.get("text").is_some()).collect();
    let (images, scalars): (Vec<&Value>, Vec<&Value>) = records
        .iter()
        .filter(|r| r.get("text").is_none())
        .partition(|r| r.get("image").is_some());
    let read: Vec<(String, u64, f32)> = scalars
        .iter()
        .map(|v| {
            (
                v["tag"].as_str().unwrap().to_owned(),
                v["step"].as_u64().unwrap(),
                v["value"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    // 2 epochs of 2 iterations, each logged, and 2 validations.
    assert!(
        read.iter()
            .any(|(tag, step, _)| tag == "loss_rpn_cls" && *step == 4),
        "{read:?}"
    );
    assert!(
        read.iter()
            .any(|(tag, step, _)| tag == "coco/bbox_mAP" && *step == 2),
        "{read:?}"
    );
    assert_eq!(read, expected);

    // The validations after iterations 2 and 4 have batches 0 and 1 (one
    // image each): `runner.iter + batch_idx` is 2, 3, then 4, 5, and every
    // second one is drawn.
    assert_eq!(
        file_names(&vis_data.join("vis_image")),
        ["val_img_2.png", "val_img_4.png"]
    );
    // Batch 0 of the validation is its first image.
    let ann = shapes_val_annotations(dir.path());
    let first = &ann["images"][0];
    let original = read_image(
        &dir.path()
            .join("data/shapes/val")
            .join(first["file_name"].as_str().unwrap()),
        ColorMode::Color,
    )
    .unwrap();
    for (name, step) in [("val_img_2.png", 2), ("val_img_4.png", 4)] {
        let file = std::fs::read(vis_data.join("vis_image").join(name)).unwrap();
        // The same PNG in both backends (OpenCV decodes the event's): the
        // ground truth beside the predictions, each the image's size.
        let in_events: Vec<&&Value> = images.iter().filter(|r| r["step"] == step).collect();
        assert_eq!(in_events.len(), 1, "{images:?}");
        let got = &in_events[0]["image"];
        assert_eq!(in_events[0]["tag"], "val_img");
        assert_eq!(
            got,
            &json!({
                "height": original.height,
                "width": 2 * original.width,
                "decoded": [original.height, 2 * original.width, 3],
                "crc32": crc32fast::hash(&file),
            })
        );
    }
    assert_eq!(images.len(), 2, "{images:?}");

    // config.py, as MMEngine reads it, is the run's config.
    let json_copy: Value = std::fs::read(dir.path().join("work/tb.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let python_copy = vis_data.join("config.py");
    // TensorBoard holds the same Python text, as the text `config`.
    let python_text = std::fs::read_to_string(&python_copy).unwrap();
    assert_eq!(
        texts,
        [&json!({"tag": "config", "step": 0, "text": python_text})]
    );
    let answer = ask_python(
        "tests/mmengine/resolve.py",
        &[],
        &[json!({"file": python_copy, "cfg_options": []})],
    );
    assert_eq!(answer[0].get("ok"), Some(&json_copy), "{:?}", answer[0]);
}
