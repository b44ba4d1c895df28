//! `TensorboardVisBackend`: a tiny run with both of MMDetection's usual
//! backends writes a TensorBoard event file that the `tensorboard` package's
//! own loader reads back with the scalars of `scalars.json` (as float32).

use serde_json::Value;

use crate::support::{detc, python, root, shapes_data};

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
    detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .args(["run", "tb.yaml", "--work-dir", "work", "--cfg-options"])
        .args([
            "train_cfg.max_epochs=2",
            "train_cfg.val_interval=1",
            "train_dataloader.num_workers=0",
            "val_dataloader.num_workers=0",
            "default_hooks.logger.interval=1",
        ])
        .assert()
        .success();
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
    let out = std::process::Command::new(python())
        .arg(root().join("tests/engine/tensorboard_reader.py"))
        .arg(&vis_data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<(String, u64, f32)> = String::from_utf8(out.stdout)
        .unwrap()
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
