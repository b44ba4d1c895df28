//! `TensorboardVisBackend`: a tiny run with both of MMDetection's usual
//! backends writes a TensorBoard event file that the `tensorboard` package's
//! own loader reads back with the scalars of `scalars.json` (as float32).

use serde_json::Value;

use std::path::Path;

use crate::support::{python_stdout, root, shapes_data, train_briefly};

const CONFIG: &str = "\
_base_: [ROOT]/configs/demo/faster-rcnn_r18_shapes.yaml
visualizer:
  vis_backends:
    - type: LocalVisBackend
    - type: TensorboardVisBackend
";

#[test]
fn the_event_file_holds_the_scalars_of_scalars_json() {
    let dir = crate::support::tree(&[("tb.yaml", CONFIG)]);
    shapes_data(dir.path(), 8, 2);
    train_briefly(dir.path(), Path::new("tb.yaml"), 2);
    let run = std::fs::read_dir(dir.path().join("work"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    let vis_data = run.join("vis_data");

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
    let read: Vec<(String, u64, f32)> = python_stdout(&[reader.as_os_str(), vis_data.as_os_str()])
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let tag = v["tag"].as_str().unwrap().to_owned();
            (
                tag,
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
}
