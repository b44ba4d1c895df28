//! MMDetection's `proposal_fast` metric: `CocoMetric.fast_eval_recall` on
//! `eval_recalls` (`mmdet/evaluation/functional/recall.py`), the average
//! recall of each image's top `n` proposals over the IoU thresholds, without
//! COCO's evaluator.
//!
//! Per image, the ground truth is every box that is neither a crowd nor
//! marked `ignore`; the proposals are taken in the model's order (by score).
//! For each proposal count `n`, the gt boxes are matched greedily to the top
//! `n` proposals: repeatedly the pair of highest IoU left (first in order on
//! ties) is taken and its gt row and proposal column are struck out. A gt
//! box is recalled at threshold `t` when its matched IoU is `>= t`; the
//! average recall is the mean over the thresholds of recalled / all gt boxes.
//! IoUs are computed in float32 as MMDetection's NumPy `bbox_overlaps`.

use super::coco::CocoGt;

/// IoU of `a` and `b` (`[x1, y1, x2, y2]`), as MMDetection's NumPy
/// `bbox_overlaps` (float32, the union at least 1e-6).
fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let overlap = w * h;
    let union = (area(a) + area(b) - overlap).max(1e-6);
    overlap / union
}

/// The best IoU each gt box gets by greedy matching to `cols` proposals
/// (`ious[g][p]`, at least `cols` columns).
fn greedy_matches(ious: &[Vec<f32>], cols: usize) -> Vec<f32> {
    let mut m: Vec<Vec<f32>> = ious.iter().map(|row| row[..cols].to_vec()).collect();
    let mut out = vec![0.0f32; m.len()];
    if m.is_empty() || cols == 0 {
        return out;
    }
    for slot in out.iter_mut() {
        // Each row's first maximum, then the first row with the largest.
        let mut best: Option<(usize, usize, f32)> = None;
        for (g, row) in m.iter().enumerate() {
            let (p, v) = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |acc, (p, &v)| if v > acc.1 { (p, v) } else { acc });
            if best.is_none_or(|b| v > b.2) {
                best = Some((g, p, v));
            }
        }
        let (g, p, v) = best.expect("rows");
        *slot = v;
        m[g].iter_mut().for_each(|x| *x = -1.0);
        m.iter_mut().for_each(|row| row[p] = -1.0);
    }
    out
}

/// The average recall at each of `proposal_nums` over `iou_thrs`:
/// `gts[i]` and `proposals[i]` are image `i`'s boxes (proposals best first).
pub fn average_recalls(gts: &[Vec<[f32; 4]>], proposals: &[Vec<[f32; 4]>], proposal_nums: &[usize], iou_thrs: &[f64]) -> Vec<f64> {
    // MMDetection keeps the top `proposal_nums[-1]` proposals per image.
    let keep = proposal_nums.last().copied().unwrap_or(0);
    let all_ious: Vec<Vec<Vec<f32>>> = gts
        .iter()
        .zip(proposals)
        .map(|(g, p)| g.iter().map(|gb| p.iter().take(keep).map(|pb| iou(gb, pb)).collect()).collect())
        .collect();
    let total: usize = gts.iter().map(Vec::len).sum();
    proposal_nums
        .iter()
        .map(|&n| {
            let matched: Vec<f32> = all_ious
                .iter()
                .flat_map(|ious| greedy_matches(ious, ious.first().map_or(0, |r| r.len().min(n))))
                .collect();
            let recalls = iou_thrs.iter().map(|&t| matched.iter().filter(|&&v| v as f64 >= t).count() as f64 / total as f64);
            recalls.sum::<f64>() / iou_thrs.len() as f64
        })
        .collect()
}

/// Each image's ground-truth boxes (`[x1, y1, x2, y2]`) for `proposal_fast`,
/// in the order of `img_ids`: crowds and `ignore` boxes left out.
pub fn gt_boxes(gt: &CocoGt, img_ids: &[i64]) -> Vec<Vec<[f32; 4]>> {
    let mut by_image: std::collections::HashMap<i64, Vec<[f32; 4]>> = std::collections::HashMap::new();
    for ann in &gt.annotations {
        if ann.iscrowd || ann.ignore {
            continue;
        }
        if let Some([x, y, w, h]) = ann.bbox {
            by_image.entry(ann.image_id).or_default().push([x as f32, y as f32, (x + w) as f32, (y + h) as f32]);
        }
    }
    img_ids.iter().map(|id| by_image.remove(id).unwrap_or_default()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_matching_takes_the_best_pair_first() {
        // gt 0 overlaps both proposals; gt 1 only the first: the greedy
        // match gives proposal 0 to the pair of highest IoU.
        let ious = vec![vec![0.9, 0.6], vec![0.95, 0.0]];
        assert_eq!(greedy_matches(&ious, 2), vec![0.95, 0.6]);
        assert_eq!(greedy_matches(&ious, 1), vec![0.95, -1.0]);
        assert_eq!(greedy_matches(&ious, 0), vec![0.0, 0.0]);
    }
}
