//! `COCOeval.accumulate()`: per-image match flags into precision, recall and
//! score arrays `[T, R, K, A, M]`, one category per task.

use super::cocoeval::{par_map, CellEval, Evaluation, Params, MATCHED};

/// `accumulate()`: precision/recall/scores per (T, R, K, A, M).
pub(super) fn accumulate(cells: &[Option<CellEval>], p: Params, k_eval: usize) -> Evaluation {
    let (n_t, n_r, n_a, n_m) = (
        p.iou_thrs.len(),
        p.rec_thrs.len(),
        p.area_rng.len(),
        p.max_dets.len(),
    );
    let n_img = p.img_ids.len();
    let per_cat = par_map(k_eval, |k| {
        accumulate_category(&cells[k * n_img..(k + 1) * n_img], &p)
    });
    let mut precision = vec![-1.0; n_t * n_r * k_eval * n_a * n_m];
    let mut scores = precision.clone();
    let mut recall = vec![-1.0; n_t * k_eval * n_a * n_m];
    for (k, cat) in per_cat.into_iter().enumerate() {
        for (a, m, t, rc, q, ss) in cat {
            recall[((t * k_eval + k) * n_a + a) * n_m + m] = rc;
            for r in 0..n_r {
                let i = (((t * n_r + r) * k_eval + k) * n_a + a) * n_m + m;
                precision[i] = q[r];
                scores[i] = ss[r];
            }
        }
    }
    Evaluation {
        dims: [n_t, n_r, k_eval, n_a, n_m],
        params: p,
        precision,
        recall,
        scores,
    }
}

/// (area index, maxDets index, IoU index, recall, precision per recThr, score per recThr).
type Curve = (usize, usize, usize, f64, Vec<f64>, Vec<f64>);

/// One category of `accumulate()`: its detections over all images sorted
/// once (stable, best first) and their flags gathered into that order; each
/// maxDets is then a filter of that order (a stable sort of a subset is the
/// subset of the stable sort).
fn accumulate_category(cells: &[Option<CellEval>], p: &Params) -> Vec<Curve> {
    let e: Vec<&CellEval> = cells.iter().flatten().collect();
    if e.is_empty() {
        return Vec::new();
    }
    // (score, cell, rank in cell) in concatenation order, then a stable sort
    let mut dets: Vec<(f64, u32, u32)> = Vec::new();
    for (c, cell) in e.iter().enumerate() {
        dets.extend(
            cell.scores
                .iter()
                .enumerate()
                .map(|(d, &s)| (s, c as u32, d as u32)),
        );
    }
    dets.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let (n, n_t, n_at) = (
        dets.len(),
        p.iou_thrs.len(),
        p.area_rng.len() * p.iou_thrs.len(),
    );
    let mut flags = vec![0u8; n_at * n];
    for (i, &(_, c, d)) in dets.iter().enumerate() {
        let cell = e[c as usize];
        let n_d = cell.scores.len();
        for at in 0..n_at {
            flags[at * n + i] = cell.flags[at * n_d + d as usize];
        }
    }
    let kept: Vec<Vec<u32>> = p
        .max_dets
        .iter()
        .map(|&max_det| {
            (0..n as u32)
                .filter(|&i| (dets[i as usize].2 as usize) < max_det)
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    let mut points = Vec::new();
    for a in 0..p.area_rng.len() {
        let npig = e.iter().map(|c| c.npig[a]).sum::<usize>() as f64;
        if npig == 0.0 {
            continue;
        }
        for (m, kept) in kept.iter().enumerate() {
            for t in 0..n_t {
                let row = &flags[(a * n_t + t) * n..(a * n_t + t + 1) * n];
                let (recall, q, ss) =
                    precision_curve(row, kept, npig, &p.rec_thrs, &dets, &mut points);
                out.push((a, m, t, recall, q, ss));
            }
        }
    }
    out
}

/// A point of the precision/recall curve: (position among the kept
/// detections, true positives, false positives) after that detection.
type Point = (usize, u32, u32);

/// One (area, maxDets, IoU) curve of `accumulate()`: recall, and precision
/// and score at each recall threshold.
///
/// pycocotools fills `rc`/`pr` at every detection, takes the right-to-left
/// running max of `pr`, and reads it where `searchsorted(rc, recThrs)` lands.
/// Recall only rises at true positives and precision only falls between
/// them, so those reads land on the first detection or on a true positive,
/// and the running max there is the max over the later true positives: only
/// those points are computed, with the same float operations (the counts are
/// integers, exact in f64 as numpy's float cumsum is).
fn precision_curve(
    row: &[u8],
    kept: &[u32],
    npig: f64,
    rec_thrs: &[f64],
    dets: &[(f64, u32, u32)],
    points: &mut Vec<Point>,
) -> (f64, Vec<f64>, Vec<f64>) {
    points.clear();
    let (mut tp, mut fp) = (0u32, 0u32);
    for (k, &i) in kept.iter().enumerate() {
        // flags: MATCHED alone is a true positive, 0 a false positive, IGNORED set neither
        let f = row[i as usize];
        fp += (f == 0) as u32;
        if f == MATCHED {
            tp += 1;
            points.push((k, tp, fp));
        } else if k == 0 {
            points.push((0, tp, fp));
        }
    }
    let recall = if kept.is_empty() {
        0.0
    } else {
        tp as f64 / npig
    };
    // precision envelope at the points, right to left
    let mut env = vec![0.0; points.len()];
    let mut best = f64::NEG_INFINITY;
    for (j, &(_, tp, fp)) in points.iter().enumerate().rev() {
        let (tp, fp) = (tp as f64, fp as f64);
        let pr = tp / (fp + tp + f64::EPSILON);
        if pr > best {
            best = pr;
        }
        env[j] = best;
    }
    let mut q = vec![0.0; rec_thrs.len()];
    let mut ss = vec![0.0; rec_thrs.len()];
    for (r, &thr) in rec_thrs.iter().enumerate() {
        let j = points.partition_point(|&(_, tp, _)| (tp as f64) / npig < thr);
        if j >= points.len() {
            break;
        }
        q[r] = env[j];
        ss[r] = dets[kept[points[j].0] as usize].0;
    }
    (recall, q, ss)
}

/// numpy's pairwise summation (`np.add.reduce` on a contiguous float64 array).
pub(super) fn pairwise_sum(v: &[f64]) -> f64 {
    let n = v.len();
    if n < 8 {
        let mut s = 0.0;
        for &x in v {
            s += x;
        }
        s
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&v[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += v[i + j];
            }
            i += 8;
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            s += v[i];
            i += 1;
        }
        s
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&v[..n2]) + pairwise_sum(&v[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::pairwise_sum;

    #[test]
    fn pairwise_sum_blocks_like_numpy() {
        // np.add.reduce(np.full(1000, 0.1)) == 100.00000000000001 (a plain loop gives 99.9999999999986)
        assert_eq!(pairwise_sum(&[0.1; 1000]), 100.00000000000001);
        assert_eq!(pairwise_sum(&[0.1; 5]), 0.5);
    }
}
