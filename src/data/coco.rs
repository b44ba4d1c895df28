//! `CocoDataset`: COCO-format annotations parsed into [`super::DataInfo`] records, as MMDetection does.
//!
//! Mirrors mmdet 3.3.0 `datasets/coco.py` (`load_data_list`, `parse_data_info`,
//! `filter_data`) on top of MMEngine's `BaseDataset` (`_join_prefix`,
//! `full_init`, `indices`), with pycocotools' indexing order. The JSON is
//! parsed once with serde into typed records; there is no pickle step, so
//! `serialize_data` changes nothing (records are shared through `Arc`).
//!
//! Where detc differs from MMDetection, on purpose:
//! - a malformed annotation (unknown category id, a bbox that is not four
//!   numbers or has a negative size, a missing `area`, a broken polygon or RLE)
//!   or a missing image file is an error naming the annotation file, the
//!   annotation id and the image; MMDetection skips some silently and crashes
//!   later on others. With `skip_invalid_samples: true` such images are dropped
//!   and [`CocoDataset::warnings`] reports how many (the caller prints it);
//! - an annotation whose box lies wholly outside its image is dropped, as
//!   MMDetection drops it, and counted in a warning (MMDetection says nothing);
//! - without `metainfo.classes` the classes are the annotation file's
//!   categories in file order (MMDetection would use COCO's 80 names, which
//!   gives the same result on COCO and no labels at all on other data);
//! - duplicate image, category or annotation ids are errors.
//!
//! `Objects365V1Dataset` and `Objects365V2Dataset` are this dataset with
//! MMDetection's two changes ([`CocoFlavour`]): V1 orders the categories by
//! id, V2 reads each image as `<its directory>/<its file>` and skips the
//! three images MMDetection lists as broken.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::{DataError, DataInfo, DataResult};
use crate::registry::data::{CocoDatasetConfig, Indices};
use crate::registry::models::common::StrOrList;

mod parse;

use parse::{parse_images, Categories, RawFile};

/// How to get past a malformed sample; appended to per-sample errors.
const SKIP_HELP: &str = "fix the annotation file, or set `skip_invalid_samples: true` in the dataset config to drop such images";

/// Which of MMDetection's COCO-format datasets a config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CocoFlavour {
    Coco,
    /// `Objects365V1Dataset`: the categories ordered by id before labelling.
    Objects365V1,
    /// `Objects365V2Dataset`: `file_name` cut to its last directory and
    /// name, and [`OBJECTS365_V2_BROKEN`] skipped.
    Objects365V2,
}

impl CocoFlavour {
    /// The flavour of a dataset `type`, if it is one of these.
    pub fn of(type_name: &str) -> Option<Self> {
        match type_name {
            "CocoDataset" => Some(CocoFlavour::Coco),
            "Objects365V1Dataset" => Some(CocoFlavour::Objects365V1),
            "Objects365V2Dataset" => Some(CocoFlavour::Objects365V2),
            _ => None,
        }
    }
}

/// The images `Objects365V2Dataset` skips (MMDetection's `objv2_ignore_list`).
pub const OBJECTS365_V2_BROKEN: [&str; 3] =
    ["patch16/objects365_v2_00908726.jpg", "patch6/objects365_v1_00320532.jpg", "patch6/objects365_v1_00320534.jpg"];

/// A COCO-format dataset: one [`DataInfo`] per image, after filtering and `indices`.
#[derive(Debug)]
pub struct CocoDataset {
    cfg: CocoDatasetConfig,
    flavour: CocoFlavour,
    ann_file: PathBuf,
    img_prefix: PathBuf,
    /// `metainfo.classes`, read eagerly as MMEngine does (a file name is read line by line).
    given_classes: Option<Vec<String>>,
    early_warnings: Vec<String>,
    loaded: OnceLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    classes: Vec<String>,
    cat_ids: Vec<u64>,
    records: Vec<Arc<DataInfo>>,
    warnings: Vec<String>,
}

impl CocoDataset {
    /// Builds the dataset from its resolved config section (`type: CocoDataset`
    /// is accepted and dropped). Relative paths that MMDetection would resolve
    /// against the working directory are resolved against `base_dir`. Parses
    /// the annotations now unless `lazy_init: true` (then call [`Self::full_init`]).
    pub fn from_config(cfg: &Value, base_dir: &Path) -> DataResult<CocoDataset> {
        let mut cfg = cfg.clone();
        let mut flavour = CocoFlavour::Coco;
        if let Some(obj) = cfg.as_object_mut() {
            match obj.shift_remove("type") {
                None => {}
                Some(Value::String(t)) if CocoFlavour::of(&t).is_some() => flavour = CocoFlavour::of(&t).unwrap_or(CocoFlavour::Coco),
                Some(other) => {
                    return Err(DataError::new(format!(
                        "dataset type {other} is not a COCO-format dataset (CocoDataset, Objects365V1Dataset, Objects365V2Dataset)"
                    )))
                }
            }
        }
        let cfg: CocoDatasetConfig = serde_json::from_value(cfg)
            .map_err(|e| DataError::new(format!("invalid CocoDataset config: {e}")))?;
        Self::from_typed_flavour(cfg, flavour, base_dir)
    }

    /// Builds a `CocoDataset` from an already typed config; see [`Self::from_config`].
    pub fn from_typed(cfg: CocoDatasetConfig, base_dir: &Path) -> DataResult<CocoDataset> {
        Self::from_typed_flavour(cfg, CocoFlavour::Coco, base_dir)
    }

    /// Builds the dataset of `flavour` from an already typed config.
    pub fn from_typed_flavour(cfg: CocoDatasetConfig, flavour: CocoFlavour, base_dir: &Path) -> DataResult<CocoDataset> {
        if let Some(file) = &cfg.proposal_file {
            return Err(DataError::new(format!(
                "proposal_file `{file}`: precomputed proposals (a pickle file) are not supported by detc; remove `proposal_file` from the dataset config"
            )));
        }
        // MMEngine `_join_prefix`: data_root joins relative paths; the rest is
        // relative to the working directory, here `base_dir`.
        let join_root = |p: &str| -> PathBuf {
            let path = Path::new(p);
            if !cfg.data_root.is_empty() && !path.is_absolute() {
                base_dir.join(&cfg.data_root).join(path)
            } else {
                base_dir.join(path)
            }
        };
        let ann_file = if cfg.ann_file.is_empty() {
            base_dir.join(&cfg.data_root)
        } else {
            join_root(&cfg.ann_file)
        };
        let img_prefix = join_root(cfg.data_prefix.img.as_deref().unwrap_or(""));
        let mut early_warnings = Vec::new();
        let given_classes = match cfg.metainfo.as_ref().and_then(|m| m.classes.as_ref()) {
            None => None,
            Some(StrOrList::List(names)) => Some(names.clone()),
            Some(StrOrList::One(name)) => {
                Some(classes_from_file(name, base_dir, &mut early_warnings))
            }
        };
        let dataset = CocoDataset {
            cfg,
            flavour,
            ann_file,
            img_prefix,
            given_classes,
            early_warnings,
            loaded: OnceLock::new(),
        };
        if !dataset.cfg.lazy_init {
            dataset.full_init()?;
        }
        Ok(dataset)
    }

    /// Parses the annotation file, filters and applies `indices` (once; later calls do nothing).
    pub fn full_init(&self) -> DataResult<()> {
        if self.loaded.get().is_none() {
            let loaded = self.load()?;
            let _ = self.loaded.set(loaded);
        }
        Ok(())
    }

    fn state(&self) -> &Loaded {
        // A programming error, not a data error: lazy datasets must be initialised first.
        self.loaded
            .get()
            .expect("CocoDataset used before full_init() (the config sets lazy_init: true)")
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.state().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record of image `index` (panics when out of range, like a slice).
    pub fn get(&self, index: usize) -> Arc<DataInfo> {
        Arc::clone(&self.state().records[index])
    }

    /// `(width, height)` of image `index`, for `AspectRatioBatchSampler`.
    pub fn image_size(&self, index: usize) -> (u32, u32) {
        let r = &self.state().records[index];
        (r.width, r.height)
    }

    /// Class names as MMDetection's `dataset.metainfo['classes']`: `metainfo.classes`
    /// as given, or the file's category names in file order.
    pub fn classes(&self) -> &[String] {
        &self.state().classes
    }

    /// COCO category id of each label (`cat_ids[label]`). With a `classes`
    /// subset these follow the file's category order, not the order of
    /// `classes`, exactly as MMDetection's `get_cat_ids(cat_names=classes)`.
    pub fn cat_ids(&self) -> &[u64] {
        &self.state().cat_ids
    }

    /// Image ids of the records, in order.
    pub fn img_ids(&self) -> Vec<u64> {
        self.state().records.iter().map(|r| r.img_id).collect()
    }

    /// The annotation file, as resolved against `data_root`.
    pub fn ann_file(&self) -> &Path {
        &self.ann_file
    }

    /// Warnings the caller should print: skipped invalid images, class names
    /// the file lacks, a `classes` string that is not a file.
    pub fn warnings(&self) -> Vec<String> {
        let mut all = self.early_warnings.clone();
        if let Some(l) = self.loaded.get() {
            all.extend(l.warnings.iter().cloned());
        }
        all
    }

    fn load(&self) -> DataResult<Loaded> {
        let file = self.ann_file.display().to_string();
        let bytes = std::fs::read(&self.ann_file).map_err(|e| {
            DataError::new(format!("cannot read annotation file `{file}`: {e}; check `data_root` and `ann_file` in the dataset config"))
        })?;
        let raw: RawFile = serde_json::from_slice(&bytes).map_err(|e| {
            DataError::new(format!(
                "annotation file `{file}` is not COCO-format JSON (an object with `images`, `annotations`, `categories`): {e}"
            ))
        })?;
        drop(bytes);
        let mut raw = raw;
        match self.flavour {
            CocoFlavour::Coco => {}
            CocoFlavour::Objects365V1 => raw.sort_categories_by_id(),
            CocoFlavour::Objects365V2 => raw.objects365_v2_images(&OBJECTS365_V2_BROKEN),
        }
        let mut warnings = Vec::new();
        let cats = Categories::new(
            &raw.categories,
            self.given_classes.as_deref(),
            &file,
            &mut warnings,
        )?;
        let num_images = raw.images.len();
        let classes = match &self.given_classes {
            Some(c) => c.clone(),
            None => raw.categories.iter().map(|c| c.name.clone()).collect(),
        };
        let parsed = parse_images(
            raw,
            &cats,
            &self.img_prefix,
            &file,
            self.cfg.skip_invalid_samples,
        )?;
        if parsed.skipped > 0 {
            warnings.push(format!(
                "skipped {} of {} images of `{file}` with invalid annotations or missing image files (skip_invalid_samples: true); the first: {}",
                parsed.skipped,
                num_images,
                parsed.first_error.unwrap_or_default()
            ));
        }
        if let (n @ 1.., Some(first)) = &parsed.outside {
            warnings.push(format!(
                "{n} annotations of `{file}` lie wholly outside their image and are dropped, as \
                 MMDetection drops them (the first: {first}); check their `bbox` ([x, y, width, height])"
            ));
        }
        let kept = self.filter(parsed.records);
        let records = self.apply_indices(kept)?;
        Ok(Loaded {
            classes,
            cat_ids: cats.cat_ids,
            records,
            warnings,
        })
    }

    /// mmdet `filter_data`: only when training; `filter_empty_gt` keeps images
    /// that any annotation of a kept category refers to (crowd and tiny ones
    /// count, as pycocotools' `catToImgs` does); `min_size` on the shorter side.
    fn filter(&self, records: Vec<(DataInfo, bool)>) -> Vec<DataInfo> {
        let filter = match (&self.cfg.filter_cfg, self.cfg.test_mode) {
            (Some(f), false) => f,
            _ => return records.into_iter().map(|(r, _)| r).collect(),
        };
        records
            .into_iter()
            .filter(|(r, in_cat)| {
                (!filter.filter_empty_gt || *in_cat)
                    && f64::from(r.width.min(r.height)) >= filter.min_size
            })
            .map(|(r, _)| r)
            .collect()
    }

    /// MMEngine `_get_unserialized_subset`.
    fn apply_indices(&self, records: Vec<DataInfo>) -> DataResult<Vec<Arc<DataInfo>>> {
        let records: Vec<Arc<DataInfo>> = records.into_iter().map(Arc::new).collect();
        match &self.cfg.indices {
            None => Ok(records),
            Some(Indices::First(n)) => Ok(records.into_iter().take(*n as usize).collect()),
            Some(Indices::List(list)) => list
                .iter()
                .map(|&i| {
                    records.get(i as usize).cloned().ok_or_else(|| {
                        DataError::new(format!(
                            "dataset `indices` holds {i}, but `{}` has {} images after filtering; use indices below {}",
                            self.ann_file.display(),
                            records.len(),
                            records.len()
                        ))
                    })
                })
                .collect(),
        }
    }
}

/// MMEngine `_load_metainfo`: a string is a file of class names, one per line,
/// or, when no such file exists, a single class name.
fn classes_from_file(name: &str, base_dir: &Path, warnings: &mut Vec<String>) -> Vec<String> {
    match std::fs::read_to_string(base_dir.join(name)) {
        Ok(text) => text
            .lines()
            .map(|l| l.trim_end_matches(['\r', '\n']).to_string())
            .collect(),
        Err(_) => {
            warnings.push(format!(
                "metainfo.classes `{name}` is not a file; it is taken as one class name"
            ));
            vec![name.to_string()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Segmentation;
    use serde_json::json;

    /// A dataset folder with `ann.json` and empty image files for `files`.
    fn tree(ann: &Value, files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ann.json"), ann.to_string()).unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        for f in files {
            std::fs::write(dir.path().join("img").join(f), b"").unwrap();
        }
        dir
    }

    fn sample() -> Value {
        json!({
            "images": [
                {"id": 7, "file_name": "a.jpg", "height": 20, "width": 30},
                {"id": 3, "file_name": "b.jpg", "height": 10, "width": 10},
                {"id": 5, "file_name": "c.jpg", "height": 40, "width": 8},
            ],
            "categories": [{"id": 4, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 9, "name": "fox"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0,
                 "segmentation": [[1, 2, 4, 2, 4, 6]]},
                {"id": 2, "image_id": 7, "category_id": 4, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1,
                 "segmentation": {"size": [20, 30], "counts": [0, 5, 595]}},
                {"id": 3, "image_id": 7, "category_id": 9, "bbox": [0, 0, 0.5, 5], "area": 2},
                {"id": 4, "image_id": 3, "category_id": 9, "bbox": [2, 2, 3, 3], "area": 9, "segmentation": []},
                {"id": 5, "image_id": 7, "category_id": 1, "bbox": [40, 2, 3, 4], "area": 12},
                {"id": 6, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "ignore": 1},
            ]
        })
    }

    fn build(dir: &Path, extra: Value) -> DataResult<CocoDataset> {
        let mut cfg = json!({"type": "CocoDataset", "data_root": dir, "ann_file": "ann.json", "data_prefix": {"img": "img/"}});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        CocoDataset::from_config(&cfg, Path::new("/nonexistent"))
    }

    /// `Objects365V1Dataset` labels the categories in id order: dog (1),
    /// cat (4), fox (9).
    #[test]
    fn objects365_v1_orders_categories_by_id() {
        let dir = tree(&sample(), &["a.jpg", "b.jpg", "c.jpg"]);
        let ds = build(dir.path(), json!({"type": "Objects365V1Dataset"})).unwrap();
        assert_eq!(ds.cat_ids(), [1, 4, 9]);
        assert_eq!(ds.classes(), ["dog", "cat", "fox"]);
        assert_eq!(ds.get(0).instances[0].bbox_label, 0, "category 1 (dog) is label 0");
    }

    /// `Objects365V2Dataset` reads `<directory>/<file>` of each `file_name`
    /// and skips the images MMDetection lists as broken.
    #[test]
    fn objects365_v2_cuts_paths_and_skips_broken_images() {
        let mut ann = sample();
        ann["images"][0]["file_name"] = json!("images/v2/patch3/a.jpg");
        ann["images"][1]["file_name"] = json!("images/v1/patch6/objects365_v1_00320532.jpg");
        std::fs::create_dir_all(tree(&json!({}), &[]).path()).unwrap();
        let dir = tree(&ann, &["c.jpg"]);
        std::fs::create_dir(dir.path().join("img/patch3")).unwrap();
        std::fs::write(dir.path().join("img/patch3/a.jpg"), b"").unwrap();
        let ds = build(dir.path(), json!({"type": "Objects365V2Dataset"})).unwrap();
        assert_eq!(ds.img_ids(), [7, 5], "the broken image is skipped");
        assert_eq!(ds.get(0).img_path, dir.path().join("img/patch3/a.jpg"));
        assert_eq!(ds.cat_ids(), [4, 1, 9], "categories keep the file's order");
    }

    #[test]
    fn parses_as_mmdetection() {
        let dir = tree(&sample(), &["a.jpg", "b.jpg", "c.jpg"]);
        let ds = build(dir.path(), json!({})).unwrap();
        assert_eq!(ds.img_ids(), [7, 3, 5]);
        assert_eq!(ds.cat_ids(), [4, 1, 9]);
        assert_eq!(ds.classes(), ["cat", "dog", "fox"]);
        let a = ds.get(0);
        assert_eq!(a.img_path, dir.path().join("img/a.jpg"));
        assert_eq!(
            a.instances.len(),
            2,
            "tiny, outside and ignored annotations are dropped"
        );
        let warnings = ds.warnings();
        assert!(
            warnings.iter().any(|w| w.starts_with("1 annotations of") && w.contains("(the first: annotation 5 of image 7")),
            "{warnings:?}"
        );
        assert_eq!(a.instances[0].bbox, [1.0, 2.0, 4.0, 6.0]);
        assert_eq!(a.instances[0].bbox_label, 1);
        assert!(matches!(
            a.instances[0].mask,
            Some(Segmentation::Polygons(_))
        ));
        assert!(a.instances[1].ignore_flag);
        assert!(
            matches!(&a.instances[1].mask, Some(Segmentation::Rle(r)) if r.counts == [0, 5, 595])
        );
        assert_eq!(ds.get(1).instances[0].mask, None);
        for empty in [json!({}), json!(0), json!(""), json!(null)] {
            let mut ann = sample();
            ann["annotations"][3]["segmentation"] = empty;
            let dir = tree(&ann, &["a.jpg", "b.jpg", "c.jpg"]);
            assert_eq!(
                build(dir.path(), json!({})).unwrap().get(1).instances[0].mask,
                None
            );
        }
        assert_eq!(ds.image_size(2), (8, 40));
    }

    #[test]
    fn classes_subset_follows_file_order() {
        let dir = tree(&sample(), &["a.jpg", "b.jpg", "c.jpg"]);
        let ds = build(dir.path(), json!({"metainfo": {"classes": ["fox", "cat"]}})).unwrap();
        assert_eq!(ds.classes(), ["fox", "cat"]);
        assert_eq!(ds.cat_ids(), [4, 9]);
        let a = ds.get(0);
        assert_eq!(a.instances.len(), 1);
        assert_eq!(a.instances[0].bbox_label, 0);
        assert_eq!(ds.get(1).instances[0].bbox_label, 1);
    }

    #[test]
    fn filters_and_indices() {
        let dir = tree(&sample(), &["a.jpg", "b.jpg", "c.jpg"]);
        let f = json!({"filter_cfg": {"filter_empty_gt": true, "min_size": 9}});
        assert_eq!(build(dir.path(), f.clone()).unwrap().img_ids(), [7, 3]);
        let mut t = f.clone();
        t["test_mode"] = json!(true);
        assert_eq!(build(dir.path(), t).unwrap().img_ids(), [7, 3, 5]);
        let only_dog =
            json!({"filter_cfg": {"filter_empty_gt": true}, "metainfo": {"classes": ["dog"]}});
        assert_eq!(build(dir.path(), only_dog).unwrap().img_ids(), [7]);
        assert_eq!(
            build(dir.path(), json!({"indices": 2})).unwrap().img_ids(),
            [7, 3]
        );
        assert_eq!(
            build(dir.path(), json!({"indices": [2, 0]}))
                .unwrap()
                .img_ids(),
            [5, 7]
        );
        assert!(build(dir.path(), json!({"indices": [3]}))
            .unwrap_err()
            .message
            .contains("indices"));
    }

    #[test]
    fn accepts_a_resolved_config_section() {
        let dir = tree(&sample(), &["a.jpg", "b.jpg", "c.jpg"]);
        let section = json!({
            "filter_cfg": {"filter_empty_gt": true, "min_size": 32},
            "backend_args": null,
            "pipeline": [
                {"type": "LoadImageFromFile", "backend_args": null},
                {"type": "LoadAnnotations", "with_bbox": true, "with_mask": true},
                {"type": "Resize", "scale": [1333, 800], "keep_ratio": true},
                {"type": "RandomFlip", "prob": 0.5},
                {"type": "PackDetInputs"}
            ]
        });
        assert!(
            build(dir.path(), section).unwrap().is_empty(),
            "every image is under 32 px"
        );
        let other = json!({"type": "LVISDataset", "ann_file": "x"});
        let err = CocoDataset::from_config(&other, dir.path())
            .unwrap_err()
            .message;
        assert!(err.contains("LVISDataset"), "{err}");
    }

    #[test]
    fn is_shared_by_loader_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CocoDataset>();
    }

    #[test]
    fn lazy_init_defers_parsing() {
        let dir = tree(&json!({"images": 5}), &[]);
        let ds = build(dir.path(), json!({"lazy_init": true})).unwrap();
        assert!(ds
            .full_init()
            .unwrap_err()
            .message
            .contains("not COCO-format JSON"));
    }

    #[test]
    fn malformed_annotations_name_file_annotation_and_image() {
        let mut ann = sample();
        ann["annotations"][3]["category_id"] = json!(12);
        let dir = tree(&ann, &["a.jpg", "b.jpg", "c.jpg"]);
        let err = build(dir.path(), json!({})).unwrap_err().message;
        assert!(
            err.contains("ann.json")
                && err.contains("annotation 4 of image 3 (`b.jpg`)")
                && err.contains("category_id 12"),
            "{err}"
        );
        assert!(err.contains("skip_invalid_samples"), "{err}");
        let ds = build(dir.path(), json!({"skip_invalid_samples": true})).unwrap();
        assert_eq!(ds.img_ids(), [7, 5]);
        assert!(
            ds.warnings()[0].contains("skipped 1 of 3 images"),
            "{:?}",
            ds.warnings()
        );

        for (field, value, expected) in [
            ("bbox", json!([1, 2, 3]), "not four numbers"),
            ("bbox", json!([1, 2, -3, 4]), "negative width"),
            ("segmentation", json!([[1, 2, 3, 4]]), "4 coordinates"),
            (
                "segmentation",
                json!([[1, 2, 3, 4, 5, 6, 7]]),
                "7 coordinates",
            ),
            (
                "segmentation",
                json!({"size": [9, 9], "counts": [81]}),
                "RLE size",
            ),
            (
                "segmentation",
                json!({"size": [10, 10], "counts": [1, 2]}),
                "cover 3 pixels",
            ),
            (
                "segmentation",
                json!([1, 2, 3, 4, 5, 6]),
                "neither a list of polygons",
            ),
            (
                "segmentation",
                json!({"counts": "abc"}),
                "without both `size` and `counts`",
            ),
            ("segmentation", json!("x"), "neither a list of polygons"),
            ("bbox", json!(null), "not four numbers"),
        ] {
            let mut ann = sample();
            ann["annotations"][3][field] = value;
            let dir = tree(&ann, &["a.jpg", "b.jpg", "c.jpg"]);
            let err = build(dir.path(), json!({})).unwrap_err().message;
            assert!(
                err.contains("annotation 4 of image 3") && err.contains(expected),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_image_file_is_an_error() {
        let dir = tree(&sample(), &["a.jpg", "c.jpg"]);
        let err = build(dir.path(), json!({})).unwrap_err().message;
        assert!(
            err.contains("image 3 (`b.jpg`)") && err.contains("does not exist"),
            "{err}"
        );
    }
}
