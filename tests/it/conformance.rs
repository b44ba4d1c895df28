//! Conformance with MMEngine itself: every fixture of
//! `tests/fixtures/conformance/cases.json` and every bundled config is
//! resolved by detc (`expand --no-validate --format json`) and by MMEngine
//! (`Config.fromfile` + `DictAction` + `merge_from_dict`, run live from the
//! test-only environment that `scripts/test-env` installs) and must agree:
//! the same values with the same types (1 and 1.0 differ; dict order is not
//! compared), or an error in both.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{ask_python, python, root};

/// Cases MMEngine rejects that detc accepts on purpose (docs/config-language.md, "detc extensions").
const EXTENSIONS: &[&str] = &[
    "merge_list_to_dict",           // a mapping of list indices merged onto a base list
    "opts_list_index_replace_item", // `--cfg-options a.0=5` replaces an element
    "ref_list_index",               // `{{_base_.a.0}}` reads a list element
];

/// An environment variable the `placeholders` fixture reads, set for both sides.
const SET_VAR: (&str, &str) = ("DETC_CONFORMANCE_SET", "from-the-environment");


/// MMEngine's answers, one per request, from one Python process.
pub(crate) fn mmengine(requests: &[(PathBuf, Vec<String>)]) -> Vec<Value> {
    let requests: Vec<Value> =
        requests.iter().map(|(file, options)| json!({"file": file, "cfg_options": options})).collect();
    ask_python("tests/mmengine/resolve.py", &[SET_VAR], &requests)
}

/// detc's answer: `Ok(json)` or `Err((exit code, stderr))`.
pub(crate) fn detc(file: &Path, options: &[String]) -> Result<Value, (i32, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_detc"));
    cmd.env(SET_VAR.0, SET_VAR.1);
    cmd.args(["expand", "--no-validate", "--format", "json"]).arg(file);
    if !options.is_empty() {
        cmd.arg("--cfg-options").args(options);
    }
    let out = cmd.env("NO_COLOR", "1").output().unwrap();
    match out.status.code() {
        Some(0) => Ok(serde_json::from_slice(&out.stdout).unwrap()),
        code => Err((code.unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())),
    }
}

#[test]
fn fixtures_resolve_as_mmengine_resolves_them() {
    let fixtures = root().join("tests/fixtures/conformance");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(fixtures.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 40);
    let requests: Vec<(PathBuf, Vec<String>)> = cases
        .iter()
        .map(|c| {
            let options = c["cfg_options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
            (fixtures.join(c["file"].as_str().unwrap()), options)
        })
        .collect();
    let answers = mmengine(&requests);
    let mut failures = vec![];
    for ((case, (file, options)), reference) in cases.iter().zip(&requests).zip(answers) {
        let name = case["name"].as_str().unwrap();
        let ours = detc(file, options);
        let problem = match (reference.get("ok"), ours) {
            (Some(expected), Ok(got)) if *expected == got => None,
            (Some(expected), Ok(got)) => Some(format!("values differ\n  mmengine: {expected}\n  detc:     {got}")),
            (Some(_), Err((code, err))) => Some(format!("detc failed ({code}) where MMEngine resolves:\n{err}")),
            (None, Ok(got)) if EXTENSIONS.contains(&name) => {
                let _ = got;
                None
            }
            (None, Ok(got)) => Some(format!("detc resolves ({got}) where MMEngine fails: {}", reference["error"])),
            (None, Err((1, _))) if !EXTENSIONS.contains(&name) => None,
            (None, Err((code, err))) => Some(format!("unexpected failure (exit {code}): {err}")),
        };
        if let Some(p) = problem {
            failures.push(format!("{name}: {p}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases disagree with MMEngine:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn bundled_configs_resolve_as_mmengine_resolves_them() {
    let configs = crate::support::twin_configs();
    let overrides = vec!["model.roi_head.bbox_head.0.num_classes=3".to_string(), "train_dataloader.batch_size=4".into()];
    let mut requests: Vec<(PathBuf, Vec<String>)> = configs.iter().map(|c| (root().join(c), vec![])).collect();
    requests.push((root().join("configs/queryinst/queryinst_r50_fpn_1x_coco.yaml"), overrides));
    for ((file, options), reference) in requests.iter().zip(mmengine(&requests)) {
        let ours = detc(file, options).unwrap_or_else(|(_, e)| panic!("{}: {e}", file.display()));
        assert_eq!(reference.get("ok"), Some(&ours), "{} {options:?}", file.display());
    }
}

#[test]
fn yaml_twins_equal_mmdetection_python_configs() {
    let out = Command::new(python()).arg(root().join("tests/mmengine/compare_twins.py")).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
