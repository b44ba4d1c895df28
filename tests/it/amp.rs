//! `detc run --amp`: MMDetection's `tools/train.py --amp` (an
//! `AmpOptimWrapper` with dynamic loss scaling) trains the demo QueryInst on
//! the CPU (bfloat16 autocast) and checkpoints the loss scaler with the
//! optimizer, as MMEngine does.

use std::path::Path;

use detc::checkpoint::{self, Value};

use crate::support::{detc, root, shapes_data};

/// The demo config kept tiny: 4 images in batches of 2 (2 iterations), one
/// epoch, a log line every iteration, no validation.
const TINY: &[&str] = &[
    "train_dataloader.batch_size=2",
    "train_dataloader.num_workers=0",
    "val_dataloader.num_workers=0",
    "test_dataloader.num_workers=0",
    "train_cfg.max_epochs=1",
    "train_cfg.val_begin=2",
    "default_hooks.logger.interval=1",
    "default_hooks.checkpoint.interval=1",
];

#[test]
fn run_amp_trains_on_the_cpu_and_saves_the_loss_scaler() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 4, 2);
    detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(root().join("configs/demo/queryinst_r18_shapes.yaml"))
        .args([
            "--amp",
            "--device",
            "cpu",
            "--work-dir",
            "amp",
            "--cfg-options",
        ])
        .args(TINY)
        .assert()
        .success();

    // The resolved config the run recorded has the wrapper --amp set.
    let work_dir = dir.path().join("amp");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work_dir.join("queryinst_r18_shapes.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["optim_wrapper"]["type"], "AmpOptimWrapper");
    assert_eq!(config["optim_wrapper"]["loss_scale"], "dynamic");

    // Both iterations logged finite losses.
    let losses = logged_losses(&work_dir);
    assert_eq!(losses.len(), 2, "one record per iteration: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");

    // MMEngine's AmpOptimWrapper.state_dict(): the optimizer's plus
    // `loss_scaler`, torch.amp.GradScaler.state_dict() after 2 clean steps
    // of the default dynamic scaler.
    let ckpt = checkpoint::load_value(&work_dir.join("epoch_1.pth")).unwrap();
    let scaler = ckpt
        .get("optimizer")
        .and_then(|o| o.get("loss_scaler"))
        .unwrap_or_else(|| panic!("no optimizer.loss_scaler in the checkpoint"));
    let Value::Dict(items) = scaler else {
        panic!("loss_scaler is not a dict: {scaler:?}")
    };
    let keys: Vec<&str> = items.iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "scale",
            "growth_factor",
            "backoff_factor",
            "growth_interval",
            "_growth_tracker"
        ]
    );
    assert_eq!(scaler.get("scale"), Some(&Value::Float(65536.0)));
    assert_eq!(scaler.get("growth_factor"), Some(&Value::Float(2.0)));
    assert_eq!(scaler.get("backoff_factor"), Some(&Value::Float(0.5)));
    assert_eq!(scaler.get("growth_interval"), Some(&Value::Int(2000)));
    assert_eq!(scaler.get("_growth_tracker"), Some(&Value::Int(2)));
}

/// `detc check`-style validation still applies to what --amp sets: a CPU
/// run with a float16 autocast dtype is refused before training.
#[test]
fn run_amp_refuses_float16_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 4, 2);
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(root().join("configs/demo/queryinst_r18_shapes.yaml"))
        .args([
            "--amp",
            "--device",
            "cpu",
            "--work-dir",
            "amp",
            "--cfg-options",
        ])
        .args(TINY)
        .arg("optim_wrapper.dtype=float16")
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&out);
    assert!(stderr.contains("only bfloat16"), "{stderr}");
}

/// The `loss` of every training record of every run folder of `work_dir`.
fn logged_losses(work_dir: &Path) -> Vec<f64> {
    let mut out = vec![];
    for entry in std::fs::read_dir(work_dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("vis_data/scalars.json")) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(loss) = v.get("loss").and_then(serde_json::Value::as_f64) {
                out.push(loss);
            }
        }
    }
    out
}
