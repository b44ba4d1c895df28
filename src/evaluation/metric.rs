//! MMDetection's `CocoMetric`: predictions to COCO results JSON, then [`super::cocoeval`].
//!
//! Mirrors `mmdet/evaluation/metrics/coco_metric.py` (3.3.0) without tensors:
//! per-image predictions become COCO results (boxes `xywh`, contiguous labels
//! mapped through the dataset's `cat_ids`, masks as compressed RLE); `bbox`
//! and `segm` run `COCOeval` with `maxDets = proposal_nums` (so the AP stats
//! are at 1000 detections by default, as in MMDetection), `proposal` runs it
//! with `useCats = 0`; values are rounded to 3 decimals and keyed as
//! MMDetection logs them (`coco/bbox_mAP`, …). Mask results drop their `bbox`
//! before `loadRes`, so mask area and box come from the mask, as in mmdet.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::coco::{CocoDt, CocoError, CocoGt, CocoResult, Detection, SegmJson};
use super::cocoeval::{self, Evaluation, IouType, Params};
use super::mask::Rle;
use super::recall;
use crate::data::{Instance, Segmentation};
use crate::registry::data::{CocoMetricConfig, CocoMetricKind};
use crate::registry::models::common::FloatOrList;

/// The predictions for one image (`pred_instances` after `process`).
#[derive(Debug, Clone, Default)]
pub struct ImagePrediction {
    pub img_id: i64,
    /// `[x1, y1, x2, y2]` in original-image pixels.
    pub bboxes: Vec<[f32; 4]>,
    pub scores: Vec<f32>,
    /// Contiguous labels: indices into the dataset's `classes`.
    pub labels: Vec<usize>,
    /// One mask per box, when the model predicts masks.
    pub masks: Option<Vec<Rle>>,
    /// Mask scores (else `scores` are used for masks).
    pub mask_scores: Option<Vec<f32>>,
}

/// Ground truth of one image for metrics without `ann_file` (`gt_to_coco_json`).
#[derive(Debug, Clone, Default)]
pub struct ImageGt {
    pub img_id: i64,
    pub width: u32,
    pub height: u32,
    pub instances: Vec<Instance>,
}

/// What `compute_metrics` returns, plus what MMDetection logs on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricResults {
    /// `coco/bbox_mAP`, …, in MMDetection's order, rounded to 3 decimals.
    pub values: Vec<(String, f64)>,
    /// `coco/bbox_mAP_copypaste` → `"0.370 0.580 …"` (logged by MMDetection).
    pub copypaste: Vec<(String, String)>,
    /// Summary lines and classwise tables, as MMDetection logs them.
    pub log: Vec<String>,
    /// Result files written (`<prefix>.bbox.json`, `<prefix>.segm.json`).
    pub files: Vec<PathBuf>,
}

/// `CocoMetric` over one evaluation run: `process` batches, then `compute`.
pub struct CocoMetric {
    cfg: CocoMetricConfig,
    classes: Vec<String>,
    gt: Option<CocoGt>,
    preds: Vec<ImagePrediction>,
    gts: Vec<ImageGt>,
}

const SUMMARY_KEYS: [&str; 12] = [
    "mAP",
    "mAP_50",
    "mAP_75",
    "mAP_s",
    "mAP_m",
    "mAP_l",
    "AR@100",
    "AR@300",
    "AR@1000",
    "AR_s@1000",
    "AR_m@1000",
    "AR_l@1000",
];

/// `float(f'{round(x, 3)}')`: Python rounds the exact binary value, as Rust's formatting does.
pub fn round3(x: f64) -> f64 {
    format!("{x:.3}").parse().unwrap_or(x)
}

/// Python's `str(float)` for the rounded numbers of the classwise table.
fn py_str(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') || s.contains("inf") {
        s
    } else {
        s + ".0"
    }
}

impl MetricResults {
    /// Sets `key` as a Python dict does: a repeated key keeps its first place.
    fn set(&mut self, (key, value): (String, f64)) {
        match self.values.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.values.push((key, value)),
        }
    }
}

impl CocoMetric {
    /// Checks the config as `CocoMetric.__init__` does and loads `ann_file`.
    pub fn new(cfg: &CocoMetricConfig, classes: &[String]) -> CocoResult<CocoMetric> {
        if cfg.format_only && cfg.outfile_prefix.is_none() {
            return Err(CocoError(
                "CocoMetric: `format_only: true` needs `outfile_prefix`".into(),
            ));
        }
        if let Some(items) = &cfg.metric_items {
            if let Some(bad) = items.iter().find(|i| !SUMMARY_KEYS.contains(&i.as_str())) {
                return Err(CocoError(format!(
                    "CocoMetric: metric item `{bad}` is not supported; expected one of {}",
                    SUMMARY_KEYS.join(", ")
                )));
            }
        }
        let gt = match &cfg.ann_file {
            Some(path) => {
                let mut gt = CocoGt::from_file(Path::new(path))?;
                if cfg.sort_categories {
                    gt.categories.sort_by_key(|c| c.id);
                }
                Some(gt)
            }
            None => None,
        };
        Ok(CocoMetric {
            cfg: cfg.clone(),
            classes: classes.to_vec(),
            gt,
            preds: Vec::new(),
            gts: Vec::new(),
        })
    }

    /// `process`: keeps one batch of predictions (and their ground truth when
    /// there is no `ann_file`).
    pub fn process(&mut self, preds: Vec<ImagePrediction>, gts: Vec<ImageGt>) {
        self.preds.extend(preds);
        self.gts.extend(gts);
    }

    /// `compute_metrics` over everything processed.
    pub fn compute(&mut self) -> CocoResult<MetricResults> {
        let gt = match self.gt.take() {
            Some(gt) => gt,
            None => self.gt_to_coco()?,
        };
        let result = self.compute_with(&gt);
        self.gt = Some(gt);
        self.preds.clear();
        self.gts.clear();
        result
    }

    fn compute_with(&self, gt: &CocoGt) -> CocoResult<MetricResults> {
        let cat_ids = gt.category_ids_of(&self.classes);
        let cat_ids = if self.classes.is_empty() {
            gt.categories.iter().map(|c| c.id).collect()
        } else {
            cat_ids
        };
        let img_ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
        let (bbox_dets, segm_dets) = results_to_json(&self.preds, &cat_ids)?;
        let mut out = MetricResults::default();
        if let Some(prefix) = &self.cfg.outfile_prefix {
            out.files
                .push(dump(&bbox_dets, &format!("{prefix}.bbox.json"))?);
            if let Some(segm) = &segm_dets {
                out.files.push(dump(segm, &format!("{prefix}.segm.json"))?);
            }
        }
        if self.cfg.format_only {
            return Ok(out);
        }
        let prefix = self.cfg.prefix.clone().unwrap_or_else(|| "coco".into());
        for kind in self.cfg.metric.as_vec() {
            let (name, iou_type) = match kind {
                CocoMetricKind::Bbox => ("bbox", IouType::Bbox),
                CocoMetricKind::Segm => ("segm", IouType::Segm),
                CocoMetricKind::Proposal => ("proposal", IouType::Bbox),
                CocoMetricKind::ProposalFast => {
                    self.fast_eval_recall(gt, &img_ids, &prefix, &mut out)?;
                    continue;
                }
            };
            let dets = match iou_type {
                IouType::Bbox => bbox_dets.clone(),
                IouType::Segm => {
                    let mut dets = segm_dets.clone().ok_or_else(|| {
                        CocoError(format!(
                            "CocoMetric: {name} is not in results (the model predicts no masks)"
                        ))
                    })?;
                    // mmdet pops `bbox` from mask results before `loadRes`: area and box come from the mask
                    dets.iter_mut().for_each(|d| d.bbox = None);
                    dets
                }
            };
            if dets.is_empty() {
                out.log
                    .push("The testing results of the whole dataset is empty.".into());
                break;
            }
            let dt = gt.load_results(dets, &format!("{name} results"))?;
            let eval = self.evaluate(
                gt,
                &dt,
                iou_type,
                kind == &CocoMetricKind::Proposal,
                &cat_ids,
                &img_ids,
            )?;
            let summary = eval.summarize()?;
            out.log.push(format!("Evaluating {name}..."));
            out.log.extend(summary.lines.iter().cloned());
            let stat = |item: &str| {
                summary.stats[SUMMARY_KEYS.iter().position(|k| *k == item).unwrap_or(0)]
            };
            if kind == &CocoMetricKind::Proposal {
                let default = [
                    "AR@100",
                    "AR@300",
                    "AR@1000",
                    "AR_s@1000",
                    "AR_m@1000",
                    "AR_l@1000",
                ];
                for item in self.items(&default) {
                    out.set((format!("{prefix}/{item}"), round3(stat(&item))));
                }
                continue;
            }
            if self.cfg.classwise {
                self.classwise(gt, &eval, &cat_ids, &prefix, &mut out)?;
            }
            for item in self.items(&["mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l"]) {
                out.set((format!("{prefix}/{name}_{item}"), round3(stat(&item))));
            }
            let ap: Vec<String> = summary.stats[..6]
                .iter()
                .map(|v| format!("{v:.3}"))
                .collect();
            out.log
                .push(format!("{name}_mAP_copypaste: {}", ap.join(" ")));
            out.copypaste
                .push((format!("{prefix}/{name}_mAP_copypaste"), ap.join(" ")));
        }
        Ok(out)
    }

    /// `proposal_fast`: the average recall at each of `proposal_nums`
    /// ([`recall`]), unrounded as MMDetection returns it (`coco/AR@100`, ...).
    fn fast_eval_recall(&self, gt: &CocoGt, img_ids: &[i64], prefix: &str, out: &mut MetricResults) -> CocoResult<()> {
        let by_id: std::collections::HashMap<i64, &ImagePrediction> = self.preds.iter().map(|p| (p.img_id, p)).collect();
        let proposals = img_ids
            .iter()
            .map(|id| {
                by_id.get(id).map(|p| p.bboxes.clone()).ok_or_else(|| {
                    CocoError(format!("CocoMetric proposal_fast: no prediction for image {id} (it needs one for every image of the annotations)"))
                })
            })
            .collect::<CocoResult<Vec<_>>>()?;
        let nums: Vec<usize> = self.cfg.proposal_nums.iter().map(|&n| n as usize).collect();
        let ar = recall::average_recalls(&recall::gt_boxes(gt, img_ids), &proposals, &nums, &self.iou_thrs());
        out.log.push("Evaluating proposal_fast...".into());
        for (num, v) in nums.iter().zip(ar) {
            out.log.push(format!("AR@{num}\t{v:.4}"));
            out.set((format!("{prefix}/AR@{num}"), v));
        }
        Ok(())
    }

    /// `iou_thrs`, or MMDetection's default 0.5:0.05:0.95.
    fn iou_thrs(&self) -> Vec<f64> {
        match &self.cfg.iou_thrs {
            None => cocoeval::linspace(0.5, 0.95, 10),
            // (mmdet fails on a single float; a list of one is what it means)
            Some(FloatOrList::Float(f)) => vec![*f],
            Some(FloatOrList::List(v)) => v.clone(),
        }
    }

    fn items(&self, default: &[&str]) -> Vec<String> {
        match &self.cfg.metric_items {
            Some(items) => items.clone(),
            None => default.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn evaluate(
        &self,
        gt: &CocoGt,
        dt: &CocoDt,
        t: IouType,
        proposal: bool,
        cats: &[i64],
        imgs: &[i64],
    ) -> CocoResult<Evaluation> {
        let mut p = Params::new(t, gt);
        p.cat_ids = cats.to_vec();
        p.img_ids = imgs.to_vec();
        p.max_dets = self.cfg.proposal_nums.iter().map(|&n| n as usize).collect();
        p.iou_thrs = self.iou_thrs();
        p.iou_thrs_is_list = self.cfg.iou_thrs.is_some();
        p.use_cats = !proposal;
        cocoeval::evaluate(gt, dt, &p)
    }

    /// Per-category AP from the precision array, as MMDetection's `classwise`
    /// (note: it pairs `cat_ids[idx]` with the sorted category axis, as mmdet does).
    fn classwise(
        &self,
        gt: &CocoGt,
        eval: &Evaluation,
        cats: &[i64],
        prefix: &str,
        out: &mut MetricResults,
    ) -> CocoResult<()> {
        let [n_t, _, n_k, n_a, n_m] = eval.dims;
        if n_k != cats.len() || n_a < 4 {
            return Err(CocoError(format!(
                "CocoMetric classwise: {} categories but {n_k} evaluated",
                cats.len()
            )));
        }
        if n_t < 6 {
            // mmdet reads thresholds 0 and 5 as AP50 and AP75 (and raises an IndexError)
            return Err(CocoError(format!(
                "CocoMetric classwise needs at least 6 IoU thresholds, got {n_t}"
            )));
        }
        let mut rows = vec![[
            "category", "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
        ]
        .map(String::from)
        .to_vec()];
        for (idx, cat_id) in cats.iter().enumerate() {
            let name = gt
                .categories
                .iter()
                .find(|c| c.id == *cat_id)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let ap = |iou: Option<usize>, a: usize| {
                round3(eval.class_ap(idx, iou, a, n_m - 1).unwrap_or(f64::NAN))
            };
            let all = ap(None, 0);
            out.set((format!("{prefix}/{name}_precision"), all));
            let row = [
                all,
                ap(Some(0), 0),
                ap(Some(5), 0),
                ap(None, 1),
                ap(None, 2),
                ap(None, 3),
            ];
            rows.push(
                std::iter::once(name)
                    .chain(row.iter().map(|v| py_str(*v)))
                    .collect(),
            );
        }
        out.log.push(ascii_table(&rows));
        Ok(())
    }

    /// `gt_to_coco_json`: categories are the classes with ids 0.., boxes `xywh`.
    fn gt_to_coco(&self) -> CocoResult<CocoGt> {
        let categories: Vec<Value> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"id": i, "name": n}))
            .collect();
        let mut images = Vec::new();
        let mut anns = Vec::new();
        for g in &self.gts {
            images.push(
                json!({"id": g.img_id, "width": g.width, "height": g.height, "file_name": ""}),
            );
            for inst in &g.instances {
                let b = inst.bbox.map(f64::from);
                let bbox = [b[0], b[1], b[2] - b[0], b[3] - b[1]];
                let mut ann = json!({"id": anns.len() + 1, "image_id": g.img_id, "bbox": bbox,
                    "iscrowd": inst.ignore_flag as u8, "category_id": inst.bbox_label, "area": bbox[2] * bbox[3]});
                match &inst.mask {
                    Some(Segmentation::Polygons(p)) if !p.is_empty() => {
                        ann["segmentation"] = json!(p)
                    }
                    Some(Segmentation::Rle(r)) => {
                        ann["segmentation"] =
                            json!({"size": [r.height, r.width], "counts": r.to_compressed()})
                    }
                    _ => {}
                }
                anns.push(ann);
            }
        }
        let coco = json!({"images": images, "categories": categories, "annotations": anns});
        CocoGt::from_slice(
            coco.to_string().as_bytes(),
            "ground truth converted from the dataset",
        )
    }
}

/// `results2json`: (box results, mask results when the first image has masks).
fn results_to_json(
    preds: &[ImagePrediction],
    cat_ids: &[i64],
) -> CocoResult<(Vec<Detection>, Option<Vec<Detection>>)> {
    let mut bbox = Vec::new();
    let mut segm = preds
        .first()
        .and_then(|p| p.masks.as_ref())
        .map(|_| Vec::new());
    for p in preds {
        for (i, &label) in p.labels.iter().enumerate() {
            let cat = *cat_ids.get(label).ok_or_else(|| {
                CocoError(format!(
                    "image {}: label {label} has no category ({} classes)",
                    p.img_id,
                    cat_ids.len()
                ))
            })?;
            let b = p
                .bboxes
                .get(i)
                .ok_or_else(|| CocoError(format!("image {}: fewer boxes than labels", p.img_id)))?;
            let (x1, y1, x2, y2) = (b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64);
            let score = p.scores.get(i).map(|&s| s as f64);
            bbox.push(Detection {
                image_id: p.img_id,
                category_id: cat,
                score,
                bbox: Some(vec![x1, y1, x2 - x1, y2 - y1]),
                segmentation: None,
            });
            if let Some(segm) = segm.as_mut() {
                let masks = p
                    .masks
                    .as_ref()
                    .ok_or_else(|| CocoError(format!("image {}: no masks", p.img_id)))?;
                let m = masks.get(i).ok_or_else(|| {
                    CocoError(format!("image {}: fewer masks than labels", p.img_id))
                })?;
                let mask_score = p
                    .mask_scores
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .map(|&s| s as f64)
                    .or(score);
                segm.push(Detection {
                    image_id: p.img_id,
                    category_id: cat,
                    score: mask_score,
                    bbox: Some(vec![x1, y1, x2 - x1, y2 - y1]),
                    segmentation: Some(SegmJson::Rle {
                        size: [m.height, m.width],
                        counts: super::coco::CountsJson::Compressed(m.to_compressed()),
                    }),
                });
            }
        }
    }
    Ok((bbox, segm))
}

/// Writes results as COCO results JSON (`mmengine.dump`); mask results keep their `bbox`.
fn dump(dets: &[Detection], path: &str) -> CocoResult<PathBuf> {
    let list: Vec<Value> = dets
        .iter()
        .map(|d| {
            let mut v =
                json!({"image_id": d.image_id, "score": d.score, "category_id": d.category_id});
            let bbox = d.bbox.clone();
            if let Some(b) = bbox {
                v["bbox"] = json!(b);
            }
            if let Some(s) = &d.segmentation {
                v["segmentation"] = match s {
                    SegmJson::Rle {
                        size,
                        counts: super::coco::CountsJson::Compressed(c),
                    } => json!({"size": size, "counts": c}),
                    SegmJson::Rle {
                        size,
                        counts: super::coco::CountsJson::Runs(r),
                    } => json!({"size": size, "counts": r}),
                    SegmJson::Polygons(p) => json!(p),
                };
            }
            v
        })
        .collect();
    let path = PathBuf::from(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CocoError(format!("{}: cannot create: {e}", dir.display())))?;
    }
    std::fs::write(&path, Value::Array(list).to_string())
        .map_err(|e| CocoError(format!("{}: cannot write: {e}", path.display())))?;
    Ok(path)
}

/// A `terminaltables.AsciiTable` rendering (header row, then one row per line).
fn ascii_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |r: &Vec<String>| {
        let cells: Vec<String> = (0..cols)
            .map(|c| {
                format!(
                    " {:<w$} ",
                    r.get(c).map_or("", |s| s.as_str()),
                    w = widths[c]
                )
            })
            .collect();
        format!("|{}|", cells.join("|"))
    };
    let mut out = vec![rule.clone(), line(&rows[0]), rule.clone()];
    out.extend(rows[1..].iter().map(line));
    out.push(rule);
    out.join("\n")
}
