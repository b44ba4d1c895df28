//! What MMDetection's `DetVisualizationHook` draws: a validation or test
//! image, read again from its `img_path`, with its ground truth on the left
//! and the predictions on the right ([`draw_sample`]), in the colours of the
//! config's `visualizer`. [`TestDrawing`] is the hook's test-time part:
//! with `test_out_dir` (what `tools/test.py --show-dir DIR` turns on) every
//! image is saved as `{work_dir}/{timestamp}/{DIR}/{image file name}`;
//! without it the drawings go to the visualizer's backends (the engine's
//! run log) as `test_img` at step 1, 2, ...

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::det_sample::{draw_det_sample, DrawStyle, Instances};
use super::palette::{class_palette, resolve};
use super::RgbImage;
use crate::data::coco::CocoDataset;
use crate::data::dataset::leaf_sections;
use crate::data::image::{read_image, ColorMode};
use crate::data::{DataInfo, SampleMeta, Segmentation};
use crate::evaluation::mask::Rle;
use crate::evaluation::metric::ImagePrediction;
use crate::registry::engine::{DetLocalVisualizerConfig, DetVisualizationHookConfig};

/// JPEG quality of the drawings (`cv2.imwrite`'s default, which `mmcv.imwrite` uses).
const JPEG_QUALITY: i32 = 95;

/// How and where the test images are drawn.
#[derive(Debug, Clone)]
pub struct TestDrawing {
    /// `test_out_dir` under the run's folder; `None`: the visualizer's backends.
    dir: Option<PathBuf>,
    score_thr: f32,
    style: DrawStyle,
}

impl DrawStyle {
    /// The config's `visualizer` settings for drawing the dataset of the
    /// dataloader section `loader` (its `metainfo.palette`), whose classes
    /// are `classes`.
    pub fn from_config(config: &Value, loader: &str, classes: &[String]) -> Result<DrawStyle, String> {
        let visualizer: DetLocalVisualizerConfig = section(config, "/visualizer")?;
        // A wrapper's first dataset, as MMEngine's wrappers take its metainfo.
        let leaves = config.pointer(&format!("/{loader}/dataset")).map_or(vec![], |d| leaf_sections(d, &format!("{loader}.dataset")));
        let palette: Option<Vec<[u8; 3]>> = match leaves.first().and_then(|(d, path)| Some((d.pointer("/metainfo/palette")?, path))) {
            None | Some((Value::Null, _)) => None,
            Some((v, path)) => Some(
                serde_json::from_value(v.clone()).map_err(|e| format!("{path}.metainfo.palette: {e}"))?,
            ),
        };
        let class_colors = class_palette(classes.len(), palette.as_deref());
        Ok(DrawStyle {
            classes: classes.to_vec(),
            bbox_colors: resolve(visualizer.bbox_color.as_ref(), &class_colors, "bbox_color")?,
            mask_colors: resolve(visualizer.mask_color.as_ref(), &class_colors, "mask_color")?,
            text_colors: resolve(visualizer.text_color.as_ref(), &class_colors, "text_color")?,
            line_width: visualizer.line_width,
            alpha: visualizer.alpha as f32,
        })
    }
}

/// `config[section]` without its `type` key, parsed as `T` (defaults when absent).
fn section<T: serde::de::DeserializeOwned>(config: &Value, pointer: &str) -> Result<T, String> {
    let mut value = config.pointer(pointer).cloned().unwrap_or(Value::Null);
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    value.as_object_mut().map(|o| o.remove("type"));
    let key = pointer.trim_start_matches('/').replace('/', ".");
    serde_json::from_value(value).map_err(|e| format!("{key}: {e}"))
}

/// The config's `default_hooks.visualization` (`None` when the config has none).
pub fn hook_config(config: &Value) -> Result<Option<DetVisualizationHookConfig>, String> {
    match config.pointer("/default_hooks/visualization") {
        None | Some(Value::Null) => Ok(None),
        Some(_) => section(config, "/default_hooks/visualization").map(Some),
    }
}

impl TestDrawing {
    /// What `trigger_visualization_hook` makes of the config: with
    /// `show_dir` (`--show-dir`), drawing on and `test_out_dir = show_dir`;
    /// without it, the hook's own `draw` and `test_out_dir`. `None` when
    /// nothing is to be drawn. The folder is `run_dir/test_out_dir`;
    /// `classes` are the test dataset's.
    pub fn from_config(
        config: &Value,
        show_dir: Option<&Path>,
        run_dir: &Path,
        classes: &[String],
    ) -> Result<Option<TestDrawing>, String> {
        let Some(hook) = hook_config(config)? else {
            return match show_dir {
                None => Ok(None),
                // tools/test.py raises here too (`trigger_visualization_hook`).
                Some(_) => Err(
                    "--show-dir draws with the visualization hook, and the config has none: add \
                                `default_hooks: {visualization: {type: DetVisualizationHook}}`"
                        .into(),
                ),
            };
        };
        let dir = match show_dir {
            Some(dir) => Some(dir.to_path_buf()),
            None if hook.draw => hook.test_out_dir.as_ref().map(PathBuf::from),
            None => return Ok(None),
        };
        let style = DrawStyle::from_config(config, "test_dataloader", classes)?;
        Ok(Some(TestDrawing {
            dir: dir.map(|d| run_dir.join(d)),
            score_thr: hook.score_thr as f32,
            style,
        }))
    }

    /// The folder the drawings go to; `None`: the visualizer's backends.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The drawing of the image of `info` with its ground truth and `pred`.
    pub fn draw(&self, info: &DataInfo, pred: &ImagePrediction) -> Result<RgbImage, String> {
        draw_sample(info, pred, self.score_thr, &self.style)
    }
}

/// Writes `drawn`, the drawing of the image of `info`, into `dir` as a JPEG
/// named after the image file (`mmcv.imwrite` to `test_out_dir`).
pub fn save_jpeg(dir: &Path, info: &DataInfo, drawn: &RgbImage) -> Result<(), String> {
    let name = info
        .img_path
        .file_name()
        .ok_or_else(|| format!("`{}` has no file name", info.img_path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let out = dir.join(name);
    let jpeg = drawn.to_jpeg(JPEG_QUALITY)?;
    std::fs::write(&out, jpeg).map_err(|e| format!("cannot write `{}`: {e}", out.display()))
}

/// `DetLocalVisualizer.add_datasample` with `draw_gt=True`: the image of
/// `info` read again from its path, its ground truth on the left, the
/// predictions scoring at least `score_thr` on the right.
pub fn draw_sample(
    info: &DataInfo,
    pred: &ImagePrediction,
    score_thr: f32,
    style: &DrawStyle,
) -> Result<RgbImage, String> {
    let image = read_image(&info.img_path, ColorMode::Color).map_err(|e| e.message)?;
    let image = RgbImage::from_bgr(&image);
    let gt = ground_truth(info, image.height, image.width);
    let pred = predictions(pred, image.height, image.width);
    Ok(draw_det_sample(&image, Some(&gt), Some(&pred), score_thr, style))
}

/// A dataset's records by image path: the visualization hook finds a
/// sample's ground truth by its `img_path`, as it reads the image again.
pub struct RecordsByPath(HashMap<PathBuf, Arc<DataInfo>>);

impl RecordsByPath {
    pub fn of(dataset: &CocoDataset) -> RecordsByPath {
        RecordsByPath(
            (0..dataset.len())
                .map(|i| dataset.get(i))
                .map(|r| (r.img_path.clone(), r))
                .collect(),
        )
    }

    /// The record of a packed sample, found by its `img_path`.
    pub fn get(&self, meta: &SampleMeta) -> Result<&DataInfo, String> {
        let path = meta.img_path.as_ref().ok_or(
            "drawing predictions reads each image again from its path: keep `img_path` in the \
             pipeline's PackDetInputs.meta_keys",
        )?;
        self.0
            .get(path)
            .map(Arc::as_ref)
            .ok_or_else(|| format!("`{}` is not an image of the dataset", path.display()))
    }
}

/// A COCO segmentation as a row-major mask of the image's size (None when
/// an RLE was made for another size).
fn segmentation_mask(seg: &Segmentation, height: usize, width: usize) -> Option<Vec<u8>> {
    let rle = match seg {
        Segmentation::Polygons(polygons) => {
            Rle::from_polygons(polygons, height as u32, width as u32)
        }
        Segmentation::Rle(rle) => rle.clone(),
    };
    (rle.height as usize == height && rle.width as usize == width).then(|| rle.to_row_major())
}

/// The ground truth `PackDetInputs` packs into `gt_instances`: the
/// non-ignored instances of the record, masks rasterised as `poly2mask` does.
pub fn ground_truth(info: &DataInfo, height: usize, width: usize) -> Instances {
    let kept: Vec<_> = info.instances.iter().filter(|i| !i.ignore_flag).collect();
    let masks = kept.iter().any(|i| i.mask.is_some()).then(|| {
        kept.iter()
            .map(|i| {
                i.mask
                    .as_ref()
                    .and_then(|m| segmentation_mask(m, height, width))
                    .unwrap_or_else(|| vec![0; height * width])
            })
            .collect()
    });
    Instances {
        bboxes: kept.iter().map(|i| i.bbox).collect(),
        labels: kept.iter().map(|i| i.bbox_label.max(0) as usize).collect(),
        scores: None,
        masks,
    }
}

/// The predictions of one image, masks decoded to the image's size.
pub fn predictions(pred: &ImagePrediction, height: usize, width: usize) -> Instances {
    let fits = |r: &Rle| r.height as usize == height && r.width as usize == width;
    Instances {
        bboxes: pred.bboxes.clone(),
        labels: pred.labels.clone(),
        scores: Some(pred.scores.clone()),
        masks: pred.masks.as_ref().map(|masks| {
            masks
                .iter()
                .map(|r| {
                    if fits(r) {
                        r.to_row_major()
                    } else {
                        vec![0; height * width]
                    }
                })
                .collect()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Instance;

    fn info() -> DataInfo {
        DataInfo {
            img_id: 1,
            img_path: PathBuf::from("img/000001.jpg"),
            height: 10,
            width: 10,
            instances: vec![
                Instance {
                    bbox: [1.0, 1.0, 5.0, 5.0],
                    bbox_label: 0,
                    ignore_flag: false,
                    mask: Some(Segmentation::Polygons(vec![vec![
                        1.0, 1.0, 5.0, 1.0, 5.0, 5.0, 1.0, 5.0,
                    ]])),
                },
                Instance {
                    bbox: [0.0, 0.0, 9.0, 9.0],
                    bbox_label: 1,
                    ignore_flag: true,
                    mask: None,
                },
            ],
        }
    }

    #[test]
    fn ground_truth_is_the_non_ignored_instances_with_rasterised_masks() {
        let gt = ground_truth(&info(), 10, 10);
        assert_eq!(gt.bboxes, vec![[1.0, 1.0, 5.0, 5.0]]);
        assert_eq!(gt.labels, vec![0]);
        let mask = &gt.masks.as_ref().unwrap()[0];
        assert_eq!(mask.len(), 100);
        assert_eq!(mask[3 * 10 + 3], 1);
        assert_eq!(mask[8 * 10 + 8], 0);
    }

    #[test]
    fn settings_come_from_the_hook_and_the_visualizer() {
        let config = serde_json::json!({
            "default_hooks": {"visualization": {"type": "DetVisualizationHook", "score_thr": 0.5}},
            "visualizer": {"type": "DetLocalVisualizer", "line_width": 2, "bbox_color": [0, 255, 0]},
            "test_dataloader": {"dataset": {"metainfo": {"palette": [[1, 2, 3], [4, 5, 6]]}}},
        });
        let classes = vec!["a".to_string(), "b".to_string()];
        let show = TestDrawing::from_config(
            &config,
            Some(Path::new("vis")),
            Path::new("/w/ts"),
            &classes,
        )
        .unwrap()
        .unwrap();
        assert_eq!(show.dir(), Some(Path::new("/w/ts/vis")));
        assert_eq!(show.score_thr, 0.5);
        assert_eq!(show.style.bbox_colors, vec![[0, 255, 0]; 2]);
        assert_eq!(show.style.mask_colors, vec![[1, 2, 3], [4, 5, 6]]);
        assert_eq!(show.style.text_colors, vec![[200, 200, 200]; 2]);
        assert_eq!(show.style.line_width, 2.0);
        // Without --show-dir the hook's own draw / test_out_dir decide.
        assert!(
            TestDrawing::from_config(&config, None, Path::new("/w"), &classes)
                .unwrap()
                .is_none()
        );
        let drawn = serde_json::json!({"default_hooks": {"visualization": {"draw": true, "test_out_dir": "out"}}});
        let show = TestDrawing::from_config(&drawn, None, Path::new("/w"), &classes)
            .unwrap()
            .unwrap();
        assert_eq!(show.dir(), Some(Path::new("/w/out")));
        assert_eq!(show.score_thr, 0.3);
        // draw without test_out_dir: to the visualizer's backends.
        let drawn = serde_json::json!({"default_hooks": {"visualization": {"draw": true}}});
        let show = TestDrawing::from_config(&drawn, None, Path::new("/w"), &classes)
            .unwrap()
            .unwrap();
        assert_eq!(show.dir(), None);
        let none = serde_json::json!({"default_hooks": {}});
        let err = TestDrawing::from_config(&none, Some(Path::new("vis")), Path::new("/w"), &classes)
            .unwrap_err();
        assert!(err.contains("default_hooks"), "{err}");
    }
}
