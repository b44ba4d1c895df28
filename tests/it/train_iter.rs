//! `detc run` with an `IterBasedTrainLoop` on the tiny demo QueryInst (8
//! train images, 2 batches a pass): `Iter(train)` log lines, `iter_N.pth`
//! checkpoints, validation every `val_interval` iterations, an exact resume
//! from the middle of a pass; and the hooks table every run logs, compared
//! with MMEngine's own registration of the same hook configs.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{all_records, ask_python, detc, root, shapes_data};

/// An `IterBasedTrainLoop` over the demo config: validation every 3
/// iterations (and at the last), a checkpoint every 2 (and at the last),
/// scalars stepped by iteration. The demo's epoch-based `MultiStepLR` stays:
/// as in MMEngine it is stepped once, when the single "epoch" ends.
const ITER_CONFIG: &str = "\
_base_: '[ROOT]/configs/demo/queryinst_r18_shapes.yaml'
train_cfg:
  _delete_: true
  type: IterBasedTrainLoop
  max_iters: 5
  val_interval: 3
log_processor:
  by_epoch: false
default_hooks:
  logger:
    interval: 1
    log_metric_by_epoch: false
  checkpoint:
    by_epoch: false
    interval: 2
    max_keep_ckpts: -1
";

/// Two batches of 4 a pass, loaded in the main thread.
const SMALL: &[&str] = &[
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
];

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text.replace("[ROOT]", root().to_str().unwrap())).unwrap();
    path
}

/// `detc run CONFIG --work-dir WORK_DIR --cfg-options SMALL… options…`; its stdout.
fn run(dir: &Path, config: &Path, work_dir: &str, options: &[&str], resume: bool) -> String {
    let mut cmd = detc(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(config)
        .args(["--work-dir", work_dir]);
    if resume {
        cmd = cmd.arg("--resume");
    }
    let out = cmd
        .arg("--cfg-options")
        .args(SMALL)
        .args(options)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8_lossy(&out).into_owned()
}

/// The steps of the validation records (those with `coco/bbox_mAP`) of every run folder.
fn val_steps(work_dir: &Path) -> Vec<u64> {
    let mut steps = vec![];
    for entry in std::fs::read_dir(work_dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("vis_data/scalars.json")) else {
            continue;
        };
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v.get("coco/bbox_mAP").is_some() {
                steps.push(v["step"].as_u64().unwrap());
            }
        }
    }
    steps.sort_unstable();
    steps
}

#[test]
fn iter_based_loop_logs_saves_validates_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = write(dir.path(), "iter.yaml", ITER_CONFIG);

    // Uninterrupted: 5 iterations. Interrupted: 3 (ending mid-pass), then resumed to 5.
    let val = "val_dataloader.num_workers=0";
    let log = run(dir.path(), &config, "straight", &[val], false);
    run(
        dir.path(),
        &config,
        "resumed",
        &[val, "train_cfg.max_iters=3"],
        false,
    );
    // `resume: true` in the config (no flag) resumes from its `load_from`, as
    // MMEngine's Runner does.
    let from = format!(
        "load_from={}",
        dir.path().join("resumed/iter_3.pth").display()
    );
    let config_resumed_log = run(
        dir.path(),
        &config,
        "config_resumed",
        &[val, "resume=True", from.as_str()],
        false,
    );
    let resumed_log = run(dir.path(), &config, "resumed", &[val], true);

    let straight = dir.path().join("straight");
    for file in ["iter_2.pth", "iter_4.pth", "iter_5.pth", "last_checkpoint"] {
        assert!(straight.join(file).is_file(), "{file} is missing");
    }
    let names: Vec<String> = std::fs::read_dir(&straight)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("epoch_") || n == "iter_1.pth" || n == "iter_3.pth"),
        "only iter_2, iter_4 and the last (iter_5) are saved: {names:?}"
    );
    let last = std::fs::read_to_string(straight.join("last_checkpoint")).unwrap();
    assert!(last.trim_end().ends_with("iter_5.pth"), "{last}");
    for needle in [
        "Iter(train) [1/5]  base_lr: ",
        "Iter(train) [5/5]  base_lr: ",
        "Iter(val) [4/4]    coco/bbox_mAP: ",
        "Saving checkpoint at 4 iterations",
    ] {
        assert!(log.contains(needle), "`{needle}` is not in the log:\n{log}");
    }
    assert!(!log.contains("Epoch(train)"), "{log}");
    // Validation after iterations 3 and 5 (the last), recorded at those steps.
    assert_eq!(val_steps(&straight), vec![3, 5]);

    // The resumed run starts at iteration 4, the second batch of the second
    // pass, without replaying batches; every logged loss equals the
    // uninterrupted run's, bit for bit.
    assert!(
        resumed_log.contains("resumed from") && resumed_log.contains("iter_3.pth: iter 3"),
        "{resumed_log}"
    );
    assert!(!resumed_log.contains("Iter(train) [3/5]"), "{resumed_log}");
    let mut a = all_records(&straight);
    let mut b = all_records(&dir.path().join("resumed"));
    a.sort_by_key(|r| r.0);
    b.sort_by_key(|r| r.0);
    assert_eq!(a.len(), 5, "one record per iteration: {a:?}");
    assert_eq!(a, b, "losses differ after the resume");
    assert_eq!(val_steps(&dir.path().join("resumed")), vec![3, 5]);
    assert!(
        config_resumed_log.contains("iter_3.pth: iter 3"),
        "{config_resumed_log}"
    );
    let mut c = all_records(&dir.path().join("config_resumed"));
    c.sort_by_key(|r| r.0);
    assert_eq!(a[3..], c[..], "losses of iterations 4 and 5");
}

/// Custom hooks with set priorities, a default hook's priority changed and
/// an extra `default_hooks` entry: the order MMEngine registers them in.
const HOOKS_CONFIG: &str = "\
_base_: '[ROOT]/configs/demo/queryinst_r18_shapes.yaml'
train_cfg:
  _delete_: true
  by_epoch: false
  max_iters: 1
val_dataloader: null
val_evaluator: null
val_cfg: null
default_hooks:
  logger:
    priority: NORMAL
  checkpoint:
    priority: 20
  empty_cache:
    type: EmptyCacheHook
custom_hooks:
  - type: EmptyCacheHook
    after_iter: true
    priority: 55
  - type: EmptyCacheHook
    priority: HIGHEST
  - type: EmptyCacheHook
    before_epoch: true
    priority: 60
";

/// The lines of the message `Hooks will be executed in the following order:`.
fn logged_hooks_table(log: &str) -> String {
    let header = "Hooks will be executed in the following order:\n";
    let start = log
        .find(header)
        .unwrap_or_else(|| panic!("no hooks table in:\n{log}"))
        + header.len();
    // The message ends where the next log line (`MM/DD HH:MM:SS - detc - `) starts.
    let is_prefixed =
        |l: &str| l.len() > 17 && l.as_bytes()[2] == b'/' && l[14..].starts_with(" - detc - ");
    log[start..]
        .lines()
        .take_while(|l| !is_prefixed(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hooks_run_in_mmengine_priority_order() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 4);
    let config = write(dir.path(), "hooks.yaml", HOOKS_CONFIG);
    let log = run(dir.path(), &config, "work", &[], false);

    // MMEngine's order for the same resolved sections.
    let expanded = detc(dir.path())
        .arg("expand")
        .arg(&config)
        .args(["--format", "json", "--cfg-options"])
        .args(SMALL)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let resolved: Value = serde_json::from_slice(&expanded).unwrap();
    let request = json!({
        "default_hooks": resolved["default_hooks"],
        "custom_hooks": resolved["custom_hooks"],
    });
    let answer = ask_python("tests/engine/hook_order_reference.py", &[], &[request]);
    let expected = answer[0]["table"].as_str().unwrap();
    assert_eq!(logged_hooks_table(&log), expected);
    // The order is the point: spelled out for the stage where every hook
    // acts (60, a named value, shows as its name).
    assert!(
        expected.contains(
            "after_train_iter:\n\
         (HIGHEST     ) EmptyCacheHook                     \n\
         (VERY_HIGH   ) RuntimeInfoHook                    \n\
         (20          ) CheckpointHook                     \n\
         (NORMAL      ) IterTimerHook                      \n\
         (NORMAL      ) LoggerHook                         \n\
         (NORMAL      ) EmptyCacheHook                     \n\
         (55          ) EmptyCacheHook                     \n\
         (BELOW_NORMAL) EmptyCacheHook                     \n\
         (LOW         ) ParamSchedulerHook                 \n"
        ),
        "{expected}"
    );
}
