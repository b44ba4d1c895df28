//! pycocotools' `COCOeval` (evaluate, accumulate, summarize) for `bbox` and `segm`.
//!
//! A port, not a redesign: every rule that moves a digit of the 12 summary
//! numbers is kept — gt sorted ignore-last and dt by score with a stable sort
//! (numpy's mergesort), the greedy matching with crowd re-matching and its
//! `1 - 1e-10` cap, ground truths with id 0 counting as unmatched (pycocotools
//! tests `dtm` for truthiness), `np.spacing(1)` in the precision, the
//! right-to-left precision envelope, `searchsorted(side='left')` on recall,
//! and numpy's pairwise sum in the final means. What differs is the
//! execution: image/category cells are evaluated on all cores into compact
//! flag arrays, and accumulation sorts each category's detections once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::accumulate::accumulate;
use super::coco::{Annotation, CocoDt, CocoError, CocoGt, CocoResult};
use super::mask::{self, Rle};

/// What is compared: boxes or masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouType {
    Bbox,
    Segm,
}

impl IouType {
    pub fn name(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Segm => "segm",
        }
    }
}

/// `COCOeval.params` (`Params.setDetParams`).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub iou_type: IouType,
    pub img_ids: Vec<i64>,
    pub cat_ids: Vec<i64>,
    pub iou_thrs: Vec<f64>,
    pub rec_thrs: Vec<f64>,
    pub max_dets: Vec<usize>,
    pub area_rng: Vec<[f64; 2]>,
    pub area_rng_lbl: Vec<String>,
    pub use_cats: bool,
    /// `iouThrs` is a Python list, not a numpy array (MMDetection passes a
    /// configured `iou_thrs` through as a list): `summarize`'s `iouThr ==
    /// p.iouThrs` is then plainly False and AP50/AP75 come out -1.
    pub iou_thrs_is_list: bool,
}

/// `np.linspace(start, stop, num)` bit for bit: `i * step + start`, last = stop.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num.max(2) - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    if let Some(last) = v.last_mut() {
        *last = stop;
    }
    v
}

impl Params {
    /// COCO's defaults, over every image and category of `gt` (sorted ids).
    pub fn new(iou_type: IouType, gt: &CocoGt) -> Params {
        Params {
            iou_type,
            img_ids: gt.sorted_image_ids(),
            cat_ids: gt.sorted_category_ids(),
            iou_thrs: linspace(0.5, 0.95, 10),
            rec_thrs: linspace(0.0, 1.0, 101),
            max_dets: vec![1, 10, 100],
            area_rng: vec![[0.0, 1e10], [0.0, 1024.0], [1024.0, 9216.0], [9216.0, 1e10]],
            area_rng_lbl: ["all", "small", "medium", "large"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            use_cats: true,
            iou_thrs_is_list: false,
        }
    }

    /// What `evaluate()` does to the params first: unique sorted image ids
    /// (and category ids when used), sorted max detections.
    fn normalized(&self) -> Params {
        let mut p = self.clone();
        p.img_ids.sort_unstable();
        p.img_ids.dedup();
        if p.use_cats {
            p.cat_ids.sort_unstable();
            p.cat_ids.dedup();
        } else {
            let mut seen = std::collections::HashSet::new();
            p.cat_ids.retain(|c| seen.insert(*c));
        }
        p.max_dets.sort_unstable();
        p
    }
}

/// The accumulated arrays of `COCOeval.eval`, row-major like numpy's.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The params as evaluated (normalized).
    pub params: Params,
    /// `[T, R, K, A, M]`.
    pub precision: Vec<f64>,
    /// `[T, K, A, M]`.
    pub recall: Vec<f64>,
    /// `[T, R, K, A, M]`.
    pub scores: Vec<f64>,
    /// `[T, R, K, A, M]`.
    pub dims: [usize; 5],
}

/// `COCOeval.stats` and the lines `summarize()` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub stats: Vec<f64>,
    pub lines: Vec<String>,
}

/// One image/category cell after `evaluateImg` for every area range.
pub(super) struct CellEval {
    /// Detection scores, best first, at most `maxDets[-1]`.
    pub(super) scores: Vec<f64>,
    /// Per area range, `[T, D]` flags: [`MATCHED`] and/or [`IGNORED`].
    pub(super) flags: Vec<u8>,
    /// Per area range: ground truths not ignored.
    pub(super) npig: Vec<usize>,
}

pub(super) const MATCHED: u8 = 1;
pub(super) const IGNORED: u8 = 2;

/// Ground-truth and detection indices grouped by (image, category), compressed.
struct Buckets {
    offsets: Vec<usize>,
    items: Vec<u32>,
}

impl Buckets {
    fn build(n_keys: usize, keyed: &[(usize, u32)]) -> Buckets {
        let mut offsets = vec![0usize; n_keys + 1];
        for &(k, _) in keyed {
            offsets[k + 1] += 1;
        }
        for i in 0..n_keys {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut items = vec![0u32; keyed.len()];
        for &(k, v) in keyed {
            items[fill[k]] = v;
            fill[k] += 1;
        }
        Buckets { offsets, items }
    }

    fn range(&self, from: usize, to: usize) -> &[u32] {
        &self.items[self.offsets[from]..self.offsets[to]]
    }
}

/// Runs `evaluate()` and `accumulate()` of pycocotools.
pub fn evaluate(gt: &CocoGt, dt: &CocoDt, params: &Params) -> CocoResult<Evaluation> {
    let p = params.normalized();
    if p.max_dets.is_empty() || p.iou_thrs.is_empty() || p.area_rng.is_empty() {
        return Err(CocoError(
            "evaluation needs at least one maxDets, IoU threshold and area range".into(),
        ));
    }
    let (gt_buckets, dt_buckets) = prepare(gt, dt, &p);
    let (n_img, n_cat) = (p.img_ids.len(), p.cat_ids.len());
    let k_eval = if p.use_cats { n_cat } else { 1 };
    // cells ordered category-major, as `evalImgs`
    let cells = par_map(k_eval * n_img, |cell| {
        let (k, i) = (cell / n_img, cell % n_img);
        let (from, to) = if p.use_cats {
            (i * n_cat + k, i * n_cat + k + 1)
        } else {
            (i * n_cat, (i + 1) * n_cat)
        };
        let gts: Vec<&Annotation> = gt_buckets
            .range(from, to)
            .iter()
            .map(|&g| &gt.annotations[g as usize])
            .collect();
        let dts: Vec<&Annotation> = dt_buckets
            .range(from, to)
            .iter()
            .map(|&d| &dt.annotations[d as usize])
            .collect();
        evaluate_cell(gt, &gts, &dts, &p)
    });
    let cells: Vec<Option<CellEval>> = cells.into_iter().collect::<CocoResult<_>>()?;
    Ok(accumulate(&cells, p, k_eval))
}

/// `_prepare`: the ground truths and detections of each (image, category),
/// in the order pycocotools appends them (`loadAnns(getAnnIds(...))`).
fn prepare(gt: &CocoGt, dt: &CocoDt, p: &Params) -> (Buckets, Buckets) {
    let img_pos: HashMap<i64, usize> = p
        .img_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let cat_pos: HashMap<i64, usize> = p
        .cat_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let n_cat = p.cat_ids.len();
    let key = |a: &Annotation| -> Option<usize> {
        Some(img_pos.get(&a.image_id)? * n_cat + cat_pos.get(&a.category_id)?)
    };

    // `loadAnns` looks ids up in a dict: a repeated id yields its last annotation
    let mut by_id: HashMap<u64, u32> = HashMap::with_capacity(gt.annotations.len());
    let mut per_image: HashMap<i64, Vec<u32>> = HashMap::new();
    for (i, a) in gt.annotations.iter().enumerate() {
        by_id.insert(id_key(a.id), i as u32);
        per_image.entry(a.image_id).or_default().push(i as u32);
    }
    let mut gt_keyed = Vec::with_capacity(gt.annotations.len());
    for img in &p.img_ids {
        for &i in per_image.get(img).map(Vec::as_slice).unwrap_or(&[]) {
            let a = &gt.annotations[i as usize];
            if p.use_cats && !cat_pos.contains_key(&a.category_id) {
                continue;
            }
            let r = by_id[&id_key(a.id)];
            if let Some(k) = key(&gt.annotations[r as usize]) {
                gt_keyed.push((k, r));
            }
        }
    }
    // result ids are unique (index + 1): file order within a cell is pycocotools' order
    let dt_keyed: Vec<(usize, u32)> = dt
        .annotations
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((key(a)?, i as u32)))
        .collect();
    let n_keys = p.img_ids.len() * n_cat;
    (
        Buckets::build(n_keys, &gt_keyed),
        Buckets::build(n_keys, &dt_keyed),
    )
}

/// A dict key for a numeric id (Python: `1 == 1.0`, `-0.0 == 0.0`).
fn id_key(id: f64) -> u64 {
    if id == 0.0 {
        0
    } else {
        id.to_bits()
    }
}

/// Stable order of detections, highest score first (numpy mergesort of `-score`).
fn score_order(dts: &[&Annotation]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..dts.len()).collect();
    order.sort_by(|&a, &b| {
        dts[b]
            .score
            .partial_cmp(&dts[a].score)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order
}

/// `computeIoU` then `evaluateImg` for every area range of one cell.
fn evaluate_cell(
    gt: &CocoGt,
    gts: &[&Annotation],
    dts: &[&Annotation],
    p: &Params,
) -> CocoResult<Option<CellEval>> {
    if gts.is_empty() && dts.is_empty() {
        return Ok(None);
    }
    let max_det = *p.max_dets.last().unwrap_or(&0);
    let mut order = score_order(dts);
    order.truncate(max_det);
    let dts: Vec<&Annotation> = order.iter().map(|&i| dts[i]).collect();
    let crowd: Vec<bool> = gts.iter().map(|g| g.iscrowd).collect();
    let ious = compute_iou(gt, gts, &dts, &crowd, p.iou_type)?;
    let (n_t, n_d, n_g) = (p.iou_thrs.len(), dts.len(), gts.len());
    let mut flags = vec![0u8; p.area_rng.len() * n_t * n_d];
    let mut npig = Vec::with_capacity(p.area_rng.len());
    let mut gt_order: Vec<usize> = Vec::with_capacity(n_g);
    let mut gt_ig: Vec<bool> = Vec::with_capacity(n_g);
    let mut gt_matched = vec![false; n_g];
    for (a, rng) in p.area_rng.iter().enumerate() {
        let out_of = |area: f64| area < rng[0] || area > rng[1];
        // gt sorted ignore-last, stable
        let ignore: Vec<bool> = gts.iter().map(|g| g.iscrowd || out_of(g.area)).collect();
        gt_order.clear();
        gt_order.extend((0..n_g).filter(|&g| !ignore[g]));
        gt_order.extend((0..n_g).filter(|&g| ignore[g]));
        gt_ig.clear();
        gt_ig.extend(gt_order.iter().map(|&g| ignore[g]));
        npig.push(gt_ig.iter().filter(|&&ig| !ig).count());
        let cell_flags = &mut flags[a * n_t * n_d..(a + 1) * n_t * n_d];
        if n_d > 0 && n_g > 0 {
            for (t, &thr) in p.iou_thrs.iter().enumerate() {
                gt_matched.fill(false);
                let row = &mut cell_flags[t * n_d..(t + 1) * n_d];
                match_detections(
                    &ious,
                    n_g,
                    &gt_order,
                    &gt_ig,
                    gts,
                    &mut gt_matched,
                    thr,
                    row,
                );
            }
        }
        for (d, det) in dts.iter().enumerate() {
            if out_of(det.area) {
                for t in 0..n_t {
                    let f = &mut cell_flags[t * n_d + d];
                    if *f & MATCHED == 0 {
                        *f |= IGNORED;
                    }
                }
            }
        }
    }
    Ok(Some(CellEval {
        scores: dts.iter().map(|d| d.score).collect(),
        flags,
        npig,
    }))
}

/// `evaluateImg`'s greedy matching at one IoU threshold; `row[d]` gets
/// [`MATCHED`] (to a ground truth whose id is not 0) and [`IGNORED`] (matched
/// to an ignored ground truth).
#[allow(clippy::too_many_arguments)]
fn match_detections(
    ious: &[f64],
    n_g: usize,
    gt_order: &[usize],
    gt_ig: &[bool],
    gts: &[&Annotation],
    gt_matched: &mut [bool],
    thr: f64,
    row: &mut [u8],
) {
    for (d, flag) in row.iter_mut().enumerate() {
        let mut best = thr.min(1.0 - 1e-10);
        let mut m: Option<usize> = None;
        let dious = &ious[d * n_g..(d + 1) * n_g];
        for (gi, &g) in gt_order.iter().enumerate() {
            if gt_matched[gi] && !gts[g].iscrowd {
                continue;
            }
            if let Some(mi) = m {
                if !gt_ig[mi] && gt_ig[gi] {
                    break;
                }
            }
            let iou = dious[g];
            if iou < best {
                continue;
            }
            best = iou;
            m = Some(gi);
        }
        if let Some(mi) = m {
            let mut f = if gt_ig[mi] { IGNORED } else { 0 };
            if gts[gt_order[mi]].id != 0.0 {
                f |= MATCHED;
            }
            *flag = f;
            gt_matched[mi] = true;
        }
    }
}

/// `[D, G]` IoUs as `maskUtils.iou` gives them (empty when either side is).
fn compute_iou(
    gt: &CocoGt,
    gts: &[&Annotation],
    dts: &[&Annotation],
    crowd: &[bool],
    t: IouType,
) -> CocoResult<Vec<f64>> {
    if gts.is_empty() || dts.is_empty() {
        return Ok(Vec::new());
    }
    match t {
        IouType::Bbox => {
            let boxes = |anns: &[&Annotation], what: &str| -> CocoResult<Vec<[f64; 4]>> {
                anns.iter()
                    .map(|a| {
                        a.bbox.ok_or_else(|| {
                            CocoError(format!(
                                "{what} id {} (image {}) has no `bbox` for bbox evaluation",
                                a.id, a.image_id
                            ))
                        })
                    })
                    .collect()
            };
            Ok(mask::bbox_iou(
                &boxes(dts, "detection")?,
                &boxes(gts, "annotation")?,
                crowd,
            ))
        }
        IouType::Segm => {
            let d: Vec<Rle> = dts
                .iter()
                .map(|a| ann_to_rle(gt, a, "detection"))
                .collect::<CocoResult<_>>()?;
            let g: Vec<Rle> = gts
                .iter()
                .map(|a| ann_to_rle(gt, a, "annotation"))
                .collect::<CocoResult<_>>()?;
            Ok(mask::iou(&d, &g, crowd))
        }
    }
}

/// `COCO.annToRLE`: polygons at the image's size, RLEs as they are. A box
/// result without a mask is its box's polygon (`loadRes` adds that polygon).
fn ann_to_rle(gt: &CocoGt, a: &Annotation, what: &str) -> CocoResult<Rle> {
    let err = |msg: String| CocoError(format!("{what} id {} (image {}): {msg}", a.id, a.image_id));
    let img = gt
        .image(a.image_id)
        .ok_or_else(|| err("its image is not in the ground truth".into()))?;
    let (Some(h), Some(w)) = (img.height, img.width) else {
        return Err(err(format!(
            "image {} has no `height`/`width`, needed for masks",
            img.id
        )));
    };
    match (&a.segmentation, a.bbox) {
        (Some(segm), _) => segm
            .to_rle(h, w)
            .map_err(|e| err(format!("bad `segmentation`: {e}"))),
        (None, Some([x, y, bw, bh])) if what == "detection" => {
            let (x2, y2) = (x + bw, y + bh);
            Ok(Rle::from_polygons(
                &[vec![x, y, x, y2, x2, y2, x2, y]],
                h,
                w,
            ))
        }
        (None, _) => Err(err("no `segmentation` for segm evaluation".into())),
    }
}

/// `f(0..n)` on all cores, in order; work is handed out in small blocks.
pub(super) fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n.max(1));
    if threads <= 1 || n < 64 {
        return (0..n).map(f).collect();
    }
    const BLOCK: usize = 32;
    let next = AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<T>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let start = next.fetch_add(BLOCK, Ordering::Relaxed);
                        if start >= n {
                            break mine;
                        }
                        let end = (start + BLOCK).min(n);
                        mine.push((start, (start..end).map(&f).collect::<Vec<T>>()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    parts.sort_unstable_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_is_numpys() {
        // np.linspace(.5, .95, 10) and np.linspace(0, 1, 101), printed with repr()
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[8], 0.8999999999999999);
        assert_eq!((t[0], t[5], t[9]), (0.5, 0.75, 0.95));
        let r = linspace(0.0, 1.0, 101);
        assert_eq!((r[3], r[7], r[29], r[100]), (0.03, 0.07, 0.29, 1.0));
    }

    #[test]
    fn par_map_keeps_order() {
        let v = par_map(1000, |i| i * 2);
        assert_eq!(v, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
    }
}
