//! `multiclass_nms` (`mmdet/models/layers/bbox_nms.py`) over mmcv's
//! `batched_nms` (`mmcv/ops/nms.py`): the post-processing of the R-CNN box
//! head. Every (box, class) pair above `score_thr` is a candidate; NMS runs
//! within each class; at most `max_num` survive, by decreasing score.
//!
//! Shape shorthand: `n` boxes (RoIs), `K` classes, `k` detections kept.

use detc::registry::models::ops::NmsConfig;
use detc::registry::refs::NmsCfg;
use tch::{Kind, Tensor};

use super::nms::batched_nms;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};

const NAME: &str = "multiclass_nms";

/// The detections `multiclass_nms` keeps.
#[derive(Debug)]
pub struct Detections {
    /// (k, 4) x1y1x2y2.
    pub bboxes: Tensor,
    /// (k,) scores, decreasing.
    pub scores: Tensor,
    /// (k,) int64 class of each detection.
    pub labels: Tensor,
}

/// Parses an `nms` config dict (`{type: nms, iou_threshold: 0.5}`), the form
/// `multiclass_nms` accepts. `owner` names the component in errors.
pub fn parse_nms_cfg(cfg: &NmsCfg, owner: &str) -> ModelResult<NmsConfig> {
    match cfg_type(&cfg.0, owner)? {
        "nms" => {}
        other => {
            return Err(ModelError::new(
                owner,
                format!("nms type {other:?} is not supported (only nms)"),
            ))
        }
    }
    let c: NmsConfig = parse_cfg(&cfg.0, owner)?;
    if c.offset != 0 {
        return Err(ModelError::new(
            owner,
            "nms offset 1 (the legacy +1 box size) is not supported; use offset 0",
        ));
    }
    Ok(c)
}

/// `multiclass_nms(multi_bboxes, multi_scores, score_thr, nms_cfg, max_num)`.
///
/// multi_bboxes: (n, 4K) class-specific or (n, 4) shared boxes;
/// multi_scores: (n, K + 1), the last column the background (ignored);
/// score_thr: candidates need a score strictly above it; nms_cfg: `None`
/// only sorts the candidates by score (mmcv's `batched_nms` with no config);
/// max_num: keep at most this many (`<= 0` keeps all).
///
/// mmcv switches to a per-class loop above `split_thr` candidates; that loop
/// keeps the same set, so only the order of tied scores could differ.
pub fn multiclass_nms(
    multi_bboxes: &Tensor,
    multi_scores: &Tensor,
    score_thr: f64,
    nms_cfg: Option<&NmsConfig>,
    max_num: i64,
) -> ModelResult<Detections> {
    multiclass_nms_with(
        &batched_nms,
        multi_bboxes,
        multi_scores,
        score_thr,
        nms_cfg,
        max_num,
    )
}

/// The kept indices of a torchvision-style `batched_nms` (boxes, scores,
/// class idxs, iou_threshold).
pub(crate) type BatchedNms<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor, f64) -> ModelResult<Tensor>;

/// [`multiclass_nms`] with the per-class NMS passed in (tests use a local
/// one while the real op is elsewhere).
pub(crate) fn multiclass_nms_with(
    batched: BatchedNms,
    multi_bboxes: &Tensor,
    multi_scores: &Tensor,
    score_thr: f64,
    nms_cfg: Option<&NmsConfig>,
    max_num: i64,
) -> ModelResult<Detections> {
    let (n, k1) = multi_scores.size2().map_err(|_| {
        ModelError::new(
            NAME,
            format!(
                "multi_scores must be (n, K + 1), got {:?}",
                multi_scores.size()
            ),
        )
    })?;
    let k = k1 - 1;
    let bboxes = match multi_bboxes.size().as_slice() {
        [m, 4] if *m == n => multi_bboxes.f_unsqueeze(1)?.f_expand([n, k, 4], false)?,
        [m, c] if *m == n && *c == 4 * k => multi_bboxes.f_view([n, k, 4])?,
        s => {
            return Err(ModelError::new(
                NAME,
                format!(
                    "multi_bboxes must be ({n}, 4) or ({n}, {}), got {s:?}",
                    4 * k
                ),
            ))
        }
    };
    let dev = multi_scores.device();
    let scores = multi_scores.f_narrow(1, 0, k)?;
    let labels = Tensor::f_arange(k, (Kind::Int64, dev))?
        .f_view([1, -1])?
        .f_expand([n, k], false)?;
    let bboxes = bboxes.f_reshape([-1, 4])?;
    let scores = scores.f_reshape([-1])?;
    let labels = labels.f_reshape([-1])?;

    let inds = scores.f_gt(score_thr)?.f_nonzero()?.f_squeeze_dim(1)?;
    let bboxes = bboxes.f_index_select(0, &inds)?;
    let scores = scores.f_index_select(0, &inds)?;
    let labels = labels.f_index_select(0, &inds)?;
    if bboxes.size()[0] == 0 {
        return Ok(Detections {
            bboxes,
            scores,
            labels,
        });
    }

    let mut keep = match nms_cfg {
        None => scores.f_sort(0, true)?.1,
        Some(c) => nms_keep(batched, &bboxes, &scores, &labels, c)?,
    };
    if max_num > 0 && keep.size()[0] > max_num {
        keep = keep.f_narrow(0, 0, max_num)?;
    }
    Ok(Detections {
        bboxes: bboxes.f_index_select(0, &keep)?,
        scores: scores.f_index_select(0, &keep)?,
        labels: labels.f_index_select(0, &keep)?,
    })
}

/// mmcv's `batched_nms` with a config: the per-class (or class-agnostic)
/// NMS of the boxes scoring above `score_threshold`, at most `max_num`.
fn nms_keep(
    batched: BatchedNms,
    bboxes: &Tensor,
    scores: &Tensor,
    labels: &Tensor,
    c: &NmsConfig,
) -> ModelResult<Tensor> {
    // mmcv's nms op drops scores not above score_threshold when it is > 0.
    let valid = if c.score_threshold > 0.0 {
        Some(
            scores
                .f_gt(c.score_threshold)?
                .f_nonzero()?
                .f_squeeze_dim(1)?,
        )
    } else {
        None
    };
    let pick = |t: &Tensor| -> ModelResult<Tensor> {
        Ok(match &valid {
            Some(v) => t.f_index_select(0, v)?,
            None => t.shallow_clone(),
        })
    };
    let (b, s, l) = (pick(bboxes)?, pick(scores)?, pick(labels)?);
    // Class-agnostic: one category for all (mmcv then adds no offsets either).
    let l = if c.class_agnostic {
        l.f_zeros_like()?
    } else {
        l
    };
    let mut keep = batched(&b, &s, &l, c.iou_threshold)?;
    if c.max_num > 0 && keep.size()[0] > c.max_num {
        keep = keep.f_narrow(0, 0, c.max_num)?;
    }
    Ok(match &valid {
        Some(v) => v.f_index_select(0, &keep)?,
        None => keep,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::models::roi_heads::standard_roi_head::tests::fx;

    /// A test double of torchvision's `batched_nms` (the coordinate-offset
    /// trick, then the greedy CPU kernel in f32), for the tests that check
    /// the code around NMS while the real op lives elsewhere.
    pub(crate) fn reference_batched_nms(
        boxes: &Tensor,
        scores: &Tensor,
        idxs: &Tensor,
        iou_threshold: f64,
    ) -> ModelResult<Tensor> {
        if boxes.size()[0] == 0 {
            return Ok(Tensor::zeros([0], (Kind::Int64, boxes.device())));
        }
        let offsets = idxs.to_kind(boxes.kind()) * (boxes.max() + 1.0);
        let b = Vec::<f32>::try_from((boxes + offsets.unsqueeze(1)).reshape([-1]))?;
        let order = Vec::<i64>::try_from(scores.sort_stable(true, 0, true).1)?;
        let area = |i: usize| (b[4 * i + 2] - b[4 * i]) * (b[4 * i + 3] - b[4 * i + 1]);
        let mut suppressed = vec![false; order.len()];
        let mut keep = Vec::new();
        for (oi, &i) in order.iter().enumerate() {
            let i = i as usize;
            if suppressed[i] {
                continue;
            }
            keep.push(i as i64);
            for &j in &order[oi + 1..] {
                let j = j as usize;
                let w = (b[4 * i + 2].min(b[4 * j + 2]) - b[4 * i].max(b[4 * j])).max(0.0);
                let h = (b[4 * i + 3].min(b[4 * j + 3]) - b[4 * i + 1].max(b[4 * j + 1])).max(0.0);
                let inter = w * h;
                if (inter / (area(i) + area(j) - inter)) as f64 > iou_threshold {
                    suppressed[j] = true;
                }
            }
        }
        Ok(Tensor::from_slice(&keep))
    }

    fn nms_cfg(json: serde_json::Value) -> NmsConfig {
        parse_nms_cfg(&serde_json::from_value(json).unwrap(), "test").unwrap()
    }

    fn check_cases(batched: BatchedNms) {
        let cases = [
            (
                "agn",
                serde_json::json!({"type": "nms", "iou_threshold": 0.4, "class_agnostic": true}),
            ),
            (
                "thr",
                serde_json::json!({"type": "nms", "iou_threshold": 0.5, "score_threshold": 0.6, "max_num": 5}),
            ),
        ];
        for (name, cfg) in cases {
            let cfg = nms_cfg(cfg);
            let d = multiclass_nms_with(
                batched,
                &fx("mnms.boxes"),
                &fx("mnms.scores"),
                0.2,
                Some(&cfg),
                7,
            )
            .unwrap();
            let want = |k: &str| fx(&format!("mnms.{name}.{k}"));
            assert_eq!(d.bboxes, want("bboxes"), "{name} bboxes");
            assert_eq!(d.scores, want("scores"), "{name} scores");
            assert_eq!(d.labels, want("labels"), "{name} labels");
        }
    }

    #[test]
    fn multiclass_nms_options_equal_mmdet_with_reference_nms() {
        check_cases(&reference_batched_nms);
    }

    /// Needs the real batched_nms.
    #[test]
    fn multiclass_nms_options_equal_mmdet() {
        check_cases(&batched_nms);
    }

    #[test]
    fn multiclass_nms_rejects_bad_shapes_and_configs() {
        let scores = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu));
        let boxes = Tensor::zeros([3, 8], (Kind::Float, tch::Device::Cpu));
        let err = multiclass_nms(&boxes, &scores, 0.1, None, -1).unwrap_err();
        assert!(err.message.contains("(3, 4) or (3, 12)"), "{err}");
        let empty = multiclass_nms(
            &Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu)),
            &scores,
            0.1,
            None,
            -1,
        )
        .unwrap();
        assert_eq!(
            (empty.bboxes.size(), empty.labels.size()),
            (vec![0, 4], vec![0])
        );
        let cfg = serde_json::json!({"type": "nms", "iou_threshold": 0.5, "offset": 1});
        let err = parse_nms_cfg(&serde_json::from_value(cfg).unwrap(), "test").unwrap_err();
        assert!(err.message.contains("offset"), "{err}");
    }
}
