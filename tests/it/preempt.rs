//! Preemption: SIGTERM to `detc run` (what Slurm and Kubernetes send) stops
//! the job after the iteration in progress, with a checkpoint of that
//! position and exit code 4; `--resume` then continues exactly: the losses
//! of the stopped and the resumed run are those of a run never stopped, bit
//! for bit. With one engine and with two workers over Gloo.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::ddp::{losses, run, run_command, setup};
use crate::support::saved_iter;

const MAX_ITERS: &str = "train_cfg.max_iters=12";

/// Starts the run into `work`, sends SIGTERM to `detc` once iteration 7 is
/// logged, and returns its exit code and stderr.
fn preempted_run(
    dir: &Path,
    config: &Path,
    work: &str,
    nproc: usize,
    batch: usize,
) -> (Option<i32>, String) {
    let err_path = dir.join(format!("{work}.stderr"));
    let mut cmd = run_command(dir, config, work, nproc as u32);
    let batch = format!("train_dataloader.batch_size={batch}");
    cmd.args([
        "--cfg-options",
        "train_dataloader.num_workers=0",
        &batch,
        MAX_ITERS,
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let work_dir = dir.join(work);
    let start = Instant::now();
    while !(work_dir.exists() && losses(&work_dir).keys().any(|&step| step >= 7)) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before iteration 7"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no iteration 7 in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    (status.code(), std::fs::read_to_string(&err_path).unwrap())
}

fn check(nproc: usize, batch: usize) {
    let (dir, config) = setup();
    let dir = dir.path();
    run(dir, &config, "straight", nproc, batch, &[MAX_ITERS], None);

    let (code, stderr) = preempted_run(dir, &config, "stopped", nproc, batch);
    assert_eq!(code, Some(4), "{stderr}");
    let at = stderr
        .find("stopped by SIGTERM after iteration ")
        .unwrap_or_else(|| panic!("{stderr}"));
    let iter: u64 = stderr[at..]
        .split_whitespace()
        .nth(5)
        .unwrap()
        .parse()
        .unwrap();
    assert!((7..12).contains(&iter), "stopped after iteration {iter}");
    let ckpt = dir.join(format!("stopped/iter_{iter}.pth"));
    assert_eq!(saved_iter(&ckpt), iter as i64, "{stderr}");
    let last = std::fs::read_to_string(dir.join("stopped/last_checkpoint")).unwrap();
    assert_eq!(dir.join(last.trim()), ckpt);
    assert_eq!(
        losses(&dir.join("stopped")).keys().max(),
        Some(&iter),
        "logged up to the stop"
    );

    run(
        dir,
        &config,
        "stopped",
        nproc,
        batch,
        &[MAX_ITERS],
        Some(""),
    );
    let (straight, stopped) = (losses(&dir.join("straight")), losses(&dir.join("stopped")));
    assert_eq!(straight.len(), 12);
    assert_eq!(
        stopped, straight,
        "stopped after {iter}, resumed: the losses of the run never stopped"
    );
}

#[test]
fn sigterm_saves_a_checkpoint_and_stops_with_exit_code_4_and_resume_is_exact() {
    check(1, 4);
}

#[test]
fn sigterm_to_a_two_worker_job_stops_both_after_the_same_iteration() {
    check(2, 2);
}
