//! `detc data shapes` and `CocoDataset`: generated data loads in pycocotools; datasets parse as MMDetection parses them.
//!
//! References run live from the test-only environment (`scripts/test-env`):
//! `tests/data_ref/check_shapes.py` (pycocotools + OpenCV) and
//! `tests/data_ref/mmdet_records.py` (MMDetection 3.3.0's `CocoDataset`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use detc::data::coco::CocoDataset;
use detc::data::{DataInfo, Segmentation};
use detc::evaluation::mask::Rle;
use serde_json::{json, Value};

use crate::support::{python, root};


/// Runs a reference script with `stdin`; returns its stdout.
fn reference(script: &str, args: &[&Path], stdin: &str) -> String {
    let mut child = Command::new(python())
        .arg(root().join("tests/data_ref").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `detc data shapes OUT ARGS...`: (exit code, stdout, stderr).
fn shapes(out: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_detc"))
        .args(["data", "shapes"])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        o.status.code().unwrap_or(-1),
        text(&o.stdout),
        text(&o.stderr),
    )
}

/// Every file under `dir`, relative path -> bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn shapes_load_in_pycocotools_with_exact_masks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shapes");
    let (code, stdout, stderr) = shapes(&out, &["--train", "40", "--val", "10", "--seed", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("wrote 40 train images"), "{stdout}");
    let report: Value = serde_json::from_str(&reference("check_shapes.py", &[&out], "")).unwrap();
    assert_eq!(
        report["errors"],
        json!([]),
        "pycocotools / OpenCV disagree with the annotations"
    );
    let train = &report["splits"]["train"];
    assert_eq!(train["images"], 40);
    assert_eq!(report["splits"]["val"]["images"], 10);
    for kind in ["polygon", "rle_list", "rle_string"] {
        assert!(
            train["kinds"][kind].as_u64().unwrap() > 0,
            "no {kind} segmentation in {train}"
        );
    }
    assert!(
        train["small"].as_u64().unwrap() > 0 && train["medium"].as_u64().unwrap() > 0,
        "{train}"
    );
}

#[test]
fn shapes_are_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        let (code, _, stderr) = shapes(
            &out,
            &[
                "--train", "24", "--val", "3", "--size", "64", "--seed", seed,
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        files(&out)
    };
    let (a, b, c) = (run("a", "7"), run("b", "7"), run("c", "8"));
    assert_eq!(a.len(), 2 + 24 + 3);
    assert!(a == b, "the same seed wrote different files");
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        c.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        a.iter().zip(&c).all(|(x, y)| x.1 != y.1),
        "another seed should change every file"
    );
}

#[test]
fn shapes_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = shapes(&dir.path().join("x"), &["--size", "8"]);
    assert_eq!(code, 2, "{stderr}");
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let (code, _, stderr) = shapes(&file, &[]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("cannot create folder") && stderr.contains("file"),
        "{stderr}"
    );
}

// --------------------------------------------------------------------------
// CocoDataset against MMDetection

/// A hand-made annotation file with the cases `parse_data_info` and `filter_data` treat specially.
fn hand_made(dir: &Path) {
    let rle = Rle::from_bbox([2.0, 3.0, 10.0, 6.0], 40, 60);
    let ann = json!({
        "images": [
            {"id": 10, "file_name": "a.jpg", "height": 40, "width": 60},
            {"id": 2, "file_name": "b.jpg", "height": 30, "width": 30},
            {"id": 33, "file_name": "sub/c.jpg", "height": 20, "width": 100},
            {"id": 4, "file_name": "d.jpg", "height": 50, "width": 50},
            {"id": 5, "file_name": "e.jpg", "height": 64, "width": 64},
        ],
        "categories": [
            {"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 7, "name": "fox"}, {"id": 2, "name": "owl"},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [1.5, 2.25, 10, 8.5], "area": 40.5, "iscrowd": 0,
             "segmentation": [[1.5, 2.25, 11.5, 2.25, 11.5, 10.75], [3, 3, 4, 3, 4, 4, 3, 4]]},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 6], "area": 60, "iscrowd": 0,
             "segmentation": {"size": [40, 60], "counts": rle.to_compressed()}},
            {"id": 3, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 6], "area": 60, "iscrowd": 1,
             "segmentation": {"size": [40, 60], "counts": rle.counts}},
            {"id": 4, "image_id": 10, "category_id": 3, "bbox": [5, 5, 0.5, 8], "area": 4},
            {"id": 5, "image_id": 10, "category_id": 3, "bbox": [5, 5, 8, 8], "area": 0},
            {"id": 6, "image_id": 10, "category_id": 3, "bbox": [70, 5, 8, 8], "area": 64},
            {"id": 7, "image_id": 10, "category_id": 7, "bbox": [-5, -2, 10, 6], "area": 60, "segmentation": []},
            {"id": 8, "image_id": 10, "category_id": 3, "bbox": [5, 5, 8, 8], "area": 64, "ignore": true},
            {"id": 9, "image_id": 10, "category_id": 2, "bbox": [5, 5, 8, 8], "area": 64, "iscrowd": 0},
            {"id": 10, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 11, "image_id": 33, "category_id": 7, "bbox": [1, 1, 50, 5], "area": 250, "iscrowd": 0},
            {"id": 12, "image_id": 5, "category_id": 3, "bbox": [0, 0, 64, 64], "area": 4096, "iscrowd": 1},
            {"id": 13, "image_id": 5, "category_id": 7, "bbox": [3, 3, 0.5, 0.5], "area": 0.25, "iscrowd": 0},
            {"id": 14, "image_id": 99, "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
            {"id": 15, "image_id": 10, "category_id": 1, "bbox": [0, 0, 60, 40], "area": 2400, "iscrowd": 0,
             "segmentation": [[0, 0, 60, 0, 60, 40, 0, 40]]},
        ]
    });
    std::fs::create_dir_all(dir.join("img/sub")).unwrap();
    std::fs::write(dir.join("ann.json"), ann.to_string()).unwrap();
    for f in ["a.jpg", "b.jpg", "sub/c.jpg", "d.jpg", "e.jpg"] {
        std::fs::write(dir.join("img").join(f), b"").unwrap();
    }
    std::fs::write(dir.join("classes.txt"), "owl\ncat\n").unwrap();
}

/// A record as the reference prints it.
fn as_json(r: &DataInfo) -> Value {
    let instances: Vec<Value> = r
        .instances
        .iter()
        .map(|i| {
            let mask = match &i.mask {
                None => Value::Null,
                Some(Segmentation::Polygons(p)) => json!({ "polygons": p }),
                Some(Segmentation::Rle(rle)) => json!({ "rle": rle.to_compressed() }),
            };
            json!({"bbox": i.bbox, "bbox_label": i.bbox_label, "ignore_flag": u8::from(i.ignore_flag), "mask": mask})
        })
        .collect();
    json!({"img_id": r.img_id, "height": r.height, "width": r.width, "instances": instances})
}

/// The reference's record with numbers as detc keeps them (boxes f32, polygons f64).
fn normalise(mut r: Value) -> Value {
    for inst in r["instances"].as_array_mut().unwrap() {
        let bbox: Vec<f32> = inst["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        inst["bbox"] = json!(bbox);
        if let Some(polys) = inst["mask"].get_mut("polygons") {
            let p: Vec<Vec<f64>> = polys
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect()
                })
                .collect();
            *polys = json!(p);
        }
    }
    r.as_object_mut().unwrap().remove("img_path");
    r
}

#[test]
fn coco_dataset_matches_mmdetection() {
    let tmp = tempfile::tempdir().unwrap();
    let hand = tmp.path().join("hand");
    hand_made(&hand);
    let out = tmp.path().join("shapes");
    assert_eq!(
        shapes(&out, &["--train", "20", "--val", "6", "--seed", "3"]).0,
        0
    );

    let base = json!({"type": "CocoDataset", "data_root": hand, "ann_file": "ann.json", "data_prefix": {"img": "img/"}});
    let with = |extra: Value| {
        let mut cfg = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        cfg
    };
    let subset = json!({"classes": ["fox", "cat"]});
    let filter = json!({"filter_empty_gt": true, "min_size": 32});
    let mut cases: Vec<(Value, &Path)> = vec![
        (with(json!({})), &hand),
        (with(json!({"metainfo": subset})), &hand),
        (
            with(json!({"metainfo": subset, "filter_cfg": filter})),
            &hand,
        ),
        (
            with(json!({"metainfo": subset, "filter_cfg": filter, "test_mode": true})),
            &hand,
        ),
        (
            with(json!({"filter_cfg": {"filter_empty_gt": true}})),
            &hand,
        ),
        (
            with(
                json!({"metainfo": {"classes": ["dog"]}, "filter_cfg": {"filter_empty_gt": true}}),
            ),
            &hand,
        ),
        (with(json!({"metainfo": {"classes": "classes.txt"}})), &hand),
        (with(json!({"indices": [3, 0, 1]})), &hand),
        (with(json!({"indices": 2, "filter_cfg": filter})), &hand),
        (
            json!({"data_root": "hand", "ann_file": "ann.json", "data_prefix": {"img": "img"}}),
            tmp.path(),
        ),
        (
            json!({"ann_file": "hand/ann.json", "data_prefix": {"img": "hand/img/"}}),
            tmp.path(),
        ),
    ];
    let shapes_cfg = |split: &str, extra: Value| {
        let mut cfg = json!({"data_root": out, "ann_file": format!("annotations/instances_{split}.json"),
                             "data_prefix": {"img": format!("{split}/")}});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        cfg
    };
    cases.push((
        shapes_cfg("train", json!({"filter_cfg": filter})),
        tmp.path(),
    ));
    cases.push((
        shapes_cfg(
            "val",
            json!({"test_mode": true, "metainfo": {"classes": ["triangle", "rectangle"]}}),
        ),
        tmp.path(),
    ));

    let requests: String = cases
        .iter()
        .map(|(cfg, cwd)| json!({"cfg": cfg, "cwd": cwd}).to_string() + "\n")
        .collect();
    let answers: Vec<Value> = reference("mmdet_records.py", &[], &requests)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), cases.len());
    let mut compared = (0, 0, 0); // instances, crowd, masks
    for ((cfg, cwd), expected) in cases.iter().zip(answers) {
        assert!(
            expected.get("error").is_none(),
            "MMDetection fails on {cfg}: {}",
            expected["error"]
        );
        let ds = CocoDataset::from_config(cfg, cwd).unwrap_or_else(|e| panic!("{cfg}: {e}"));
        let classes: Vec<String> = match &expected["classes"] {
            Value::String(s) => vec![s.clone()],
            v => serde_json::from_value(v.clone()).unwrap(),
        };
        assert_eq!(ds.classes(), classes, "{cfg}");
        assert_eq!(json!(ds.cat_ids()), expected["cat_ids"], "{cfg}");
        let records = expected["records"].as_array().unwrap();
        assert_eq!(
            ds.len(),
            records.len(),
            "{cfg}: {:?} vs {records:?}",
            ds.img_ids()
        );
        for (i, r) in records.iter().enumerate() {
            let ours = ds.get(i);
            assert_eq!(
                ours.img_path,
                cwd.join(r["img_path"].as_str().unwrap()),
                "{cfg}"
            );
            assert_eq!(as_json(&ours), normalise(r.clone()), "{cfg}: record {i}");
            compared.0 += ours.instances.len();
            compared.1 += ours.instances.iter().filter(|i| i.ignore_flag).count();
            compared.2 += ours.instances.iter().filter(|i| i.mask.is_some()).count();
        }
    }
    assert!(
        compared.0 > 100 && compared.1 >= 5 && compared.2 > 50,
        "too little compared: {compared:?}"
    );
}

#[test]
fn coco_dataset_errors_name_file_annotation_and_image() {
    let tmp = tempfile::tempdir().unwrap();
    hand_made(tmp.path());
    let ann_file = tmp.path().join("ann.json");
    let mut ann: Value =
        serde_json::from_str(&std::fs::read_to_string(&ann_file).unwrap()).unwrap();
    ann["annotations"][9]["category_id"] = json!(42);
    std::fs::write(&ann_file, ann.to_string()).unwrap();
    let cfg =
        json!({"data_root": tmp.path(), "ann_file": "ann.json", "data_prefix": {"img": "img/"}});
    let err = CocoDataset::from_config(&cfg, tmp.path())
        .unwrap_err()
        .to_string();
    for part in [
        ann_file.to_str().unwrap(),
        "annotation 10 of image 2 (`b.jpg`)",
        "category_id 42",
        "skip_invalid_samples",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }

    std::fs::remove_file(tmp.path().join("img/d.jpg")).unwrap();
    let mut skip = cfg.clone();
    skip["skip_invalid_samples"] = json!(true);
    let ds = CocoDataset::from_config(&skip, tmp.path()).unwrap();
    assert_eq!(ds.img_ids(), [10, 33, 5]);
    let warnings = ds.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("skipped 2 of 5 images"),
        "{warnings:?}"
    );
    // Annotation 6 lies right of its 60 px wide image: dropped, as MMDetection drops it, and said.
    assert!(
        warnings[1].starts_with("1 annotations of")
            && warnings[1].contains("(the first: annotation 6 of image 10 (`a.jpg`))"),
        "{warnings:?}"
    );

    ann["annotations"][9]["category_id"] = json!(1);
    std::fs::write(&ann_file, ann.to_string()).unwrap();
    let err = CocoDataset::from_config(&cfg, tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("image 4 (`d.jpg`)")
            && err.contains("does not exist")
            && err.contains("data_prefix.img"),
        "{err}"
    );
}

/// The demo config's datasets read what `detc data shapes data/shapes` writes.
#[test]
fn demo_config_datasets_load_the_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        shapes(
            &tmp.path().join("data/shapes"),
            &["--train", "12", "--val", "4"]
        )
        .0,
        0
    );
    let config = root().join("configs/demo/queryinst_r18_shapes.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_detc"))
        .args(["expand", "--format", "json"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (loader, images) in [
        ("train_dataloader", 12),
        ("val_dataloader", 4),
        ("test_dataloader", 4),
    ] {
        let ds = CocoDataset::from_config(&resolved[loader]["dataset"], tmp.path())
            .unwrap_or_else(|e| panic!("{loader}: {e}"));
        assert_eq!(ds.len(), images, "{loader}");
        assert_eq!(ds.classes(), ["rectangle", "ellipse", "triangle", "cross"]);
        assert_eq!(ds.cat_ids(), [1, 2, 3, 4]);
        assert!(ds.warnings().is_empty(), "{:?}", ds.warnings());
    }
}

/// `RepeatDataset`, `ClassBalancedDataset` and `ConcatDataset`, nested too,
/// give the records MMEngine's wrappers give, index by index (MMDetection's
/// registry builds them in `tests/data_ref/mmdet_wrappers.py`); a dropped
/// sample is re-drawn inside the dataset it falls in; datasets of other
/// classes are refused.
#[test]
fn dataset_wrappers_match_mmengine() {
    use detc::data::dataset::Dataset;
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(shapes(&tmp.path().join("shapes"), &["--train", "24", "--val", "6"]).0, 0);
    hand_made(&tmp.path().join("hand"));
    let shape_classes = json!(["rectangle", "ellipse", "triangle", "cross"]);
    let shapes_cfg = |split: &str| {
        json!({"type": "CocoDataset", "data_root": "shapes", "ann_file": format!("annotations/instances_{split}.json"),
               "data_prefix": {"img": format!("{split}/")}, "metainfo": {"classes": shape_classes}, "pipeline": []})
    };
    let hand = json!({"type": "CocoDataset", "data_root": "hand", "ann_file": "ann.json", "data_prefix": {"img": "img/"},
                      "metainfo": {"classes": ["cat", "dog", "fox", "owl"]}, "filter_cfg": {"filter_empty_gt": true},
                      "pipeline": []});
    let cases = [
        json!({"type": "RepeatDataset", "times": 3, "dataset": hand}),
        // Rare classes (owl, dog: one image of four) are repeated, cat and fox are not.
        json!({"type": "ClassBalancedDataset", "oversample_thr": 0.6, "dataset": hand}),
        json!({"type": "ClassBalancedDataset", "oversample_thr": 0.9, "dataset": shapes_cfg("train")}),
        json!({"type": "ConcatDataset", "datasets": [shapes_cfg("train"), shapes_cfg("val")]}),
        json!({"type": "RepeatDataset", "times": 2, "dataset":
               {"type": "ConcatDataset", "datasets": [shapes_cfg("val"),
                {"type": "ClassBalancedDataset", "oversample_thr": 0.9, "dataset": shapes_cfg("train")}]}}),
    ];
    let requests: String = cases.iter().map(|cfg| json!({"cfg": cfg, "cwd": tmp.path()}).to_string() + "\n").collect();
    let answers: Vec<Value> =
        reference("mmdet_wrappers.py", &[], &requests).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut repeated = 0;
    for (cfg, expected) in cases.iter().zip(&answers) {
        assert!(expected.get("error").is_none(), "MMEngine fails on {cfg}: {}", expected["error"]);
        let ds = Dataset::from_config(cfg, tmp.path(), "train_dataloader.dataset").unwrap_or_else(|e| panic!("{e}"));
        let samples: Vec<Value> = (0..ds.len())
            .map(|i| {
                let r = ds.get(i);
                json!([r.img_path.strip_prefix(tmp.path()).unwrap(), r.img_id])
            })
            .collect();
        assert_eq!(ds.len() as u64, expected["len"].as_u64().unwrap(), "{cfg}");
        assert_eq!(json!(samples), expected["samples"], "{cfg}");
        let distinct: std::collections::HashSet<String> = samples.iter().map(Value::to_string).collect();
        repeated += samples.len() - distinct.len();
        // A re-drawn sample stays in the dataset (leaf) of the one it replaces.
        let mut rng = detc::data::sample_rng(3, 0, 0);
        for i in 0..ds.len() {
            let j = ds.redraw(i, &mut rng);
            assert_eq!(ds.locate(j).0, ds.locate(i).0, "{cfg}: redraw of {i} gave {j}");
        }
    }
    // The balanced cases did repeat images, and not all of them.
    assert!(repeated > 3 * 4, "{repeated}");
    assert!(answers[1]["len"].as_u64().unwrap() > 4 && answers[2]["len"].as_u64().unwrap() < 3 * 24, "{answers:?}");

    let mixed = json!({"type": "ConcatDataset", "datasets": [shapes_cfg("val"), hand]});
    let err = Dataset::from_config(&mixed, tmp.path(), "train_dataloader.dataset").err().unwrap().message;
    assert!(
        err.starts_with("train_dataloader.dataset.datasets.1: its classes [\"cat\", \"dog\", \"fox\", \"owl\"] differ from train_dataloader.dataset.datasets.0's"),
        "{err}"
    );
}
