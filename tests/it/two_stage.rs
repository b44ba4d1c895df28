//! `detc run` / `detc test` end to end on the tiny Mask R-CNN demo config and
//! 8 + 4 synthetic images: MMDetection's loss names in the log, an exact
//! resume (RPN and RoI sampling draw from the reseeded generator), and
//! `detc test --out` whose results `detc eval` scores as `detc test` logged.

use std::path::Path;

use crate::support::{assert_test_log_matches_eval, detc, records, root, shapes_data};

const CONFIG: &str = "configs/demo/mask-rcnn_r18_shapes.yaml";

/// 2 iterations per epoch, a log line and a checkpoint every epoch, validation every epoch.
const TINY: &[&str] = &[
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
    "val_dataloader.num_workers=0",
    "test_dataloader.num_workers=0",
    "train_cfg.val_interval=1",
    "default_hooks.logger.interval=1",
    "default_hooks.checkpoint.interval=1",
];

fn run(dir: &Path, work_dir: &str, epochs: u32, resume: bool) -> String {
    run_config(dir, &root().join(CONFIG), work_dir, epochs, resume)
}

/// `detc run config` (TINY) for `epochs` in `work_dir`, resuming with `resume`.
fn run_config(dir: &Path, config: &Path, work_dir: &str, epochs: u32, resume: bool) -> String {
    let mut cmd = detc(dir).env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"));
    cmd = cmd
        .arg("run")
        .arg(config)
        .args(["--work-dir", work_dir]);
    if resume {
        cmd = cmd.arg("--resume");
    }
    let out = cmd
        .arg("--cfg-options")
        .args(TINY)
        .arg(format!("train_cfg.max_epochs={epochs}"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8_lossy(&out).into_owned()
}

/// The log of `detc test config args...` (TINY), which must succeed.
fn test_log(dir: &Path, config: &Path, args: &[&str]) -> String {
    let out = detc(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("test")
        .arg(config)
        .args(args)
        .arg("--cfg-options")
        .args(TINY)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8_lossy(&out).into_owned()
}

/// `(step, value)` of `key` in every training record of the work dir `dir/work`, by step.
fn by_step(dir: &Path, work: &str, key: &str) -> Vec<(u64, f64)> {
    let mut r = records(&dir.join(work), key);
    r.sort_by_key(|x| x.0);
    r
}

/// The run in `dir/straight` and the one resumed into `dir/resumed` logged
/// the same value of each of `keys` at every one of the `steps` iterations.
fn assert_resumed_logs_alike(dir: &Path, straight: &str, keys: &[&str], steps: usize) {
    for key in keys {
        let a = by_step(dir, straight, key);
        assert_eq!(a.len(), steps, "{key}: one record per iteration: {a:?}");
        assert_eq!(a, by_step(dir, "resumed", key), "{key} differs after the resume");
    }
}

/// Writes `config` to `dir/{name}.yaml`, trains it for `epochs` (TINY,
/// work dir `dir/{name}`), checks that every one of `terms` is logged and
/// every one of `saved` is in the last checkpoint, tests that checkpoint,
/// and returns the training log.
fn trains_and_tests(dir: &Path, name: &str, config: &str, epochs: u32, terms: &[&str], saved: &[&str]) -> String {
    let file = format!("{name}.yaml");
    std::fs::write(dir.join(&file), config).unwrap();
    let engine = || detc(dir).env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"));
    let out = engine()
        .args(["run", &file, "--work-dir", name, "--cfg-options"])
        .args(TINY)
        .arg(format!("train_cfg.max_epochs={epochs}"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let log = String::from_utf8_lossy(&out).into_owned();
    for term in terms {
        assert!(log.contains(&format!(" {term}: ")), "{term} is not in the log:\n{log}");
    }
    let checkpoint = format!("{name}/epoch_{epochs}.pth");
    let ckpt = detc::checkpoint::load(&dir.join(&checkpoint)).unwrap();
    for key in saved {
        assert!(ckpt.state_dict.contains_key(*key), "{key} is not in the checkpoint");
    }
    engine()
        .args(["test", &file, &checkpoint, "--work-dir", &format!("{name}_tested"), "--cfg-options"])
        .args(TINY)
        .assert()
        .success();
    log
}

#[test]
fn mask_rcnn_trains_resumes_exactly_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let log = run(dir.path(), "straight", 3, false);
    for needle in [
        "loss_rpn_cls: ",
        "loss_rpn_bbox: ",
        " loss_cls: ",
        " acc: ",
        " loss_bbox: ",
        " loss_mask: ",
        "coco/bbox_mAP: ",
        "coco/segm_mAP: ",
    ] {
        assert!(log.contains(needle), "`{needle}` is not in the log:\n{log}");
    }
    run(dir.path(), "resumed", 2, false);
    run(dir.path(), "resumed", 3, true);
    assert_resumed_logs_alike(dir.path(), "straight", &["loss_rpn_cls", "loss_cls", "loss_mask"], 6);
    // `detc test --out` writes COCO results whose `detc eval` AP is the logged one.
    let log = test_log(dir.path(), &root().join(CONFIG), &["straight/epoch_3.pth", "--work-dir", "tested", "--out", "tested/results.json"]);
    assert_test_log_matches_eval(dir.path(), &log);

    // Fine-tuning on other classes (MMDetection's `load_from` a COCO model
    // with a new `num_classes`): as MMEngine's strict=False load, the
    // classifier and box regressor of the other size keep their init, the
    // warning names them, and training goes on. Testing with weights that do
    // not fit is refused.
    let three_classes = [
        "model.roi_head.bbox_head.num_classes=3",
        "model.roi_head.mask_head.num_classes=3",
        "train_dataloader.dataset.metainfo.classes=[rectangle,ellipse,triangle]",
        "val_dataloader.dataset.metainfo.classes=[rectangle,ellipse,triangle]",
        "test_dataloader.dataset.metainfo.classes=[rectangle,ellipse,triangle]",
        "load_from=straight/epoch_3.pth",
        "train_cfg.max_epochs=1",
    ];
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(root().join(CONFIG))
        .args(["--work-dir", "finetuned", "--cfg-options"])
        .args(TINY)
        .args(three_classes)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let log = String::from_utf8_lossy(&out);
    let warned: Vec<&str> = log.lines().filter(|l| l.starts_with("size mismatch for ")).collect();
    let keys: Vec<&str> = warned.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "size mismatch for roi_head.bbox_head.fc_cls.bias",
            "size mismatch for roi_head.bbox_head.fc_cls.weight",
            "size mismatch for roi_head.bbox_head.fc_reg.bias",
            "size mismatch for roi_head.bbox_head.fc_reg.weight",
            "size mismatch for roi_head.mask_head.conv_logits.bias",
            "size mismatch for roi_head.mask_head.conv_logits.weight",
        ],
        "{log}"
    );
    assert!(log.contains("The model and loaded state dict do not match exactly"), "{log}");
    assert!(log.contains("Epoch(train) [1][2/2]"), "{log}");
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("test")
        .arg(root().join(CONFIG))
        .args(["straight/epoch_3.pth", "--work-dir", "tested3", "--cfg-options"])
        .args(TINY)
        .args(three_classes)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("size mismatch for roi_head.bbox_head.fc_cls.weight"), "{err}");
}

/// `env_cfg.channels_last` (the convolutions' weights laid out channels-last):
/// the Mask R-CNN demo trains, logs the layout, resumes exactly and tests; its
/// checkpoint is in the default layout, so testing it without the setting
/// gives the same AP.
#[test]
fn mask_rcnn_trains_channels_last_resumes_exactly_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!("_base_: {}\nenv_cfg:\n  channels_last: true\n", root().join(CONFIG).display());
    let log = trains_and_tests(dir.path(), "cl", &config, 2, &["loss_rpn_cls", "loss_mask"], &["backbone.conv1.weight"]);
    assert!(log.contains("Channels-last memory format (env_cfg.channels_last): "), "{log}");
    let file = dir.path().join("cl.yaml");
    run_config(dir.path(), &file, "resumed", 1, false);
    run_config(dir.path(), &file, "resumed", 2, true);
    assert_resumed_logs_alike(dir.path(), "cl", &["loss_rpn_cls", "loss_cls", "loss_mask"], 4);
    let tested = |config: &Path, work_dir: &str| {
        let log = test_log(dir.path(), config, &["cl/epoch_2.pth", "--work-dir", work_dir]);
        let at = log.find("coco/bbox_mAP: ").unwrap_or_else(|| panic!("no bbox_mAP in\n{log}"));
        log[at..].split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(tested(&file, "tested_cl"), tested(&root().join(CONFIG), "tested_default"));
}

/// A tiny Cascade Mask R-CNN (the Mask R-CNN demo with a 3-stage
/// `CascadeRoIHead`, one `train_cfg.rcnn` per stage, as MMDetection's
/// cascade-mask-rcnn config) trains with every stage's loss terms in the log
/// and tests; a `StandardRoIHead` given a list of `train_cfg.rcnn` dicts is
/// refused at the start, saying which head takes a list.
#[test]
fn cascade_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let stage = |iou: f64, stds: &str| {
        format!(
            "    - type: Shared2FCBBoxHead\n      in_channels: 64\n      fc_out_channels: 64\n      roi_feat_size: 7\n      \
             num_classes: 4\n      reg_class_agnostic: true\n      bbox_coder:\n        type: DeltaXYWHBBoxCoder\n        \
             target_means: [0.0, 0.0, 0.0, 0.0]\n        target_stds: {stds}\n",
        ) + &format!("      # iou {iou}\n")
    };
    let train = |iou: f64| {
        format!(
            "    - assigner: {{type: MaxIoUAssigner, pos_iou_thr: {iou}, neg_iou_thr: {iou}, min_pos_iou: {iou}, \
             match_low_quality: false, ignore_iof_thr: -1}}\n      sampler: {{type: RandomSampler, num: 64, \
             pos_fraction: 0.25, neg_pos_ub: -1, add_gt_as_proposals: true}}\n      mask_size: 14\n      pos_weight: -1\n"
        )
    };
    let config = format!(
        "_base_: {base}\nmodel:\n  type: CascadeRCNN\n  roi_head:\n    _delete_: true\n    type: CascadeRoIHead\n    \
         num_stages: 3\n    stage_loss_weights: [1, 0.5, 0.25]\n    bbox_roi_extractor:\n      type: SingleRoIExtractor\n      \
         roi_layer: {{type: RoIAlign, output_size: 7, sampling_ratio: 0}}\n      out_channels: 64\n      \
         featmap_strides: [4, 8, 16, 32]\n    bbox_head:\n{s0}{s1}{s2}    mask_head:\n      type: FCNMaskHead\n      \
         num_convs: 1\n      in_channels: 64\n      conv_out_channels: 32\n      num_classes: 4\n  train_cfg:\n    rcnn:\n\
         {t0}{t1}{t2}",
        base = root().join(CONFIG).display(),
        s0 = stage(0.5, "[0.1, 0.1, 0.2, 0.2]"),
        s1 = stage(0.6, "[0.05, 0.05, 0.1, 0.1]"),
        s2 = stage(0.7, "[0.033, 0.033, 0.067, 0.067]"),
        t0 = train(0.5),
        t1 = train(0.6),
        t2 = train(0.7),
    );
    let terms: Vec<String> =
        (0..3).flat_map(|s| ["loss_cls", "acc", "loss_bbox", "loss_mask"].map(|t| format!("s{s}.{t}"))).collect();
    let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
    let log = trains_and_tests(dir.path(), "cascade", &config, 2, &terms, &["roi_head.bbox_head.2.fc_cls.weight"]);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
    let engine = || detc(dir.path()).env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"));

    // The Mask R-CNN demo (a StandardRoIHead) with a cascade's list of rcnn settings.
    let listed = format!(
        "_base_: {}\nmodel:\n  train_cfg:\n    rcnn:\n      - {{{{_base_.model.train_cfg.rcnn}}}}\n      - {{{{_base_.model.train_cfg.rcnn}}}}\n",
        root().join(CONFIG).display()
    );
    std::fs::write(dir.path().join("listed.yaml"), listed).unwrap();
    let out = engine()
        .arg("run")
        .arg("listed.yaml")
        .args(["--work-dir", "listed", "--cfg-options"])
        .args(TINY)
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("CascadeRoIHead"), "{err}");
}

/// The demo Mask R-CNN as MMDetection's `gn+ws` configs build theirs:
/// GroupNorm and weight-standardised convs in the backbone, the FPN, a
/// `Shared4Conv1FCBBoxHead` and the mask head. It trains (every loss in the
/// log, both mAPs), its checkpoint holds the GN layers under MMDetection's
/// names, and it tests.
#[test]
fn group_norm_and_weight_standardised_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nconv_cfg: {{type: ConvWS}}\nnorm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n\
         model:\n  backbone:\n    conv_cfg: {{type: ConvWS}}\n    norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n  \
         neck:\n    conv_cfg: {{type: ConvWS}}\n    norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n  \
         roi_head:\n    bbox_head:\n      type: Shared4Conv1FCBBoxHead\n      conv_out_channels: 32\n      \
         conv_cfg: {{type: ConvWS}}\n      norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n    \
         mask_head:\n      conv_cfg: {{type: ConvWS}}\n      norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n",
        base = root().join(CONFIG).display(),
    );
    let saved = [
        "backbone.gn1.weight",
        "backbone.layer4.1.gn2.bias",
        "neck.lateral_convs.0.gn.weight",
        "roi_head.bbox_head.shared_convs.3.gn.weight",
        "roi_head.bbox_head.shared_fcs.0.weight",
        "roi_head.mask_head.convs.0.gn.bias",
    ];
    let terms = ["loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "acc", "loss_bbox", "loss_mask"];
    let log = trains_and_tests(dir.path(), "gn_ws", &config, 2, &terms, &saved);
    assert!(log.contains("coco/bbox_mAP: ") && log.contains("coco/segm_mAP: "), "{log}");
    let ckpt = detc::checkpoint::load(&dir.path().join("gn_ws/epoch_2.pth")).unwrap();
    assert!(!ckpt.state_dict.keys().any(|k| k.contains("running_mean")), "a GN model has no BN statistics");
}

/// The C4 layout on the demo's data: a three-stage ResNet-50 without neck,
/// an RPN on its stride-16 map, RoIs pooled at 14 px and run through
/// `layer4` (a `ResLayer` shared head) into a plain `BBoxHead` and a
/// conv-less mask head, as MMDetection's `mask-rcnn_r50-caffe-c4` builds it
/// (a few RoIs per image, so that the 2048-channel head stays quick). It
/// trains, its checkpoint holds the shared head under MMDetection's names,
/// and it tests.
#[test]
fn c4_mask_rcnn_with_a_shared_res_layer_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  backbone:\n    depth: 50\n    base_channels: 64\n    num_stages: 3\n    \
         strides: [1, 2, 2]\n    dilations: [1, 1, 1]\n    out_indices: [2]\n    style: caffe\n  neck: null\n  \
         rpn_head:\n    in_channels: 1024\n    feat_channels: 32\n    anchor_generator:\n      scales: [1, 2, 4]\n      \
         strides: [16]\n  roi_head:\n    shared_head:\n      type: ResLayer\n      depth: 50\n      stage: 3\n      \
         style: caffe\n      norm_cfg: {{type: BN, requires_grad: false}}\n    bbox_roi_extractor:\n      \
         roi_layer: {{type: RoIAlign, output_size: 14, sampling_ratio: 0}}\n      out_channels: 1024\n      \
         featmap_strides: [16]\n    bbox_head:\n      _delete_: true\n      type: BBoxHead\n      with_avg_pool: true\n      \
         roi_feat_size: 7\n      in_channels: 2048\n      num_classes: 4\n    mask_head:\n      num_convs: 0\n      \
         in_channels: 2048\n  train_cfg:\n    rpn_proposal:\n      max_per_img: 16\n    rcnn:\n      sampler:\n        \
         num: 8\n  test_cfg:\n    rpn:\n      max_per_img: 8\n",
        base = root().join(CONFIG).display(),
    );
    let saved = [
        "backbone.layer3.5.conv3.weight",
        "roi_head.shared_head.layer4.0.downsample.0.weight",
        "roi_head.shared_head.layer4.2.bn3.running_var",
        "roi_head.bbox_head.fc_cls.weight",
        "roi_head.mask_head.upsample.weight",
    ];
    let terms = ["loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"];
    let log = trains_and_tests(dir.path(), "c4", &config, 1, &terms, &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
    let ckpt = detc::checkpoint::load(&dir.path().join("c4/epoch_1.pth")).unwrap();
    assert!(!ckpt.state_dict.keys().any(|k| k.starts_with("backbone.layer4") || k.starts_with("neck.")));
}

/// The demo Mask R-CNN on a tiny `SwinTransformer` (as MMDetection's `swin/`
/// configs replace the ResNet: `_delete_` and the FPN's `in_channels`), with
/// stochastic depth and AdamW with the configs' `paramwise_cfg`: it trains,
/// its checkpoint holds the Swin weights and window indices under
/// MMDetection's names, and it tests.
#[test]
fn swin_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  backbone:\n    _delete_: true\n    type: SwinTransformer\n    embed_dims: 16\n    \
         depths: [2, 2, 2, 2]\n    num_heads: [1, 2, 4, 8]\n    window_size: 4\n    mlp_ratio: 2\n    \
         drop_path_rate: 0.2\n    out_indices: [0, 1, 2, 3]\n  neck:\n    in_channels: [16, 32, 64, 128]\n\
         optim_wrapper:\n  optimizer:\n    _delete_: true\n    type: AdamW\n    lr: 0.0001\n    betas: [0.9, 0.999]\n    \
         weight_decay: 0.05\n  paramwise_cfg:\n    custom_keys:\n      absolute_pos_embed: {{decay_mult: 0.0}}\n      \
         relative_position_bias_table: {{decay_mult: 0.0}}\n      norm: {{decay_mult: 0.0}}\n",
        base = root().join(CONFIG).display(),
    );
    let saved = [
        "backbone.patch_embed.projection.weight",
        "backbone.stages.3.blocks.1.attn.w_msa.relative_position_bias_table",
        "backbone.stages.3.blocks.1.attn.w_msa.relative_position_index",
        "backbone.stages.2.downsample.reduction.weight",
        "backbone.stages.0.blocks.0.ffn.layers.0.0.weight",
        "backbone.norm3.weight",
    ];
    let log = trains_and_tests(dir.path(), "swin", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_bbox", "loss_mask"], &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
}

/// A tiny RetinaNet (`SingleStageDetector` with a `RetinaHead`, focal loss,
/// `PseudoSampler`) on the demo's data and schedule: it trains with
/// MMDetection's two loss terms in the log, evaluates (`score_thr: 0`: two
/// epochs leave the scores near the 0.01 prior), saves the head under
/// MMDetection's names, and tests.
/// The tiny RetinaNet config on the demo's data, with this `neck` (YAML at
/// the neck's indentation) and box loss.
fn tiny_retinanet(neck: &str, loss_bbox: &str) -> String {
    format!(
        "_base_: {base}\nmodel:\n  _delete_: true\n  type: RetinaNet\n  data_preprocessor:\n    type: DetDataPreprocessor\n    \
         mean: [123.675, 116.28, 103.53]\n    std: [58.395, 57.12, 57.375]\n    bgr_to_rgb: true\n    pad_size_divisor: 32\n  \
         backbone:\n    type: ResNet\n    depth: 18\n    base_channels: 16\n    norm_eval: false\n    frozen_stages: -1\n  \
         neck:\n{neck}  bbox_head:\n    type: RetinaHead\n    num_classes: 4\n    \
         in_channels: 32\n    stacked_convs: 1\n    feat_channels: 32\n    anchor_generator:\n      type: AnchorGenerator\n      \
         octave_base_scale: 2\n      scales_per_octave: 2\n      ratios: [0.5, 1.0, 2.0]\n      strides: [8, 16, 32, 64, 128]\n    \
         loss_cls: {{type: FocalLoss, use_sigmoid: true, gamma: 2.0, alpha: 0.25, loss_weight: 1.0}}\n    \
         loss_bbox: {loss_bbox}\n  train_cfg:\n    assigner: {{type: MaxIoUAssigner, pos_iou_thr: 0.5, \
         neg_iou_thr: 0.4, min_pos_iou: 0, ignore_iof_thr: -1}}\n    sampler: {{type: PseudoSampler}}\n    allowed_border: -1\n    \
         pos_weight: -1\n    debug: false\n  test_cfg:\n    nms_pre: 100\n    min_bbox_size: 0\n    score_thr: 0.0\n    \
         nms: {{type: nms, iou_threshold: 0.5}}\n    max_per_img: 50\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    )
}

const TINY_FPN: &str = "    type: FPN\n    in_channels: [16, 32, 64, 128]\n    out_channels: 32\n    start_level: 1\n    \
                        add_extra_convs: on_input\n    num_outs: 5\n";

/// The tiny RetinaNet with FreeAnchor's head: its two bag losses are
/// logged, it saves RetinaHead's names, and tests.
#[test]
fn free_anchor_retinanet_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = tiny_retinanet(TINY_FPN, "{type: SmoothL1Loss, beta: 0.11, loss_weight: 0.75}")
        .replacen("    type: RetinaHead\n", "    type: FreeAnchorRetinaHead\n    pre_anchor_topk: 20\n", 1);
    assert!(config.contains("FreeAnchorRetinaHead"));
    let saved = ["bbox_head.retina_cls.bias", "bbox_head.reg_convs.0.conv.weight"];
    trains_and_tests(dir.path(), "free_anchor", &config, 2, &["positive_bag_loss", "negative_bag_loss"], &saved);
}

/// A tiny ATSS after the demo's FPN and two DyHead blocks (a `neck` list):
/// it trains, saves the blocks under `neck.1.dyhead_blocks.*`, and tests.
#[test]
fn atss_dyhead_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let neck = format!("    - {{{}}}\n    - {{type: DyHead, in_channels: 32, out_channels: 32, num_blocks: 2}}\n", TINY_FPN.trim().replace("\n    ", ", "));
    let config = tiny_retinanet(&neck, "{type: GIoULoss, loss_weight: 2.0}")
        .replacen("    type: RetinaHead\n", "    type: ATSSHead\n    reg_decoded_bbox: true\n", 1)
        .replacen("      octave_base_scale: 2\n      scales_per_octave: 2\n      ratios: [0.5, 1.0, 2.0]", "      octave_base_scale: 4\n      scales_per_octave: 1\n      ratios: [1.0]", 1)
        .replacen("    assigner: {type: MaxIoUAssigner, pos_iou_thr: 0.5, neg_iou_thr: 0.4, min_pos_iou: 0, ignore_iof_thr: -1}\n    sampler: {type: PseudoSampler}\n", "    assigner: {type: ATSSAssigner, topk: 9}\n", 1);
    assert!(config.contains("DyHead") && config.contains("ATSSAssigner") && config.contains("ratios: [1.0]"), "{config}");
    let saved = ["neck.1.dyhead_blocks.1.spatial_conv_high.conv.weight", "neck.1.dyhead_blocks.0.task_attn_module.conv2.conv.bias", "bbox_head.atss_centerness.weight"];
    trains_and_tests(dir.path(), "dyhead", &config, 2, &["loss_cls", "loss_bbox", "loss_centerness"], &saved);
}

/// A tiny VarifocalNet: the tiny RetinaNet's backbone and FPN under a
/// `VFNetHead` with ATSS on one anchor per location and each tower's last
/// conv a DCNv2 (as the mdconv configs). Its three losses are logged, the
/// deformable convs are saved under MMCV's names, and it tests.
#[test]
fn vfnet_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let retinanet = tiny_retinanet(TINY_FPN, "{type: GIoULoss, loss_weight: 1.5}");
    let (head_at, train_at) = (retinanet.find("  bbox_head:\n").unwrap(), retinanet.find("  train_cfg:\n").unwrap());
    let head = "  bbox_head:\n    type: VFNetHead\n    num_classes: 4\n    in_channels: 32\n    stacked_convs: 2\n    feat_channels: 32\n    \
                strides: [8, 16, 32, 64, 128]\n    norm_cfg: {type: GN, num_groups: 8, requires_grad: true}\n    dcn_on_last_conv: true\n    \
                anchor_generator: {type: AnchorGenerator, ratios: [1.0], octave_base_scale: 4, scales_per_octave: 1, center_offset: 0.0, \
                strides: [8, 16, 32, 64, 128]}\n";
    let config = format!("{}{head}{}", &retinanet[..head_at], &retinanet[train_at..]).replacen(
        "    assigner: {type: MaxIoUAssigner, pos_iou_thr: 0.5, neg_iou_thr: 0.4, min_pos_iou: 0, ignore_iof_thr: -1}\n",
        "    assigner: {type: ATSSAssigner, topk: 9}\n",
        1,
    );
    assert!(config.contains("ATSSAssigner") && !config.contains("RetinaHead"), "{config}");
    let saved = ["bbox_head.vfnet_cls_dconv.weight", "bbox_head.cls_convs.1.conv.conv_offset.weight", "bbox_head.scales_refine.4.scale"];
    trains_and_tests(dir.path(), "vfnet", &config, 2, &["loss_cls", "loss_bbox", "loss_bbox_rf"], &saved);
}

/// A tiny TOOD (the tiny RetinaNet's backbone and FPN under a `TOODHead`)
/// whose task-aligned assignment starts after `initial_epoch` epochs.
fn tiny_tood(initial_epoch: u32) -> String {
    let retinanet = tiny_retinanet(TINY_FPN, "{type: GIoULoss, loss_weight: 2.0}");
    let (head_at, test_at) = (retinanet.find("  bbox_head:\n").unwrap(), retinanet.find("  test_cfg:\n").unwrap());
    let head = format!(
        "  bbox_head:\n    type: TOODHead\n    num_classes: 4\n    in_channels: 32\n    stacked_convs: 2\n    feat_channels: 32\n    \
         num_dcn: 1\n    norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n    anchor_generator: {{type: AnchorGenerator, \
         ratios: [1.0], octave_base_scale: 4, scales_per_octave: 1, strides: [8, 16, 32, 64, 128]}}\n    \
         bbox_coder: {{type: DeltaXYWHBBoxCoder, target_means: [0.0, 0.0, 0.0, 0.0], target_stds: [0.1, 0.1, 0.2, 0.2]}}\n    \
         initial_loss_cls: {{type: FocalLoss, use_sigmoid: true, activated: true, gamma: 2.0, alpha: 0.25, loss_weight: 1.0}}\n    \
         loss_cls: {{type: QualityFocalLoss, use_sigmoid: true, activated: true, beta: 2.0, loss_weight: 1.0}}\n    \
         loss_bbox: {{type: GIoULoss, loss_weight: 2.0}}\n  train_cfg:\n    initial_epoch: {initial_epoch}\n    \
         initial_assigner: {{type: ATSSAssigner, topk: 9}}\n    assigner: {{type: TaskAlignedAssigner, topk: 13}}\n    alpha: 1\n    \
         beta: 6\n    allowed_border: -1\n    pos_weight: -1\n    debug: false\n"
    );
    format!("{}{head}{}", &retinanet[..head_at], &retinanet[test_at..]).replacen("  type: RetinaNet\n", "  type: TOOD\n", 1)
}

/// A tiny TOOD trains through its switch from ATSS to task-aligned
/// assignment (after the first epoch), saves the head under MMDetection's
/// names and tests; a run resumed at the switch logs the same losses, and
/// the second epoch differs from a run that keeps ATSS.
#[test]
fn tood_switches_assignment_trains_resumes_exactly_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let saved = ["bbox_head.cls_decomp.layer_attention.2.weight", "bbox_head.inter_convs.0.conv.conv_offset.weight", "bbox_head.reg_offset_module.2.bias"];
    trains_and_tests(dir.path(), "tood", &tiny_tood(1), 2, &["loss_cls", "loss_bbox"], &saved);
    let file = dir.path().join("tood.yaml");
    run_config(dir.path(), &file, "resumed", 1, false);
    run_config(dir.path(), &file, "resumed", 2, true);
    assert_resumed_logs_alike(dir.path(), "tood", &["loss_cls", "loss_bbox"], 4);
    std::fs::write(dir.path().join("stay.yaml"), tiny_tood(5)).unwrap();
    run_config(dir.path(), &dir.path().join("stay.yaml"), "stay", 2, false);
    for key in ["loss_cls", "loss_bbox"] {
        let (switched, stayed) = (by_step(dir.path(), "tood", key), by_step(dir.path(), "stay", key));
        assert_eq!(switched[..2], stayed[..2], "{key}: the first epoch differs before the switch");
        assert_ne!(switched[2..], stayed[2..], "{key}: the second epoch did not change with the assignment");
    }
}

/// A tiny FoveaBox with the classification branch aligned to the predicted
/// box (the gn-head-align configs): the tiny RetinaNet's backbone and FPN
/// under a `FoveaHead`, an empty `train_cfg`. Both losses are logged, the
/// aligning convs are saved under MMDetection's names, and it tests.
#[test]
fn foveabox_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let retinanet = tiny_retinanet(TINY_FPN, "{type: SmoothL1Loss, beta: 0.11, loss_weight: 1.0}");
    let (head_at, test_at) = (retinanet.find("  bbox_head:\n").unwrap(), retinanet.find("  test_cfg:\n").unwrap());
    let head = "  bbox_head:\n    type: FoveaHead\n    num_classes: 4\n    in_channels: 32\n    stacked_convs: 2\n    feat_channels: 32\n    \
                strides: [8, 16, 32, 64, 128]\n    base_edge_list: [16, 32, 64, 128, 256]\n    \
                scale_ranges: [[1, 64], [32, 128], [64, 256], [128, 512], [256, 2048]]\n    with_deform: true\n    \
                norm_cfg: {type: GN, num_groups: 8, requires_grad: true}\n    \
                loss_cls: {type: FocalLoss, use_sigmoid: true, gamma: 1.5, alpha: 0.4, loss_weight: 1.0}\n    \
                loss_bbox: {type: SmoothL1Loss, beta: 0.11, loss_weight: 1.0}\n  train_cfg: {}\n";
    let config = format!("{}{head}{}", &retinanet[..head_at], &retinanet[test_at..]).replacen("  type: RetinaNet\n", "  type: FOVEA\n", 1);
    let saved = ["bbox_head.feature_adaption.conv_offset.weight", "bbox_head.feature_adaption.conv_adaption.weight", "bbox_head.cls_convs.1.gn.weight"];
    trains_and_tests(dir.path(), "fovea", &config, 2, &["loss_cls", "loss_bbox"], &saved);
}

/// A tiny RepPoints (the tiny RetinaNet's backbone and FPN under a
/// `RepPointsHead` with the moment transform, `PointAssigner` then
/// `MaxIoUAssigner`): its three losses are logged, `moment_transfer` and the
/// deformable convs are saved under MMDetection's names, and it tests.
#[test]
fn reppoints_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let retinanet = tiny_retinanet(TINY_FPN, "{type: SmoothL1Loss, beta: 0.11, loss_weight: 1.0}");
    let (head_at, test_at) = (retinanet.find("  bbox_head:\n").unwrap(), retinanet.find("  test_cfg:\n").unwrap());
    let head = "  bbox_head:\n    type: RepPointsHead\n    num_classes: 4\n    in_channels: 32\n    feat_channels: 32\n    \
                point_feat_channels: 32\n    stacked_convs: 2\n    point_strides: [8, 16, 32, 64, 128]\n    \
                norm_cfg: {type: GN, num_groups: 8, requires_grad: true}\n    transform_method: moment\n  train_cfg:\n    \
                init:\n      assigner: {type: PointAssigner, scale: 4, pos_num: 1}\n      allowed_border: -1\n      pos_weight: -1\n    \
                refine:\n      assigner: {type: MaxIoUAssigner, pos_iou_thr: 0.5, neg_iou_thr: 0.4, min_pos_iou: 0, ignore_iof_thr: -1}\n      \
                allowed_border: -1\n      pos_weight: -1\n";
    let config = format!("{}{head}{}", &retinanet[..head_at], &retinanet[test_at..]).replacen("  type: RetinaNet\n", "  type: RepPointsDetector\n", 1);
    let saved = ["bbox_head.moment_transfer", "bbox_head.reppoints_cls_conv.weight", "bbox_head.reppoints_pts_refine_out.bias"];
    trains_and_tests(dir.path(), "reppoints", &config, 2, &["loss_cls", "loss_pts_init", "loss_pts_refine"], &saved);
}

/// A tiny CenterNet (the tiny RetinaNet's backbone and FPN under a
/// `CenterNetUpdateHead`, no `train_cfg`): both losses are logged, the head
/// is saved under MMDetection's names, and it tests.
#[test]
fn centernet_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let retinanet = tiny_retinanet(TINY_FPN, "{type: GIoULoss, loss_weight: 2.0}");
    let (head_at, test_at) = (retinanet.find("  bbox_head:\n").unwrap(), retinanet.find("  test_cfg:\n").unwrap());
    let head = "  bbox_head:\n    type: CenterNetUpdateHead\n    num_classes: 4\n    in_channels: 32\n    stacked_convs: 2\n    \
                feat_channels: 32\n    strides: [8, 16, 32, 64, 128]\n    norm_cfg: {type: GN, num_groups: 8, requires_grad: true}\n    \
                loss_cls: {type: GaussianFocalLoss, pos_weight: 0.25, neg_weight: 0.75, loss_weight: 1.0}\n    \
                loss_bbox: {type: GIoULoss, loss_weight: 2.0}\n  train_cfg: null\n";
    let config = format!("{}{head}{}", &retinanet[..head_at], &retinanet[test_at..]).replacen("  type: RetinaNet\n", "  type: CenterNet\n", 1);
    let saved = ["bbox_head.conv_cls.bias", "bbox_head.scales.4.scale", "bbox_head.reg_convs.1.gn.weight"];
    trains_and_tests(dir.path(), "centernet", &config, 2, &["loss_cls", "loss_bbox"], &saved);
}

/// The demo Faster R-CNN as MMDetection 1.x built it (the `legacy_1.x`
/// configs): `LegacyAnchorGenerator`, `LegacyDeltaXYWHBBoxCoder` in both
/// stages, RoIAlign without the half-pixel shift. It trains and tests.
#[test]
fn legacy_faster_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  rpn_head:\n    anchor_generator:\n      type: LegacyAnchorGenerator\n      center_offset: 0.5\n    \
         bbox_coder:\n      _delete_: true\n      type: LegacyDeltaXYWHBBoxCoder\n  roi_head:\n    bbox_roi_extractor:\n      \
         roi_layer: {{type: RoIAlign, output_size: 7, sampling_ratio: 2, aligned: false}}\n    bbox_head:\n      bbox_coder:\n        \
         _delete_: true\n        type: LegacyDeltaXYWHBBoxCoder\n        target_stds: [0.1, 0.1, 0.2, 0.2]\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    );
    trains_and_tests(dir.path(), "legacy", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_bbox"], &["rpn_head.rpn_conv.weight"]);
}

#[test]
fn retinanet_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = tiny_retinanet(TINY_FPN, "{type: L1Loss, loss_weight: 1.0}");
    let saved = [
        "bbox_head.cls_convs.0.conv.weight",
        "bbox_head.retina_cls.bias",
        "bbox_head.retina_reg.weight",
        "neck.fpn_convs.4.conv.weight",
    ];
    let log = trains_and_tests(dir.path(), "retina", &config, 2, &["loss_cls", "loss_bbox"], &saved);
    assert!(!log.contains("loss_rpn_cls"), "{log}");
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
}

/// The demo Mask R-CNN on a tiny custom `RegNet` design (a 3x3 stem without
/// pool, grouped bottlenecks without expansion; the demo's FPN widths): it
/// trains, saves the backbone under ResNet's names, and tests.
#[test]
fn regnet_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  backbone:\n    _delete_: true\n    type: RegNet\n    \
         arch: {{w0: 16, wa: 24.0, wm: 2.0, group_w: 8, depth: 6, bot_mul: 1.0}}\n    norm_eval: false\n",
        base = root().join(CONFIG).display(),
    );
    let saved = ["backbone.conv1.weight", "backbone.layer3.1.conv2.weight", "backbone.layer4.0.downsample.1.running_var"];
    let log = trains_and_tests(dir.path(), "regnet", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_mask"], &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
}

/// The demo Mask R-CNN on a narrow ResNet-50 with modulated deformable convs
/// (`DCNv2`, 2 deformable groups) in c3-c5 and `dcn_offset_lr_mult`: it
/// trains, saves the offset convs under MMCV's names, and tests.
#[test]
fn dcn_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  backbone:\n    depth: 50\n    base_channels: 4\n    \
         dcn: {{type: DCNv2, deform_groups: 2, fallback_on_stride: false}}\n    stage_with_dcn: [false, true, true, true]\n\
         optim_wrapper:\n  paramwise_cfg:\n    dcn_offset_lr_mult: 0.1\n",
        base = root().join(CONFIG).display(),
    );
    let saved = ["backbone.layer2.0.conv2.weight", "backbone.layer2.0.conv2.conv_offset.weight", "backbone.layer4.2.conv2.conv_offset.bias"];
    let log = trains_and_tests(dir.path(), "dcn", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_mask"], &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
}

/// The demo Mask R-CNN on a narrow `HRNet` with an `HRFPN` neck: it
/// trains, saves the branches, fusions and pyramid convs under MMDetection's
/// names, and tests.
#[test]
fn hrnet_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let stage = |modules: u32, n: usize, channels: &str| {
        format!("{{num_modules: {modules}, num_branches: {n}, block: BASIC, num_blocks: [{}], num_channels: [{channels}]}}", vec!["1"; n].join(", "))
    };
    let config = format!(
        "_base_: {base}\nmodel:\n  backbone:\n    _delete_: true\n    type: HRNet\n    norm_eval: false\n    extra:\n      \
         stage1: {{num_modules: 1, num_branches: 1, block: BOTTLENECK, num_blocks: [1], num_channels: [8]}}\n      \
         stage2: {}\n      stage3: {}\n      stage4: {}\n  neck:\n    _delete_: true\n    type: HRFPN\n    \
         in_channels: [8, 16, 32, 64]\n    out_channels: 64\n",
        stage(1, 2, "8, 16"),
        stage(1, 3, "8, 16, 32"),
        stage(1, 4, "8, 16, 32, 64"),
        base = root().join(CONFIG).display(),
    );
    let saved = [
        "backbone.transition3.3.0.0.weight",
        "backbone.stage4.0.fuse_layers.3.0.2.1.running_mean",
        "backbone.stage4.0.branches.2.0.conv2.weight",
        "neck.reduction_conv.conv.weight",
        "neck.fpn_convs.4.conv.bias",
    ];
    let log = trains_and_tests(dir.path(), "hrnet", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_mask"], &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
}

/// The demo's backbone, neck and RPN head as an `RPN` detector, evaluated
/// by `CocoMetric`'s `proposal_fast`: it trains with the RPN's two losses,
/// logs the average recalls, saves the head as `bbox_head`, and tests.
#[test]
fn rpn_trains_and_tests_with_proposal_recall() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  _delete_: true\n  type: RPN\n  data_preprocessor:\n    type: DetDataPreprocessor\n    \
         mean: [123.675, 116.28, 103.53]\n    std: [58.395, 57.12, 57.375]\n    bgr_to_rgb: true\n    pad_size_divisor: 32\n  \
         backbone:\n    type: ResNet\n    depth: 18\n    base_channels: 16\n    norm_eval: false\n    frozen_stages: -1\n  \
         neck:\n    type: FPN\n    in_channels: [16, 32, 64, 128]\n    out_channels: 32\n    num_outs: 5\n  \
         rpn_head:\n    type: RPNHead\n    in_channels: 32\n    feat_channels: 32\n    anchor_generator:\n      \
         type: AnchorGenerator\n      scales: [2]\n      ratios: [0.5, 1.0, 2.0]\n      strides: [4, 8, 16, 32, 64]\n    \
         bbox_coder: {{type: DeltaXYWHBBoxCoder, target_means: [0.0, 0.0, 0.0, 0.0], target_stds: [1.0, 1.0, 1.0, 1.0]}}\n    \
         loss_cls: {{type: CrossEntropyLoss, use_sigmoid: true, loss_weight: 1.0}}\n    loss_bbox: {{type: L1Loss, loss_weight: 1.0}}\n  \
         train_cfg:\n    rpn:\n      assigner: {{type: MaxIoUAssigner, pos_iou_thr: 0.7, neg_iou_thr: 0.3, min_pos_iou: 0.3, ignore_iof_thr: -1}}\n      \
         sampler: {{type: RandomSampler, num: 256, pos_fraction: 0.5, neg_pos_ub: -1, add_gt_as_proposals: false}}\n      \
         allowed_border: -1\n      pos_weight: -1\n      debug: false\n  \
         test_cfg:\n    rpn:\n      nms_pre: 1000\n      max_per_img: 300\n      nms: {{type: nms, iou_threshold: 0.7}}\n      min_bbox_size: 0\n\
         val_evaluator:\n  metric: proposal_fast\n  proposal_nums: [10, 100, 300]\n\
         test_evaluator:\n  metric: proposal_fast\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    );
    let saved = ["bbox_head.rpn_conv.weight", "bbox_head.rpn_cls.bias", "bbox_head.rpn_reg.weight", "neck.fpn_convs.3.conv.weight"];
    let log = trains_and_tests(dir.path(), "rpn", &config, 2, &["loss_rpn_cls", "loss_rpn_bbox"], &saved);
    for key in ["coco/AR@10: ", "coco/AR@100: ", "coco/AR@300: "] {
        assert!(log.contains(key), "{key} is not in the log:\n{log}");
    }
    assert!(!log.contains(" loss_cls: "), "{log}");
}

/// A tiny FCOS (`SingleStageDetector` with an `FCOSHead`: GroupNorm
/// branches, centre sampling, GIoU) on the demo's data and schedule: it
/// trains with MMDetection's three loss terms in the log, evaluates
/// (`score_thr: 0`: two epochs leave the scores near the 0.01 prior),
/// saves the head under MMDetection's names, and tests.
#[test]
fn fcos_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  _delete_: true\n  type: FCOS\n  data_preprocessor:\n    type: DetDataPreprocessor\n    \
         mean: [123.675, 116.28, 103.53]\n    std: [58.395, 57.12, 57.375]\n    bgr_to_rgb: true\n    pad_size_divisor: 32\n  \
         backbone:\n    type: ResNet\n    depth: 18\n    base_channels: 16\n    norm_eval: false\n    frozen_stages: -1\n  \
         neck:\n    type: FPN\n    in_channels: [16, 32, 64, 128]\n    out_channels: 32\n    start_level: 1\n    \
         add_extra_convs: on_output\n    num_outs: 5\n    relu_before_extra_convs: true\n  bbox_head:\n    type: FCOSHead\n    \
         num_classes: 4\n    in_channels: 32\n    stacked_convs: 1\n    feat_channels: 32\n    strides: [8, 16, 32, 64, 128]\n    \
         norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n    center_sampling: true\n    norm_on_bbox: true\n    \
         centerness_on_reg: true\n    loss_bbox: {{type: GIoULoss, loss_weight: 1.0}}\n  test_cfg:\n    nms_pre: 100\n    \
         min_bbox_size: 0\n    score_thr: 0.0\n    nms: {{type: nms, iou_threshold: 0.5}}\n    max_per_img: 50\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    );
    let saved = [
        "bbox_head.cls_convs.0.gn.weight",
        "bbox_head.conv_centerness.bias",
        "bbox_head.scales.4.scale",
        "neck.fpn_convs.4.conv.weight",
    ];
    let log = trains_and_tests(dir.path(), "fcos", &config, 2, &["loss_cls", "loss_bbox", "loss_centerness"], &saved);
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
}

/// A tiny ATSS (`SingleStageDetector` with an `ATSSHead` and
/// `ATSSAssigner`) on a narrow ResNet-50 with GCNet's context blocks
/// (`plugins`) in stages 2-4, on the demo's data and schedule: it trains
/// with MMDetection's three loss terms in the log, evaluates, saves the
/// head and the blocks under MMDetection's names, and tests.
#[test]
fn atss_with_context_blocks_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  _delete_: true\n  type: ATSS\n  data_preprocessor:\n    type: DetDataPreprocessor\n    \
         mean: [123.675, 116.28, 103.53]\n    std: [58.395, 57.12, 57.375]\n    bgr_to_rgb: true\n    pad_size_divisor: 32\n  \
         backbone:\n    type: ResNet\n    depth: 50\n    base_channels: 8\n    norm_eval: false\n    frozen_stages: -1\n    \
         plugins:\n      - cfg: {{type: ContextBlock, ratio: 0.25}}\n        stages: [false, true, true, true]\n        \
         position: after_conv3\n  \
         neck:\n    type: FPN\n    in_channels: [32, 64, 128, 256]\n    out_channels: 32\n    start_level: 1\n    \
         add_extra_convs: on_output\n    num_outs: 5\n  bbox_head:\n    type: ATSSHead\n    \
         num_classes: 4\n    in_channels: 32\n    stacked_convs: 1\n    feat_channels: 32\n    \
         norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n    \
         anchor_generator: {{type: AnchorGenerator, ratios: [1.0], octave_base_scale: 8, scales_per_octave: 1, strides: [8, 16, 32, 64, 128]}}\n    \
         bbox_coder: {{type: DeltaXYWHBBoxCoder, target_means: [0.0, 0.0, 0.0, 0.0], target_stds: [0.1, 0.1, 0.2, 0.2]}}\n    \
         loss_cls: {{type: FocalLoss, use_sigmoid: true, gamma: 2.0, alpha: 0.25, loss_weight: 1.0}}\n    \
         loss_bbox: {{type: GIoULoss, loss_weight: 2.0}}\n  \
         train_cfg:\n    assigner: {{type: ATSSAssigner, topk: 9}}\n    allowed_border: -1\n    pos_weight: -1\n    debug: false\n  \
         test_cfg:\n    nms_pre: 100\n    min_bbox_size: 0\n    score_thr: 0.0\n    nms: {{type: nms, iou_threshold: 0.6}}\n    max_per_img: 50\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    );
    let saved = [
        "backbone.layer3.1.context_block.conv_mask.weight",
        "backbone.layer4.0.context_block.channel_add_conv.1.weight",
        "bbox_head.cls_convs.0.gn.weight",
        "bbox_head.atss_centerness.bias",
        "bbox_head.scales.4.scale",
    ];
    let log = trains_and_tests(dir.path(), "atss", &config, 2, &["loss_cls", "loss_bbox", "loss_centerness"], &saved);
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
}

/// A tiny GFL (`SingleStageDetector` with a `GFLHead`: ATSS's assignment,
/// `QualityFocalLoss`, side distributions and `DistributionFocalLoss`) on a
/// `PAFPN` neck, on the demo's data and schedule: it trains with
/// MMDetection's three loss terms in the log, evaluates, saves the head and
/// the bottom-up path under MMDetection's names, and tests.
#[test]
fn gfl_on_pafpn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  _delete_: true\n  type: GFL\n  data_preprocessor:\n    type: DetDataPreprocessor\n    \
         mean: [123.675, 116.28, 103.53]\n    std: [58.395, 57.12, 57.375]\n    bgr_to_rgb: true\n    pad_size_divisor: 32\n  \
         backbone:\n    type: ResNet\n    depth: 18\n    base_channels: 16\n    norm_eval: false\n    frozen_stages: -1\n  \
         neck:\n    type: PAFPN\n    in_channels: [16, 32, 64, 128]\n    out_channels: 32\n    start_level: 1\n    \
         add_extra_convs: on_output\n    num_outs: 5\n  bbox_head:\n    type: GFLHead\n    \
         num_classes: 4\n    in_channels: 32\n    stacked_convs: 1\n    feat_channels: 32\n    \
         norm_cfg: {{type: GN, num_groups: 8, requires_grad: true}}\n    \
         anchor_generator: {{type: AnchorGenerator, ratios: [1.0], octave_base_scale: 8, scales_per_octave: 1, strides: [8, 16, 32, 64, 128]}}\n    \
         loss_cls: {{type: QualityFocalLoss, use_sigmoid: true, beta: 2.0, loss_weight: 1.0}}\n    \
         loss_dfl: {{type: DistributionFocalLoss, loss_weight: 0.25}}\n    reg_max: 8\n    \
         loss_bbox: {{type: GIoULoss, loss_weight: 2.0}}\n  \
         train_cfg:\n    assigner: {{type: ATSSAssigner, topk: 9}}\n    allowed_border: -1\n    pos_weight: -1\n    debug: false\n  \
         test_cfg:\n    nms_pre: 100\n    min_bbox_size: 0\n    score_thr: 0.0\n    nms: {{type: nms, iou_threshold: 0.6}}\n    max_per_img: 50\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    );
    let saved = ["neck.downsample_convs.1.conv.weight", "neck.pafpn_convs.1.conv.bias", "bbox_head.gfl_reg.weight", "bbox_head.scales.4.scale"];
    let log = trains_and_tests(dir.path(), "gfl", &config, 2, &["loss_cls", "loss_bbox", "loss_dfl"], &saved);
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
}

/// The demo Mask R-CNN as Mask Scoring R-CNN (`MaskScoringRoIHead` with a
/// `MaskIoUHead`): it trains with `loss_mask_iou` in the log, saves the
/// mask-IoU head under MMDetection's names, evaluates and tests.
#[test]
fn mask_scoring_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  type: MaskScoringRCNN\n  roi_head:\n    type: MaskScoringRoIHead\n    \
         mask_roi_extractor: {{type: SingleRoIExtractor, roi_layer: {{type: RoIAlign, output_size: 14, sampling_ratio: 0}}, \
         out_channels: 64, featmap_strides: [4, 8, 16, 32]}}\n    \
         mask_iou_head: {{type: MaskIoUHead, num_convs: 2, num_fcs: 1, roi_feat_size: 14, in_channels: 64, \
         conv_out_channels: 16, fc_out_channels: 32, num_classes: 4}}\n  train_cfg:\n    rcnn:\n      mask_size: 28\n      \
         mask_thr_binary: 0.5\n",
        base = root().join(CONFIG).display(),
    );
    let saved = ["roi_head.mask_iou_head.convs.1.weight", "roi_head.mask_iou_head.fcs.0.bias", "roi_head.mask_iou_head.fc_mask_iou.weight"];
    let log = trains_and_tests(dir.path(), "ms", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_mask", "loss_mask_iou"], &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
}

/// Libra R-CNN's RetinaNet parts on the tiny RetinaNet: a neck list (FPN,
/// then `BFP` refined by a `NonLocal2d`) and `BalancedL1Loss`: it trains,
/// saves the BFP under `neck.1.*`, evaluates and tests.
#[test]
fn libra_retinanet_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let fpn = TINY_FPN.replacen("    type: FPN", "    - type: FPN", 1).replace("\n    ", "\n      ");
    let neck = format!("{}    - {{type: BFP, in_channels: 32, num_levels: 5, refine_level: 1, refine_type: non_local}}\n", fpn.trim_end_matches(' '));
    let config = tiny_retinanet(&neck, "{type: BalancedL1Loss, alpha: 0.5, gamma: 1.5, beta: 0.11, loss_weight: 1.0}");
    let saved = ["neck.0.fpn_convs.4.conv.weight", "neck.1.refine.theta.conv.weight", "neck.1.refine.conv_out.conv.bias"];
    let log = trains_and_tests(dir.path(), "libra", &config, 2, &["loss_cls", "loss_bbox"], &saved);
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
}

/// The demo Faster R-CNN as Libra R-CNN: a neck list (FPN, then `BFP`
/// refined by a `NonLocal2d`), `BalancedL1Loss` in the box head and the
/// `CombinedSampler` (instance-balanced positives, IoU-balanced negatives)
/// of 64 RoIs per image: it trains, saves the BFP under `neck.1.*`,
/// evaluates and tests.
#[test]
fn libra_faster_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  neck:\n    - type: FPN\n      in_channels: [16, 32, 64, 128]\n      out_channels: 64\n      \
         num_outs: 5\n    - {{type: BFP, in_channels: 64, num_levels: 5, refine_level: 2, refine_type: non_local}}\n  roi_head:\n    \
         bbox_head:\n      loss_bbox: {{_delete_: true, type: BalancedL1Loss, alpha: 0.5, gamma: 1.5, beta: 1.0, loss_weight: 1.0}}\n  \
         train_cfg:\n    rcnn:\n      sampler:\n        _delete_: true\n        type: CombinedSampler\n        num: 64\n        \
         pos_fraction: 0.25\n        add_gt_as_proposals: true\n        pos_sampler: {{type: InstanceBalancedPosSampler}}\n        \
         neg_sampler: {{type: IoUBalancedNegSampler, floor_thr: -1, floor_fraction: 0, num_bins: 3}}\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    );
    let saved = ["neck.0.lateral_convs.0.conv.weight", "neck.1.refine.g.conv.weight", "roi_head.bbox_head.fc_reg.bias"];
    let log = trains_and_tests(dir.path(), "libra_frcnn", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_bbox"], &saved);
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
}

/// GHM's losses with momentum on the tiny RetinaNet: they train, keep their
/// running counts in the checkpoint (`bbox_head.loss_cls.acc_sum`, not all
/// zero), and a resumed run picks the counts up: its losses equal those of
/// an uninterrupted run, step for step.
#[test]
fn ghm_retinanet_trains_resumes_exactly_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let focal = "loss_cls: {type: FocalLoss, use_sigmoid: true, gamma: 2.0, alpha: 0.25, loss_weight: 1.0}";
    let config = tiny_retinanet(TINY_FPN, "{type: GHMR, mu: 0.02, bins: 10, momentum: 0.7, loss_weight: 10.0}")
        .replacen(focal, "loss_cls: {type: GHMC, bins: 30, momentum: 0.75, use_sigmoid: true, loss_weight: 1.0}", 1);
    assert!(config.contains("GHMC"));
    let saved = ["bbox_head.loss_cls.edges", "bbox_head.loss_cls.acc_sum", "bbox_head.loss_bbox.acc_sum"];
    trains_and_tests(dir.path(), "ghm", &config, 2, &["loss_cls", "loss_bbox"], &saved);
    let ckpt = detc::checkpoint::load(&dir.path().join("ghm/epoch_2.pth")).unwrap();
    let acc_sum: Vec<f32> =
        ckpt.state_dict["bbox_head.loss_cls.acc_sum"].data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert!(acc_sum.iter().any(|&c| c > 0.0), "the running counts were never updated: {acc_sum:?}");
    let file = dir.path().join("ghm.yaml");
    run_config(dir.path(), &file, "resumed", 1, false);
    run_config(dir.path(), &file, "resumed", 2, true);
    assert_resumed_logs_alike(dir.path(), "ghm", &["loss_cls", "loss_bbox"], 4);
}

/// The demo Mask R-CNN with GRoIE's `GenericRoIExtractor` for both
/// branches (each RoI pooled from every level; a ConvModule before the sum,
/// a GeneralizedAttention after, as the groie configs; the mask branch's
/// levels concatenated): it trains, saves the modules under
/// `roi_head.*_roi_extractor.*_module`, evaluates and tests.
#[test]
fn groie_mask_rcnn_trains_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "_base_: {base}\nmodel:\n  roi_head:\n    bbox_roi_extractor:\n      type: GenericRoIExtractor\n      aggregation: sum\n      \
         pre_cfg: {{type: ConvModule, in_channels: 64, out_channels: 64, kernel_size: 3, padding: 1, inplace: false}}\n      \
         post_cfg: {{type: GeneralizedAttention, in_channels: 64, spatial_range: -1, num_heads: 2, attention_type: '0100', kv_stride: 2}}\n    \
         mask_roi_extractor:\n      type: GenericRoIExtractor\n      aggregation: concat\n      \
         roi_layer: {{type: RoIAlign, output_size: 7, sampling_ratio: 0}}\n      out_channels: 256\n      featmap_strides: [4, 8, 16, 32]\n      \
         pre_cfg: {{type: ConvModule, in_channels: 64, out_channels: 64, kernel_size: 3, padding: 1}}\n    mask_head:\n      in_channels: 256\n",
        base = root().join(CONFIG).display(),
    );
    let saved = [
        "roi_head.bbox_roi_extractor.pre_module.conv.weight",
        "roi_head.bbox_roi_extractor.post_module.appr_geom_fc_x.weight",
        "roi_head.mask_roi_extractor.pre_module.conv.bias",
    ];
    let log = trains_and_tests(dir.path(), "groie", &config, 2, &["loss_rpn_cls", "loss_cls", "loss_mask"], &saved);
    assert!(log.contains("coco/segm_mAP: "), "{log}");
}

/// A tiny RTMDet on the demo's data: a CSPNeXt (P5, channel attention) and
/// CSPNeXtPAFPN of 32 to 128 channels with SiLU, the separate-BN head with
/// shared convs, DynamicSoftLabelAssigner, QualityFocalLoss and GIoU, AdamW.
fn tiny_rtmdet() -> String {
    format!(
        "_base_: {base}\nmodel:\n  _delete_: true\n  type: RTMDet\n  data_preprocessor:\n    type: DetDataPreprocessor\n    \
         mean: [103.53, 116.28, 123.675]\n    std: [57.375, 57.12, 58.395]\n    bgr_to_rgb: false\n    pad_size_divisor: 32\n  \
         backbone:\n    type: CSPNeXt\n    arch: P5\n    expand_ratio: 0.5\n    deepen_factor: 0.167\n    widen_factor: 0.125\n    \
         channel_attention: true\n    norm_cfg: {{type: BN}}\n    act_cfg: {{type: SiLU, inplace: true}}\n  \
         neck:\n    type: CSPNeXtPAFPN\n    in_channels: [32, 64, 128]\n    out_channels: 32\n    num_csp_blocks: 1\n    \
         expand_ratio: 0.5\n    norm_cfg: {{type: BN}}\n    act_cfg: {{type: SiLU, inplace: true}}\n  \
         bbox_head:\n    type: RTMDetSepBNHead\n    num_classes: 4\n    in_channels: 32\n    stacked_convs: 2\n    feat_channels: 32\n    \
         anchor_generator: {{type: MlvlPointGenerator, offset: 0, strides: [8, 16, 32]}}\n    bbox_coder: {{type: DistancePointBBoxCoder}}\n    \
         loss_cls: {{type: QualityFocalLoss, use_sigmoid: true, beta: 2.0, loss_weight: 1.0}}\n    \
         loss_bbox: {{type: GIoULoss, loss_weight: 2.0}}\n    with_objectness: false\n    exp_on_reg: false\n    share_conv: true\n    \
         pred_kernel_size: 1\n    norm_cfg: {{type: BN}}\n    act_cfg: {{type: SiLU, inplace: true}}\n  \
         train_cfg:\n    assigner: {{type: DynamicSoftLabelAssigner, topk: 13}}\n    allowed_border: -1\n    pos_weight: -1\n    debug: false\n  \
         test_cfg:\n    nms_pre: 1000\n    min_bbox_size: 0\n    score_thr: 0.0\n    nms: {{type: nms, iou_threshold: 0.65}}\n    max_per_img: 50\n\
         optim_wrapper:\n  _delete_: true\n  type: OptimWrapper\n  optimizer: {{type: AdamW, lr: 0.001, weight_decay: 0.05}}\n  \
         paramwise_cfg: {{norm_decay_mult: 0, bias_decay_mult: 0, bypass_duplicate: true}}\n",
        base = root().join("configs/demo/faster-rcnn_r18_shapes.yaml").display(),
    )
}

/// The tiny RTMDet: it trains, saves every level's name of the shared head convs,
/// evaluates, tests, and a run resumed from epoch 1 logs the same losses at
/// every step as an uninterrupted one.
#[test]
fn rtmdet_trains_resumes_exactly_and_tests() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = tiny_rtmdet();
    let saved = [
        "backbone.stage4.1.conv2.conv.weight",
        "backbone.stage2.1.attention.fc.bias",
        "neck.top_down_blocks.0.blocks.0.conv2.depthwise_conv.conv.weight",
        "bbox_head.cls_convs.0.0.conv.weight",
        "bbox_head.cls_convs.2.0.conv.weight",
        "bbox_head.cls_convs.2.0.bn.running_mean",
        "bbox_head.rtm_reg.2.bias",
    ];
    let log = trains_and_tests(dir.path(), "rtmdet", &config, 2, &["loss_cls", "loss_bbox"], &saved);
    assert!(log.contains("coco/bbox_mAP: "), "{log}");
    // The shared conv is saved under every level's name, with one value.
    let ckpt = detc::checkpoint::load(&dir.path().join("rtmdet/epoch_2.pth")).unwrap();
    let sd = &ckpt.state_dict;
    assert_eq!(sd["bbox_head.cls_convs.0.0.conv.weight"].data, sd["bbox_head.cls_convs.2.0.conv.weight"].data);
    assert_ne!(sd["bbox_head.cls_convs.0.0.bn.running_mean"].data, sd["bbox_head.cls_convs.2.0.bn.running_mean"].data);
    let file = dir.path().join("rtmdet.yaml");
    run_config(dir.path(), &file, "resumed", 1, false);
    run_config(dir.path(), &file, "resumed", 2, true);
    assert_resumed_logs_alike(dir.path(), "rtmdet", &["loss_cls", "loss_bbox"], 4);
}

/// The static check knows CSPNeXt's output channels: a neck expecting other
/// ones is refused before anything is built.
#[test]
fn rtmdet_neck_channels_are_checked_against_the_cspnext() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rtmdet.yaml"), tiny_rtmdet()).unwrap();
    detc(dir.path()).args(["check", "rtmdet.yaml"]).assert().success();
    let out = detc(dir.path())
        .args(["check", "rtmdet.yaml", "--cfg-options", "model.backbone.widen_factor=0.25"])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("[64, 128, 256]"), "{err}");
}

/// The tiny RTMDet with RTMDet's `EMAHook` (ExpMomentumEMA over parameters
/// and buffers; a small `gamma` so that the average lags the weights): the
/// checkpoint's `state_dict` is the average and its `ema_state_dict` the
/// trained weights under `module.` with `steps`; validation runs on the
/// average, so testing the checkpoint gives the last validation's mAP; and a
/// run resumed from epoch 1 logs the same losses and ends with the same
/// average and weights as an uninterrupted one.
#[test]
fn rtmdet_ema_validates_saves_and_resumes_the_average() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = format!(
        "{}custom_hooks:\n  - {{type: EMAHook, ema_type: ExpMomentumEMA, momentum: 0.0002, gamma: 2, update_buffers: true, priority: 49}}\n\
         val_evaluator:\n  outfile_prefix: val_results\n",
        tiny_rtmdet()
    );
    trains_and_tests(dir.path(), "ema", &config, 2, &["loss_cls", "loss_bbox"], &["bbox_head.rtm_cls.0.bias"]);
    let ckpt = detc::checkpoint::load(&dir.path().join("ema/epoch_2.pth")).unwrap();
    let ema = ckpt.other.get("ema_state_dict").expect("an ema_state_dict");
    let module = |name: &str| match ema.get(&format!("module.{name}")) {
        Some(detc::checkpoint::Value::Tensor(t)) => t.data.clone(),
        other => panic!("module.{name}: {other:?}"),
    };
    let steps = match ema.get("steps") {
        Some(detc::checkpoint::Value::Tensor(t)) => i64::from_le_bytes(t.data[..8].try_into().unwrap()),
        other => panic!("steps: {other:?}"),
    };
    assert_eq!(steps, 4, "one update per iteration");
    for name in ["bbox_head.rtm_reg.0.weight", "backbone.stem.0.bn.running_mean"] {
        assert_ne!(ckpt.state_dict[name].data, module(name), "{name}: the average equals the weights");
    }
    assert_eq!(module("bbox_head.cls_convs.0.0.conv.weight"), module("bbox_head.cls_convs.1.0.conv.weight"));
    // The last validation ran on the average: testing the checkpoint gives its detections.
    detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .args(["test", "ema.yaml", "ema/epoch_2.pth", "--work-dir", "ema_tested2", "--cfg-options"])
        .args(TINY)
        .arg("test_evaluator.outfile_prefix=test_results")
        .assert()
        .success();
    let results = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
    let (validated, tested) = (results("val_results.bbox.json"), results("test_results.bbox.json"));
    assert!(validated.len() > 100, "no detections: {validated}");
    assert_eq!(validated, tested, "validation and test of the saved average differ");
    let file = dir.path().join("ema.yaml");
    run_config(dir.path(), &file, "resumed", 1, false);
    run_config(dir.path(), &file, "resumed", 2, true);
    assert_resumed_logs_alike(dir.path(), "ema", &["loss_cls", "loss_bbox"], 4);
    let resumed = detc::checkpoint::load(&dir.path().join("resumed/epoch_2.pth")).unwrap();
    assert_eq!(resumed.state_dict, ckpt.state_dict, "the average differs after the resume");
    assert_eq!(resumed.other.get("ema_state_dict"), ckpt.other.get("ema_state_dict"), "the weights differ after the resume");
}

/// The tiny RTMDet on RTMDet's training pipeline scaled down (CachedMosaic,
/// RandomResize, RandomCrop, YOLOXHSVRandomAug, RandomFlip, Pad,
/// CachedMixUp), switched by `PipelineSwitchHook` to the stage-2 pipeline
/// (no mosaic, no mix-up) at epoch 1 (0-based) as the rtmdet configs do.
fn tiny_rtmdet_two_stage_pipeline(switch_epoch: u32) -> String {
    let tail = "      - {type: RandomCrop, crop_size: [128, 128]}\n      - {type: YOLOXHSVRandomAug}\n      \
                - {type: RandomFlip, prob: 0.5}\n      - {type: Pad, size: [128, 128], pad_val: {img: [114, 114, 114]}}\n";
    format!(
        "{}train_dataloader:\n  dataset:\n    pipeline:\n      - {{type: LoadImageFromFile}}\n      \
         - {{type: LoadAnnotations, with_bbox: true}}\n      - {{type: CachedMosaic, img_scale: [128, 128], pad_val: 114.0}}\n      \
         - {{type: RandomResize, scale: [256, 256], ratio_range: [0.5, 2.0], keep_ratio: true}}\n{tail}      \
         - {{type: CachedMixUp, img_scale: [128, 128], ratio_range: [1.0, 1.0], max_cached_images: 20, pad_val: [114, 114, 114]}}\n      \
         - {{type: PackDetInputs}}\ncustom_hooks:\n  - type: PipelineSwitchHook\n    switch_epoch: {switch_epoch}\n    \
         switch_pipeline:\n      - {{type: LoadImageFromFile}}\n      - {{type: LoadAnnotations, with_bbox: true}}\n      \
         - {{type: RandomResize, scale: [128, 128], ratio_range: [0.5, 2.0], keep_ratio: true}}\n{tail}      - {{type: PackDetInputs}}\n",
        tiny_rtmdet()
    )
}

/// RTMDet's two training stages: the mosaic and mix-up pipeline trains,
/// `PipelineSwitchHook` switches to the second stage's at its epoch (the
/// losses from then on differ from a run that does not switch), and a run
/// resumed from epoch 1 switches too and logs the same losses at every step
/// as an uninterrupted one: the mixing transforms draw their partners from
/// each sample's own random stream.
#[test]
fn rtmdet_pipeline_switch_trains_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let log = trains_and_tests(dir.path(), "switch", &tiny_rtmdet_two_stage_pipeline(1), 2, &["loss_cls", "loss_bbox"], &[]);
    assert_eq!(log.matches("Switch pipeline now!").count(), 1, "{log}");
    std::fs::write(dir.path().join("stay.yaml"), tiny_rtmdet_two_stage_pipeline(5)).unwrap();
    let stay_log = run_config(dir.path(), &dir.path().join("stay.yaml"), "stay", 2, false);
    assert!(!stay_log.contains("Switch pipeline now!"), "{stay_log}");
    let file = dir.path().join("switch.yaml");
    run_config(dir.path(), &file, "resumed", 1, false);
    let resumed_log = run_config(dir.path(), &file, "resumed", 2, true);
    assert!(resumed_log.contains("Switch pipeline now!"), "{resumed_log}");
    assert_resumed_logs_alike(dir.path(), "switch", &["loss_cls", "loss_bbox"], 4);
    for key in ["loss_cls", "loss_bbox"] {
        let (switched, stayed) = (by_step(dir.path(), "switch", key), by_step(dir.path(), "stay", key));
        assert_eq!(switched[..2], stayed[..2], "{key}: the first epoch differs before the switch");
        assert_ne!(switched[2..], stayed[2..], "{key}: the second epoch did not change with the pipeline");
    }
}

/// `detc check` builds the pipeline a `PipelineSwitchHook` switches to, and
/// names what it refuses there.
#[test]
fn pipeline_switch_hook_pipeline_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    // The switched-to pipeline (the config's last) without its `PackDetInputs`.
    let mut config = tiny_rtmdet_two_stage_pipeline(1);
    let at = config.rfind("      - {type: PackDetInputs}\n").unwrap();
    config.replace_range(at..at + "      - {type: PackDetInputs}\n".len(), "");
    std::fs::write(dir.path().join("rtmdet.yaml"), config).unwrap();
    let out = detc(dir.path()).args(["check", "rtmdet.yaml"]).assert().code(1).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("custom_hooks.0.switch_pipeline") && err.contains("must end with `PackDetInputs`"), "{err}");
}
