//! `detc bench` on CPU with the tiny demo config: real train steps and
//! inference batches timed, as a JSON report and as the table, in one
//! process and in a job of two.

use serde_json::Value;

use crate::support::{detc, python_stdout, root, shapes_data};

const TINY: &[&str] = &[
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
    "val_dataloader.num_workers=0",
];

/// `detc bench` of the demo config with `args`, in `dir`: its stdout.
fn bench(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    bench_with_env(dir, args, &[])
}

/// The report `detc bench --json` printed.
fn json_report(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

fn bench_with_env(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Vec<u8> {
    let config = root().join("configs/demo/mask-rcnn_r18_shapes.yaml");
    bench_config(dir, &config, args, envs)
}

fn bench_config(dir: &std::path::Path, config: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> Vec<u8> {
    detc(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("OMP_NUM_THREADS", "1")
        .envs(envs.iter().copied())
        .arg("bench")
        .arg(config)
        .args(args)
        .arg("--cfg-options")
        .args(TINY)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone()
}

#[test]
fn bench_times_train_steps_by_phase_and_inference() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 2);
    let out = bench(dir.path(), &["--iters", "2", "--warmup", "1", "--json"]);
    let report = json_report(&out);
    assert_eq!(report["device"], "cpu");
    assert_eq!(
        (report["iters"].as_u64(), report["warmup"].as_u64()),
        (Some(2), Some(1))
    );
    let train = &report["train"];
    assert_eq!(train["batch_size"], 4);
    let secs = |k: &str| {
        train[k]
            .as_f64()
            .unwrap_or_else(|| panic!("train.{k}: {report}"))
    };
    assert!(
        secs("images_per_s") > 0.0 && secs("forward_s") > 0.0 && secs("backward_s") > 0.0,
        "{report}"
    );
    let phases =
        secs("forward_s") + secs("backward_s") + secs("all_reduce_s") + secs("optimizer_s");
    assert!(
        phases <= secs("step_s") * 1.001,
        "the phases fit in the step: {report}"
    );
    assert!(
        (secs("images_per_s") * secs("step_s") - 4.0).abs() < 1e-6,
        "{report}"
    );
    // The last step's total loss shows the steps trained (a benchmark of a
    // diverged model times a cheaper step than training's).
    assert!(secs("loss").is_finite() && secs("loss") > 0.0, "{report}");
    assert_eq!(
        report["inference"]["batch_size"], 1,
        "the validation loader's batch"
    );
    assert!(report["inference"]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["max_rss_mb"].as_u64().unwrap() > 0);

    let table = bench(dir.path(), &["--iters", "1", "--warmup", "0"]);
    let table = String::from_utf8(table).unwrap();
    assert!(
        table.starts_with("device cpu, 1 timed iterations after 0 warm-up\ntrain "),
        "{table}"
    );
    assert!(
        table.contains(" img/s  batch 4  step ") && table.contains("\ninference "),
        "{table}"
    );
    assert!(
        !dir.path().join("work_dirs").exists(),
        "no work dir left behind"
    );
}

#[test]
fn bench_of_two_cpu_workers_reports_the_images_of_both() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 16, 4);
    let out = bench(
        dir.path(),
        &[
            "--iters", "2", "--warmup", "1", "--json", "--nproc", "2", "--device", "cpu",
        ],
    );
    // One report (rank 0's), whose images per second count both workers.
    let report = json_report(&out);
    assert_eq!(report["processes"], 2, "{report}");
    let train = &report["train"];
    assert_eq!(train["batch_size"], 4, "per process");
    let (ips, step) = (
        train["images_per_s"].as_f64().unwrap(),
        train["step_s"].as_f64().unwrap(),
    );
    assert!((ips * step - 8.0).abs() < 1e-6, "{report}");
}

/// `--synthetic` needs no dataset: it trains and infers on generated images
/// at the config's scale.
#[test]
fn synthetic_bench_needs_no_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(
        dir.path(),
        &["--iters", "1", "--warmup", "0", "--json", "--synthetic"],
    );
    let report = json_report(&out);
    assert_eq!(report["train"]["batch_size"], 4, "{report}");
    assert!(report["train"]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["inference"]["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        !dir.path().join("data").exists(),
        "no dataset was read or written here"
    );
}

/// `--synthetic` on a multi-scale config (a `RandomChoiceResize` where the
/// demo has a `Resize`): its images take the largest scale the pipeline
/// can pick, and the pipeline resizes them as it resizes real ones.
#[test]
fn synthetic_bench_takes_a_multi_scale_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ms.yaml");
    let base = root().join("configs/demo/mask-rcnn_r18_shapes.yaml");
    let text = format!(
        "_base_: {}\ntrain_dataloader:\n  dataset:\n    pipeline:\n      '2':\n        _delete_: true\n        \
         type: RandomChoiceResize\n        scales: [[160, 96], [160, 128]]\n        keep_ratio: true\n",
        base.display()
    );
    std::fs::write(&config, text).unwrap();
    let out = bench_config(
        dir.path(),
        &config,
        &["--iters", "1", "--warmup", "0", "--json", "--synthetic"],
        &[],
    );
    let report = json_report(&out);
    assert!(report["train"]["images_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

/// `DETC_PROFILE=1`: the train step's time by named sections of the
/// forward pass too (a Mask R-CNN's preprocessing, backbone, RPN and RoI
/// head parts), in the order they ran, then the phases after it.
#[test]
fn profile_splits_the_forward_pass_into_sections() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench_with_env(
        dir.path(),
        &["--iters", "1", "--warmup", "0", "--json", "--synthetic"],
        &[("DETC_PROFILE", "1")],
    );
    let report = json_report(&out);
    let sections = report["train"]["sections_s"].as_object().unwrap_or_else(|| panic!("{report}"));
    let names: Vec<&str> = sections.keys().map(String::as_str).collect();
    for name in ["preprocess", "backbone and neck", "rpn: proposals (NMS)", "roi: RoIAlign", "roi: mask", "backward", "optimizer"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(names.iter().position(|n| *n == "preprocess") < names.iter().position(|n| *n == "backward"));
    assert!(sections.values().all(|v| v.as_f64().is_some_and(|s| s >= 0.0)), "{report}");
    // With the operators each section called and the host synchronisations
    // among them (counted by libtorch's RecordFunction, as on a GPU).
    let counts = &report["train"]["sections_ops"];
    let count = |section: &str, what: &str| counts[section][what].as_f64().unwrap_or_else(|| panic!("{section} {what}: {report}"));
    assert!(count("backbone and neck", "ops") >= 20.0, "{report}");
    assert!(count("backbone and neck", "dispatched") > count("backbone and neck", "ops"), "{report}");
    assert_eq!(count("backbone and neck", "syncs"), 0.0, "the backbone never waits for the device: {report}");
    assert!(count("backward", "ops") > 0.0, "backward's operators run on autograd's threads: {report}");
    let syncs: f64 = counts.as_object().unwrap().values().map(|c| c["syncs"].as_f64().unwrap()).sum();
    assert!(syncs >= 1.0, "assignment reads sizes on the host: {report}");
    let plain = bench(dir.path(), &["--iters", "1", "--warmup", "0", "--json", "--synthetic"]);
    let plain = json_report(&plain);
    assert!(plain["train"].get("sections_s").is_none(), "no sections without DETC_PROFILE: {plain}");
    assert!(plain["train"].get("sections_ops").is_none(), "{plain}");
}

/// `DETC_TRACE=FILE`: a Chrome trace of the timed steps (libtorch's Kineto
/// profiler), holding the model's operators on the host, which
/// scripts/trace_summary.py (what summarises the references' traces too)
/// counts as `DETC_PROFILE` does.
#[test]
fn trace_writes_a_chrome_trace_of_the_timed_steps() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("steps.trace.json");
    let out = bench_with_env(
        dir.path(),
        &["--iters", "2", "--warmup", "1", "--json", "--synthetic"],
        &[("DETC_TRACE", trace.to_str().unwrap()), ("DETC_PROFILE", "1")],
    );
    let report = json_report(&out);
    let text = std::fs::read_to_string(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
    let events: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = events["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "cpu_op")
        .filter_map(|e| e["name"].as_str())
        .collect();
    for op in ["aten::conv2d", "aten::convolution_backward", "aten::nonzero"] {
        assert!(names.contains(&op), "{op} not in the trace's {} operators", names.len());
    }
    let summary = python_stdout(&[
        root().join("scripts/trace_summary.py").to_str().unwrap(),
        trace.to_str().unwrap(),
        "--steps",
        "2",
        "--json",
    ]);
    let summary: Value = serde_json::from_str(&summary).unwrap();
    // The profile's sections are marked in the trace, without waiting.
    let marked = &summary["sections"]["backbone and neck"];
    assert!(marked["ops"].as_f64().is_some_and(|n| n >= 20.0), "{summary}");
    assert!(summary["sections"]["optimizer"]["host_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{summary}");
    let sections = report["train"]["sections_ops"].as_object().unwrap();
    let total = |what: &str| sections.values().map(|c| c[what].as_f64().unwrap()).sum::<f64>();
    assert_eq!(summary["syncs_per_step"].as_f64(), Some(total("syncs")), "{summary}\n{report}");
    // The trace also holds the few operators between the profiled sections.
    let (traced, profiled) = (summary["ops_per_step"].as_f64().unwrap(), total("ops"));
    assert!(traced >= profiled && traced < profiled * 1.05, "trace {traced} against DETC_PROFILE {profiled}");
    // A file that cannot be written is refused before any step runs.
    let missing = dir.path().join("no/such/folder/t.json");
    let config = root().join("configs/demo/mask-rcnn_r18_shapes.yaml");
    let out = detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .env("DETC_TRACE", &missing)
        .args(["bench", config.to_str().unwrap(), "--iters", "1", "--synthetic"])
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(err.contains("DETC_TRACE=") && err.contains("no/such/folder"), "{err}");
}

/// The torchvision reference of `scripts/gpu-bench` trains: its losses stay
/// finite over its first steps from random weights (without MMDetection's
/// warm-up they reached NaN by the fourth, after which its RoI head pooled
/// only the ground truths and its steps were far cheaper than training's).
#[test]
fn faster_rcnn_reference_trains_through_its_first_steps() {
    reference_trains_through_its_first_steps("faster-rcnn", "FasterRCNN");
}

/// The same for torchvision's Mask R-CNN, on the masks of the three COCO
/// segmentation forms the shapes data holds.
#[test]
fn mask_rcnn_reference_trains_through_its_first_steps() {
    reference_trains_through_its_first_steps("mask-rcnn", "MaskRCNN");
}

fn reference_trains_through_its_first_steps(model: &str, class: &str) {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 4, 1);
    let out = python_stdout(&[
        root().join("scripts/bench_reference.py").to_str().unwrap(),
        "--model",
        model,
        "--data",
        dir.path().join("data/shapes").to_str().unwrap(),
        "--device",
        "cpu",
        "--scale",
        "128",
        "128",
        "--iters",
        "5",
        "--warmup",
        "1",
        "--workers",
        "0",
    ]);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(report["reference"].as_str().is_some_and(|r| r.contains(class)), "{report}");
    let loss = report["train"]["loss"].as_f64();
    assert!(loss.is_some_and(|l| l.is_finite() && l < 20.0), "{report}");
}
