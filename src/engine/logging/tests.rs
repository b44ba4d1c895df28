//! Log lines and `scalars.json` records against MMEngine's real
//! `LogProcessor` and `LocalVisBackend` (tests/engine/hooks_reference.py):
//! the same scalar histories must give byte-identical strings.

use serde_json::{json, Value};

use super::*;
use crate::engine::checkpoint_hook::tests::run_reference;
use detc::registry::engine::LogProcessorConfig;

/// Deterministic values with many significant digits (xorshift64*).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn scalar(key: &str, value: f64) -> Value {
    json!({"op": "scalar", "key": key, "value": value})
}

struct Train {
    len: u64,
    max_iters: u64,
    interval: u64,
    base_lr: bool,
    grad_norm: bool,
    by_epoch_log: bool,
}

/// Training iterations `from..to` logged as MMEngine's hooks log them
/// (RuntimeInfoHook lr, IterTimerHook data_time, clip_grad, losses, time).
fn train_events(g: &mut Gen, t: &Train, from: u64, to: u64, out: &mut Vec<Value>) {
    for it in from..to {
        let (epoch, batch_idx) = (it / t.len, it % t.len);
        if t.base_lr {
            out.push(scalar("train/base_lr", 1e-4));
        }
        out.push(scalar("train/lr", 1e-5 * (it + 1) as f64 / 7.0));
        out.push(scalar("train/data_time", 0.01 + 0.02 * g.next()));
        if t.grad_norm {
            out.push(scalar("train/grad_norm", 40.0 + 10.0 * g.next()));
        }
        let (cls, bbox) = (2.0 * g.next(), 0.5 + g.next());
        out.push(scalar("train/loss", cls + bbox));
        out.push(scalar("train/s0.loss_cls", cls));
        out.push(scalar("train/s0.loss_bbox", bbox));
        out.push(scalar("train/time", 0.5 + 0.1 * g.next()));
        let log = if t.by_epoch_log {
            (batch_idx + 1) % t.interval == 0 || batch_idx + 1 == t.len
        } else {
            (it + 1) % t.interval == 0
        };
        if log {
            let eta = (t.max_iters - it - 1) as f64 * (0.55 + g.next());
            out.push(
                json!({"op": "log_iter", "mode": "train", "batch_idx": batch_idx, "epoch": epoch,
                            "iter": it, "eta": eta, "step": it + 1}),
            );
        }
    }
}

/// One evaluation loop of `len` batches after `epoch` epochs / `iter` iterations, then its metrics.
fn eval_events(
    g: &mut Gen,
    mode: &str,
    len: u64,
    interval: u64,
    epoch: u64,
    iter: u64,
    out: &mut Vec<Value>,
) {
    for b in 0..len {
        out.push(scalar(
            &format!("{mode}/data_time"),
            0.001 + 0.01 * g.next(),
        ));
        out.push(scalar(&format!("{mode}/time"), 0.05 + 0.1 * g.next()));
        if (b + 1) % interval == 0 {
            let eta = (len - b - 1) as f64 * 0.07;
            out.push(
                json!({"op": "log_iter", "mode": mode, "batch_idx": b, "epoch": epoch, "iter": iter,
                            "eta": eta, "step": iter}),
            );
        }
    }
    for key in ["coco/bbox_mAP", "coco/bbox_mAP_50", "coco/segm_mAP"] {
        out.push(scalar(
            &format!("{mode}/{key}"),
            (g.next() * 1000.0).round() / 1000.0,
        ));
    }
    out.push(json!({"op": "log_epoch", "mode": mode, "epoch": epoch, "iter": iter, "step": epoch}));
}

fn scenarios() -> Value {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut list = vec![];

    // 1. epoch-based, CUDA memory, two epochs each followed by validation
    //    (the second val's `time` mean reaches into the first: MMEngine's len+1 window).
    let t = Train {
        len: 25,
        max_iters: 12 * 25,
        interval: 5,
        base_lr: false,
        grad_norm: false,
        by_epoch_log: true,
    };
    let mut ev = vec![];
    for e in 0..2 {
        train_events(&mut g, &t, e * 25, (e + 1) * 25, &mut ev);
        eval_events(&mut g, "val", 7, 3, e + 1, (e + 1) * 25, &mut ev);
    }
    list.push(json!({"processor": {"window_size": 5}, "cuda_memory": 14765,
        "runner": {"max_epochs": 12, "max_iters": t.max_iters, "train_len": 25, "val_len": 7}, "events": ev}));

    // 2. epoch-based with base_lr (several param groups) and grad_norm (clip_grad), eta past a day.
    let t = Train {
        len: 7330,
        max_iters: 12 * 7330,
        interval: 50,
        base_lr: true,
        grad_norm: true,
        by_epoch_log: true,
    };
    let mut ev = vec![];
    train_events(&mut g, &t, 0, 120, &mut ev);
    list.push(json!({"processor": {"window_size": 50},
        "runner": {"max_epochs": 12, "max_iters": t.max_iters, "train_len": 7330}, "events": ev}));

    // 3. iteration-based, a window past numpy's 128-value pairwise block, iteration-based validation.
    let t = Train {
        len: 90000,
        max_iters: 90000,
        interval: 50,
        base_lr: false,
        grad_norm: true,
        by_epoch_log: false,
    };
    let mut ev = vec![];
    train_events(&mut g, &t, 0, 300, &mut ev);
    eval_events(&mut g, "val", 12, 5, 0, 300, &mut ev);
    list.push(json!({"processor": {"window_size": 200, "by_epoch": false},
        "runner": {"max_epochs": 1, "max_iters": 90000, "train_len": 90000, "val_len": 12}, "events": ev}));

    // 4. `detc test`: no train loop.
    let mut ev = vec![];
    eval_events(&mut g, "test", 50, 5, 0, 0, &mut ev);
    list.push(json!({"processor": {"window_size": 50},
        "runner": {"max_epochs": 1, "max_iters": 1, "has_train_loop": false, "test_len": 50}, "events": ev}));

    // 5. custom_cfg statistics and 3 digits.
    let t = Train {
        len: 9,
        max_iters: 27,
        interval: 4,
        base_lr: false,
        grad_norm: false,
        by_epoch_log: true,
    };
    let mut ev = vec![];
    train_events(&mut g, &t, 0, 27, &mut ev);
    let custom = json!([
        {"data_src": "loss", "log_name": "loss_global", "method_name": "mean", "window_size": "global"},
        {"data_src": "time", "method_name": "max", "window_size": 3},
        {"data_src": "s0.loss_cls", "log_name": "cls_min", "method_name": "min", "window_size": "epoch"},
        {"data_src": "s0.loss_bbox", "log_name": "bbox_mean_all", "method_name": "mean"}
    ]);
    list.push(
        json!({"processor": {"window_size": 4, "num_digits": 3, "custom_cfg": custom},
        "runner": {"max_epochs": 3, "max_iters": 27, "train_len": 9}, "events": ev}),
    );
    Value::Array(list)
}

/// Our processor on one scenario: (line, scalars.json record) per log event.
fn replay(sc: &Value) -> Vec<(String, String)> {
    let cfg: LogProcessorConfig = serde_json::from_value(sc["processor"].clone()).unwrap();
    let proc = LogProcessor::from_config(&cfg).unwrap();
    let r = &sc["runner"];
    let len = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(1) as usize;
    let mut hub =
        ScalarHub::new(proc.history_len(len("train_len"), len("val_len").max(len("test_len"))));
    let mut eta = None;
    let mut out = vec![];
    for ev in sc["events"].as_array().unwrap() {
        let op = ev["op"].as_str().unwrap();
        if op == "scalar" {
            hub.update(ev["key"].as_str().unwrap(), ev["value"].as_f64().unwrap());
            continue;
        }
        eta = ev.get("eta").and_then(Value::as_f64).or(eta);
        let mode = match ev["mode"].as_str().unwrap() {
            "train" => Mode::Train,
            "val" => Mode::Val,
            _ => Mode::Test,
        };
        let ctx = LogContext {
            mode,
            batch_idx: ev.get("batch_idx").and_then(Value::as_u64).unwrap_or(0) as usize,
            dataloader_len: len(&format!("{}_len", mode.as_str())),
            epoch: ev["epoch"].as_u64().unwrap(),
            iter: ev["iter"].as_u64().unwrap(),
            max_epochs: r["max_epochs"].as_u64().unwrap(),
            max_iters: r["max_iters"].as_u64().unwrap(),
            has_train_loop: r
                .get("has_train_loop")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            eta,
            memory_mb: sc.get("cuda_memory").and_then(Value::as_u64),
        };
        let (tag, line) = if op == "log_iter" {
            proc.log_after_iter(&hub, &ctx)
        } else {
            proc.log_after_epoch(&hub, &ctx)
        };
        out.push((line, scalars_record(&tag, ev["step"].as_u64().unwrap())));
    }
    out
}

#[test]
fn log_lines_match_mmengine() {
    let scenarios = scenarios();
    let reference = run_reference("log", &scenarios);
    let mut n = 0;
    for (i, (sc, want)) in scenarios
        .as_array()
        .unwrap()
        .iter()
        .zip(reference.as_array().unwrap())
        .enumerate()
    {
        let got = replay(sc);
        let want = want.as_array().unwrap();
        assert_eq!(
            got.len(),
            want.len(),
            "scenario {}: number of log events",
            i + 1
        );
        for (j, ((line, record), w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                line,
                w["line"].as_str().unwrap(),
                "scenario {} event {j}: line",
                i + 1
            );
            assert_eq!(
                record,
                w["record"].as_str().unwrap(),
                "scenario {} event {j}: scalars.json",
                i + 1
            );
            n += 1;
        }
    }
    assert!(n > 40, "only {n} log events compared");
}

/// A hub restored from its state smooths exactly like the original.
#[test]
fn resumed_hub_logs_the_same_line() {
    let proc = LogProcessor::new(5, true);
    let mut g = Gen(7);
    let mut hub = ScalarHub::new(proc.history_len(10, 0));
    let t = Train {
        len: 10,
        max_iters: 20,
        interval: 5,
        base_lr: false,
        grad_norm: false,
        by_epoch_log: true,
    };
    let mut ev = vec![];
    train_events(&mut g, &t, 0, 8, &mut ev);
    for e in ev.iter().filter(|e| e["op"] == "scalar") {
        hub.update(e["key"].as_str().unwrap(), e["value"].as_f64().unwrap());
    }
    let mut resumed = ScalarHub::new(proc.history_len(10, 0));
    // Through a value tree, as the runner stores it in the checkpoint's pickle
    // (JSON *text* would not do: serde_json's parser, without its
    // `float_roundtrip` feature, can be one ulp off).
    resumed
        .load_state(&serde_json::from_value(serde_json::to_value(hub.state()).unwrap()).unwrap());
    let ctx = LogContext {
        mode: Mode::Train,
        batch_idx: 7,
        dataloader_len: 10,
        epoch: 0,
        iter: 7,
        max_epochs: 2,
        max_iters: 20,
        has_train_loop: true,
        eta: Some(12.0),
        memory_mb: None,
    };
    assert_eq!(
        proc.log_after_iter(&resumed, &ctx),
        proc.log_after_iter(&hub, &ctx)
    );
}

#[test]
fn prefix_layout() {
    let t = crate::engine::work_dir::LocalTime {
        year: 2026,
        month: 11,
        day: 28,
        hour: 9,
        minute: 5,
        second: 3,
    };
    assert_eq!(
        line_prefix(Level::Info, &t),
        "11/28 09:05:03 - detc - INFO - "
    );
    let cfg: LogProcessorConfig =
        serde_json::from_value(json!({"mean_pattern": "loss[0-9]+"})).unwrap();
    assert!(LogProcessor::from_config(&cfg)
        .unwrap_err()
        .to_string()
        .contains("mean_pattern"));
}

#[test]
fn log_level_keeps_the_lines_at_or_above_it() {
    let dir = tempfile::tempdir().unwrap();
    for (level, want) in [("INFO", 2), ("WARNING", 1), ("CRITICAL", 0)] {
        let (text, scalars) = (
            dir.path().join(format!("{level}.log")),
            dir.path().join("s.json"),
        );
        let mut log = RunLog::open(&text, &scalars, false).unwrap();
        log.min_level = min_level(&serde_json::json!({ "log_level": level }));
        log.info("progress").unwrap();
        log.log(Level::Warning, "look").unwrap();
        assert_eq!(
            std::fs::read_to_string(&text).unwrap().lines().count(),
            want,
            "{level}"
        );
    }
}

/// The scalar records go where MMEngine's `LocalVisBackend` writes them:
/// its `save_dir` (else the visualizer's `save_dir`/vis_data, else the
/// run's vis_data) and its `scalar_save_file`.
#[test]
fn scalars_go_to_the_local_vis_backends_file() {
    let dir = tempfile::tempdir().unwrap();
    let work = crate::engine::work_dir::WorkDir::create(dir.path(), "20261129_120000").unwrap();
    let run = dir.path().join("20261129_120000/vis_data");
    let own = dir.path().join("own");
    let shared = dir.path().join("shared");
    for (visualizer, want) in [
        (json!(null), run.join("scalars.json")),
        (
            json!({"vis_backends": [{"type": "TensorboardVisBackend"}]}),
            run.join("scalars.json"),
        ),
        (
            json!({"vis_backends": [{"type": "LocalVisBackend", "scalar_save_file": "m.json"}]}),
            run.join("m.json"),
        ),
        (
            json!({"save_dir": shared, "vis_backends": [{"type": "LocalVisBackend"}]}),
            shared.join("vis_data/scalars.json"),
        ),
        (
            json!({"save_dir": shared, "vis_backends": {"type": "LocalVisBackend", "save_dir": own}}),
            own.join("scalars.json"),
        ),
    ] {
        let mut log = RunLog::open_run(&work, &json!({ "visualizer": visualizer })).unwrap();
        let tag: Tag = [("loss".to_string(), TagValue::Float(1.5))]
            .into_iter()
            .collect();
        log.add_scalars(&tag, 1).unwrap();
        drop(log);
        let text =
            std::fs::read_to_string(&want).unwrap_or_else(|e| panic!("{}: {e}", want.display()));
        assert!(text.contains("\"loss\": 1.5"), "{text}");
        std::fs::remove_file(&want).unwrap();
    }
}
