//! `multiclass_nms` (`mmdet/models/layers/bbox_nms.py`) over mmcv's
//! `batched_nms` (`mmcv/ops/nms.py`): the post-processing of the R-CNN box
//! head. Every (box, class) pair above `score_thr` is a candidate; NMS runs
//! within each class; at most `max_num` survive, by decreasing score.
//!
//! Shape shorthand: `n` boxes (RoIs), `K` classes, `k` detections kept.

use detc::registry::models::ops::{NmsConfig, SoftNmsConfig};
use detc::registry::refs::NmsCfg;
use tch::{Kind, Tensor};

use super::nms::batched_nms_cfg;
use super::soft_nms::batched_soft_nms;
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

/// The `nms` of an R-CNN head's `test_cfg`: mmcv's `nms` or `soft_nms`.
#[derive(Debug, Clone)]
pub enum NmsOp {
    Hard(NmsConfig),
    Soft(SoftNmsConfig),
}

impl NmsOp {
    /// Reads `{type: nms | soft_nms, ...}`; `owner` names it in errors.
    pub fn from_cfg(cfg: &NmsCfg, owner: &str) -> ModelResult<NmsOp> {
        match cfg_type(&cfg.0, owner)? {
            "nms" => Ok(NmsOp::Hard(parse_cfg(&cfg.0, "nms")?)),
            "soft_nms" => Ok(NmsOp::Soft(parse_cfg(&cfg.0, "soft_nms")?)),
            other => Err(ModelError::new(owner, format!("nms type {other:?} is not supported (nms or soft_nms)"))),
        }
    }
}

/// `multiclass_nms(multi_bboxes, multi_scores, score_thr, nms_cfg, max_num)`.
///
/// multi_bboxes: (n, 4K) class-specific or (n, 4) shared boxes;
/// multi_scores: (n, K + 1), the last column the background (ignored);
/// score_thr: candidates need a score strictly above it; nms_cfg: `None`
/// only sorts the candidates by score (mmcv's `batched_nms` with no config),
/// `soft_nms` returns the decayed scores; max_num: keep at most this many
/// (`<= 0` keeps all).
///
pub fn multiclass_nms(
    multi_bboxes: &Tensor,
    multi_scores: &Tensor,
    score_thr: f64,
    nms_cfg: Option<&NmsOp>,
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

    let (mut keep, mut kept_scores) = match nms_cfg {
        None => {
            let (sorted, order) = scores.f_sort(0, true)?;
            (order, sorted)
        }
        Some(NmsOp::Hard(c)) => {
            let keep = batched_nms_cfg(&bboxes, &scores, &labels, c, (max_num > 0).then_some(max_num as usize))?;
            let kept = scores.f_index_select(0, &keep)?;
            (keep, kept)
        }
        Some(NmsOp::Soft(c)) => batched_soft_nms(&bboxes, &scores, &labels, c)?,
    };
    if max_num > 0 && keep.size()[0] > max_num {
        keep = keep.f_narrow(0, 0, max_num)?;
        kept_scores = kept_scores.f_narrow(0, 0, max_num)?;
    }
    Ok(Detections {
        bboxes: bboxes.f_index_select(0, &keep)?,
        scores: kept_scores,
        labels: labels.f_index_select(0, &keep)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::models::ops::nms::nms_config;
    use crate::models::roi_heads::standard_roi_head::tests::fx;

    fn nms_cfg(json: serde_json::Value) -> NmsOp {
        NmsOp::from_cfg(&serde_json::from_value(json).unwrap(), "test").unwrap()
    }

    #[test]
    fn multiclass_nms_options_equal_mmdet() {
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
            let d =
                multiclass_nms(&fx("mnms.boxes"), &fx("mnms.scores"), 0.2, Some(&cfg), 7).unwrap();
            let want = |k: &str| fx(&format!("mnms.{name}.{k}"));
            assert_eq!(d.bboxes, want("bboxes"), "{name} bboxes");
            assert_eq!(d.scores, want("scores"), "{name} scores");
            assert_eq!(d.labels, want("labels"), "{name} labels");
        }
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
        // The RPN's proposals take plain NMS only.
        let cfg = serde_json::json!({"type": "soft_nms", "iou_threshold": 0.5});
        let err = nms_config(&serde_json::from_value(cfg).unwrap(), "test").unwrap_err();
        assert!(err.message.contains("soft_nms"), "{err}");
        let cfg = serde_json::json!({"type": "matrix_nms"});
        let err = NmsOp::from_cfg(&serde_json::from_value(cfg).unwrap(), "test").unwrap_err();
        assert!(err.message.contains("\"matrix_nms\" is not supported (nms or soft_nms)"), "{err}");
    }
}
