//! `detc run` / `detc test` end to end on a tiny QueryInst (the demo config)
//! and 8 + 4 synthetic images: the work dir MMEngine writes, an exact resume
//! (the losses after the resume point equal the uninterrupted run's), and
//! `detc test --out` giving the metrics `detc eval` computes from its files.

use std::path::Path;

use crate::support::{all_records, assert_same_losses, assert_test_log_matches_eval, detc, root, shapes_data};

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

/// The `(step, s5.loss_cls)` records of every run folder of `work_dir`, by step.
fn losses_by_step(work_dir: &Path) -> Vec<(u64, f64)> {
    let mut out = all_records(work_dir);
    out.sort_by_key(|r| r.0);
    out
}

#[test]
fn train_resume_exactly_then_test_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);

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
    // MMEngine's LoggerHook names the experiment at every epoch's end:
    // `<config stem>_<timestamp>`, the timestamp being the run folder's.
    let exp = log.lines().filter(|l| l.contains(" - INFO - Exp name: queryinst_r18_shapes_2")).count();
    assert_eq!(exp, 3, "one `Exp name:` line per epoch:\n{log}");

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
    assert_test_log_matches_eval(dir.path(), &String::from_utf8_lossy(&out));
}

/// `train_dataloader.num_batch_per_epoch` (MMEngine's `_SlicedDataset`):
/// an epoch of 2 batches of 2 of the 8 images, not 4 batches.
#[test]
fn num_batch_per_epoch_shortens_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(root().join("configs/demo/queryinst_r18_shapes.yaml"))
        .args(["--work-dir", "sliced", "--cfg-options"])
        .args(TINY)
        .args([
            "train_dataloader.batch_size=2",
            "train_dataloader.num_batch_per_epoch=2",
            "train_cfg.max_epochs=1",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let log = String::from_utf8_lossy(&out);
    assert!(log.contains("Epoch(train) [1][2/2]  base_lr: "), "{log}");
    assert!(!log.contains("Epoch(train) [1][3/"), "{log}");
}

/// A run killed with SIGKILL in the middle of an epoch (iteration
/// checkpoints), then resumed with `--resume`, logs exactly the losses of the
/// uninterrupted run at every step.
#[test]
fn sigkill_mid_epoch_then_resume_is_exact() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = root().join("configs/demo/queryinst_r18_shapes.yaml");
    let by_iter = [
        "default_hooks.checkpoint.by_epoch=False",
        "val_dataloader=None",
        "val_evaluator=None",
        "val_cfg=None",
    ];
    let args = |work_dir: &str, epochs: &str| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "run".into(),
            config.to_string_lossy().into(),
            "--work-dir".into(),
            work_dir.into(),
        ];
        a.push("--cfg-options".into());
        a.extend(TINY.iter().chain(&by_iter).map(|s| s.to_string()));
        a.push(format!("train_cfg.max_epochs={epochs}"));
        a
    };
    let bin = snapbox::cmd::cargo_bin!("detc");
    let engine = env!("CARGO_BIN_EXE_detc-engine");
    let status = std::process::Command::new(bin)
        .current_dir(dir.path())
        .env("DETC_ENGINE", engine)
        .args(args("straight", "3"))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Kill the whole process group (detc and its engine) once iteration 3
    // (the first of epoch 2) is saved.
    let mut child = std::process::Command::new(bin)
        .current_dir(dir.path())
        .env("DETC_ENGINE", engine)
        .args(args("killed", "3"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let marker = dir.path().join("killed/iter_3.pth");
    let start = std::time::Instant::now();
    while !marker.exists() {
        assert!(start.elapsed().as_secs() < 300, "iter_3.pth never appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    let _ = child.wait();
    assert!(
        !dir.path().join("killed/iter_6.pth").exists(),
        "the run finished before the kill"
    );

    let resumed = std::process::Command::new(bin)
        .current_dir(dir.path())
        .env("DETC_ENGINE", engine)
        .args(args("killed", "3"))
        .arg("--resume")
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let log = String::from_utf8_lossy(&resumed.stdout);
    assert!(log.contains("resumed from"), "{log}");

    assert_same_losses(&dir.path().join("straight"), &dir.path().join("killed"), 6);
}

/// MMDetection's 3x pattern: the training dataset wrapped in a
/// `RepeatDataset` (its `{{_base_...}}` reference) makes an epoch two passes
/// over the 8 images; `detc check` refuses a wrapper around the validation
/// dataset, naming it in the file.
#[test]
fn repeat_dataset_lengthens_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let base = root().join("configs/demo/queryinst_r18_shapes.yaml");
    let config = dir.path().join("repeat.yaml");
    let wrap = |loader: &str| {
        format!(
            "{loader}:\n  dataset:\n    _delete_: true\n    type: RepeatDataset\n    times: 2\n    dataset: {{{{_base_.{loader}.dataset}}}}\n"
        )
    };
    std::fs::write(&config, format!("_base_: {}\n{}", base.display(), wrap("train_dataloader"))).unwrap();
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(&config)
        .args(["--work-dir", "repeat", "--cfg-options"])
        .args(TINY)
        .args(["train_cfg.max_epochs=1"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let log = String::from_utf8_lossy(&out);
    assert!(log.contains("Epoch(train) [1][4/4]  base_lr: "), "{log}");

    std::fs::write(&config, format!("_base_: {}\n{}", base.display(), wrap("val_dataloader"))).unwrap();
    let out = detc(dir.path()).arg("check").arg(&config).assert().code(1).get_output().stderr.clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("detc::data::wrapper") && err.contains("val_dataloader.dataset: a RepeatDataset cannot be evaluated"), "{err}");
    assert!(err.contains("repeat.yaml:5:"), "{err}");
}

/// A checkpoint named by URL (`load_from`, `detc test`) is read from torch's
/// hub cache, where MMEngine downloads it (`$TORCH_HOME/hub/checkpoints/`);
/// one not there is an input error giving the URL and that place.
#[test]
fn checkpoint_urls_resolve_to_the_torch_hub_cache() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    run(dir.path(), "first", 1, false);
    let hub = dir.path().join("torch/hub/checkpoints");
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::copy(dir.path().join("first/epoch_1.pth"), hub.join("demo-0123abcd.pth")).unwrap();
    let config = root().join("configs/demo/queryinst_r18_shapes.yaml");
    let engine = |cmd: snapbox::cmd::Command| {
        cmd.env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine")).env("TORCH_HOME", dir.path().join("torch"))
    };
    let url = "https://download.example.org/models/demo-0123abcd.pth";
    engine(detc(dir.path())).arg("test").arg(&config).arg(url).args(["--work-dir", "tested"]).assert().success();
    let out = engine(detc(dir.path()))
        .arg("run")
        .arg(&config)
        .args(["--work-dir", "tuned", "--cfg-options"])
        .args(TINY)
        .args(["train_cfg.max_epochs=1", &format!("load_from={url}?download=1")])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains(&format!("Load checkpoint from {url}?download=1")));

    let missing = "https://download.example.org/models/missing-00.pth";
    let out = engine(detc(dir.path()))
        .arg("run")
        .arg(&config)
        .args(["--work-dir", "missing", "--cfg-options"])
        .args(TINY)
        .arg(format!("load_from={missing}"))
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains(&format!("download {missing}")) && err.contains("torch/hub/checkpoints/missing-00.pth"), "{err}");
}
