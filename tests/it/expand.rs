//! `detc expand`: output formats, provenance, determinism, detc's extensions.

use snapbox::str;

use crate::support::{detc, root, tree};

const BUNDLED: &[&str] = &[
    "configs/queryinst/queryinst_r50_fpn_1x_coco.yaml",
    "configs/sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.yaml",
    "configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml",
    "configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.yaml",
];

#[test]
fn expanding_an_expanded_config_gives_the_same_file() {
    for config in BUNDLED {
        let first = detc(&root()).args(["expand", config]).assert().success().get_output().stdout.clone();
        let dir = tree(&[]);
        std::fs::write(dir.path().join("resolved.yaml"), &first).unwrap();
        let second = detc(dir.path()).args(["expand", "resolved.yaml"]).assert().success().get_output().stdout.clone();
        assert_eq!(String::from_utf8_lossy(&first), String::from_utf8_lossy(&second), "{config}");
    }
}

#[test]
fn json_keeps_types() {
    let dir = tree(&[("main.yaml", "a: 1\nb: 1.0\nc: '1'\nd: [true, null]\n")]);
    detc(dir.path()).args(["expand", "main.yaml", "--format", "json", "--no-validate"]).assert().success().stdout_eq(str![[r#"
{
  "a": 1,
  "b": 1.0,
  "c": "1",
  "d": [
    true,
    null
  ]
}

"#]]);
}

#[test]
fn show_origin_names_the_setter() {
    let dir = tree(&[
        ("base.yaml", "model:\n  depth: 50\n  width: 64\nlr: 0.02\n"),
        ("main.yaml", "_base_: base.yaml\nmodel:\n  depth: 101\n"),
    ]);
    detc(dir.path())
        .args(["expand", "main.yaml", "--no-validate", "--show-origin", "--cfg-options", "lr=0.01"])
        .assert()
        .success()
        .stdout_eq(str![[r#"
model:
  depth: 101  # main.yaml:3
  width: 64  # base.yaml:3
lr: 0.01  # --cfg-options

"#]]);
}

#[test]
fn star_and_index_edit_every_stage() {
    let dir = tree(&[
        ("base.yaml", "heads:\n  - {num_classes: 80, w: 1}\n  - {num_classes: 80, w: 2}\n"),
        ("main.yaml", "_base_: base.yaml\nheads:\n  '*': {num_classes: 3}\n  1: {w: 5}\n"),
    ]);
    detc(dir.path()).args(["expand", "main.yaml", "--no-validate"]).assert().success().stdout_eq(str![[r#"
heads:
  - num_classes: 3
    w: 1
  - num_classes: 3
    w: 5

"#]]);
    detc(dir.path())
        .args(["expand", "base.yaml", "--no-validate", "--cfg-options", "heads.*.num_classes=7", "heads.0.w=9"])
        .assert()
        .success()
        .stdout_eq(str![[r#"
heads:
  - num_classes: 7
    w: 9
  - num_classes: 7
    w: 2

"#]]);
}

#[test]
fn broken_pipe_is_not_an_error() {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {} expand {} | head -1", env!("CARGO_BIN_EXE_detc"), BUNDLED[0]))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn json_configs_and_bases_load() {
    let dir = tree(&[
        ("base.json", "{\"model\": {\"depth\": 50, \"lr\": 0.02}, \"tags\": [\"a\"]}"),
        ("main.yaml", "_base_: base.json\nmodel:\n  depth: 101\n"),
    ]);
    detc(dir.path()).args(["expand", "main.yaml", "--no-validate"]).assert().success().stdout_eq(str![[r#"
model:
  depth: 101
  lr: 0.02
tags: [a]

"#]]);
}

#[test]
fn graph_prints_the_module_graph_as_dot() {
    let out = detc(&root())
        .args(["graph", "configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.yaml"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let dot = String::from_utf8(out).unwrap();
    assert!(dot.starts_with("digraph model {"), "{dot}");
    for needle in ["ResNet\\nmodel.backbone", "FPN\\nmodel.neck", "RPNHead\\nmodel.rpn_head", "FCNMaskHead\\nmodel.roi_head.mask_head.0", "[label=\"[256, 512, 1024, 2048]\"]"] {
        assert!(dot.contains(needle), "missing {needle} in:\n{dot}");
    }
}
