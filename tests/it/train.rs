//! `detc run` / `detc test` end to end on a tiny QueryInst (the demo config)
//! and 8 + 4 synthetic images: the work dir MMEngine writes, an exact resume
//! (the losses after the resume point equal the uninterrupted run's), and
//! `detc test --out` giving the metrics `detc eval` computes from its files.

use std::path::Path;

use serde_json::Value;

use crate::support::{detc, root};

/// Settings that keep the demo config tiny: 2 iterations per epoch, a log
/// line and a checkpoint every epoch, validation every epoch.
const TINY: &[&str] = &[
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
    "val_dataloader.num_workers=0",
    "test_dataloader.num_workers=0",
    "train_cfg.val_interval=1",
    "default_hooks.logger.interval=1",
    "default_hooks.checkpoint.interval=1",
    "default_hooks.checkpoint.max_keep_ckpts=2",
];

fn run(dir: &Path, work_dir: &str, epochs: u32, resume: bool) {
    let config = root().join("configs/demo/queryinst_r18_shapes.yaml");
    let mut cmd = detc(dir).env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"));
    cmd = cmd.arg("run").arg(&config).args(["--work-dir", work_dir]);
    if resume {
        cmd = cmd.arg("--resume");
    }
    let epochs = format!("train_cfg.max_epochs={epochs}");
    cmd.arg("--cfg-options")
        .args(TINY)
        .arg(epochs)
        .assert()
        .success();
}

/// The `scalars.json` records of every run folder of `work_dir`, by step.
fn losses_by_step(work_dir: &Path) -> Vec<(u64, f64)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(work_dir).unwrap().flatten() {
        let scalars = entry.path().join("vis_data/scalars.json");
        let Ok(text) = std::fs::read_to_string(&scalars) else {
            continue;
        };
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let (Some(step), Some(loss)) = (
                v["step"].as_u64(),
                v.get("s5.loss_cls").and_then(Value::as_f64),
            ) {
                out.push((step, loss));
            }
        }
    }
    out.sort_by_key(|a| a.0);
    out
}

#[test]
fn train_resume_exactly_then_test_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    detc(dir.path())
        .args([
            "data",
            "shapes",
            "data/shapes",
            "--train",
            "8",
            "--val",
            "4",
        ])
        .assert()
        .success();

    // Uninterrupted: 3 epochs. Interrupted: 2 epochs, then resumed to 3.
    run(dir.path(), "straight", 3, false);
    run(dir.path(), "resumed", 2, false);
    run(dir.path(), "resumed", 3, true);

    let straight = dir.path().join("straight");
    for file in [
        "epoch_2.pth",
        "epoch_3.pth",
        "last_checkpoint",
        "queryinst_r18_shapes.json",
    ] {
        assert!(straight.join(file).is_file(), "{file} is missing");
    }
    assert!(
        !straight.join("epoch_1.pth").exists(),
        "max_keep_ckpts: 2 keeps only the newest two"
    );
    let last = std::fs::read_to_string(straight.join("last_checkpoint")).unwrap();
    assert!(last.trim_end().ends_with("epoch_3.pth"), "{last}");
    let log = std::fs::read_dir(&straight)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .map(|run| {
            std::fs::read_to_string(
                run.path()
                    .join(format!("{}.log", run.file_name().to_string_lossy())),
            )
            .unwrap()
        })
        .unwrap();
    for needle in [
        "Epoch(train) [1][1/2]  base_lr: ",
        "s5.loss_mask: ",
        "Epoch(val) [3][4/4]    coco/bbox_mAP: ",
    ] {
        assert!(log.contains(needle), "`{needle}` is not in the log:\n{log}");
    }

    // Every logged loss after the resume point equals the uninterrupted run's, bit for bit.
    let a = losses_by_step(&straight);
    let b = losses_by_step(&dir.path().join("resumed"));
    assert_eq!(a.len(), 6, "one record per iteration: {a:?}");
    assert_eq!(a, b, "losses differ after the resume");

    // `detc test --out` writes COCO results whose `detc eval` AP is the logged one.
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("test")
        .arg(root().join("configs/demo/queryinst_r18_shapes.yaml"))
        .args([
            "straight/epoch_3.pth",
            "--work-dir",
            "tested",
            "--out",
            "tested/results.json",
            "--cfg-options",
        ])
        .args(TINY)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let log = String::from_utf8_lossy(&out);
    let logged = |key: &str| -> f64 {
        let at = log
            .find(&format!("coco/{key}: "))
            .unwrap_or_else(|| panic!("no coco/{key} in:\n{log}"));
        log[at + key.len() + 7..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    for (metric, key) in [("bbox", "bbox_mAP"), ("segm", "segm_mAP")] {
        let eval = detc(dir.path())
            .args([
                "eval",
                "--ann",
                "data/shapes/annotations/instances_val.json",
                "--format",
                "json",
                "--metric",
                metric,
            ])
            .arg("--results")
            .arg(format!("tested/results.{metric}.json"))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let stats: Value = serde_json::from_slice(&eval).unwrap();
        let ap = stats[metric]["AP"].as_f64().unwrap();
        assert!(
            (ap - logged(key)).abs() < 5e-4 + 1e-12,
            "{metric}: detc eval AP {ap}, detc test logged {}",
            logged(key)
        );
    }
}
