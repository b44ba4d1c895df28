//! `detc convert` on MMDetection 3.3.0's own Python configs (from the mmdet
//! wheel of the test environment): the YAML tree it writes keeps the
//! `_base_` structure, and detc expands it to exactly what MMEngine makes of
//! the Python original (values and types).

use std::path::{Path, PathBuf};

use crate::conformance;
use crate::support::{detc, python, python_stdout};

/// The `configs/` folder inside the installed mmdet wheel.
fn mmdet_configs() -> PathBuf {
    let code = "import sys; sys.path.insert(0, 'tests/mmengine'); from _common import mmdet_configs_dir; print(mmdet_configs_dir())";
    PathBuf::from(python_stdout(&["-c", code]).trim())
}

fn convert(dir: &Path, config: &Path, out: &str) -> snapbox::cmd::OutputAssert {
    detc(dir)
        .arg("convert")
        .arg(config)
        .args(["--out-dir", out, "--python"])
        .arg(python())
        .assert()
}

#[test]
fn queryinst_tree_converts_to_yaml_that_expands_as_mmengine_resolves_the_python() {
    let dir = tempfile::tempdir().unwrap();
    let configs = mmdet_configs();
    let cases = [
        "queryinst/queryinst_r50_fpn_1x_coco",
        "sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco",
        "mask_rcnn/mask-rcnn_r50_fpn_1x_coco",
        // `_base_.optim_wrapper.type = 'AmpOptimWrapper'`: changes its base in place
        "retinanet/retinanet_r50_fpn_amp-1x_coco",
    ];
    for case in cases {
        convert(dir.path(), &configs.join(format!("{case}.py")), "yaml").success();
    }
    let yaml = dir.path().join("yaml");
    for file in [
        "queryinst/queryinst_r50_fpn_1x_coco.yaml",
        "_base_/datasets/coco_instance.yaml",
        "_base_/schedules/schedule_1x.yaml",
        "_base_/default_runtime.yaml",
        "retinanet/retinanet_r50_fpn_1x_coco.yaml",
    ] {
        assert!(yaml.join(file).is_file(), "{file} written");
    }
    let top =
        std::fs::read_to_string(yaml.join("queryinst/queryinst_r50_fpn_1x_coco.yaml")).unwrap();
    assert!(
        top.contains(
            "_base_: [../_base_/datasets/coco_instance.yaml, ../_base_/schedules/schedule_1x.yaml,"
        ) && top.contains("../_base_/default_runtime.yaml]"),
        "the inheritance is kept:\n{top}"
    );
    let amp =
        std::fs::read_to_string(yaml.join("retinanet/retinanet_r50_fpn_amp-1x_coco.yaml")).unwrap();
    assert!(
        amp.ends_with(
            "_base_: ./retinanet_r50_fpn_1x_coco.yaml\noptim_wrapper: {type: AmpOptimWrapper}\n"
        ),
        "{amp}"
    );

    let originals: Vec<(PathBuf, Vec<String>)> = cases
        .iter()
        .map(|c| (configs.join(format!("{c}.py")), vec![]))
        .collect();
    for ((original, _), reference) in originals.iter().zip(conformance::mmengine(&originals)) {
        let relative = original
            .strip_prefix(&configs)
            .unwrap()
            .with_extension("yaml");
        let ours =
            conformance::detc(&yaml.join(&relative), &[]).unwrap_or_else(|(_, e)| panic!("{e}"));
        assert_eq!(reference.get("ok"), Some(&ours), "{}", relative.display());
    }
    // The converted QueryInst config is one detc trains: it checks clean.
    detc(dir.path())
        .args(["check", "yaml/queryinst/queryinst_r50_fpn_1x_coco.yaml"])
        .assert()
        .success();
}

#[test]
fn files_with_other_content_are_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let config = mmdet_configs().join("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py");
    convert(dir.path(), &config, "yaml").success();
    // The same content again: fine.
    convert(dir.path(), &config, "yaml").success();
    let edited = dir.path().join("yaml/_base_/default_runtime.yaml");
    std::fs::write(&edited, "default_scope: mine\n").unwrap();
    let out = convert(dir.path(), &config, "yaml")
        .code(1)
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&out);
    assert!(
        stderr.contains("exist with other content") && stderr.contains("default_runtime.yaml"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&edited).unwrap(),
        "default_scope: mine\n"
    );
    detc(dir.path())
        .arg("convert")
        .arg(&config)
        .args(["--out-dir", "yaml", "--force", "--python"])
        .arg(python())
        .assert()
        .success();
    assert_ne!(
        std::fs::read_to_string(&edited).unwrap(),
        "default_scope: mine\n"
    );
}
