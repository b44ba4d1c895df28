//! Faults a long run meets, through the real binaries, on the tiny QueryInst
//! of tests/it/ddp.rs (an `IterBasedTrainLoop`, a checkpoint every 2
//! iterations): a truncated newest checkpoint is named and the previous good
//! one resumed; a flipped bit is caught by the checksums; a save into a full
//! disk stops the run cleanly with every earlier checkpoint intact; a NaN
//! stops the run naming the loss term, the iteration and the last checkpoint,
//! also when found at a later read (on the Faster R-CNN demo) or when a later
//! step fails on the NaN weights;
//! a corrupt training image is an error naming it, or with
//! `skip_invalid_samples` a warning and a completed run.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::ddp::{run, setup};
use crate::support::{root, saved_iter, shapes_data};

const EVERY_2: &str = "default_hooks.checkpoint.interval=2";

fn iters(n: u32) -> String {
    format!("train_cfg.max_iters={n}")
}

/// `detc run` of the tiny config into `work`, resuming when `resume`.
fn detc_run(dir: &Path, config: &Path, work: &str, max_iters: u32, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detc"));
    cmd.current_dir(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("OMP_NUM_THREADS", "1")
        .env("NO_COLOR", "1")
        .arg("run")
        .arg(config)
        .args(["--work-dir", work, "--device", "cpu"]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.args([
        "--cfg-options",
        "train_dataloader.num_workers=0",
        "train_dataloader.batch_size=4",
        EVERY_2,
    ])
    .arg(iters(max_iters));
    cmd
}

/// The log of `cmd` with a NaN injected at `nan_at` (`iteration:term`),
/// which stops the run (exit 3).
fn stopped_by_nan(cmd: &mut Command, nan_at: &str) -> String {
    let out = cmd.env("DETC_TEST_NAN_AT", nan_at).output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(3), "{log}");
    log
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_truncated_newest_checkpoint_is_named_and_the_previous_good_one_resumed() {
    let (dir, config) = setup();
    let dir = dir.path();
    run(dir, &config, "work", 1, 4, &[EVERY_2, &iters(4)], None);
    let newest = dir.join("work/iter_4.pth");
    assert_eq!(saved_iter(&newest), 4);

    // A flipped byte in a tensor's data: the zip's CRC-32 of the entry catches it.
    let good = std::fs::read(&newest).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    let rotten = dir.join("rotten.pth");
    std::fs::write(&rotten, &flipped).unwrap();
    let error = detc::checkpoint::load(&rotten).unwrap_err().to_string();
    assert!(error.contains("checksum"), "{error}");

    // Truncated (a copy or a disk that failed): --resume takes iter_2.pth, naming both.
    std::fs::write(&newest, &good[..good.len() / 2]).unwrap();
    let out = detc_run(dir, &config, "work", 6, true).output().unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    // Paths as the run names them: relative to where it runs.
    assert!(
        log.contains("the newest checkpoint work/iter_4.pth cannot be loaded")
            && log.contains("resuming from the previous good one, work/iter_2.pth"),
        "{log}"
    );
    assert!(
        log.contains("resumed from work/iter_2.pth: iter 2"),
        "{log}"
    );
    assert_eq!(saved_iter(&dir.join("work/iter_6.pth")), 6);
}

#[test]
fn a_save_into_a_full_disk_stops_the_run_and_keeps_every_earlier_checkpoint() {
    let (dir, config) = setup();
    let dir = dir.path();
    run(dir, &config, "work", 1, 4, &[EVERY_2, &iters(2)], None);
    let saved = dir.join("work/iter_2.pth");
    let bytes = std::fs::read(&saved).unwrap();
    assert!(
        bytes.len() > 4 << 20,
        "a checkpoint larger than the limit below"
    );

    // Files may grow to 4 MiB, no more: the logs fit, the next checkpoint does not
    // (a full disk without root rights; the write fails with EFBIG, not a signal).
    let mut cmd = detc_run(dir, &config, "work", 4, true);
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4 << 20,
                rlim_max: 4 << 20,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(
        log.contains("iter_4.pth") && log.contains("File too large"),
        "{log}"
    );
    assert!(log.contains("earlier checkpoints are intact"), "{log}");
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        bytes,
        "the earlier checkpoint is untouched"
    );
    let last = std::fs::read_to_string(dir.join("work/last_checkpoint")).unwrap();
    assert_eq!(dir.join(last.trim()), saved);
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("work"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n == "iter_4.pth")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_nan_stops_the_run_naming_the_term_the_iteration_and_the_last_checkpoint() {
    let (dir, config) = setup();
    let dir = dir.path();
    let log = stopped_by_nan(&mut detc_run(dir, &config, "work", 4, false), "3:s1.loss_bbox");
    assert!(
        log.contains("error: the loss is NaN at epoch 1 iteration 3: `s1.loss_bbox` is NaN (")
            && log.contains("the last checkpoint is work/iter_2.pth."),
        "{log}"
    );
    assert!(!dir.join("work/iter_4.pth").exists());
}

/// A step that fails on what an unread NaN loss left (QueryInst's third
/// iteration, on NaN weights: the Hungarian assigner's costs) is reported
/// with the NaN loss first, as the cause, before the read due at 4.
#[test]
fn a_failure_after_an_unread_nan_loss_names_the_nan_as_the_cause() {
    let (dir, config) = setup();
    let dir = dir.path();
    let mut cmd = detc_run(dir, &config, "work", 8, false);
    cmd.args(["default_hooks.checkpoint.interval=4", "default_hooks.logger.interval=10"]);
    let log = stopped_by_nan(&mut cmd, "2:s0.loss_cls");
    assert!(
        log.contains("error: the loss is NaN at epoch 1 iteration 2: `s0.loss_cls` is NaN (")
            && log.contains("no checkpoint was saved yet")
            && log.contains("(the run then failed: HungarianAssigner: cost matrix entry"),
        "{log}"
    );
    assert!(!dir.join("work/iter_4.pth").exists());
}

#[test]
fn a_corrupt_image_is_named_or_with_skip_invalid_samples_skipped() {
    let (dir, config) = setup();
    let dir = dir.path();
    let image = dir.join("data/shapes/train/000003.jpg");
    let jpeg = std::fs::read(&image).unwrap();
    std::fs::write(&image, &jpeg[..200]).unwrap();

    let out = detc_run(dir, &config, "stopped", 4, false)
        .output()
        .unwrap();
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("cannot decode image") && log.contains("000003.jpg"),
        "{log}"
    );

    let out = detc_run(dir, &config, "skipped", 4, false)
        .arg("train_dataloader.dataset.skip_invalid_samples=True")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("so far; skip_invalid_samples): cannot decode image")
            && log.contains("000003.jpg"),
        "{log}"
    );
    assert_eq!(
        saved_iter(&dir.join("skipped/iter_4.pth")),
        4,
        "the run completed"
    );
}

/// The losses stay on the device between logging steps: a NaN at iteration
/// 1 is found at the next read, the end of the epoch (iteration 4; a log
/// line every 10), is named by its own iteration, and the epoch's checkpoint
/// due after that read is not written. (Faster R-CNN's steps after it run on
/// the NaN weights without failing.)
#[test]
fn a_nan_found_at_a_later_read_names_its_own_iteration_and_saves_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 16, 4);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detc"));
    cmd.current_dir(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("OMP_NUM_THREADS", "1")
        .arg("run")
        .arg(root().join("configs/demo/faster-rcnn_r18_shapes.yaml"))
        .args(["--work-dir", "work", "--device", "cpu", "--cfg-options"])
        .args([
            "train_dataloader.batch_size=4",
            "train_dataloader.num_workers=0",
            "default_hooks.logger.interval=10",
            "default_hooks.checkpoint.interval=1",
            "train_cfg.max_epochs=2",
        ]);
    let log = stopped_by_nan(&mut cmd, "1:loss_rpn_cls");
    assert!(
        log.contains("error: the loss is NaN at epoch 1 iteration 1: `loss_rpn_cls` is NaN (")
            && log.contains("no checkpoint was saved yet")
            && !log.contains("the run then failed"),
        "{log}"
    );
    assert!(!dir.path().join("work/epoch_1.pth").exists());
}
