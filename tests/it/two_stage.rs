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
    let mut cmd = detc(dir).env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"));
    cmd = cmd
        .arg("run")
        .arg(root().join(CONFIG))
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
    for key in ["loss_rpn_cls", "loss_cls", "loss_mask"] {
        let by_step = |w: &str| {
            let mut r: Vec<(u64, f64)> = records(&dir.path().join(w), key);
            r.sort_by_key(|x| x.0);
            r
        };
        let (a, b) = (by_step("straight"), by_step("resumed"));
        assert_eq!(a.len(), 6, "{key}: one record per iteration: {a:?}");
        assert_eq!(a, b, "{key} differs after the resume");
    }
    // `detc test --out` writes COCO results whose `detc eval` AP is the logged one.
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("test")
        .arg(root().join(CONFIG))
        .args(["straight/epoch_3.pth", "--work-dir", "tested"])
        .args(["--out", "tested/results.json", "--cfg-options"])
        .args(TINY)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_test_log_matches_eval(dir.path(), &String::from_utf8_lossy(&out));

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
