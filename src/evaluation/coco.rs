//! COCO ground truth and results as pycocotools' `COCO()` and `COCO.loadRes`
//! read them: only what evaluation needs, parsed straight into typed structs
//! (a COCO-val-sized results file is ~100 MB of JSON).
//!
//! Semantics kept from pycocotools: annotation `area` comes from the JSON;
//! results get `id = index + 1` and `iscrowd = 0`; the kind of a results file
//! is decided by its *first* entry (`bbox` present → box results, whose area is
//! `w * h` even when they carry masks; otherwise mask results, whose area and
//! box come from the mask); results for images absent from the ground truth
//! are refused.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::coco_json::ResultsSeed;

use super::mask::Rle;

/// Bad evaluation input: which file (or entry) and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoError(pub String);

impl fmt::Display for CocoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CocoError {}

pub type CocoResult<T> = Result<T, CocoError>;

/// A segmentation as COCO JSON stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmJson {
    /// Polygons `[[x0, y0, x1, y1, ...], ...]`.
    Polygons(Vec<Vec<f64>>),
    /// Run-length encoding, `counts` compressed (a string) or not (a list).
    Rle { size: [u32; 2], counts: CountsJson },
}

/// RLE `counts`: the compressed string or the plain list of runs.
#[derive(Debug, Clone, PartialEq)]
pub enum CountsJson {
    Compressed(String),
    Runs(Vec<u32>),
}

impl SegmJson {
    /// The mask as `annToRLE` makes it for an image of `height x width`.
    ///
    /// Polygons are rasterised at the image size; an RLE keeps its own `size`.
    pub fn to_rle(&self, height: u32, width: u32) -> Result<Rle, String> {
        match self {
            SegmJson::Polygons(polys) => {
                // pycocotools: `frPyObjects` fails on an empty list and takes a first
                // entry of four numbers for a box list (then raises a TypeError)
                match polys.first().map(Vec::len) {
                    None => Err("an empty polygon list".into()),
                    Some(n) if n <= 4 => Err(format!(
                        "a polygon of {n} numbers (pycocotools needs more than 4)"
                    )),
                    _ => Ok(Rle::from_polygons(polys, height, width)),
                }
            }
            SegmJson::Rle {
                size: [h, w],
                counts: CountsJson::Runs(runs),
            } => Ok(Rle {
                height: *h,
                width: *w,
                counts: runs.clone(),
            }),
            SegmJson::Rle {
                size: [h, w],
                counts: CountsJson::Compressed(s),
            } => Rle::from_compressed(s, *h, *w),
        }
    }
}

/// Any JSON number or boolean read as pycocotools' truthiness (`iscrowd`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Truthy {
    Bool(bool),
    Num(f64),
}

impl Truthy {
    fn get(self) -> bool {
        match self {
            Truthy::Bool(b) => b,
            Truthy::Num(n) => n != 0.0,
        }
    }
}

#[derive(Deserialize)]
struct GtFile {
    #[serde(default)]
    images: Vec<ImageJson>,
    #[serde(default)]
    annotations: Vec<AnnJson>,
    #[serde(default)]
    categories: Vec<Category>,
}

#[derive(Deserialize)]
struct ImageJson {
    id: i64,
    height: Option<u32>,
    width: Option<u32>,
}

#[derive(Deserialize)]
struct AnnJson {
    id: Option<f64>,
    image_id: i64,
    category_id: i64,
    area: Option<f64>,
    iscrowd: Option<Truthy>,
    /// Some datasets mark ignored boxes so (read by `proposal_fast` only).
    ignore: Option<Truthy>,
    bbox: Option<Vec<f64>>,
    segmentation: Option<SegmJson>,
}

/// One image of the ground truth; its size is needed only for masks.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: i64,
    pub height: Option<u32>,
    pub width: Option<u32>,
}

/// One category of the ground truth.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Category {
    pub id: i64,
    #[serde(default)]
    pub name: String,
}

/// A ground-truth annotation or a detection, as evaluation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// pycocotools matches on ids: a ground truth with id 0 counts as unmatched.
    pub id: f64,
    pub image_id: i64,
    pub category_id: i64,
    pub area: f64,
    pub iscrowd: bool,
    /// An `ignore` flag of the JSON (MMDetection's `proposal_fast` skips
    /// these as it skips crowds; pycocotools does not read it).
    pub ignore: bool,
    /// `[x, y, w, h]`; `None` when the JSON has none (then only `segm` works).
    pub bbox: Option<[f64; 4]>,
    pub segmentation: Option<SegmJson>,
    /// Detections only (ground truth: 0).
    pub score: f64,
}

/// A COCO ground-truth file, indexed like `COCO.createIndex`.
#[derive(Debug, Clone, Default)]
pub struct CocoGt {
    /// Images in file order; a repeated id keeps the last entry, as a dict would.
    pub images: Vec<ImageInfo>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Annotation>,
    image_index: HashMap<i64, usize>,
}

/// Detections, as `COCO.loadRes` prepares them.
#[derive(Debug, Clone, Default)]
pub struct CocoDt {
    pub annotations: Vec<Annotation>,
}

fn read(path: &Path) -> CocoResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CocoError(format!("{}: cannot read: {e}", path.display())))
}

fn bbox4(b: &[f64], what: impl Fn() -> String) -> CocoResult<[f64; 4]> {
    b.try_into().map_err(|_| {
        CocoError(format!(
            "{}: `bbox` has {} numbers, expected 4 ([x, y, w, h])",
            what(),
            b.len()
        ))
    })
}

impl CocoGt {
    /// Reads a ground-truth file (`COCO(annotation_file)`).
    pub fn from_file(path: &Path) -> CocoResult<CocoGt> {
        let bytes = read(path)?;
        CocoGt::from_slice(&bytes, &path.display().to_string())
    }

    /// Parses ground-truth JSON; `source` names it in errors.
    pub fn from_slice(bytes: &[u8], source: &str) -> CocoResult<CocoGt> {
        let file: GtFile = serde_json::from_slice(bytes)
            .map_err(|e| CocoError(format!("{source}: not a COCO annotation file: {e}")))?;
        let mut gt = CocoGt {
            categories: file.categories,
            ..CocoGt::default()
        };
        for img in file.images {
            let info = ImageInfo {
                id: img.id,
                height: img.height,
                width: img.width,
            };
            match gt.image_index.get(&img.id) {
                Some(&i) => gt.images[i] = info,
                None => {
                    gt.image_index.insert(img.id, gt.images.len());
                    gt.images.push(info);
                }
            }
        }
        gt.annotations.reserve(file.annotations.len());
        for (i, ann) in file.annotations.into_iter().enumerate() {
            let what = || format!("{source}: annotations[{i}]");
            let id = ann
                .id
                .ok_or_else(|| CocoError(format!("{}: no `id`", what())))?;
            let area = ann.area.ok_or_else(|| {
                CocoError(format!("{}: no `area` (pycocotools reads it)", what()))
            })?;
            let iscrowd = ann.iscrowd.ok_or_else(|| {
                CocoError(format!("{}: no `iscrowd` (pycocotools reads it)", what()))
            })?;
            let bbox = ann.bbox.as_deref().map(|b| bbox4(b, what)).transpose()?;
            gt.annotations.push(Annotation {
                id,
                image_id: ann.image_id,
                category_id: ann.category_id,
                area,
                iscrowd: iscrowd.get(),
                ignore: ann.ignore.is_some_and(Truthy::get),
                bbox,
                segmentation: ann.segmentation,
                score: 0.0,
            });
        }
        Ok(gt)
    }

    /// The image with this id, if any.
    pub fn image(&self, id: i64) -> Option<&ImageInfo> {
        self.image_index.get(&id).map(|&i| &self.images[i])
    }

    /// Image ids sorted (`sorted(getImgIds())`), as `COCOeval` defaults to.
    pub fn sorted_image_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.images.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Category ids sorted (`sorted(getCatIds())`).
    pub fn sorted_category_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.categories.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Category ids of `names`, in file order (`getCatIds(catNms=names)`).
    pub fn category_ids_of(&self, names: &[String]) -> Vec<i64> {
        self.categories
            .iter()
            .filter(|c| names.contains(&c.name))
            .map(|c| c.id)
            .collect()
    }

    /// Reads a results file (`COCO.loadRes(resFile)`), converting each
    /// detection as it is parsed (no intermediate copy of 500k entries).
    pub fn load_results_file(&self, path: &Path) -> CocoResult<CocoDt> {
        let bytes = read(path)?;
        let source = path.display().to_string();
        let failure = std::cell::RefCell::new(None);
        // one `"image_id"` per result: the exact capacity, so the list never regrows
        let capacity = memchr::memmem::find_iter(&bytes, b"\"image_id\"").count();
        let seed = ResultsSeed {
            gt: self,
            source: &source,
            failure: &failure,
            capacity,
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut de)
            .and_then(|dt| de.end().map(|_| dt));
        match (parsed, failure.into_inner()) {
            (_, Some(e)) => Err(e),
            (Ok(dt), None) => Ok(dt),
            (Err(e), None) => Err(CocoError(format!(
                "{source}: not a COCO results file (a list of {{image_id, category_id, score, bbox|segmentation}}): {e}"
            ))),
        }
    }

    /// `loadRes` on detections already in memory; `source` names them in errors.
    pub fn load_results(&self, results: Vec<Detection>, source: &str) -> CocoResult<CocoDt> {
        let Some(first) = results.first() else {
            return Err(no_detections(source));
        };
        let box_results = is_box_result(first, source)?;
        let annotations = results
            .into_iter()
            .enumerate()
            .map(|(i, det)| self.result_annotation(i, det, box_results, source))
            .collect::<CocoResult<_>>()?;
        Ok(CocoDt { annotations })
    }

    /// One detection as `loadRes` prepares it: `id = i + 1`, `iscrowd = 0`, and
    /// area (and box) from the box for box results, from the mask otherwise.
    pub(crate) fn result_annotation(
        &self,
        i: usize,
        det: Detection,
        box_results: bool,
        source: &str,
    ) -> CocoResult<Annotation> {
        let what = || format!("{source}: result {i} (image_id {})", det.image_id);
        if self.image(det.image_id).is_none() {
            return Err(CocoError(format!(
                "{}: image_id {} is not in the ground truth (results do not correspond to this COCO set)",
                what(),
                det.image_id
            )));
        }
        let score = det
            .score
            .ok_or_else(|| CocoError(format!("{}: no `score`", what())))?;
        let (area, bbox, segmentation) = if box_results {
            let b = det
                .bbox
                .as_deref()
                .ok_or_else(|| CocoError(format!("{}: no `bbox`", what())))?;
            let b = bbox4(b, what)?;
            (b[2] * b[3], Some(b), det.segmentation)
        } else {
            let segm = det
                .segmentation
                .as_ref()
                .ok_or_else(|| CocoError(format!("{}: no `segmentation`", what())))?;
            let SegmJson::Rle {
                size: [h, w],
                counts,
            } = segm
            else {
                return Err(CocoError(format!(
                    "{}: mask results must be RLE, not polygons",
                    what()
                )));
            };
            let rle = match counts {
                CountsJson::Compressed(s) => Rle::from_compressed(s, *h, *w),
                CountsJson::Runs(r) => Ok(Rle {
                    height: *h,
                    width: *w,
                    counts: r.clone(),
                }),
            }
            .map_err(|e| CocoError(format!("{}: {e}", what())))?;
            let bbox = match det.bbox.as_deref() {
                Some(b) => bbox4(b, what)?,
                None => rle.to_bbox(),
            };
            (rle.area() as f64, Some(bbox), det.segmentation)
        };
        Ok(Annotation {
            id: (i + 1) as f64,
            image_id: det.image_id,
            category_id: det.category_id,
            area,
            iscrowd: false,
            ignore: false,
            bbox,
            segmentation,
            score,
        })
    }
}

pub(crate) fn no_detections(source: &str) -> CocoError {
    CocoError(format!(
        "{source}: holds no detections (pycocotools fails on an empty results list)"
    ))
}

/// `loadRes` decides by the first result: box results when it has a non-empty `bbox`.
pub(crate) fn is_box_result(first: &Detection, source: &str) -> CocoResult<bool> {
    let box_results = first.bbox.as_ref().is_some_and(|b| !b.is_empty());
    if !box_results && first.segmentation.is_none() {
        return Err(CocoError(format!(
            "{source}: the first result has neither `bbox` nor `segmentation`"
        )));
    }
    Ok(box_results)
}

/// One detection as a results file holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Detection {
    pub image_id: i64,
    pub category_id: i64,
    pub score: Option<f64>,
    /// `[x, y, w, h]`.
    pub bbox: Option<Vec<f64>>,
    pub segmentation: Option<SegmJson>,
}
