//! `detc bench --synthetic`: the config's data replaced by generated shapes
//! images (`detc data shapes`) at its scale, for a machine that does not
//! hold the dataset. The images are square, their side the short side of the
//! training pipeline's `Resize` scale (what a keep-ratio resize to that scale
//! leaves as it is: 800 px for MMDetection's 1333x800), JPEG files decoded by
//! the config's own pipeline as real ones would be.

use std::path::Path;

use serde_json::{json, Value};

use detc::data::dataset::{leaf_sections, leaf_sections_mut};
use detc::data::shapes::{write_dataset, ShapesOptions, CLASSES};

/// Training images generated; the loaders cycle through them.
const TRAIN_IMAGES: u32 = 32;
const VAL_IMAGES: u32 = 8;

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
        // Every CocoDataset a wrapper (RepeatDataset, ...) holds.
        for dataset in leaf_sections_mut(section) {
            if dataset["type"] != "CocoDataset" {
                return Err(format!(
                    "--synthetic replaces a CocoDataset; {loader}.dataset holds a {}",
                    dataset["type"]
                ));
            }
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

/// The short side of the first `Resize` scale in the training pipeline.
fn image_side(config: &Value) -> Result<u32, String> {
    let leaves = leaf_sections(&config["train_dataloader"]["dataset"], "train_dataloader.dataset");
    let pipeline = leaves.first().map_or(&Value::Null, |(d, _)| &d["pipeline"]);
    let scale = pipeline
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["type"] == "Resize")
        .map(|t| &t["scale"])
        .ok_or("--synthetic takes the image size from a `Resize` in train_dataloader.dataset.pipeline; this config has none")?;
    let side = match scale {
        Value::Number(n) => n.as_f64(),
        Value::Array(wh) => wh.iter().filter_map(Value::as_f64).reduce(f64::min),
        _ => None,
    };
    match side {
        Some(s) if s >= 1.0 => Ok(s as u32),
        _ => Err(format!(
            "--synthetic: train_dataloader.dataset.pipeline's Resize scale {scale} is not a size"
        )),
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
}
