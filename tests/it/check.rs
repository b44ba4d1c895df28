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
    for config in crate::support::twin_configs() {
        detc(&root()).args(["check", &config]).assert().success();
    }
}

#[test]
fn typo_in_a_section_name() {
    let main = format!("{QUERYINST}optim_wraper:\n  clip_grad: {{max_norm: 1, norm_type: 2}}\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::check::unknown_section

  x unknown section `optim_wraper`
   ,-[main.yaml:2:1]
 1 | _base_: '[ROOT]/configs/queryinst/queryinst_r50_fpn_1x_coco.yaml'
 2 | optim_wraper:
   : ^^^^^^|^^^^^
   :       `-- not a config section
 3 |   clip_grad: {max_norm: 1, norm_type: 2}
   `----
  help: did you mean `optim_wrapper`?

error: main.yaml found 1 problem

"#]]);
}

#[test]
fn typo_in_a_type_name() {
    let main = format!("{QUERYINST}model:\n  type: QueryInstt\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::check::unknown_type

  x unknown Detector type `QueryInstt`
   ,-[main.yaml:3:9]
 2 | model:
 3 |   type: QueryInstt
   :         ^^^^^|^^^^
   :              `-- not a registered component
   `----
  help: did you mean `QueryInst`?

error: main.yaml found 1 problem

"#]]);
}

#[test]
fn wrong_value_type() {
    let main = format!("{QUERYINST}optim_wrapper:\n  optimizer:\n    lr: fast\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::check::wrong_type

  x expected a number (greater than 0), found the string `fast`
   ,-[main.yaml:4:9]
 3 |   optimizer:
 4 |     lr: fast
   :         ^^|^
   :           `-- expected a number (greater than 0)
   `----

error: main.yaml found 1 problem

"#]]);
}

#[test]
fn keys_that_must_be_null_or_false_say_why() {
    let main = format!(
        "{FASTER_RCNN}model:\n  init_cfg: {{type: Normal, layer: Conv2d, std: 0.01}}\nval_cfg: {{type: ValLoop, fp16: true}}\n\
         optim_wrapper:\n  optimizer: {{type: SGD, lr: 0.02, fused: true}}\n"
    );
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::check::wrong_type

  x expected null, found a mapping
   ,-[main.yaml:3:13]
 2 | model:
 3 |   init_cfg: {type: Normal, layer: Conv2d, std: 0.01}
   :             ^^^^^^^^^^^^^^^^^^^^|^^^^^^^^^^^^^^^^^^^
   :                                 `-- expected null
 4 | val_cfg: {type: ValLoop, fp16: true}
   `----
  help: Must be null: an initialiser over the whole detector is not supported yet (set `init_cfg`
        on a component, e.g. the backbone's `Pretrained`, or use `load_from`).

detc::check::wrong_type

  x expected `false`, found `true`
   ,-[main.yaml:4:32]
 3 |   init_cfg: {type: Normal, layer: Conv2d, std: 0.01}
 4 | val_cfg: {type: ValLoop, fp16: true}
   :                                ^^|^
   :                                  `-- expected `false`
 5 | optim_wrapper:
   `----
  help: Must be false: evaluation in fp16 autocast is not supported yet (it runs in float32).

detc::check::wrong_type

  x expected one of `null`, `false`, found `true`
   ,-[main.yaml:6:43]
 5 | optim_wrapper:
 6 |   optimizer: {type: SGD, lr: 0.02, fused: true}
   :                                           ^^|^
   :                                             `-- expected one of `null`, `false`
   `----
  help: Must be null or false: torch's fused kernels are not built into detc
        (CUDA parameters take the multi-tensor `foreach` path, as torch's default).

error: main.yaml found 3 problems

"#]]);
}

/// MMEngine's Runner takes a loop's dataloader, cfg and evaluator (or
/// optimizer) all or none: a partial set is named before anything runs.
#[test]
fn a_loop_with_some_of_its_sections_is_refused() {
    let main = format!("{FASTER_RCNN}val_evaluator: null\ntest_cfg: null\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::check::incomplete_loop

  x `val_dataloader`, `val_cfg` and `val_evaluator` go together, but `val_evaluator` is not set
    ,-[[ROOT]/configs/_base_/datasets/coco_detection.yaml:77:1]
 76 |     backend_args: null  # = backend_args
 77 | val_dataloader:
    : ^^^^^^^|^^^^^^
    :        `-- `val_dataloader` is set here
 78 |   batch_size: 1
    `----
  help: set `val_evaluator` too, or set `val_dataloader` and `val_cfg` to null (MMEngine's Runner
        refuses a partial set)

Error: detc::check::incomplete_loop

  x see also `main.yaml:2:16`
   ,-[main.yaml:2:16]
 1 | _base_: '[ROOT]/configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml'
 2 | val_evaluator: null
   :                ^^|^
   :                  `-- `val_evaluator` is null here
 3 | test_cfg: null
   `----

detc::check::incomplete_loop

  x `test_dataloader`, `test_cfg` and `test_evaluator` go together, but `test_cfg` is not set
     ,-[[ROOT]/configs/_base_/datasets/coco_detection.yaml:103:1]
 102 |     backend_args: null  # = backend_args
 103 | test_dataloader:  # = val_dataloader
     : ^^^^^^^|^^^^^^^
     :        `-- `test_dataloader` is set here
 104 |   batch_size: 1
     `----
  help: set `test_cfg` too, or set `test_dataloader` and `test_evaluator` to null (MMEngine's
        Runner refuses a partial set)

Error: detc::check::incomplete_loop

  x see also `main.yaml:3:11`
   ,-[main.yaml:3:11]
 2 | val_evaluator: null
 3 | test_cfg: null
   :           ^^|^
   :             `-- `test_cfg` is null here
   `----

error: main.yaml found 2 problems

"#]]);
}

#[test]
fn missing_base() {
    check(&[("main.yaml", "_base_: [../missing/base.yaml]\nx: 1\n")], &[]).code(1).stderr_eq(str![[r#"
detc::config::missing_base

  x base file `../missing/base.yaml` not found
   ,-[main.yaml:1:10]
 1 | _base_: [../missing/base.yaml]
   :          ^^^^^^^^^^|^^^^^^^^^
   :                    `-- looked for `../missing/base.yaml`
 2 | x: 1
   `----
  help: `_base_` paths are relative to the file that names them

error: main.yaml found 1 problem

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
detc::config::base_cycle

  x `_base_` cycle: models/b.yaml -> models/a.yaml -> models/b.yaml
   ,-[models/b.yaml:2:5]
 1 | _base_:
 2 |   - ../models/a.yaml
   :     ^^^^^^^^|^^^^^^^
   :             `-- `models/b.yaml` inherits from `models/a.yaml`
 3 | b: 1
   `----
  help: a config cannot inherit from itself, directly or through its bases

Error: detc::config::base_cycle

  x see also `models/a.yaml:1:10`
   ,-[models/a.yaml:1:10]
 1 | _base_: [b.yaml]
   :          ^^^|^^
   :             `-- `models/a.yaml` inherits from `models/b.yaml`
 2 | a: 1
   `----

error: main.yaml found 1 problem

"#]]);
}

#[test]
fn bad_override_grammar() {
    check(&[("main.yaml", QUERYINST)], &["--cfg-options", "train_dataloader.batch_size=4", "model.backbone.out_indices=[(0,1),(2,3]"])
        .code(1)
        .stderr_eq(str![[r#"
detc::config::bad_override

  x unbalanced brackets in override value
   ,-[<cfg-options>:1:65]
 1 | train_dataloader.batch_size=4 model.backbone.out_indices=[(0,1),(2,3]
   :                                                                 |
   :                                                                 `-- this bracket is not matched
   `----
  help: quote the whole option for the shell, e.g. `'a=[(1,2),(3,4)]'`

error: main.yaml found 1 problem

"#]]);
}

#[test]
fn bad_override_value() {
    check(&[("main.yaml", QUERYINST)], &["--cfg-options", "model.backbone.depth=fifty"]).code(1).stderr_eq(str![[r#"
detc::check::wrong_type

  x expected one of `18`, `34`, `50`, `101`, `152`, found the string `fifty`
   ,-[<cfg-options>:1:22]
 1 | model.backbone.depth=fifty
   :                      ^^|^^
   :                        `-- expected one of `18`, `34`, `50`, `101`, `152`
   `----

error: main.yaml found 1 problem

"#]]);
}

#[test]
fn channel_mismatch_between_backbone_and_neck() {
    let main = format!("{FASTER_RCNN}model:\n  neck:\n    in_channels: [256, 512, 1024]\n");
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::graph::channel_mismatch

  x neck `in_channels` [256, 512, 1024] does not match the backbone's output channels [256, 512,
  | 1024, 2048]
   ,-[main.yaml:4:18]
 3 |   neck:
 4 |     in_channels: [256, 512, 1024]
   :                  ^^^^^^^^|^^^^^^^
   :                          `-- the neck expects [256, 512, 1024]
   `----
  help: set `model.neck.in_channels: [256, 512, 1024, 2048]`

Error: detc::graph::channel_mismatch

  x see also `[ROOT]/configs/_base_/models/faster-rcnn_r50_fpn.yaml:17:18`
    ,-[[ROOT]/configs/_base_/models/faster-rcnn_r50_fpn.yaml:17:18]
 16 |     num_stages: 4
 17 |     out_indices: [0, 1, 2, 3]
    :                  ^^^^^^|^^^^^
    :                        `-- the backbone gives [256, 512, 1024, 2048] for these `out_indices`
 18 |     frozen_stages: 1
    `----

error: main.yaml found 1 problem

"#]]);
}

/// A neck with one `in_channels` number (YOLOF's DilatedEncoder) reads the
/// backbone's last output: equal to it is no mismatch, another number is.
#[test]
fn neck_with_one_in_channels_reads_the_last_backbone_output() {
    let neck = |c: u32| {
        format!(
            "{FASTER_RCNN}model:\n  backbone:\n    out_indices: [3]\n  neck:\n    _delete_: true\n    type: DilatedEncoder\n    in_channels: {c}\n"
        )
    };
    let stderr = |main: &str| String::from_utf8(check(&[("main.yaml", main)], &[]).code(1).get_output().stderr.clone()).unwrap();
    let fits = stderr(&neck(2048));
    assert!(fits.contains("unknown Neck type `DilatedEncoder`") && !fits.contains("channel_mismatch"), "{fits}");
    let wrong = stderr(&neck(1024));
    assert!(wrong.contains("neck `in_channels` 1024 does not match the backbone's output channels [2048]"), "{wrong}");
}

/// GRoIE concatenating its levels gives the neck's channels once per level.
#[test]
fn groie_concat_out_channels_count_every_level() {
    let main = format!(
        "{FASTER_RCNN}model:\n  roi_head:\n    bbox_roi_extractor:\n      type: GenericRoIExtractor\n      aggregation: concat\n"
    );
    let out = check(&[("main.yaml", &main)], &[]).code(1).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("is 256 but 4 concatenated levels"), "{err}");
    assert!(err.contains("set it to 1024"), "{err}");
    let fixed = format!("{main}      out_channels: 1024\n");
    check(&[("main.yaml", &fixed)], &[]).code(0);
}

#[test]
fn num_classes_mismatch_with_dataset_classes() {
    let main = format!(
        "{FASTER_RCNN}train_dataloader:\n  dataset:\n    metainfo:\n      classes: [rectangle, ellipse, triangle]\n"
    );
    check(&[("main.yaml", &main)], &[]).code(1).stderr_eq(str![[r#"
detc::graph::num_classes_mismatch

  x `model.roi_head.bbox_head.num_classes` is 80, but the dataset has 3 classes
    ,-[[ROOT]/configs/_base_/models/faster-rcnn_r50_fpn.yaml:67:20]
 66 |       roi_feat_size: 7
 67 |       num_classes: 80
    :                    ^|
    :                     `-- 80 classes here
 68 |       bbox_coder:
    `----
  help: set it to 3, e.g. `--cfg-options 'model.roi_head.bbox_head.num_classes=3'`

Error: detc::graph::num_classes_mismatch

  x see also `main.yaml:5:16`
   ,-[main.yaml:5:16]
 4 |     metainfo:
 5 |       classes: [rectangle, ellipse, triangle]
   :                ^^^^^^^^^^^^^^^|^^^^^^^^^^^^^^
   :                               `-- 3 classes in `metainfo.classes`
   `----

error: main.yaml found 1 problem

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

#[test]
fn per_stage_heads_are_reported_once_per_list() {
    let main = format!("{QUERYINST}train_dataloader:\n  dataset:\n    metainfo:\n      classes: [a, b, c]\n");
    let out = check(&[("main.yaml", &main)], &["--format", "json"]).code(1).get_output().stdout.clone();
    let diags: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let messages: Vec<&str> = diags.as_array().unwrap().iter().map(|d| d["message"].as_str().unwrap()).collect();
    assert_eq!(messages, [
        "`model.roi_head.bbox_head.*.num_classes` is 80 in 6 stages, but the dataset has 3 classes",
        "`model.roi_head.mask_head.*.num_classes` is 80 in 6 stages, but the dataset has 3 classes",
    ]);
    // The fix the help suggests (a detc extension) makes the config check clean.
    check(&[("main.yaml", &main)], &["--cfg-options", "model.roi_head.bbox_head.*.num_classes=3", "model.roi_head.mask_head.*.num_classes=3"])
        .success();
}

/// MMEngine's `type`-less loop forms: `train_cfg: {by_epoch: ..., ...}`, `val_cfg: {}`.
#[test]
fn untyped_loops_are_accepted_as_mmengine_accepts_them() {
    let main = format!("{FASTER_RCNN}train_cfg: {{_delete_: true, by_epoch: true, max_epochs: 3}}\nval_cfg: {{_delete_: true}}\n");
    check(&[("main.yaml", &main)], &[]).success();
    let main = format!("{FASTER_RCNN}train_cfg: {{_delete_: true, max_epochs: 3}}\n");
    let out = check(&[("main.yaml", &main)], &["--format", "json"]).code(1).get_output().stdout.clone();
    let diags: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(diags[0]["message"], "missing required field `by_epoch`");
}

#[test]
fn a_transform_its_builder_refuses_is_named_in_the_file() {
    let main = "\
_base_: '[ROOT]/configs/sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.yaml'
train_dataloader:
  dataset:
    pipeline:
      - type: LoadImageFromFile
      - type: LoadAnnotations
        with_bbox: true
      - type: RandomCrop
        crop_size: [384.5, 600]
      - type: PackDetInputs
";
    check(&[("main.yaml", main)], &[]).code(1).stderr_eq(str![[r#"
detc::data::pipeline

  x train_dataloader.dataset: pipeline transform 2 (`RandomCrop`): crop_size (384.5, 600): an
  | absolute crop size is two positive integers
   ,-[main.yaml:8:15]
 7 |         with_bbox: true
 8 |       - type: RandomCrop
   :               ^^^^^|^^^^
   :                    `-- this transform cannot be built
 9 |         crop_size: [384.5, 600]
   `----

error: main.yaml found 1 problem

"#]]);
}
