//! `detc bench --synthetic`: the config's data replaced by generated shapes
//! images (`detc data shapes`) at its scale, for a machine that does not
//! hold the dataset. The images are square, their side the short side of the
//! largest scale the training pipeline resizes to (what a keep-ratio resize
//! to that scale leaves as it is: 800 px for MMDetection's 1333x800), JPEG
//! files decoded by the config's own pipeline as real ones would be.

use std::path::Path;

use serde_json::{json, Value};

use detc::data::dataset::{leaf_sections, leaf_sections_mut};
use detc::data::shapes::{write_dataset, ShapesOptions, CLASSES};

/// Training images generated; the loaders cycle through them.
const TRAIN_IMAGES: u32 = 32;
const VAL_IMAGES: u32 = 8;

/// The dataset types that read COCO JSON, which the shapes data replaces.
const COCO_FORMAT: &[&str] = &["CocoDataset", "Objects365V1Dataset", "Objects365V2Dataset"];

/// `config` with every dataloader reading shapes images written to `dir`.
pub fn with_synthetic_data(config: &Value, dir: &Path) -> Result<Value, String> {
    let size = image_side(config)?;
    write_dataset(
        dir,
        &ShapesOptions {
            train: TRAIN_IMAGES,
            val: VAL_IMAGES,
            size,
            seed: 0,
        },
    )
    .map_err(|e| format!("--synthetic: {e}"))?;
    pointed_at(config, dir)
}

/// `config` with every dataloader and evaluator reading the shapes dataset
/// in `dir`.
fn pointed_at(config: &Value, dir: &Path) -> Result<Value, String> {
    let mut config = config.clone();
    let root = dir.to_string_lossy().into_owned();
    for (loader, split) in [
        ("train_dataloader", "train"),
        ("val_dataloader", "val"),
        ("test_dataloader", "val"),
    ] {
        let Some(section) = config
            .get_mut(loader)
            .and_then(|l| l.get_mut("dataset"))
            .filter(|d| d.is_object())
        else {
            continue;
        };
        // Every COCO-format dataset a wrapper (RepeatDataset, ...) holds
        // reads the shapes images as a plain CocoDataset.
        for dataset in leaf_sections_mut(section) {
            if !dataset["type"].as_str().is_some_and(|t| COCO_FORMAT.contains(&t)) {
                return Err(format!(
                    "--synthetic replaces a COCO-format dataset ({}); {loader}.dataset holds a {}",
                    COCO_FORMAT.join(", "),
                    dataset["type"]
                ));
            }
            dataset["type"] = json!("CocoDataset");
            dataset["data_root"] = json!(root);
            dataset["ann_file"] = json!(format!("annotations/instances_{split}.json"));
            dataset["data_prefix"] = json!({ "img": format!("{split}/") });
            dataset["metainfo"] = json!({ "classes": CLASSES });
        }
    }
    let val_ann = dir.join("annotations/instances_val.json");
    for evaluator in ["val_evaluator", "test_evaluator"] {
        match config.get_mut(evaluator) {
            Some(Value::Array(list)) => list.iter_mut().for_each(|e| set_ann_file(e, &val_ann)),
            Some(e) => set_ann_file(e, &val_ann),
            None => {}
        }
    }
    Ok(config)
}

fn set_ann_file(evaluator: &mut Value, ann: &Path) {
    if let Some(e) = evaluator.as_object_mut() {
        e.insert("ann_file".into(), json!(ann.to_string_lossy()));
    }
}

/// The side of the generated images: the short side of the largest scale
/// the training pipeline's first resizing transform can pick, so that no
/// scale it draws has to enlarge them. `Resize` and `RandomResize` read
/// `scale` (one scale, or the two ends of a range; with a `ratio_range`, the
/// base scale), `RandomChoiceResize` its `scales`, `RandomChoice` each of its
/// pipelines, `CachedMosaic` its `img_scale`.
fn image_side(config: &Value) -> Result<u32, String> {
    const AT: &str = "train_dataloader.dataset.pipeline";
    let leaves = leaf_sections(&config["train_dataloader"]["dataset"], "train_dataloader.dataset");
    let pipeline = leaves.first().map_or(&Value::Null, |(d, _)| &d["pipeline"]);
    let side = pipeline_side(pipeline).ok_or_else(|| {
        format!(
            "--synthetic takes the image size from the first resizing transform in {AT} \
             (Resize, RandomResize, RandomChoiceResize, RandomChoice, CachedMosaic); this config has none"
        )
    })??;
    if side >= 1.0 {
        Ok(side as u32)
    } else {
        Err(format!("--synthetic: the resize scale in {AT} is not a size ({side})"))
    }
}

/// The side of the first resizing transform of `pipeline` (a list of
/// transforms), `None` where none resizes.
fn pipeline_side(pipeline: &Value) -> Option<Result<f64, String>> {
    pipeline.as_array()?.iter().find_map(transform_side)
}

fn transform_side(transform: &Value) -> Option<Result<f64, String>> {
    let kind = transform["type"].as_str()?;
    let (key, scales) = match kind {
        "Resize" | "RandomResize" => ("scale", &transform["scale"]),
        "RandomChoiceResize" => ("scales", &transform["scales"]),
        "CachedMosaic" => ("img_scale", &transform["img_scale"]),
        "RandomChoice" => {
            let options = transform["transforms"].as_array()?;
            return options
                .iter()
                .filter_map(pipeline_side)
                .reduce(|a, b| Ok(a?.max(b?)));
        }
        _ => return None,
    };
    Some(largest_short_side(scales).ok_or_else(|| {
        format!("--synthetic: {kind}'s {key} {scales} is not a scale, a list of scales or a size")
    }))
}

/// The largest short side among `scales`: a size, a (w, h) pair, or a list
/// of pairs.
fn largest_short_side(scales: &Value) -> Option<f64> {
    match scales {
        Value::Number(n) => n.as_f64(),
        Value::Array(items) if items.iter().all(Value::is_number) && items.len() == 2 => {
            items.iter().filter_map(Value::as_f64).reduce(f64::min)
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|s| match s {
                Value::Array(_) => largest_short_side(s),
                _ => None,
            })
            .reduce(|a, b| Some(a?.max(b?)))?,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scale: Value) -> Value {
        json!({
            "train_dataloader": {"dataset": {"type": "CocoDataset", "data_root": "data/coco/",
                "pipeline": [{"type": "LoadImageFromFile"},
                             {"type": "Resize", "scale": scale, "keep_ratio": true}]}},
            "val_dataloader": {"dataset": {"type": "CocoDataset", "data_root": "data/coco/"}},
            "val_evaluator": {"type": "CocoMetric", "ann_file": "data/coco/annotations/instances_val2017.json"},
        })
    }

    #[test]
    fn images_take_the_short_side_of_the_resize_scale() {
        assert_eq!(image_side(&config(json!([1333, 800]))), Ok(800));
        assert_eq!(image_side(&config(json!(640))), Ok(640));
        let none = json!({"train_dataloader": {"dataset": {"pipeline": []}}});
        assert!(image_side(&none).unwrap_err().contains("Resize"));
        let bad = config(json!("large"));
        assert!(image_side(&bad).unwrap_err().contains("Resize's scale \"large\""));
    }

    fn pipeline(transforms: Value) -> Value {
        json!({"train_dataloader": {"dataset": {"type": "RepeatDataset", "times": 3,
            "dataset": {"type": "CocoDataset", "pipeline": transforms}}}})
    }

    #[test]
    fn random_resizes_take_the_largest_scale_they_can_pick() {
        let side = |t: Value| image_side(&pipeline(json!([{"type": "LoadImageFromFile"}, t])));
        // Multi-scale training (ms-3x): the range's larger end.
        let range = json!({"type": "RandomResize", "scale": [[1333, 640], [1333, 800]], "keep_ratio": true});
        assert_eq!(side(range), Ok(800));
        // Large-scale jitter: the base scale, which the crop keeps.
        let lsj = json!({"type": "RandomResize", "scale": [1024, 1024], "ratio_range": [0.1, 2.0]});
        assert_eq!(side(lsj), Ok(1024));
        let choice = json!({"type": "RandomChoiceResize",
            "scales": [[1333, 640], [1333, 672], [1333, 800], [1333, 736]]});
        assert_eq!(side(choice), Ok(800));
        // QueryInst's crop-ms configs: (h, w) pairs in either of two pipelines.
        let crop_ms = json!({"type": "RandomChoice", "transforms": [
            [{"type": "RandomChoiceResize", "scales": [[480, 1333], [800, 1333]]}],
            [{"type": "RandomChoiceResize", "scales": [[400, 1333], [600, 1333]]},
             {"type": "RandomCrop", "crop_size": [384, 600]},
             {"type": "RandomChoiceResize", "scales": [[480, 1333], [960, 1333]]}]]});
        assert_eq!(side(crop_ms), Ok(800));
        let mosaic = json!({"type": "CachedMosaic", "img_scale": [640, 640]});
        assert_eq!(side(mosaic), Ok(640));
        let empty = json!({"type": "RandomChoiceResize", "scales": []});
        assert!(side(empty).unwrap_err().contains("RandomChoiceResize's scales []"));
    }

    #[test]
    fn every_loader_and_evaluator_reads_the_generated_images() {
        let dir = tempfile::tempdir().unwrap();
        let out = with_synthetic_data(&config(json!([96, 64])), dir.path()).unwrap();
        let root = dir.path().to_string_lossy();
        assert_eq!(out["train_dataloader"]["dataset"]["data_root"], json!(root));
        assert_eq!(
            out["train_dataloader"]["dataset"]["data_prefix"]["img"],
            "train/"
        );
        assert_eq!(
            out["val_dataloader"]["dataset"]["ann_file"],
            "annotations/instances_val.json"
        );
        assert_eq!(
            out["val_dataloader"]["dataset"]["metainfo"]["classes"],
            json!(CLASSES)
        );
        let ann = out["val_evaluator"]["ann_file"].as_str().unwrap();
        assert!(Path::new(ann).is_file(), "{ann}");
        assert!(dir.path().join("train/000032.jpg").is_file());
        let image = detc::data::image::read_image(
            &dir.path().join("train/000001.jpg"),
            detc::data::image::ColorMode::Color,
        )
        .unwrap();
        assert_eq!(
            (image.width, image.height),
            (64, 64),
            "the short side of 96x64"
        );
    }

    /// Every training config bundled in `configs/` can be benchmarked on
    /// generated images: its pipeline gives them a size, its datasets are
    /// COCO-format.
    #[test]
    fn every_bundled_training_config_takes_synthetic_data() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut files = vec![];
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() && !path.ends_with("_base_") {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml") {
                    files.push(path);
                }
            }
        }
        let mut checked = 0;
        for file in &files {
            let (_, tree) = detc::config::resolve(file, &[]);
            let config = tree.unwrap_or_else(|e| panic!("{}: {e:?}", file.display())).to_json();
            // Test-time-augmentation fragments train nothing.
            if config.get("train_dataloader").is_none() {
                continue;
            }
            let side = image_side(&config).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            assert!((64..=1333).contains(&side), "{}: {side}", file.display());
            pointed_at(&config, Path::new("/synthetic")).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            checked += 1;
        }
        assert!(checked > 300, "{checked} of {} configs", files.len());
    }

    #[test]
    fn other_coco_format_datasets_read_the_shapes_as_coco() {
        let dir = tempfile::tempdir().unwrap();
        let mut objects365 = config(json!([96, 64]));
        objects365["train_dataloader"]["dataset"]["type"] = json!("Objects365V2Dataset");
        let out = with_synthetic_data(&objects365, dir.path()).unwrap();
        assert_eq!(out["train_dataloader"]["dataset"]["type"], "CocoDataset");
        let mut other = config(json!([96, 64]));
        other["val_dataloader"]["dataset"]["type"] = json!("LVISV1Dataset");
        let err = with_synthetic_data(&other, dir.path()).unwrap_err();
        assert!(err.contains("val_dataloader.dataset holds a \"LVISV1Dataset\""), "{err}");
    }
}
