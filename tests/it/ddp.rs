//! Data-parallel training with real engine workers on Gloo (`detc run
//! --nproc 2 --device cpu`): two workers with batch b train the same model as
//! one with batch 2b (same data, same logged losses), with `SyncBN` in the
//! backbone and QueryInst's mask head; a 2-worker checkpoint resumes into 2
//! workers and into 1; a worker killed mid-run ends the whole job, naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{detc, root, shapes_data};

/// The tiny demo QueryInst (3 stages at 128 px) on 16 shapes images with an
/// `IterBasedTrainLoop`, SGD (AdamW turns rounding-level differences of
/// near-zero gradients into full-size steps, which the Hungarian matching
/// then amplifies), a log line and scalar record every iteration, and SyncBN
/// wherever the model has batch norm.
const CONFIG: &str = "\
_base_: '[ROOT]/configs/demo/queryinst_r18_shapes_cpu.yaml'
train_cfg:
  _delete_: true
  type: IterBasedTrainLoop
  max_iters: 20
  val_interval: 1000
log_processor:
  by_epoch: false
  window_size: 1
optim_wrapper:
  optimizer:
    type: SGD
    lr: 0.0005
    momentum: 0.9
default_hooks:
  logger:
    interval: 1
    log_metric_by_epoch: false
  checkpoint:
    by_epoch: false
    interval: 6
    max_keep_ckpts: -1
model:
  backbone:
    norm_cfg:
      type: SyncBN
";

const SYNC_MASK_HEADS: [&str; 3] = [
    "model.roi_head.mask_head.0.norm_cfg.type=SyncBN",
    "model.roi_head.mask_head.1.norm_cfg.type=SyncBN",
    "model.roi_head.mask_head.2.norm_cfg.type=SyncBN",
];

const SPARSE_RCNN: [&str; 4] = [
    "model.type=SparseRCNN",
    "model.roi_head.mask_head=None",
    "model.roi_head.mask_roi_extractor=None",
    "val_evaluator.metric=bbox",
];

pub(crate) fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 16, 2);
    let config = dir.path().join("ddp.yaml");
    std::fs::write(&config, CONFIG.replace("[ROOT]", root().to_str().unwrap())).unwrap();
    (dir, config)
}

/// `detc run CONFIG --work-dir WORK [--nproc N --device cpu] [--resume [CKPT]] --cfg-options ...`
/// (`resume: Some("")` is `--resume` alone: the work dir's newest checkpoint).
pub(crate) fn run(
    dir: &Path,
    config: &Path,
    work: &str,
    nproc: usize,
    batch: usize,
    extra: &[&str],
    resume: Option<&str>,
) {
    train_command(dir, config, work, nproc, batch, extra, resume)
        .assert()
        .success();
}

/// Runs a [`train_command`] with every process training in float64
/// (`DETC_DTYPE=float64`).
fn run_float64(command: snapbox::cmd::Command) {
    command.env("DETC_DTYPE", "float64").assert().success();
}

/// The command [`run`] runs.
fn train_command(
    dir: &Path,
    config: &Path,
    work: &str,
    nproc: usize,
    batch: usize,
    extra: &[&str],
    resume: Option<&str>,
) -> snapbox::cmd::Command {
    let mut cmd = detc(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("OMP_NUM_THREADS", "1")
        .arg("run")
        .arg(config)
        .args(["--work-dir", work, "--device", "cpu"]);
    if nproc > 1 {
        cmd = cmd.args(["--nproc", &nproc.to_string()]);
    }
    match resume {
        Some("") => cmd = cmd.arg("--resume"),
        Some(ckpt) => cmd = cmd.args(["--resume", ckpt]),
        None => {}
    }
    let batch = format!("train_dataloader.batch_size={batch}");
    cmd.arg("--cfg-options")
        .args(["train_dataloader.num_workers=0", batch.as_str()])
        .args(extra)
}

/// step -> every training scalar (`loss`, `s0.loss_cls`, …) of a work dir's runs.
pub(crate) fn losses(work_dir: &Path) -> BTreeMap<u64, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(work_dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("vis_data/scalars.json")) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (Some(step), Some(map)) = (v["step"].as_u64(), v.as_object()) else {
                continue;
            };
            let terms: BTreeMap<String, f64> = map
                .iter()
                .filter(|(k, _)| k.as_str() == "loss" || k.contains(".loss_"))
                .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                .collect();
            if !terms.is_empty() {
                out.insert(step, terms);
            }
        }
    }
    out
}

/// Every logged loss term of `steps` agrees within `rel` (relative).
fn assert_close_losses(a: &Path, b: &Path, steps: std::ops::RangeInclusive<u64>, rel: f64) {
    let (a, b) = (losses(a), losses(b));
    for step in steps.clone() {
        let worst = a[&step]
            .iter()
            .map(|(k, &u)| ((u - b[&step][k]).abs() / u.abs().max(1e-6), k))
            .fold(
                (0.0, ""),
                |m, (d, k)| if d > m.0 { (d, k.as_str()) } else { m },
            );
        eprintln!(
            "step {step}: worst relative difference {:.2e} ({})",
            worst.0, worst.1
        );
    }
    for step in steps {
        let (x, y) = (&a[&step], &b[&step]);
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
        for (k, &u) in x {
            let v = y[k];
            assert!(
                (u - v).abs() <= rel * u.abs().max(v.abs()).max(1e-6),
                "step {step} {k}: {u} vs {v}"
            );
        }
    }
}

/// Tolerance of the float32 2-worker / 1-worker comparison: the runs differ
/// only in float summation order (gradients averaged over ranks, batch
/// statistics from all-reduced sums). Most steps agree within 5e-6; single
/// terms of a few steps reach 2e-5.
const REL: f64 = 5e-5;

/// Steps over which float32 runs are compared. These random tiny models
/// are chaotic in float32: most of stage 1 and 2's RoIs lie outside the
/// image (`clip_border: false`, as MMDetection's configs), their RoIAlign
/// features are exactly zero, the dynamic convolution's LayerNorms then
/// divide by `sqrt(eps)` and the gradient norm reaches 3e4, and a rounding
/// difference flips a discrete choice (a ReLU, a mask target pixel at 0.5)
/// some 10 to 20 steps in, at a step that depends on the CPU's kernels. One
/// worker against itself with 2 OpenMP threads instead of 1 meets the same
/// jumps (docs/distributed.md). The float32 comparison covers the 10 steps
/// before the first flip seen on any host; the float64 one below covers 20.
const F32_STEPS: std::ops::RangeInclusive<u64> = 1..=10;

/// Tolerance of the float64 comparison (`DETC_DTYPE=float64`), over 20
/// steps: 1e-8 is what is left, and it is MMDetection's own arithmetic, not
/// rounding: `weight_reduce_loss` divides by `avg_factor + eps` (float32's
/// eps), and each of 2 ranks divides by half the positives, so a term moves
/// by `eps / positives`.
const REL_F64: f64 = 1e-6;

#[test]
fn two_workers_reproduce_one_worker_with_twice_the_batch_sparse_rcnn() {
    let (dir, config) = setup();
    run_float64(train_command(dir.path(), &config, "one64", 1, 4, &SPARSE_RCNN, None));
    // The two workers lay their convolutions out channels-last
    // (`env_cfg.channels_last`): the same training, the Reducer bucketing
    // each gradient in its parameter's layout.
    let channels_last: Vec<&str> = SPARSE_RCNN.iter().copied().chain(["env_cfg.channels_last=True"]).collect();
    run_float64(train_command(dir.path(), &config, "two64", 2, 2, &channels_last, None));
    let (one64, two64) = (dir.path().join("one64"), dir.path().join("two64"));
    assert_close_losses(&one64, &two64, 1..=20, REL_F64);
    run(dir.path(), &config, "one", 1, 4, &SPARSE_RCNN, None);
    run(dir.path(), &config, "two", 2, 2, &SPARSE_RCNN, None);
    assert_close_losses(
        &dir.path().join("one"),
        &dir.path().join("two"),
        F32_STEPS,
        REL,
    );
    // Rank 0 alone wrote the work dir: one run folder, its checkpoints.
    let two = dir.path().join("two");
    let runs: Vec<_> = std::fs::read_dir(&two)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "one run folder");
    assert!(two.join("iter_12.pth").is_file());
    let log = std::fs::read_to_string(
        std::fs::read_dir(runs[0].path())
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "log"))
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(
        log.contains("effective batch size 4 (2 processes x train_dataloader.batch_size 2)"),
        "{log}"
    );
}

#[test]
fn two_workers_with_sync_bn_reproduce_one_worker_and_resume_into_two_and_one() {
    let (dir, config) = setup();
    // float64: 20 steps; the 2-worker checkpoint at iteration 6 resumes into
    // 1 worker with twice the batch, which goes on as the 2 workers did.
    run_float64(train_command(dir.path(), &config, "one64", 1, 4, &SYNC_MASK_HEADS, None));
    run_float64(train_command(dir.path(), &config, "two64", 2, 2, &SYNC_MASK_HEADS, None));
    let two64 = dir.path().join("two64");
    assert_close_losses(&dir.path().join("one64"), &two64, 1..=20, REL_F64);
    std::fs::create_dir_all(dir.path().join("one64_resumed")).unwrap();
    let ckpt64 = two64.join("iter_6.pth");
    let ckpt64 = Some(ckpt64.to_str().unwrap());
    run_float64(train_command(dir.path(), &config, "one64_resumed", 1, 4, &SYNC_MASK_HEADS, ckpt64));
    assert_close_losses(&two64, &dir.path().join("one64_resumed"), 7..=20, REL_F64);
    // float32, the precision users train in (see F32_STEPS).
    run(dir.path(), &config, "one", 1, 4, &SYNC_MASK_HEADS, None);
    run(dir.path(), &config, "two", 2, 2, &SYNC_MASK_HEADS, None);
    assert_close_losses(
        &dir.path().join("one"),
        &dir.path().join("two"),
        F32_STEPS,
        REL,
    );
    // The 2-worker checkpoint at iteration 6 resumes into 2 workers (the same
    // run, bit for bit) and into 1 worker with twice the batch.
    let ckpt = dir.path().join("two/iter_6.pth");
    for (work, nproc, batch, rel) in [("two_resumed", 2, 2, 0.0), ("one_resumed", 1, 4, REL)] {
        std::fs::create_dir_all(dir.path().join(work)).unwrap();
        run(
            dir.path(),
            &config,
            work,
            nproc,
            batch,
            &SYNC_MASK_HEADS,
            Some(ckpt.to_str().unwrap()),
        );
        let steps = if nproc == 2 { 7..=20 } else { 7..=10 };
        assert_close_losses(&dir.path().join("two"), &dir.path().join(work), steps, rel);
    }
}

/// The tiny Faster R-CNN with an `IterBasedTrainLoop` that validates once
/// at its end, on the training images (9: one repeated to pad two shards);
/// AdamW; the backbone's BN statistics frozen (`norm_eval`) so that a step
/// at learning rate 1e-30 leaves the loaded model as it was.
const FASTER_RCNN: &str = "\
_base_: '[ROOT]/configs/demo/faster-rcnn_r18_shapes.yaml'
train_cfg:
  _delete_: true
  type: IterBasedTrainLoop
  max_iters: 60
  val_interval: 60
param_scheduler: []
optim_wrapper:
  optimizer:
    _delete_: true
    type: AdamW
    lr: 0.001
model:
  backbone:
    norm_eval: true
val_dataloader:
  dataset:
    ann_file: annotations/instances_train.json
    data_prefix:
      img: train/
val_evaluator:
  ann_file: data/shapes/annotations/instances_train.json
default_hooks:
  checkpoint:
    by_epoch: false
    interval: 60
";

/// `coco/*` values of the validation record of a work dir's run.
fn val_metrics(work_dir: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(crate::support::run_dir(work_dir).join("vis_data/scalars.json")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.as_object().cloned())
        .flat_map(|m| m.into_iter())
        .filter(|(k, _)| k.starts_with("coco/"))
        .filter_map(|(k, v)| Some((k, v.as_f64()?)))
        .collect()
}

/// Validation with two workers: each predicts its shard of the 9 images (5
/// each, one repeated to pad), rank 0 gathers the predictions and computes
/// the metric, which equals one worker's on the same weights.
/// MMCV's `MMSyncBN` in QueryInst's mask heads, which see only each
/// image's matched proposals, so the two workers' batches differ in size:
/// with `stats_mode: N` (each worker weighed by its RoIs) two workers with
/// batch b train as one with 2b; with the default mode (each worker
/// weighed equally) they train too.
#[test]
fn two_workers_with_mmcv_sync_bn_heads_reproduce_one_worker() {
    let (dir, config) = setup();
    let mut by_rois: Vec<String> = (0..3).map(|i| format!("model.roi_head.mask_head.{i}.norm_cfg.type=MMSyncBN")).collect();
    by_rois.extend((0..3).map(|i| format!("model.roi_head.mask_head.{i}.norm_cfg.stats_mode=N")));
    by_rois.push("train_cfg.max_iters=8".into());
    let by_rois: Vec<&str> = by_rois.iter().map(String::as_str).collect();
    run_float64(train_command(dir.path(), &config, "one64", 1, 4, &by_rois, None));
    run_float64(train_command(dir.path(), &config, "two64", 2, 2, &by_rois, None));
    assert_close_losses(&dir.path().join("one64"), &dir.path().join("two64"), 1..=8, REL_F64);
    let equal: Vec<&str> = by_rois.iter().copied().filter(|o| !o.contains("stats_mode")).collect();
    run(dir.path(), &config, "two_equal", 2, 2, &equal, None);
    assert!(dir.path().join("two_equal/iter_6.pth").exists());
}

#[test]
fn two_workers_gather_validation_results_to_rank_zero() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 9, 1);
    let config = dir.path().join("frcnn.yaml");
    std::fs::write(&config, FASTER_RCNN.replace("[ROOT]", root().to_str().unwrap())).unwrap();
    // Weights worth evaluating: 60 iterations on the 9 images.
    run(dir.path(), &config, "trained", 1, 3, &[], None);
    let load = format!("load_from={}", dir.path().join("trained/iter_60.pth").display());
    let frozen = [
        load.as_str(),
        "optim_wrapper.optimizer.lr=1e-30",
        "train_cfg.max_iters=1",
        "train_cfg.val_interval=1",
    ];
    run(dir.path(), &config, "one", 1, 2, &frozen, None);
    run(dir.path(), &config, "two", 2, 1, &frozen, None);
    let (one, two) = (val_metrics(&dir.path().join("one")), val_metrics(&dir.path().join("two")));
    assert!(one.get("coco/bbox_mAP").is_some_and(|&m| m > 0.0), "{one:?}");
    assert_eq!(one, two, "one worker's metrics, then two workers'");
}

/// `--auto-scale-lr` scales by the total batch size, every process's
/// (MMEngine's `world_size * batch_size / base_batch_size`), and needs
/// `base_batch_size`.
#[test]
fn auto_scale_lr_counts_every_process_batch() {
    let (dir, config) = setup();
    let out = run_command(dir.path(), &config, "two", 2)
        .arg("--auto-scale-lr")
        .args(["--cfg-options", "train_dataloader.num_workers=0", "train_dataloader.batch_size=2"])
        .args(["train_cfg.max_iters=1", "auto_scale_lr.base_batch_size=16"])
        .args(SPARSE_RCNN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("LR is set based on batch size of 16 and the current batch size is 4. Scaling the original LR by 0.25."),
        "{stdout}"
    );
    let out = run_command(dir.path(), &config, "no_base", 1)
        .arg("--auto-scale-lr")
        .args(["--cfg-options", "train_dataloader.num_workers=0", "train_cfg.max_iters=1"])
        .args(["auto_scale_lr.base_batch_size=None"])
        .args(SPARSE_RCNN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("auto_scale_lr.base_batch_size is needed"), "{stderr}");
}

#[test]
fn joins_a_job_started_by_torchrun() {
    let (dir, config) = setup();
    run(dir.path(), &config, "one", 1, 4, &SPARSE_RCNN, None);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(root().join(".venv/bin/torchrun"))
        .current_dir(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("OMP_NUM_THREADS", "1")
        .args([
            "--nproc-per-node",
            "2",
            "--master-port",
            &port.to_string(),
            "--no-python",
        ])
        .arg(env!("CARGO_BIN_EXE_detc"))
        .arg("run")
        .arg(&config)
        .args([
            "--launcher",
            "pytorch",
            "--device",
            "cpu",
            "--work-dir",
            "torchrun",
        ])
        .args([
            "--cfg-options",
            "train_dataloader.num_workers=0",
            "train_dataloader.batch_size=2",
        ])
        .args(SPARSE_RCNN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_close_losses(
        &dir.path().join("one"),
        &dir.path().join("torchrun"),
        F32_STEPS,
        REL,
    );
}

/// Process ids of the running engines whose command line holds `marker`.
fn engines_with(marker: &str) -> Vec<u32> {
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("detc-engine") && cmdline.contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_for(mut done: impl FnMut() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// A long run of the demo config by `nproc` workers (1: the single engine),
/// in the background.
/// `detc run CONFIG --work-dir WORK --device cpu [--nproc N]`, in `dir`, to be spawned
/// (options follow).
pub(crate) fn run_command(dir: &Path, config: &Path, work: &str, nproc: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_detc"));
    command
        .current_dir(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("OMP_NUM_THREADS", "1")
        .args(["run"])
        .arg(config)
        .args(["--work-dir", work, "--device", "cpu"]);
    if nproc > 1 {
        command.args(["--nproc", &nproc.to_string()]);
    }
    command
}

/// A job that trains until it is stopped. `detc` gets SIGHUP's default
/// action, as when started from a terminal (a test run under `nohup` would
/// hand it SIGHUP ignored).
fn start_long_job(dir: &Path, config: &Path, work: &str, nproc: u32) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut command = run_command(dir, config, work, nproc);
    command
        .args([
            "--cfg-options",
            "train_dataloader.num_workers=0",
            "train_cfg.max_iters=100000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: signal(2) is async-signal-safe; nothing else runs here.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        })
    };
    command.spawn().unwrap()
}

#[test]
fn a_killed_worker_ends_the_job_naming_it_and_a_killed_launcher_its_workers() {
    let (dir, config) = setup();
    // SIGKILL of rank 1 mid-training: the job exits non-zero within 15 s,
    // names rank 1, and leaves no engine behind.
    let work = dir.path().join("killed_worker");
    let marker = work.to_str().unwrap().to_string();
    let job = start_long_job(dir.path(), &config, &marker, 2);
    assert!(
        wait_for(
            || work.join("last_checkpoint").exists() || losses_logged(&work),
            Duration::from_secs(120)
        ),
        "training started"
    );
    let pids = engines_with(&marker);
    assert_eq!(pids.len(), 2, "two workers: {pids:?}");
    let rank1 = pids
        .iter()
        .copied()
        .find(|&p| environ_has(p, "RANK=1"))
        .expect("a rank-1 worker");
    unsafe { libc::kill(rank1 as i32, libc::SIGKILL) };
    let killed_at = Instant::now();
    let out = job.wait_with_output().unwrap();
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed_at.elapsed()
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("rank 1 (pid {rank1})")),
        "{stderr}"
    );
    assert!(
        wait_for(|| engines_with(&marker).is_empty(), Duration::from_secs(5)),
        "workers left: {:?}",
        engines_with(&marker)
    );

    // SIGKILL of the launcher: its workers are gone within 5 s (PR_SET_PDEATHSIG).
    let work = dir.path().join("killed_launcher");
    let marker = work.to_str().unwrap().to_string();
    let mut job = start_long_job(dir.path(), &config, &marker, 2);
    assert!(
        wait_for(|| engines_with(&marker).len() == 2, Duration::from_secs(60)),
        "two workers started"
    );
    job.kill().unwrap();
    job.wait().unwrap();
    assert!(
        wait_for(|| engines_with(&marker).is_empty(), Duration::from_secs(5)),
        "workers left: {:?}",
        engines_with(&marker)
    );
}

#[test]
fn sigint_to_the_launcher_stops_the_job_cleanly() {
    // Ctrl-C where only `detc` gets the signal (a terminal also signals the
    // workers, which then simply die): the workers are stopped, the job exits
    // non-zero within 15 s saying so, and no engine is left.
    let (dir, config) = setup();
    let work = dir.path().join("interrupted");
    let marker = work.to_str().unwrap().to_string();
    let job = start_long_job(dir.path(), &config, &marker, 2);
    assert!(
        wait_for(|| engines_with(&marker).len() == 2 && losses_logged(&work), Duration::from_secs(120)),
        "two workers training"
    );
    unsafe { libc::kill(job.id() as i32, libc::SIGINT) };
    let sent = Instant::now();
    let out = job.wait_with_output().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(15), "{:?}", sent.elapsed());
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("received signal 2; stopping the workers"), "{stderr}");
    assert!(engines_with(&marker).is_empty(), "workers left: {:?}", engines_with(&marker));
}

#[test]
fn two_jobs_started_at_once_with_default_ports_both_train() {
    let (dir, config) = setup();
    let start = |work: &str| {
        run_command(dir.path(), &config, work, 2)
            .arg("--cfg-options")
            .args(["train_dataloader.num_workers=0", "train_dataloader.batch_size=2", "train_cfg.max_iters=3"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start("job_a"), start("job_b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(a.status.success(), "{}", err(&a));
    assert!(b.status.success(), "{}", err(&b));
    for work in ["job_a", "job_b"] {
        assert_eq!(losses(&dir.path().join(work)).len(), 3, "{work} trained its 3 iterations");
    }
    let ports: Vec<String> = [&a, &b]
        .iter()
        .map(|o| {
            let text = err(o);
            let at = text.find("127.0.0.1:").unwrap_or_else(|| panic!("{text}"));
            text[at + 10..].split(')').next().unwrap().to_string()
        })
        .collect();
    assert_ne!(ports[0], ports[1], "distinct rendezvous ports");
}

#[test]
fn a_killed_detc_takes_its_single_engine_with_it() {
    // `kill` signals `detc` alone, not its process group: the engine it
    // started must not train on, orphaned. (SIGTERM is passed on to the
    // engine, which saves and stops: tests/it/preempt.rs.)
    let (dir, config) = setup();
    for (name, signal) in [("sighup", libc::SIGHUP), ("sigkill", libc::SIGKILL)] {
        let work = dir.path().join(name);
        let marker = work.to_str().unwrap().to_string();
        let mut job = start_long_job(dir.path(), &config, &marker, 1);
        assert!(
            wait_for(|| engines_with(&marker).len() == 1, Duration::from_secs(60)),
            "the engine started"
        );
        unsafe { libc::kill(job.id() as i32, signal) };
        job.wait().unwrap();
        assert!(
            wait_for(|| engines_with(&marker).is_empty(), Duration::from_secs(5)),
            "{name}: engine left: {:?}",
            engines_with(&marker)
        );
    }
}

fn losses_logged(work: &Path) -> bool {
    work.exists() && !losses(work).is_empty()
}

fn environ_has(pid: u32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}
