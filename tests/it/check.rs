//! `detc check`: snapshots of the rendered diagnostics. Each names the
//! file:line:col of the offending value in the file that set it.

use snapbox::str;

use crate::support::{detc, root, tree};

const QUERYINST: &str = "_base_: '[ROOT]/configs/queryinst/queryinst_r50_fpn_1x_coco.yaml'\n";
const FASTER_RCNN: &str = "_base_: '[ROOT]/configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml'\n";

fn check(files: &[(&str, &str)], args: &[&str]) -> snapbox::cmd::OutputAssert {
    let dir = tree(files);
    detc(dir.path()).arg("check").arg("main.yaml").args(args).assert()
}

#[test]
fn bundled_configs_check_clean() {
    for config in [
        "configs/queryinst/queryinst_r50_fpn_1x_coco.yaml",
        "configs/sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.yaml",
        "configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml",
        "configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.yaml",
    ] {
        detc(&root()).args(["check", config]).assert().success();
    }
}

#[test]
fn typo_in_a_section_name() {
    let main = format!("{QUERYINST}optim_wraper:\n  clip_grad: {{max_norm: 1, norm_type: 2}}\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn typo_in_a_type_name() {
    let main = format!("{QUERYINST}model:\n  type: QueryInstt\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn wrong_value_type() {
    let main = format!("{QUERYINST}optim_wrapper:\n  optimizer:\n    lr: fast\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn missing_base() {
    check(&[("main.yaml", "_base_: [../missing/base.yaml]\nx: 1\n")], &[]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn base_cycle() {
    check(
        &[
            ("main.yaml", "_base_: models/a.yaml\n"),
            ("models/a.yaml", "_base_: [b.yaml]\na: 1\n"),
            ("models/b.yaml", "_base_:\n  - ../models/a.yaml\nb: 1\n"),
        ],
        &[],
    )
    .code(1)
    .stderr_eq(str![[r#"
"#]]);
}

#[test]
fn bad_override_grammar() {
    check(&[("main.yaml", QUERYINST)], &["--cfg-options", "train_dataloader.batch_size=4", "model.backbone.out_indices=[(0,1),(2,3]"])
        .code(1)
        .stderr_eq(str![[r#"
"#]]);
}

#[test]
fn bad_override_value() {
    check(&[("main.yaml", QUERYINST)], &["--cfg-options", "model.backbone.depth=fifty"]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn channel_mismatch_between_backbone_and_neck() {
    let main = format!("{FASTER_RCNN}model:\n  neck:\n    in_channels: [256, 512, 1024]\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn num_classes_mismatch_with_dataset_classes() {
    let main = format!(
        "{FASTER_RCNN}train_dataloader:\n  dataset:\n    metainfo:\n      classes: [rectangle, ellipse, triangle]\n"
    );
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
"#]]);
}

#[test]
fn all_problems_are_reported_at_once_as_json() {
    let main = format!("{QUERYINST}optim_wraper: {{}}\ntrain_dataloader:\n  batch_size: 0\n");
    let out = check(&[("main.yaml", &main)], &["--format", "json"]).code(1).get_output().stdout.clone();
    let diags: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let codes: Vec<&str> = diags.as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["detc::check::unknown_section", "detc::check::out_of_range"]);
    assert_eq!(diags[1]["labels"][0]["file"], "main.yaml");
    assert_eq!(diags[1]["labels"][0]["line"], 4);
    assert_eq!(diags[1]["labels"][0]["column"], 15);
}
