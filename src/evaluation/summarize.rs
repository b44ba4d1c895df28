//! `COCOeval.summarize()` and MMDetection's per-class AP, read from the
//! accumulated arrays.

use super::accumulate::pairwise_sum;
use super::coco::{CocoError, CocoResult};
use super::cocoeval::{Evaluation, Summary};

impl Evaluation {
    /// `_summarize(ap, iouThr, areaRng, maxDets)`: the mean over entries > -1, or -1.
    pub fn summarize_one(
        &self,
        ap: bool,
        iou_thr: Option<f64>,
        area: &str,
        max_dets: usize,
    ) -> f64 {
        let p = &self.params;
        let [n_t, n_r, n_k, n_a, n_m] = self.dims;
        let ts: Vec<usize> = match iou_thr {
            None => (0..n_t).collect(),
            Some(_) if p.iou_thrs_is_list => Vec::new(),
            Some(thr) => (0..n_t).filter(|&t| p.iou_thrs[t] == thr).collect(),
        };
        let aind: Vec<usize> = (0..n_a)
            .filter(|&a| p.area_rng_lbl.get(a).is_some_and(|l| l == area))
            .collect();
        let mind: Vec<usize> = (0..n_m).filter(|&m| p.max_dets[m] == max_dets).collect();
        // numpy broadcasts the two index lists together (both are length 1 in practice)
        let pairs: Vec<(usize, usize)> = match (aind.len(), mind.len()) {
            (0, _) | (_, 0) => Vec::new(),
            (1, _) => mind.iter().map(|&m| (aind[0], m)).collect(),
            (_, 1) => aind.iter().map(|&a| (a, mind[0])).collect(),
            _ => aind.iter().zip(&mind).map(|(&a, &m)| (a, m)).collect(),
        };
        let mut vals = Vec::new();
        for &t in &ts {
            if ap {
                for r in 0..n_r {
                    for k in 0..n_k {
                        for &(a, m) in &pairs {
                            vals.push(
                                self.precision[(((t * n_r + r) * n_k + k) * n_a + a) * n_m + m],
                            );
                        }
                    }
                }
            } else {
                for k in 0..n_k {
                    for &(a, m) in &pairs {
                        vals.push(self.recall[((t * n_k + k) * n_a + a) * n_m + m]);
                    }
                }
            }
        }
        vals.retain(|&v| v > -1.0);
        if vals.is_empty() {
            -1.0
        } else {
            pairwise_sum(&vals) / vals.len() as f64
        }
    }

    /// `summarize()` for detections: the 12 stats and the lines it prints.
    /// Fails, as pycocotools does, with fewer than three `maxDets`.
    pub fn summarize(&self) -> CocoResult<Summary> {
        let md = &self.params.max_dets;
        if md.len() < 3 {
            return Err(CocoError(format!(
                "summarize needs three maxDets, got {md:?}"
            )));
        }
        let rows: [(bool, Option<f64>, &str, usize); 12] = [
            (true, None, "all", md[2]),
            (true, Some(0.5), "all", md[2]),
            (true, Some(0.75), "all", md[2]),
            (true, None, "small", md[2]),
            (true, None, "medium", md[2]),
            (true, None, "large", md[2]),
            (false, None, "all", md[0]),
            (false, None, "all", md[1]),
            (false, None, "all", md[2]),
            (false, None, "small", md[2]),
            (false, None, "medium", md[2]),
            (false, None, "large", md[2]),
        ];
        let mut stats = Vec::with_capacity(12);
        let mut lines = Vec::with_capacity(12);
        let thrs = &self.params.iou_thrs;
        for (ap, iou_thr, area, max_dets) in rows {
            let v = self.summarize_one(ap, iou_thr, area, max_dets);
            let (title, kind) = if ap {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            let iou = match iou_thr {
                None => format!("{:.2}:{:.2}", thrs[0], thrs[thrs.len() - 1]),
                Some(t) => format!("{t:.2}"),
            };
            lines.push(format!(" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {v:.3}"));
            stats.push(v);
        }
        Ok(Summary { stats, lines })
    }

    /// `precision[:, :, k, a, m]` entries above -1 averaged (MMDetection's
    /// classwise AP); `iou`: one threshold index or all. `None`: NaN in mmdet.
    pub fn class_ap(&self, k: usize, iou: Option<usize>, a: usize, m: usize) -> Option<f64> {
        let [n_t, n_r, n_k, n_a, n_m] = self.dims;
        let ts: Vec<usize> = match iou {
            Some(t) if t < n_t => vec![t],
            Some(_) => Vec::new(),
            None => (0..n_t).collect(),
        };
        let mut vals = Vec::new();
        for t in ts {
            for r in 0..n_r {
                let v = self.precision[(((t * n_r + r) * n_k + k) * n_a + a) * n_m + m];
                if v > -1.0 {
                    vals.push(v);
                }
            }
        }
        (!vals.is_empty()).then(|| pairwise_sum(&vals) / vals.len() as f64)
    }
}
