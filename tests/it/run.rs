//! `detc run`: the config is checked in the light process, then the engine
//! names every component it cannot build yet before anything runs, and says
//! which weights file a `torchvision://` checkpoint needs.

use crate::support::{detc, root};

#[test]
fn run_names_components_without_builders() {
    let out = detc(&root())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .args([
            "run",
            "configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml",
            "--cfg-options",
            "model.neck.act_cfg.type=LeakyReLU",
            "model.rpn_head.init_cfg.type=Xavier",
        ])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(
        err.contains("have no builder in detc yet; nothing was run"),
        "{err}"
    );
    for line in [
        "model.neck.act_cfg  LeakyReLU",
        "model.rpn_head.init_cfg  Xavier",
    ] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            err.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == words),
            "missing `{line}` in:\n{err}"
        );
    }
}

#[test]
fn run_refuses_an_invalid_config_without_starting_the_engine() {
    let dir = crate::support::tree(&[("main.yaml", "model:\n  type: QueryInstt\n")]);
    detc(dir.path())
        .env("DETC_ENGINE", "/nonexistent/engine")
        .args(["run", "main.yaml"])
        .assert()
        .code(1);
}

#[test]
fn run_names_the_imagenet_weights_it_needs() {
    let torch_home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = detc(&root())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("TORCH_HOME", torch_home.path())
        .args([
            "run",
            "configs/queryinst/queryinst_r50_fpn_1x_coco.yaml",
            "--work-dir",
        ])
        .arg(work.path())
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(
        err.contains("torchvision://resnet50")
            && err.contains("resnet50-0676ba61.pth")
            && err.contains("checkpoint:"),
        "{err}"
    );
}

#[test]
fn run_refuses_unknown_engine_settings_before_writing_anything() {
    let work = tempfile::tempdir().unwrap();
    for (var, value, wrapper, says) in [
        (
            "DETC_DTYPE",
            "float16",
            "OptimWrapper",
            "DETC_DTYPE=\"float16\" is not a training dtype",
        ),
        (
            "DETC_DTYPE",
            "float64",
            "AmpOptimWrapper",
            "cannot be combined with an AmpOptimWrapper",
        ),
        (
            "DETC_ROI_ALIGN",
            "fast",
            "OptimWrapper",
            "DETC_ROI_ALIGN=\"fast\" is not a RoIAlign implementation; use kernel (the default) or sampled",
        ),
        (
            "DETC_MASK_TARGETS",
            "gpu",
            "OptimWrapper",
            "DETC_MASK_TARGETS=\"gpu\" is not a mask-target implementation; use kernel (the default) or host",
        ),
    ] {
        let out = detc(&root())
            .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
            .env(var, value)
            .args([
                "run",
                "configs/demo/faster-rcnn_r18_shapes.yaml",
                "--work-dir",
            ])
            .arg(work.path().join("work"))
            .args(["--cfg-options", &format!("optim_wrapper.type={wrapper}")])
            .assert()
            .code(1)
            .get_output()
            .stderr
            .clone();
        let err = String::from_utf8_lossy(&out);
        assert!(err.contains(says), "{err}");
        assert!(!work.path().join("work").exists(), "nothing is written");
    }
}
