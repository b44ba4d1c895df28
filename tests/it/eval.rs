//! COCO evaluation against pycocotools: the mask API on random masks, polygons
//! and boxes (`tests/coco/mask_cases.py`), and `detc eval` on generated cases
//! (`tests/coco/make_eval_cases.py`), every number within 1e-6.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use detc::data::{Instance, Segmentation};
use detc::evaluation::mask::{self, Rle};
use detc::evaluation::metric::{CocoMetric, ImageGt, ImagePrediction};
use detc::registry::data::CocoMetricConfig;

use crate::support::{python, root};


/// Runs a script of `tests/coco` with `args` and returns its stdout.
fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("tests/coco").join(script))
        .args(args)
        .output()
        .expect("python starts");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-12,
            "{what}[{i}]: detc {x} vs pycocotools {y}"
        );
    }
}

#[test]
fn mask_api_matches_pycocotools() {
    let cases: Value = serde_json::from_str(&run_python("mask_cases.py", &[])).unwrap();
    for (n, case) in cases.as_array().unwrap().iter().enumerate() {
        let (h, w) = (
            case["height"].as_u64().unwrap() as u32,
            case["width"].as_u64().unwrap() as u32,
        );
        let mut rles: Vec<Rle> = Vec::new();
        for m in case["masks"].as_array().unwrap() {
            let bytes: Vec<u8> = m
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            let rle = Rle::from_row_major(&bytes, h, w);
            assert_eq!(rle.to_row_major(), bytes, "case {n}: decode(encode(mask))");
            rles.push(rle);
        }
        for p in case["polygons"].as_array().unwrap() {
            let polys: Vec<Vec<f64>> = p.as_array().unwrap().iter().map(f64s).collect();
            rles.push(Rle::from_polygons(&polys, h, w));
        }
        let boxes: Vec<[f64; 4]> = case["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f64s(b).try_into().unwrap())
            .collect();
        rles.extend(boxes.iter().map(|b| Rle::from_bbox(*b, h, w)));

        let strings: Vec<String> = rles.iter().map(Rle::to_compressed).collect();
        let expected: Vec<&str> = case["strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(strings, expected, "case {n}: compressed strings");
        for (s, r) in strings.iter().zip(&rles) {
            assert_eq!(
                &Rle::from_compressed(s, h, w).unwrap(),
                r,
                "case {n}: from_compressed"
            );
        }
        let areas: Vec<u64> = case["areas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_u64().unwrap())
            .collect();
        assert_eq!(
            rles.iter().map(Rle::area).collect::<Vec<_>>(),
            areas,
            "case {n}: areas"
        );
        let bboxes: Vec<[f64; 4]> = rles.iter().map(Rle::to_bbox).collect();
        let expected_boxes: Vec<[f64; 4]> = case["bboxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f64s(b).try_into().unwrap())
            .collect();
        assert_eq!(bboxes, expected_boxes, "case {n}: boxes");
        assert_eq!(
            Rle::merge(&rles, false).to_compressed(),
            case["union"].as_str().unwrap(),
            "case {n}: union"
        );
        assert_eq!(
            Rle::merge(&rles[..3.min(rles.len())], true).to_compressed(),
            case["intersection"].as_str().unwrap()
        );

        let crowd: Vec<bool> = case["iscrowd"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64() == Some(1))
            .collect();
        close(
            &mask::iou(&rles, &rles, &crowd),
            &f64s(&case["iou"]),
            &format!("case {n}: iou"),
        );
        let mut all_boxes = boxes.clone();
        all_boxes.extend(bboxes);
        let alt: Vec<bool> = (0..all_boxes.len()).map(|i| i % 2 == 1).collect();
        close(
            &mask::bbox_iou(&all_boxes, &all_boxes, &alt),
            &f64s(&case["bbox_iou"]),
            &format!("case {n}: bbox_iou"),
        );
    }
}

/// `detc eval` with `args`: (exit code, stdout, stderr).
fn detc_eval(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_detc"))
        .arg("eval")
        .args(args)
        .output()
        .expect("detc starts");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn detc_eval_matches_pycocotools_on_generated_cases() {
    let dir = tempfile::tempdir().unwrap();
    run_python("make_eval_cases.py", &[dir.path().to_str().unwrap()]);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "expected at least 30 cases, got {}",
        cases.len()
    );
    let names = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
                .unwrap();
        let metrics: Vec<&str> = expected["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let (gt, dt) = (case.join("gt.json"), case.join("dt.json"));
        let mut args = vec![
            "--ann",
            gt.to_str().unwrap(),
            "--results",
            dt.to_str().unwrap(),
            "--metric",
        ];
        args.extend(&metrics);
        let (code, stdout, stderr) = detc_eval(&[&args[..], &["--format", "json"]].concat());
        assert_eq!(code, 0, "{name}: {stderr}");
        let got: Value = serde_json::from_str(&stdout).unwrap();
        for m in &metrics {
            let want = f64s(&expected["stats"][m]);
            let keys: Vec<&String> = got[m].as_object().unwrap().keys().collect();
            assert_eq!(keys, names, "{name}: {m}: keys and their order");
            for (k, w) in names.iter().zip(&want) {
                let g = got[m][k].as_f64().unwrap();
                assert!(
                    (g - w).abs() <= 1e-6,
                    "{name}: {m} {k}: detc {g} vs pycocotools {w}"
                );
            }
        }
        // the text summary is pycocotools' own lines
        let (code, stdout, _) = detc_eval(&args);
        assert_eq!(code, 0);
        let want: Vec<&str> = expected["text"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            want,
            "{name}: text summary"
        );
    }
}

/// Writes `files` into a temp dir and runs `detc eval --ann gt.json --results dt.json`.
fn eval_files(gt: &str, dt: &str, extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gt.json"), gt).unwrap();
    std::fs::write(dir.path().join("dt.json"), dt).unwrap();
    let (g, d) = (dir.path().join("gt.json"), dir.path().join("dt.json"));
    detc_eval(
        &[
            &[
                "--ann",
                g.to_str().unwrap(),
                "--results",
                d.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat(),
    )
}

const GT: &str = r#"{"images": [{"id": 1, "width": 20, "height": 20}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64, "iscrowd": 0,
                     "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]]}],
    "categories": [{"id": 1, "name": "a"}]}"#;

#[test]
fn detc_eval_refuses_bad_input_with_exit_1() {
    // a result for an image the ground truth does not have
    let (code, _, err) = eval_files(
        GT,
        r#"[{"image_id": 7, "category_id": 1, "score": 0.9, "bbox": [2, 2, 8, 8]}]"#,
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("dt.json") && err.contains("image_id 7 is not in the ground truth"),
        "{err}"
    );
    // malformed JSON
    let (code, _, err) = eval_files(GT, "[{", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("dt.json") && err.contains("not a COCO results file"),
        "{err}"
    );
    let (code, _, err) = eval_files("{\"images\": 3}", "[]", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("gt.json") && err.contains("not a COCO annotation file"),
        "{err}"
    );
    // a missing file
    let (code, _, err) = detc_eval(&[
        "--ann",
        "/nonexistent/gt.json",
        "--results",
        "/nonexistent/dt.json",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/gt.json: cannot read"), "{err}");
    // no detections at all
    let (code, _, err) = eval_files(GT, "[]", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("holds no detections"), "{err}");
}

#[test]
fn detc_eval_usage_errors_exit_2() {
    let dt = r#"[{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [2, 2, 8, 8]}]"#;
    assert_eq!(eval_files(GT, dt, &["--metric", "keypoints"]).0, 2);
    assert_eq!(eval_files(GT, dt, &["--format", "yaml"]).0, 2);
    assert_eq!(detc_eval(&["--ann", "gt.json"]).0, 2);
    // and the good case: a perfect detection
    let (code, out, err) = eval_files(GT, dt, &["--metric", "bbox", "segm", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // pycocotools' precision is tp / (tp + fp + eps): 1 - 2.2e-16 here
    assert!((v["bbox"]["AP"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert!((v["segm"]["AP50"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(v["bbox"]["APl"], -1.0);
}

/// Per-image predictions (from a case's results file) and ground truth for `CocoMetric`.
struct MetricInput {
    classes: Vec<String>,
    preds: Vec<ImagePrediction>,
    gts: Vec<ImageGt>,
}

fn f32x4(v: &Value) -> [f32; 4] {
    let b = f64s(v);
    [
        b[0] as f32,
        b[1] as f32,
        (b[0] + b[2]) as f32,
        (b[1] + b[3]) as f32,
    ]
}

fn metric_input(case: &Path) -> MetricInput {
    let gt: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("gt.json")).unwrap()).unwrap();
    let dt: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("dt.json")).unwrap()).unwrap();
    let cats: Vec<i64> = gt["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let classes = gt["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let label = |v: &Value| cats.iter().position(|c| Some(*c) == v.as_i64()).unwrap();
    let (mut preds, mut gts) = (Vec::new(), Vec::new());
    for img in gt["images"].as_array().unwrap() {
        let id = img["id"].as_i64().unwrap();
        let (h, w) = (
            img["height"].as_u64().unwrap() as u32,
            img["width"].as_u64().unwrap() as u32,
        );
        let mut p = ImagePrediction {
            img_id: id,
            ..Default::default()
        };
        let mut masks = Vec::new();
        for d in dt
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["image_id"] == img["id"])
        {
            p.bboxes.push(f32x4(&d["bbox"]));
            p.scores.push(d["score"].as_f64().unwrap() as f32);
            p.labels.push(label(&d["category_id"]));
            if let Some(s) = d["segmentation"]["counts"].as_str() {
                masks.push(Rle::from_compressed(s, h, w).unwrap());
            }
        }
        if !masks.is_empty() || dt[0].get("segmentation").is_some() {
            p.masks = Some(masks);
        }
        preds.push(p);
        let instances = gt["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["image_id"] == img["id"])
            .map(|a| {
                let s = &a["segmentation"];
                let mask = if let Some(polys) = s.as_array() {
                    Segmentation::Polygons(polys.iter().map(f64s).collect())
                } else if let Some(c) = s["counts"].as_str() {
                    Segmentation::Rle(Rle::from_compressed(c, h, w).unwrap())
                } else {
                    let runs = s["counts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_u64().unwrap() as u32)
                        .collect();
                    Segmentation::Rle(Rle {
                        height: h,
                        width: w,
                        counts: runs,
                    })
                };
                Instance {
                    bbox: f32x4(&a["bbox"]),
                    bbox_label: label(&a["category_id"]) as i64,
                    ignore_flag: a["iscrowd"].as_u64() == Some(1),
                    mask: Some(mask),
                }
            })
            .collect();
        gts.push(ImageGt {
            img_id: id,
            width: w,
            height: h,
            instances,
        });
    }
    MetricInput {
        classes,
        preds,
        gts,
    }
}

/// The same input as MMDetection's `compute_metrics` receives it.
fn metric_input_json(input: &MetricInput, cfg: &Value, with_gt: bool) -> Value {
    let preds: Vec<Value> = input
        .preds
        .iter()
        .map(|p| {
            let mut v = json!({"img_id": p.img_id, "bboxes": p.bboxes, "scores": p.scores, "labels": p.labels});
            if let Some(m) = &p.masks {
                v["masks"] = m.iter().map(|r| json!({"size": [r.height, r.width], "counts": r.to_compressed()})).collect();
            }
            v
        })
        .collect();
    let gts: Vec<Value> = input
        .gts
        .iter()
        .map(|g| {
            let mut v = json!({"img_id": g.img_id, "width": g.width, "height": g.height});
            if with_gt {
                let anns: Vec<Value> = g
                    .instances
                    .iter()
                    .map(|i| {
                        let mask = match &i.mask {
                            Some(Segmentation::Polygons(p)) => json!(p),
                            Some(Segmentation::Rle(r)) => json!({"size": [r.height, r.width], "counts": r.to_compressed()}),
                            None => Value::Null,
                        };
                        json!({"bbox": i.bbox, "bbox_label": i.bbox_label, "ignore_flag": i.ignore_flag as u8, "mask": mask})
                    })
                    .collect();
                v["anns"] = json!(anns);
            }
            v
        })
        .collect();
    json!({"cfg": cfg, "classes": input.classes, "preds": preds, "gts": gts})
}

#[test]
fn coco_metric_matches_mmdetection() {
    let dir = tempfile::tempdir().unwrap();
    run_python(
        "make_eval_cases.py",
        &[
            dir.path().to_str().unwrap(),
            "segm_mixed,bbox_many_dets,mixed_04",
        ],
    );
    let mut runs: Vec<(Value, MetricInput, bool)> = Vec::new();
    for (case, cfg) in [
        (
            "segm_mixed",
            json!({"metric": ["bbox", "segm", "proposal"], "classwise": true}),
        ),
        ("segm_mixed", json!({"metric": ["segm", "bbox"]})),
        (
            "bbox_many_dets",
            json!({"metric": "bbox", "proposal_nums": [1, 10, 100], "iou_thrs": [0.5, 0.75, 0.9],
                   "metric_items": ["mAP", "mAP_50", "mAP_75", "AR@100", "AR_s@1000"]}),
        ),
        (
            "mixed_04",
            json!({"metric": ["bbox", "segm"], "classwise": true, "prefix": "val"}),
        ),
        // MMDetection's fast proposal recall, and the COCOeval one beside it.
        ("segm_mixed", json!({"metric": ["proposal_fast", "proposal"]})),
        ("bbox_many_dets", json!({"metric": "proposal_fast", "proposal_nums": [1, 10, 100], "iou_thrs": [0.5, 0.75]})),
        ("mixed_04", json!({"metric": "proposal_fast", "proposal_nums": [3, 20]})),
    ] {
        let with_gt = cfg.get("metric") == Some(&json!(["segm", "bbox"]));
        let mut cfg = cfg;
        if !with_gt {
            cfg["ann_file"] = json!(dir.path().join(case).join("gt.json"));
        }
        runs.push((cfg, metric_input(&dir.path().join(case)), with_gt));
    }
    let spec: Vec<Value> = runs
        .iter()
        .map(|(cfg, input, with_gt)| metric_input_json(input, cfg, *with_gt))
        .collect();
    let mut child = Command::new(python())
        .arg(root().join("tests/coco/mmdet_metric.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({"runs": spec}).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mmdet_metric.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Vec<(String, Option<f64>)>> = serde_json::from_slice(&out.stdout).unwrap();
    for ((cfg, input, _), want) in runs.into_iter().zip(expected) {
        let config: CocoMetricConfig = serde_json::from_value(cfg.clone()).unwrap();
        let mut metric = CocoMetric::new(&config, &input.classes).unwrap();
        metric.process(input.preds, input.gts);
        let got = metric.compute().unwrap();
        let prefix = format!(
            "{}/",
            cfg.get("prefix").and_then(Value::as_str).unwrap_or("coco")
        );
        let got: Vec<(String, f64)> = got
            .values
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&prefix).unwrap().to_string(), v))
            .collect();
        let keys: Vec<&String> = got.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            want.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "{cfg}: keys"
        );
        for ((k, g), (_, w)) in got.iter().zip(&want) {
            match w {
                Some(w) => assert!((g - w).abs() < 1e-9, "{cfg}: {k}: detc {g} vs mmdet {w}"),
                None => assert!(g.is_nan(), "{cfg}: {k}: detc {g} vs mmdet nan"),
            }
        }
    }
}
