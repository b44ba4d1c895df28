//! Shared helpers: temporary config trees and the `detc` command.

use std::path::{Path, PathBuf};

use snapbox::cmd::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test-only Python environment's interpreter, which holds the outside
/// references (MMEngine, MMDetection, pycocotools, OpenCV, torch).
pub fn python() -> PathBuf {
    let python = root().join(".venv-test/bin/python");
    assert!(python.exists(), "the reference environment .venv-test is missing: run `scripts/test-env` (scripts/test does)");
    python
}

/// Sends `requests` to the reference `script` (relative to the repository),
/// one JSON line each, and returns its answers, one JSON line each: one
/// Python process answers them all.
pub fn ask_python(script: &str, env: &[(&str, &str)], requests: &[serde_json::Value]) -> Vec<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let mut child = std::process::Command::new(python())
        .arg(root().join(script))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python starts");
    let input: String = requests.iter().map(|r| r.to_string() + "\n").collect();
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: the script answers while it reads.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let answers: Vec<serde_json::Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success(), "{script} failed");
    assert_eq!(answers.len(), requests.len(), "{script}: one answer per request");
    answers
}

/// A temporary folder holding `files` (path, content).
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, content) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content.replace("[ROOT]", root().to_str().unwrap())).unwrap();
    }
    dir
}

/// `detc` run in `dir`, with output redacted so snapshots hold `[ROOT]`.
pub fn detc(dir: &Path) -> Command {
    Command::new(snapbox::cmd::cargo_bin!("detc"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .with_assert(assert())
}

pub fn assert() -> snapbox::Assert {
    let mut redactions = snapbox::Redactions::new();
    redactions.insert("[ROOT]", root()).unwrap();
    snapbox::Assert::new().action_env("SNAPSHOTS").redact_with(redactions)
}

/// `meta.iter` of a training checkpoint (which must load).
pub fn saved_iter(path: &Path) -> i64 {
    let ckpt = detc::checkpoint::load(path).unwrap_or_else(|e| panic!("{e}"));
    ckpt.other
        .get("meta")
        .and_then(|m| m.get("iter"))
        .and_then(|v| v.as_int())
        .expect("meta.iter")
}

/// Writes the synthetic shapes dataset (`train` + `val` images) to `dir/data/shapes`.
pub fn shapes_data(dir: &Path, train: u32, val: u32) {
    let (train, val) = (train.to_string(), val.to_string());
    detc(dir)
        .args(["data", "shapes", "data/shapes", "--train", &train, "--val", &val])
        .assert()
        .success();
}

/// Trains `config` (relative to `dir`, which holds the shapes data) into
/// `dir/work` for `epochs` epochs, validating and logging at every one:
/// the few steps a test of the run's outputs needs.
pub fn train_briefly(dir: &Path, config: &Path, epochs: u32) {
    let epochs = format!("train_cfg.max_epochs={epochs}");
    detc(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(config)
        .args(["--work-dir", "work", "--cfg-options", &epochs])
        .args([
            "train_cfg.val_interval=1",
            "train_dataloader.num_workers=0",
            "val_dataloader.num_workers=0",
            "default_hooks.logger.interval=1",
        ])
        .assert()
        .success();
}

/// The log folder (`<timestamp>`) of the one run in `work_dir`.
pub fn run_dir(work_dir: &Path) -> PathBuf {
    std::fs::read_dir(work_dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("a run folder")
        .path()
}

/// The YAML twins of MMDetection's model configs (`configs/<model>/*.yaml`,
/// not the bases, demos or benchmarks), relative to the repository, sorted.
pub fn twin_configs() -> Vec<String> {
    let mut configs = vec![];
    for model in ["queryinst", "sparse_rcnn", "faster_rcnn", "mask_rcnn", "cascade_rcnn", "gn", "gn+ws", "swin", "retinanet", "regnet", "dcn", "dcnv2", "hrnet", "rpn", "fcos", "resnest", "res2net", "gcnet", "atss", "gfl", "pafpn", "ms_rcnn", "empirical_attention", "libra_rcnn", "ghm", "strong_baselines", "simple_copy_paste", "groie", "rtmdet", "free_anchor", "dyhead", "legacy_1.x", "vfnet", "tood", "foveabox", "reppoints", "centernet", "objects365"] {
        for name in file_names(&root().join("configs").join(model)) {
            configs.push(format!("configs/{model}/{name}"));
        }
    }
    configs
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The COCO annotations of the shapes validation split written by [`shapes_data`] into `dir`.
pub fn shapes_val_annotations(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("data/shapes/annotations/instances_val.json")).unwrap()).unwrap()
}

/// The stdout of the reference environment's Python run with `args`,
/// which must succeed.
pub fn python_stdout<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = std::process::Command::new(python()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The bbox and segm mAP that `detc test --out tested/results.json` printed
/// in `test_log` equal what `detc eval` computes from its result files
/// (run in `dir`, against the shapes validation annotations).
pub fn assert_test_log_matches_eval(dir: &Path, test_log: &str) {
    for metric in ["bbox", "segm"] {
        let key = format!("coco/{metric}_mAP: ");
        let at = test_log
            .find(&key)
            .unwrap_or_else(|| panic!("no {key} in:\n{test_log}"));
        let logged: f64 = test_log[at + key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let eval = detc(dir)
            .args(["eval", "--ann", "data/shapes/annotations/instances_val.json"])
            .args(["--format", "json", "--metric", metric, "--results"])
            .arg(format!("tested/results.{metric}.json"))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let stats: serde_json::Value = serde_json::from_slice(&eval).unwrap();
        let ap = stats[metric]["AP"].as_f64().unwrap();
        assert!(
            (ap - logged).abs() < 5e-4 + 1e-12,
            "{metric}: detc eval AP {ap}, detc test logged {logged}"
        );
    }
}

/// `(step, s5.loss_cls)` of every training record of every run folder of a
/// work dir, unsorted and with repeats (a resumed run logs in a new folder).
pub fn all_records(work_dir: &Path) -> Vec<(u64, f64)> {
    records(work_dir, "s5.loss_cls")
}

/// `(step, value of key)` of every record of every run folder of a work dir
/// that logs `key`, unsorted and with repeats.
pub fn records(work_dir: &Path, key: &str) -> Vec<(u64, f64)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(work_dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("vis_data/scalars.json")) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let (Some(step), Some(loss)) = (v["step"].as_u64(), v.get(key).and_then(serde_json::Value::as_f64)) {
                out.push((step, loss));
            }
        }
    }
    out
}

/// Every loss a killed-then-resumed run logged (its run folders in `resumed`)
/// equals the uninterrupted run's (in `straight`), and together they logged
/// each of the `steps` steps.
pub fn assert_same_losses(straight: &Path, resumed: &Path, steps: usize) {
    let straight: std::collections::HashMap<u64, f64> = all_records(straight).into_iter().collect();
    assert_eq!(straight.len(), steps);
    let records = all_records(resumed);
    let logged: std::collections::BTreeSet<u64> = records.iter().map(|r| r.0).collect();
    assert_eq!(logged.len(), steps, "every step logged by the killed or the resumed run: {records:?}");
    for (step, loss) in records {
        assert_eq!(loss, straight[&step], "step {step}: the interrupted run logged another loss");
    }
}
