//! `detc-engine infer`: MMDetection's `demo/image_demo.py` (`DetInferencer`).
//! Each image goes through the config's test pipeline (without
//! `LoadAnnotations`, as the inferencer drops it), one at a time, through the
//! model with a checkpoint's weights. Its predictions above `--score-thr`
//! are drawn on the original image (`OUT_DIR/vis/<name>.png`), and every
//! prediction goes into one COCO-style file, `OUT_DIR/predictions.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use detc::data::transforms::Pipeline;
use detc::data::{sample_rng, DataInfo, Sample};
use detc::evaluation::metric::ImagePrediction;
use detc::visualization::show_dir::predictions;
use detc::visualization::{draw_instances, DrawStyle, RgbImage};
use serde_json::{json, Value};

use super::evaluate::to_prediction;
use super::logging::progress::ProgressBar;
use super::test_loop::{device, Trained};

/// `detc-engine infer` arguments (the light `detc infer` lists the images).
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// The checkpoint with the trained weights (`.pth` or safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where `vis/` and `predictions.json` go.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Predictions scoring at or below this are not drawn (all are in the JSON).
    #[arg(long, default_value_t = 0.3)]
    pub score_thr: f32,
    /// `cpu` or `cuda` (default: cuda when the engine sees a GPU).
    #[arg(long)]
    pub device: Option<String>,
    /// The image files, in order.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Runs inference on every image; returns the exit code.
pub fn infer(config: &Value, args: &InferArgs) -> i32 {
    match run(config, args) {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("error: {message}");
            code
        }
    }
}

fn run(config: &Value, args: &InferArgs) -> Result<(), (i32, String)> {
    let input = |m: String| (1, m);
    let runtime = |m: String| (3, m);
    let device = device(args.device.as_deref()).map_err(input)?;
    let trained = Trained::load(config, &args.checkpoint, device).map_err(input)?;
    if let Some(warning) = &trained.warning {
        eprintln!("warning: {}: {warning}", args.checkpoint.display());
    }
    let classes = class_names(config, trained.classes.clone());
    let pipeline = test_pipeline(config).map_err(input)?;
    let style = DrawStyle::from_config(config, "test_dataloader", &classes).map_err(input)?;
    let vis_dir = args.out_dir.join("vis");
    std::fs::create_dir_all(&vis_dir)
        .map_err(|e| runtime(format!("cannot create `{}`: {e}", vis_dir.display())))?;
    let names = output_names(&args.images);

    let mut coco = CocoPredictions::new(&classes);
    let mut bar = ProgressBar::new(args.images.len() as u64, "infer");
    let started = std::time::Instant::now();
    for (index, path) in args.images.iter().enumerate() {
        let info = DataInfo {
            img_id: index as u64,
            img_path: path.clone(),
            height: 0,
            width: 0,
            instances: vec![],
        };
        let packed = pipeline
            .apply(
                Sample::new(Arc::new(info), index),
                &mut sample_rng(0, 0, index),
            )
            .map_err(|e| input(format!("{}: {}", path.display(), e.message)))?
            .ok_or_else(|| {
                input(format!(
                    "{}: the test pipeline dropped the image",
                    path.display()
                ))
            })?;
        let (height, width) = packed
            .meta
            .ori_shape
            .unwrap_or((packed.inputs.height, packed.inputs.width));
        let batch = trained
            .pre
            .forward(vec![packed], false)
            .map_err(|e| runtime(e.message))?;
        let dets = tch::no_grad(|| trained.model.predict(&batch, true))
            .map_err(|e| runtime(e.to_string()))?;
        let pred = to_prediction(index as i64, &dets[0]).map_err(|e| runtime(e.to_string()))?;

        let image = detc::data::image::read_image(path, detc::data::image::ColorMode::Color)
            .map_err(|e| input(e.message))?;
        let image = RgbImage::from_bgr(&image);
        let shown = predictions(&pred, image.height, image.width).above(args.score_thr);
        let out = vis_dir.join(&names[index]);
        std::fs::write(
            &out,
            detc::visualization::png::encode(&draw_instances(&image, &shown, &style)),
        )
        .map_err(|e| runtime(format!("cannot write `{}`: {e}", out.display())))?;
        coco.add(path, height, width, &pred);
        let done = index + 1;
        let eta = started.elapsed().as_secs_f64() / done as f64 * (args.images.len() - done) as f64;
        bar.set(done as u64, Some(eta));
    }
    bar.finish();
    let json_path = args.out_dir.join("predictions.json");
    super::work_dir::write_atomic(&json_path, coco.to_json().to_string().as_bytes())
        .map_err(|e| runtime(format!("cannot write `{}`: {e}", json_path.display())))?;
    println!(
        "{} images: drawings in {}, predictions in {}",
        args.images.len(),
        vis_dir.display(),
        json_path.display()
    );
    Ok(())
}

/// The class names: the checkpoint's `dataset_meta`, else the test
/// dataset's `metainfo.classes`, else its annotation file's categories;
/// `class N` labels (with a warning) when none of them is at hand.
fn class_names(config: &Value, from_checkpoint: Option<Vec<String>>) -> Vec<String> {
    if let Some(classes) = from_checkpoint {
        return classes;
    }
    let dataset = config
        .pointer("/test_dataloader/dataset")
        .cloned()
        .unwrap_or(Value::Null);
    let cwd = std::env::current_dir().unwrap_or_default();
    let built = detc::data::coco::CocoDataset::from_config(&dataset, &cwd)
        .and_then(|d| d.full_init().map(|_| d.classes().to_vec()));
    match built {
        Ok(classes) => classes,
        Err(e) => {
            eprintln!(
                "warning: no class names: the checkpoint has no `meta.dataset_meta.classes` and \
                 test_dataloader.dataset gives none ({}); labels are drawn as `class N`",
                e.message
            );
            vec![]
        }
    }
}

/// `test_dataloader.dataset.pipeline` without `LoadAnnotations`.
fn test_pipeline(config: &Value) -> Result<Pipeline, String> {
    let steps: Vec<Value> = config
        .pointer("/test_dataloader/dataset/pipeline")
        .and_then(Value::as_array)
        .ok_or("the config has no `test_dataloader.dataset.pipeline` to prepare the images with")?
        .iter()
        .filter(|t| t.get("type").and_then(Value::as_str) != Some("LoadAnnotations"))
        .cloned()
        .collect();
    Pipeline::from_config(&steps)
        .map_err(|e| format!("test_dataloader.dataset.pipeline: {}", e.message))
}

/// `<stem>.png` per image; a stem met before gets `_1`, `_2`, ... so no
/// drawing overwrites another.
fn output_names(images: &[PathBuf]) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    images
        .iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map_or("image".into(), |s| s.to_string_lossy().into_owned());
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                format!("{stem}.png")
            } else {
                format!("{stem}_{}.png", *n - 1)
            }
        })
        .collect()
}

/// The predictions as a COCO dataset file: images, categories (ids 1.. in
/// class order) and one annotation per prediction, with its `score`, box
/// `[x, y, w, h]`, area and (for instance masks) compressed RLE.
struct CocoPredictions {
    images: Vec<Value>,
    annotations: Vec<Value>,
    categories: Vec<Value>,
}

impl CocoPredictions {
    fn new(classes: &[String]) -> Self {
        let categories = classes
            .iter()
            .enumerate()
            .map(|(i, name)| json!({"id": i + 1, "name": name}))
            .collect();
        CocoPredictions {
            images: vec![],
            annotations: vec![],
            categories,
        }
    }

    fn add(&mut self, path: &Path, height: usize, width: usize, pred: &ImagePrediction) {
        let image_id = self.images.len() + 1;
        self.images.push(json!({
            "id": image_id,
            "file_name": path.to_string_lossy(),
            "height": height,
            "width": width,
        }));
        for (i, b) in pred.bboxes.iter().enumerate() {
            let bbox = [b[0], b[1], b[2] - b[0], b[3] - b[1]].map(|v| v as f64);
            let mut ann = json!({
                "id": self.annotations.len() + 1,
                "image_id": image_id,
                "category_id": pred.labels[i] + 1,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "score": pred.scores[i] as f64,
                "iscrowd": 0,
            });
            if let Some(rle) = pred.masks.as_ref().and_then(|m| m.get(i)) {
                ann["segmentation"] =
                    json!({"size": [rle.height, rle.width], "counts": rle.to_compressed()});
                ann["area"] = json!(rle.area());
            }
            self.annotations.push(ann);
        }
    }

    fn to_json(&self) -> Value {
        json!({"images": self.images, "annotations": self.annotations, "categories": self.categories})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_stems_get_distinct_names() {
        let images: Vec<PathBuf> = ["a/x.jpg", "b/x.jpg", "y.jpeg", "c/x.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            output_names(&images),
            ["x.png", "x_1.png", "y.png", "x_2.png"]
        );
    }
}
