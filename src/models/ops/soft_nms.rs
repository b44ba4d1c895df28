//! Soft-NMS (Bodla et al., 2017) as mmcv runs it: `mmcv.ops.soft_nms`, a
//! CPU-only kernel (`softnms_cpu`), under `mmcv.ops.batched_nms` with
//! `nms_cfg.type: soft_nms` (MMDetection's `faster-rcnn_r50_fpn_soft-nms`
//! config). Instead of removing the boxes that overlap a kept one, their
//! scores decay (`linear`: by `1 - IoU` from `iou_threshold` on; `gaussian`:
//! by `exp(-IoU² / sigma)`; `naive`: to 0 from the threshold on), and a box
//! is dropped once its score falls under `min_score`.
//!
//! The kernel is reproduced step for step in float32 (its selection by
//! swapping, and the swap of a dropped box with the last one, decide which of
//! equal scores is picked first), on the host as mmcv's is.

use detc::registry::models::ops::{SoftNmsConfig, SoftNmsMethod};
use tch::{Device, Kind, Tensor};

use super::nms::{check_batched, empty_keep, offset_by_category, per_category, to_index};
use crate::models::layers::ModelResult;
use super::upload_as;

/// `softnms_cpu` on `boxes` (x1, y1, x2, y2) and `scores`: the indices of the
/// kept boxes in the order they were picked (decreasing decayed score) and
/// each one's score when picked.
pub fn soft_nms_host(boxes: &[[f32; 4]], scores: &[f32], cfg: &SoftNmsConfig) -> (Vec<usize>, Vec<f32>) {
    let offset = cfg.offset as f32;
    let (iou_threshold, sigma, min_score) = (cfg.iou_threshold as f32, cfg.sigma as f32, cfg.min_score as f32);
    let mut boxes = boxes.to_vec();
    let mut sc = scores.to_vec();
    let mut areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0] + offset) * (b[3] - b[1] + offset)).collect();
    let mut inds: Vec<usize> = (0..boxes.len()).collect();
    let mut picked_scores = vec![];
    let mut n = boxes.len();
    let mut i = 0;
    while i < n {
        // The first of the highest scores from i on comes to i.
        let mut max_pos = i;
        for pos in i + 1..n {
            if sc[max_pos] < sc[pos] {
                max_pos = pos;
            }
        }
        boxes.swap(i, max_pos);
        sc.swap(i, max_pos);
        areas.swap(i, max_pos);
        inds.swap(i, max_pos);
        picked_scores.push(sc[i]);
        let [ix1, iy1, ix2, iy2] = boxes[i];
        let mut pos = i + 1;
        while pos < n {
            let b = boxes[pos];
            let w = (ix2.min(b[2]) - ix1.max(b[0]) + offset).max(0.0);
            let h = (iy2.min(b[3]) - iy1.max(b[1]) + offset).max(0.0);
            let inter = w * h;
            let ovr = inter / (areas[i] + areas[pos] - inter);
            let weight = match cfg.method {
                SoftNmsMethod::Naive if ovr >= iou_threshold => 0.0,
                SoftNmsMethod::Linear if ovr >= iou_threshold => 1.0 - ovr,
                SoftNmsMethod::Gaussian => (-(ovr * ovr) / sigma).exp(),
                _ => 1.0,
            };
            sc[pos] *= weight;
            if sc[pos] < min_score {
                // Dropped: the last box takes its place and is looked at next.
                n -= 1;
                boxes[pos] = boxes[n];
                sc[pos] = sc[n];
                areas[pos] = areas[n];
                inds[pos] = inds[n];
            } else {
                pos += 1;
            }
        }
        i += 1;
    }
    inds.truncate(n);
    (inds, picked_scores)
}

/// `batched_nms(boxes, scores, idxs, {type: soft_nms, ...})`: boxes (N, 4),
/// scores (N,), idxs (N,) -> (keep (k,) int64, their decayed scores (k,)),
/// by decreasing score. Categories are kept apart by offsetting the boxes
/// (unless `class_agnostic`), or, from `split_thr` boxes on, by running each
/// on its own and sorting the union by decayed score, as mmcv does.
pub fn batched_soft_nms(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    cfg: &SoftNmsConfig,
) -> ModelResult<(Tensor, Tensor)> {
    let n = check_batched(boxes, scores, idxs)?;
    let device = boxes.device();
    if n == 0 {
        return Ok((empty_keep(device)?, scores.f_narrow(0, 0, 0)?));
    }
    let boxes_for_nms = if cfg.class_agnostic { boxes.shallow_clone() } else { offset_by_category(boxes, idxs)? };
    let host_boxes = host_rows(&boxes_for_nms)?;
    let host_scores = Vec::<f32>::try_from(&scores.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?)?;
    let (keep, decayed) = if n < cfg.split_thr as i64 {
        soft_nms_host(&host_boxes, &host_scores, cfg)
    } else {
        let mut decayed_of = vec![0f32; n as usize];
        let kept = per_category(idxs, device, |members| {
            let members = Vec::<i64>::try_from(&members.f_to_device(Device::Cpu)?)?;
            let (keep, decayed) = soft_nms_host(
                &members.iter().map(|&m| host_boxes[m as usize]).collect::<Vec<_>>(),
                &members.iter().map(|&m| host_scores[m as usize]).collect::<Vec<_>>(),
                cfg,
            );
            for (&k, &s) in keep.iter().zip(&decayed) {
                decayed_of[members[k] as usize] = s;
            }
            Ok(keep.into_iter().map(|k| k as i64).collect())
        })?;
        let mut keep: Vec<usize> = (0..n as usize).filter(|&i| kept[i]).collect();
        keep.sort_by(|&a, &b| decayed_of[b].total_cmp(&decayed_of[a]));
        let decayed = keep.iter().map(|&k| decayed_of[k]).collect();
        (keep, decayed)
    };
    let keep: Vec<i64> = keep.into_iter().map(|k| k as i64).collect();
    let decayed = upload_as(&decayed, scores.kind(), device)?;
    Ok((to_index(&keep, device)?, decayed))
}

/// (N, 4) float boxes as host rows.
fn host_rows(boxes: &Tensor) -> ModelResult<Vec<[f32; 4]>> {
    let flat = Vec::<f32>::try_from(&boxes.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_reshape([-1])?)?;
    Ok(flat.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(method: &str, iou: f64, min_score: f64) -> SoftNmsConfig {
        serde_json::from_value(serde_json::json!({"iou_threshold": iou, "sigma": 0.5, "min_score": min_score, "method": method}))
            .unwrap()
    }

    /// mmcv's own expected outputs for its compiled kernel
    /// (`tests/test_ops/test_nms.py::test_softnms_allclose`, mmcv 2.x).
    #[test]
    fn soft_nms_gives_mmcv_test_outputs() {
        let boxes = [[6.0, 3.0, 8.0, 7.0], [3.0, 6.0, 9.0, 11.0], [3.0, 7.0, 10.0, 12.0], [1.0, 4.0, 13.0, 7.0]];
        let scores = [0.6, 0.9, 0.7, 0.2];
        let cases: [(&str, &[usize], &[f32]); 3] = [
            ("linear", &[1, 0, 2, 3], &[0.9, 0.6, 0.29024392, 0.2]),
            ("gaussian", &[1, 0, 2, 3], &[0.9, 0.59630775, 0.35275510, 0.18650459]),
            ("naive", &[1, 0, 3], &[0.9, 0.6, 0.2]),
        ];
        for (method, inds, dets) in cases {
            let (keep, decayed) = soft_nms_host(&boxes, &scores, &cfg(method, 0.3, 0.01));
            assert_eq!(keep, inds, "{method}");
            for (a, b) in decayed.iter().zip(dets) {
                assert!((a - b).abs() < 1e-6, "{method}: {decayed:?}");
            }
        }
        // mmcv's docstring example: four equal boxes, one of score 0 dropped.
        let boxes = [[4.0, 3.0, 5.0, 3.0], [4.0, 3.0, 5.0, 4.0], [3.0, 1.0, 3.0, 1.0], [3.0, 1.0, 3.0, 1.0], [3.0, 1.0, 3.0, 1.0], [3.0, 1.0, 3.0, 1.0]];
        let (keep, _) = soft_nms_host(&boxes, &[0.9, 0.9, 0.5, 0.5, 0.4, 0.0], &cfg("linear", 0.6, 1e-3));
        assert_eq!(keep.len(), 5);
    }

    /// Categories do not decay each other; the split path (each category on
    /// its own) gives what the offset path gives.
    #[test]
    fn batched_soft_nms_keeps_categories_apart() {
        let boxes = Tensor::from_slice(&[0f32, 0., 10., 10., 1., 1., 10., 10., 0., 0., 10., 10., 20., 20., 30., 30.]).view([4, 4]);
        let scores = Tensor::from_slice(&[0.9f32, 0.8, 0.7, 0.6]);
        let idxs = Tensor::from_slice(&[0i64, 0, 1, 1]);
        let mut c = cfg("linear", 0.3, 0.05);
        let (keep, decayed) = batched_soft_nms(&boxes, &scores, &idxs, &c).unwrap();
        assert_eq!(Vec::<i64>::try_from(&keep).unwrap(), [0, 2, 3, 1]);
        let decayed = Vec::<f32>::try_from(&decayed).unwrap();
        assert_eq!(&decayed[..3], &[0.9, 0.7, 0.6]);
        assert!((decayed[3] - 0.8 * (1.0 - 81.0 / 100.0)).abs() < 1e-6, "{decayed:?}");
        c.split_thr = 2;
        let (keep_split, decayed_split) = batched_soft_nms(&boxes, &scores, &idxs, &c).unwrap();
        assert_eq!(keep_split, keep);
        assert_eq!(Vec::<f32>::try_from(&decayed_split).unwrap(), decayed);
    }
}
