//! Transforms against OpenCV/NumPy (and MMDetection's own transforms) on the same inputs.
//!
//! `tests/pipeline/reference.py` writes JPEG files with `cv2.imwrite`, and
//! for them: `cv2.imread` pixels, `cv2.resize` results (bilinear and nearest,
//! the 1333x800 keep-ratio size, down- and upscales) and the outputs of
//! MMDetection 3.3.0's `LoadImageFromFile → LoadAnnotations → Resize →
//! RandomFlip(prob=1) → Pad → PackDetInputs` on records with polygons, RLE,
//! crowd and broken masks. detc runs the same records through
//! `detc::data::transforms::Pipeline` and must agree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use detc::data::image::{read_image, resize_linear, resize_nearest, ColorMode};
use detc::data::transforms::Pipeline;
use detc::data::{sample_rng, DataInfo, Flip, Image, Instance, Masks, PackedInstances, Sample, Segmentation};
use detc::evaluation::mask::Rle;
use serde_json::Value;

use crate::support::root;

/// The reference folder, written once per test run.
fn reference() -> &'static (PathBuf, Value) {
    static REF: OnceLock<(PathBuf, Value)> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pipeline-reference");
        let _ = std::fs::remove_dir_all(&dir);
        let out = std::process::Command::new(crate::support::python())
            .arg(root().join("tests/pipeline/reference.py"))
            .arg(&dir)
            .output()
            .expect("python starts");
        assert!(out.status.success(), "reference.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        (dir, manifest)
    })
}

/// A NumPy `.npy` array (C order): dtype descriptor, shape and raw bytes.
struct Npy {
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn npy(dir: &Path, file: &Value) -> Npy {
    let bytes = std::fs::read(dir.join(file.as_str().unwrap())).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let field = |key: &str| {
        let at = header.find(key).unwrap() + key.len();
        header[at..].trim_start_matches([':', ' ', '\'']).to_string()
    };
    let descr = field("'descr'").split('\'').next().unwrap().to_string();
    let shape_text = field("'shape'");
    let shape = shape_text[1..shape_text.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    Npy { descr, shape, data: bytes[start + header_len..].to_vec() }
}

impl Npy {
    fn image(&self) -> Image {
        assert_eq!(self.descr, "|u1");
        let channels = self.shape.get(2).copied().unwrap_or(1);
        Image { data: self.data.clone(), height: self.shape[0], width: self.shape[1], channels }
    }

    fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.descr, "<f4");
        self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    fn i64s(&self) -> Vec<i64> {
        assert_eq!(self.descr, "<i8");
        self.data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }
}

/// Mean and max absolute difference of two images of one shape.
fn diff(a: &Image, b: &Image) -> (f64, u8) {
    assert_eq!((a.height, a.width, a.channels), (b.height, b.width, b.channels), "shapes differ");
    let (mut sum, mut max) = (0u64, 0u8);
    for (x, y) in a.data.iter().zip(&b.data) {
        let d = x.abs_diff(*y);
        sum += d as u64;
        max = max.max(d);
    }
    (sum as f64 / a.data.len().max(1) as f64, max)
}

#[test]
fn decoding_matches_cv2_imread() {
    let (dir, manifest) = reference();
    for image in manifest["images"].as_array().unwrap() {
        let ours = read_image(&dir.join(image["file"].as_str().unwrap()), ColorMode::Color).unwrap();
        let cv2 = npy(dir, &image["decoded"]).image();
        assert_eq!((ours.height, ours.width, ours.channels), (cv2.height, cv2.width, cv2.channels), "{image}");
        assert!(
            ours.data == cv2.data,
            "{}: pixels differ from cv2.imread (max {})",
            image["name"],
            diff(&ours, &cv2).1
        );
    }
}

#[test]
fn resizing_matches_cv2_resize() {
    let (dir, manifest) = reference();
    let mut report = Vec::new();
    for r in manifest["resizes"].as_array().unwrap() {
        let src = read_image(&dir.join(format!("{}.jpg", r["image"].as_str().unwrap())), ColorMode::Color).unwrap();
        let (w, h) = (r["width"].as_u64().unwrap() as usize, r["height"].as_u64().unwrap() as usize);
        let cv2 = npy(dir, &r["file"]).image();
        let ours = match r["interpolation"].as_str().unwrap() {
            "linear" => resize_linear(&src, w, h),
            _ => resize_nearest(&src, w, h),
        };
        let (mean, max) = diff(&ours, &cv2);
        report.push(format!(
            "{} {}x{}->{w}x{h} {}: mean {mean:.4} max {max}",
            r["image"], src.width, src.height, r["interpolation"]
        ));
        // The bar is a mean within 1 grey level; detc reproduces OpenCV's fixed-point arithmetic exactly.
        assert!(mean <= 1.0, "{}", report.last().unwrap());
        assert_eq!(max, 0, "{}", report.last().unwrap());
    }
    eprintln!("{}", report.join("\n"));
}

/// A dataset record from the reference's `data_info`.
fn data_info(v: &Value) -> DataInfo {
    let instances = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let b: Vec<f32> = i["bbox"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let mask = match &i["mask"] {
                Value::Array(polys) => Segmentation::Polygons(
                    polys.iter().map(|p| p.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect(),
                ),
                rle => Segmentation::Rle(Rle {
                    height: rle["size"][0].as_u64().unwrap() as u32,
                    width: rle["size"][1].as_u64().unwrap() as u32,
                    counts: rle["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as u32).collect(),
                }),
            };
            Instance {
                bbox: [b[0], b[1], b[2], b[3]],
                bbox_label: i["bbox_label"].as_i64().unwrap(),
                ignore_flag: i["ignore_flag"].as_i64().unwrap() != 0,
                mask: Some(mask),
            }
        })
        .collect();
    DataInfo {
        img_id: v["img_id"].as_u64().unwrap(),
        img_path: PathBuf::from(v["img_path"].as_str().unwrap()),
        height: v["height"].as_u64().unwrap() as u32,
        width: v["width"].as_u64().unwrap() as u32,
        instances,
    }
}

fn shape(v: &Value) -> (usize, usize) {
    (v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize)
}

/// Our packed instances against MMDetection's.
fn check_instances(dir: &Path, what: &str, ours: &PackedInstances, theirs: &Value) {
    let boxes = npy(dir, &theirs["bboxes"]).f32s();
    let flat: Vec<f32> = ours.bboxes.iter().flatten().copied().collect();
    assert_eq!(flat.len(), boxes.len(), "{what}: box count");
    for (a, b) in flat.iter().zip(&boxes) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{what}: boxes {flat:?} vs {boxes:?}");
    }
    assert_eq!(ours.labels, npy(dir, &theirs["labels"]).i64s(), "{what}: labels");
    let (mh, mw) = shape(&theirs["mask_shape"]);
    match ours.masks.as_ref().expect("masks") {
        Masks::Bitmap { data, count, height, width } => {
            let m = npy(dir, &theirs["masks"]);
            assert_eq!((*height, *width), (mh, mw), "{what}: mask shape");
            assert_eq!(*count, m.shape[0], "{what}: mask count");
            let differing = data.iter().zip(&m.data).filter(|(a, b)| a != b).count();
            assert_eq!(differing, 0, "{what}: {differing} mask pixels differ");
        }
        Masks::Polygons { polygons, height, width } => {
            assert_eq!((*height, *width), (mh, mw), "{what}: mask shape");
            let theirs: Vec<Vec<Vec<f64>>> = serde_json::from_value(theirs["polygons"].clone()).unwrap();
            assert_eq!(polygons.len(), theirs.len(), "{what}: polygon count");
            for (a, b) in polygons.iter().flatten().flatten().zip(theirs.iter().flatten().flatten()) {
                assert!((a - b).abs() < 1e-9, "{what}: polygons {polygons:?} vs {theirs:?}");
            }
        }
    }
}

#[test]
fn pipelines_match_mmdetection() {
    let (dir, manifest) = reference();
    let cases: Vec<&Value> = manifest["cases"].as_array().unwrap().iter().collect();
    for result in manifest["results"].as_array().unwrap() {
        let (case, pipe) = (result["case"].as_str().unwrap(), result["pipeline"].as_str().unwrap());
        let what = format!("{case}/{pipe}");
        let info = data_info(&cases.iter().find(|c| c["name"] == case).unwrap()["data_info"]);
        let pipeline = Pipeline::from_config(manifest["pipelines"][pipe].as_array().unwrap()).unwrap();
        let sample = Sample::new(Arc::new(info), 0);
        let kept = pipeline.apply(sample, &mut sample_rng(0, 0, 0)).unwrap();
        if result["dropped"] == true {
            assert!(kept.is_none(), "{what}: kept, MMDetection dropped it");
            continue;
        }
        let packed = kept.unwrap_or_else(|| panic!("{what}: dropped, MMDetection kept it"));

        let inputs = npy(dir, &result["inputs"]).image();
        let (mean, max) = diff(&packed.inputs, &inputs);
        assert_eq!(max, 0, "{what}: image differs (mean {mean})");

        let meta = &result["meta"];
        let m = &packed.meta;
        assert_eq!(m.img_shape, Some(shape(&meta["img_shape"])), "{what}: img_shape");
        assert_eq!(m.ori_shape, Some(shape(&meta["ori_shape"])), "{what}: ori_shape");
        assert_eq!(m.img_id, meta["img_id"].as_u64(), "{what}: img_id");
        let sf = meta["scale_factor"].as_array().unwrap();
        let (sx, sy) = m.scale_factor.expect("scale_factor");
        assert!((sx - sf[0].as_f64().unwrap()).abs() < 1e-12 && (sy - sf[1].as_f64().unwrap()).abs() < 1e-12, "{what}");
        if let Some(pad) = meta.get("pad_shape") {
            assert_eq!(m.pad_shape, Some(shape(pad)), "{what}: pad_shape");
        }
        if let Some(dir_name) = meta.get("flip_direction") {
            assert_eq!(m.flip, meta["flip"].as_bool(), "{what}: flip");
            assert_eq!(m.flip_direction.flatten().map(Flip::name), dir_name.as_str(), "{what}: flip_direction");
        }
        check_instances(dir, &format!("{what} gt"), &packed.gt_instances, &result["gt"]);
        check_instances(dir, &format!("{what} ignored"), &packed.ignored_instances, &result["ignored"]);
    }
}

#[test]
fn unknown_transforms_and_meta_keys_are_named() {
    let err = Pipeline::from_config(&[serde_json::json!({"type": "Mosaic"})]).unwrap_err();
    assert!(err.message.contains("unknown transform `Mosaic`"), "{err}");
    let err =
        Pipeline::from_config(&[serde_json::json!({"type": "PackDetInputs", "meta_keys": ["img_sahpe"]})]).unwrap_err();
    assert!(err.message.contains("unknown meta key `img_sahpe`"), "{err}");
    let err = Pipeline::from_config(&[serde_json::json!({"type": "Resize", "scale": [1333, 800], "keep_raito": true})])
        .unwrap_err();
    assert!(err.message.contains("transform 0 (`Resize`)") && err.message.contains("keep_raito"), "{err}");
    let err = Pipeline::from_config(&[serde_json::json!({"type": "LoadImageFromFile"})]).unwrap_err();
    assert!(err.message.contains("must end with `PackDetInputs`"), "{err}");
}

#[test]
fn bundled_config_pipelines_build() {
    for config in [
        "configs/mask_rcnn/mask-rcnn_r50_fpn_1x_coco.yaml",
        "configs/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.yaml",
        "configs/queryinst/queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.yaml",
        "configs/sparse_rcnn/sparse-rcnn_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.yaml",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_detc"))
            .args(["expand", "--format", "json"])
            .arg(root().join(config))
            .output()
            .unwrap();
        assert!(out.status.success(), "{config}: {}", String::from_utf8_lossy(&out.stderr));
        let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
        for loader in ["train_dataloader", "val_dataloader", "test_dataloader"] {
            let pipeline = cfg[loader]["dataset"]["pipeline"].as_array().unwrap();
            Pipeline::from_config(pipeline).unwrap_or_else(|e| panic!("{config} {loader}: {e}"));
        }
    }
}

/// The reference's portrait image as a record without instances.
fn portrait_without_annotations() -> Arc<DataInfo> {
    let (dir, _) = reference();
    Arc::new(DataInfo { img_id: 1, img_path: dir.join("portrait.jpg"), height: 333, width: 201, instances: Vec::new() })
}

/// The random resizes with a single possible outcome resize as `Resize` does
/// (their draws cannot match NumPy's global random state, so the reference
/// is `Resize`, itself checked against MMDetection above).
#[test]
fn random_resizes_without_choice_equal_resize() {
    let info = portrait_without_annotations();
    let run = |resize: Value| {
        let cfg =
            [serde_json::json!({"type": "LoadImageFromFile"}), resize, serde_json::json!({"type": "PackDetInputs"})];
        let pipeline = Pipeline::from_config(&cfg).unwrap();
        pipeline.apply(Sample::new(info.clone(), 0), &mut sample_rng(1, 2, 3)).unwrap().unwrap()
    };
    let fixed = run(serde_json::json!({"type": "Resize", "scale": [640, 480], "keep_ratio": true}));
    let choice = run(serde_json::json!({"type": "RandomChoiceResize", "scales": [[640, 480]], "keep_ratio": true}));
    let ratio = run(
        serde_json::json!({"type": "RandomResize", "scale": [640, 480], "ratio_range": [1.0, 1.0], "keep_ratio": true}),
    );
    let range = run(serde_json::json!({"type": "RandomResize", "scale": [[640, 480], [640, 480]], "keep_ratio": true}));
    assert_eq!((fixed.inputs.height, fixed.inputs.width), (640, 386));
    for other in [&choice, &ratio, &range] {
        assert_eq!(other.inputs, fixed.inputs);
        assert_eq!(other.meta, fixed.meta);
    }
}

/// `RandomCrop`'s window arithmetic against MMDetection's `_crop_data`, its
/// random offset set to the same window (the draws cannot match NumPy's
/// global random state; their ranges are unit-tested): the image, the
/// boxes shifted and clipped (or not), the instances kept, their masks
/// cropped or boxes recomputed from them, and a crop that keeps no box
/// dropped unless `allow_negative_crop`.
#[test]
fn random_crop_windows_match_mmdetection() {
    use detc::data::transforms::{LoadAnnotations, LoadImageFromFile, PackDetInputs, RandomCrop, Site, Transform};
    let (dir, manifest) = reference();
    let site = |name| Site { index: 0, name };
    fn cfg<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }
    let load = LoadImageFromFile::new(cfg(serde_json::json!({})), site("LoadImageFromFile")).unwrap();
    let annotations =
        LoadAnnotations::new(cfg(serde_json::json!({"with_bbox": true, "with_mask": true})), site("LoadAnnotations"))
            .unwrap();
    let pack = PackDetInputs::new(cfg(serde_json::json!({})), site("PackDetInputs")).unwrap();
    let cases: Vec<&Value> = manifest["cases"].as_array().unwrap().iter().collect();
    let crops = manifest["crops"].as_array().unwrap();
    assert_eq!(crops.len(), 15);
    for result in crops {
        let case = result["case"].as_str().unwrap();
        let what = format!("{case} crop {} at {} {}", result["crop"], result["offset"], result["options"]);
        let info = data_info(&cases.iter().find(|c| c["name"] == case).unwrap()["data_info"]);
        let mut options = result["options"].clone();
        let (crop, offset) = (shape(&result["crop"]), shape(&result["offset"]));
        options["crop_size"] = serde_json::json!([crop.1, crop.0]);
        let cropper = RandomCrop::new(cfg(options), site("RandomCrop")).unwrap();
        let rng = &mut sample_rng(0, 0, 0);
        let sample = load.apply(Sample::new(Arc::new(info), 0), rng).unwrap().unwrap();
        let sample = annotations.apply(sample, rng).unwrap().unwrap();
        let Some(cropped) = cropper.crop_at(sample, crop, offset).unwrap() else {
            assert!(result["dropped"].as_bool().unwrap(), "{what}: dropped, MMDetection kept it");
            continue;
        };
        assert!(!result["dropped"].as_bool().unwrap(), "{what}: kept, MMDetection dropped it");
        let packed = pack.pack(cropped).unwrap();
        let (mean, max) = diff(&packed.inputs, &npy(dir, &result["inputs"]).image());
        assert_eq!(max, 0, "{what}: image differs (mean {mean})");
        assert_eq!(packed.meta.img_shape, Some(shape(&result["meta"]["img_shape"])), "{what}: img_shape");
        check_instances(dir, &format!("{what} gt"), &packed.gt_instances, &result["gt"]);
        check_instances(dir, &format!("{what} ignored"), &packed.ignored_instances, &result["ignored"]);
    }
}

/// `RandomChoice` runs one candidate list per sample: over many samples each
/// candidate (a list, or a single transform) is taken, and the outputs are
/// what that candidate alone gives.
#[test]
fn random_choice_runs_one_candidate() {
    let info = portrait_without_annotations();
    let resize = |w: u32, h: u32| serde_json::json!({"type": "Resize", "scale": [w, h], "keep_ratio": false});
    let load = serde_json::json!({"type": "LoadImageFromFile"});
    let pack = serde_json::json!({"type": "PackDetInputs"});
    let choice = serde_json::json!({
        "type": "RandomChoice",
        "transforms": [[resize(64, 32)], resize(32, 64), [resize(50, 50), {"type": "RandomFlip", "prob": 1.0}]],
        "prob": [0.25, 0.25, 0.5],
    });
    let pipeline = Pipeline::from_config(&[load.clone(), choice, pack.clone()]).unwrap();
    let mut counts = std::collections::HashMap::new();
    for index in 0..200 {
        let packed = pipeline.apply(Sample::new(info.clone(), index), &mut sample_rng(5, 0, index)).unwrap().unwrap();
        *counts.entry((packed.inputs.width, packed.inputs.height, packed.meta.flip)).or_insert(0) += 1;
    }
    let flip = Some(true);
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts[&(64, 32, Some(false))] > 20 && counts[&(32, 64, Some(false))] > 20, "{counts:?}");
    assert!(counts[&(50, 50, flip)] > 70, "{counts:?}");
    // What MMCV asserts is refused at build time, naming the nested transform.
    let bad =
        serde_json::json!({"type": "RandomChoice", "transforms": [resize(1, 1), resize(2, 2)], "prob": [0.5, 0.6]});
    let err = Pipeline::from_config(&[load.clone(), bad, pack.clone()]).unwrap_err();
    assert!(err.message.contains("transform 1 (`RandomChoice`): `prob`"), "{err}");
    let nested = serde_json::json!({"type": "RandomChoice", "transforms": [[resize(1, 1), {"type": "RandomCrop"}]]});
    let err = Pipeline::from_config(&[load.clone(), nested, pack.clone()]).unwrap_err();
    let nested_error = err.message.contains("transform 1 (`RandomChoice`): transforms[0][1]: ");
    assert!(nested_error && err.message.contains("crop_size"), "{err}");
    // Polygon masks are not cropped: refused when the pipeline is built.
    let polygons = serde_json::json!({"type": "LoadAnnotations", "with_mask": true, "poly2mask": false});
    let crop = serde_json::json!({"type": "RandomCrop", "crop_size": [10, 10]});
    let inside = serde_json::json!({"type": "RandomChoice", "transforms": [[crop.clone()], resize(8, 8)]});
    for cropping in [crop, inside] {
        let err = Pipeline::from_config(&[load.clone(), polygons.clone(), cropping, pack.clone()]).unwrap_err();
        assert!(err.message.contains("transform 2: `RandomCrop` cannot crop the polygon masks"), "{err}");
    }
}
