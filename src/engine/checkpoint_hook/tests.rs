//! The hook against MMEngine's real `CheckpointHook`: the same fake runs
//! (tests/engine/hooks_reference.py replays them in Python) must leave the
//! same files, the same `last_checkpoint` and make the same saves.

use std::cell::RefCell;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::*;

/// Runs tests/engine/hooks_reference.py `mode` on `scenarios`; its JSON answer.
pub(crate) fn run_reference(mode: &str, scenarios: &Value) -> Value {
    use std::io::Write;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv-test/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test-env",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root.join("tests/engine/hooks_reference.py"))
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the MMEngine reference");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scenarios.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hooks_reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference output is JSON")
}

fn scenarios() -> Value {
    let maps = |v: &[f64]| {
        Value::Array(
            v.iter()
                .map(|x| json!({"coco/bbox_mAP": x, "coco/bbox_mAP_50": x + 0.2}))
                .collect(),
        )
    };
    json!([
        // 1. by epoch, interval 2, keep 2 (and the last epoch saved by save_last).
        {"hook": {"interval": 2, "max_keep_ckpts": 2}, "loop": {"type": "epoch", "max_epochs": 7, "iters_per_epoch": 3}},
        // 2. by iteration, interval 3, save_last, keep 2, in an iteration loop.
        {"hook": {"interval": 3, "by_epoch": false, "max_keep_ckpts": 2},
         "loop": {"type": "iter", "max_iters": 10, "val_interval": 4, "val": false}},
        // 3. save_best auto (first metric, greater), keep 2, interval 2: the best re-save quirk.
        {"hook": {"interval": 2, "max_keep_ckpts": 2, "save_best": "auto"},
         "loop": {"type": "epoch", "max_epochs": 6, "iters_per_epoch": 2}, "metrics": maps(&[0.1, 0.3, 0.2, 0.35, 0.35, 0.5])},
        // 4. a loss-like key (less is better), no periodic saves.
        {"hook": {"save_best": "val_loss", "save_last": false},
         "loop": {"type": "epoch", "max_epochs": 5, "iters_per_epoch": 1},
         "metrics": [{"val_loss": 2.0}, {"val_loss": 1.5}, {"val_loss": 1.7}, {"val_loss": 1.0}, {"val_loss": 1.0}]},
        // 5. out_dir: checkpoints under out_dir/<basename(work_dir)>, last_checkpoint in work_dir.
        {"hook": {"interval": 1, "max_keep_ckpts": 1, "out_dir": "out", "save_best": "coco/bbox_mAP"},
         "loop": {"type": "epoch", "max_epochs": 4, "iters_per_epoch": 2}, "metrics": maps(&[0.2, 0.1, 0.4, 0.3])},
        // 6. filename_tmpl, also in the best checkpoint's name.
        {"hook": {"interval": 2, "filename_tmpl": "ckpt_e{}.pth", "save_best": "auto", "rule": "less"},
         "loop": {"type": "epoch", "max_epochs": 5, "iters_per_epoch": 2, "val_interval": 2}, "metrics": maps(&[0.3, 0.2, 0.25])},
        // 7. save_begin 3, interval 2.
        {"hook": {"interval": 2, "save_begin": 3, "max_keep_ckpts": 3},
         "loop": {"type": "epoch", "max_epochs": 9, "iters_per_epoch": 1, "val": false}},
        // 8. two save_best metrics with a rule each, iteration-based validation.
        {"hook": {"interval": 4, "by_epoch": false, "save_best": ["coco/bbox_mAP", "loss"], "rule": ["greater", "less"], "max_keep_ckpts": 2},
         "loop": {"type": "iter", "max_iters": 12, "val_interval": 3},
         "metrics": [{"coco/bbox_mAP": 0.1, "loss": 3.0}, {"coco/bbox_mAP": 0.2, "loss": 3.5}, {"coco/bbox_mAP": 0.15, "loss": 2.0}, {"coco/bbox_mAP": 0.3, "loss": 2.5}]},
        // 9. resume after 3 epochs with max_keep_ckpts lowered from 3 to 1.
        {"hook": {"interval": 1, "max_keep_ckpts": 3, "save_best": "auto"},
         "loop": {"type": "epoch", "max_epochs": 6, "iters_per_epoch": 2}, "metrics": maps(&[0.1, 0.4, 0.2, 0.3, 0.5, 0.1]),
         "resume_at": 3, "resume_overrides": {"max_keep_ckpts": 1}},
        // 10. an iteration-based hook in an epoch loop, with save_best.
        {"hook": {"interval": 4, "by_epoch": false, "max_keep_ckpts": 2, "save_best": "auto"},
         "loop": {"type": "epoch", "max_epochs": 4, "iters_per_epoch": 3}, "metrics": maps(&[0.3, 0.1, 0.5, 0.2])},
        // 11. save_last off; an epoch-based hook in an iteration loop.
        {"hook": {"interval": 3, "save_last": false}, "loop": {"type": "epoch", "max_epochs": 7, "iters_per_epoch": 1, "val": false}},
        {"hook": {"interval": 1}, "loop": {"type": "iter", "max_iters": 3, "val": false}},
        // 12. resume of an iteration run, keep 2.
        {"hook": {"interval": 2, "by_epoch": false, "max_keep_ckpts": 2, "save_best": "coco/bbox_mAP"},
         "loop": {"type": "iter", "max_iters": 11, "val_interval": 2}, "metrics": maps(&[0.1, 0.5, 0.2, 0.6, 0.3]),
         "resume_at": 6}
    ])
}

/// Replays one scenario through our hook, as hooks_reference.py does through MMEngine's.
fn replay(sc: &Value) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let work_dir = root.join("work_dirs/exp");
    std::fs::create_dir_all(&work_dir).unwrap();
    let rel = |p: &Path| {
        p.to_string_lossy()
            .replace(&*root.to_string_lossy(), "[ROOT]")
    };
    let mut hook_cfg = sc["hook"].clone();
    if let Some(out) = hook_cfg.get("out_dir").and_then(Value::as_str) {
        hook_cfg["out_dir"] = json!(root.join(out).to_string_lossy());
    }
    let cfg_with = |overrides: &Value| {
        let mut c = hook_cfg.clone();
        for (k, v) in overrides.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        serde_json::from_value::<CheckpointHookConfig>(c).unwrap()
    };
    let saves = RefCell::new(vec![]);
    let mut save = |r: &SaveRequest<'_>| -> io::Result<()> {
        std::fs::create_dir_all(r.path.parent().unwrap())?;
        std::fs::write(r.path, "ckpt")?;
        saves.borrow_mut().push(json!([
            rel(r.path),
            r.include_optimizer,
            r.include_param_scheduler,
            r.epoch,
            r.iter
        ]));
        Ok(())
    };
    let start = |overrides: &Value, state: Option<CheckpointHookState>| {
        let mut hook = CheckpointHook::new(&cfg_with(overrides), &work_dir).unwrap();
        hook.before_train(state).unwrap();
        hook
    };
    let lp = &sc["loop"];
    let metrics: Vec<Vec<(String, f64)>> = sc["metrics"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    m.as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut n_val = 0;
    let mut validate = |hook: &mut CheckpointHook, p: Progress, save: &mut SaveFn<'_>| {
        let m = if metrics.is_empty() {
            vec![]
        } else {
            metrics[n_val % metrics.len()].clone()
        };
        n_val += 1;
        hook.after_val_epoch(p, &m, save).unwrap();
    };
    let get = |k: &str, d: u64| lp.get(k).and_then(Value::as_u64).unwrap_or(d);
    let (val_interval, val_begin) = (get("val_interval", 1), get("val_begin", 1));
    let has_val = lp.get("val").and_then(Value::as_bool).unwrap_or(true);
    let mut resume_at = sc.get("resume_at").and_then(Value::as_u64);
    let overrides = sc.get("resume_overrides").cloned().unwrap_or(json!({}));
    let mut hook = start(&json!({}), None);
    let mut p = Progress {
        epoch: 0,
        iter: 0,
        max_epochs: 1,
        max_iters: 0,
    };
    if lp["type"] == "epoch" {
        let per_epoch = get("iters_per_epoch", 1);
        p.max_epochs = get("max_epochs", 1);
        p.max_iters = p.max_epochs * per_epoch;
        while p.epoch < p.max_epochs {
            if resume_at == Some(p.epoch) {
                hook = start(&overrides, Some(hook.state().clone()));
                resume_at = None;
            }
            for _ in 0..per_epoch {
                hook.after_train_iter(p, &mut save).unwrap();
                p.iter += 1;
            }
            hook.after_train_epoch(p, &mut save).unwrap();
            p.epoch += 1;
            if has_val
                && p.epoch >= val_begin
                && (p.epoch.is_multiple_of(val_interval) || p.epoch == p.max_epochs)
            {
                validate(&mut hook, p, &mut save);
            }
        }
    } else {
        p.max_iters = get("max_iters", 1);
        while p.iter < p.max_iters {
            if resume_at == Some(p.iter) {
                hook = start(&overrides, Some(hook.state().clone()));
                resume_at = None;
            }
            hook.after_train_iter(p, &mut save).unwrap();
            p.iter += 1;
            if has_val
                && p.iter >= val_begin
                && (p.iter.is_multiple_of(val_interval) || p.iter == p.max_iters)
            {
                validate(&mut hook, p, &mut save);
            }
        }
        hook.after_train_epoch(p, &mut save).unwrap();
    }
    let mut files = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path)
            } else {
                files.push(rel(&path))
            }
        }
    }
    files.sort();
    let last = std::fs::read_to_string(work_dir.join("last_checkpoint"))
        .ok()
        .map(|t| rel(Path::new(&t)));
    json!({"files": files, "last_checkpoint": last, "saves": saves.into_inner()})
}

#[test]
fn checkpoint_files_match_mmengine() {
    let scenarios = scenarios();
    let reference = run_reference("checkpoint", &scenarios);
    for (i, (sc, want)) in scenarios
        .as_array()
        .unwrap()
        .iter()
        .zip(reference.as_array().unwrap())
        .enumerate()
    {
        let got = replay(sc);
        assert_eq!(
            got["files"],
            want["files"],
            "scenario {} files: {sc}",
            i + 1
        );
        assert_eq!(
            got["last_checkpoint"],
            want["last_checkpoint"],
            "scenario {} last_checkpoint: {sc}",
            i + 1
        );
        assert_eq!(
            got["saves"],
            want["saves"],
            "scenario {} saves: {sc}",
            i + 1
        );
    }
}

/// detc deletes only after the new checkpoint is written: a failing save
/// leaves every earlier checkpoint (and `last_checkpoint`) in place.
#[test]
fn failed_save_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg: CheckpointHookConfig =
        serde_json::from_value(json!({"interval": 1, "max_keep_ckpts": 1})).unwrap();
    let mut hook = CheckpointHook::new(&cfg, tmp.path()).unwrap();
    hook.before_train(None).unwrap();
    let p = Progress {
        epoch: 0,
        iter: 1,
        max_epochs: 3,
        max_iters: 3,
    };
    hook.after_train_epoch(p, &mut |r: &SaveRequest<'_>| std::fs::write(r.path, "ok"))
        .unwrap();
    let mut fail = |_: &SaveRequest<'_>| -> io::Result<()> { Err(io::Error::other("disk full")) };
    let err = hook
        .after_train_epoch(
            Progress {
                epoch: 1,
                iter: 2,
                ..p
            },
            &mut fail,
        )
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(tmp.path().join("epoch_1.pth").is_file());
    let last = std::fs::read_to_string(tmp.path().join("last_checkpoint")).unwrap();
    assert_eq!(last, tmp.path().join("epoch_1.pth").to_string_lossy());
}

#[test]
fn config_errors_name_the_fix() {
    let bad = |v: Value| {
        let cfg: CheckpointHookConfig = serde_json::from_value(v).unwrap();
        CheckpointHook::new(&cfg, Path::new("w"))
            .unwrap_err()
            .to_string()
    };
    assert!(bad(json!({"filename_tmpl": "ckpt.pth"})).contains("exactly once"));
    assert!(bad(json!({"save_best": "foo"})).contains("rule: greater"));
    assert!(
        bad(json!({"save_best": ["a", "b"], "rule": ["less", "less", "less"]})).contains("one per")
    );
}
