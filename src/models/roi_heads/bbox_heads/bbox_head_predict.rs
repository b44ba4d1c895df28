//! `BBoxHead._predict_by_feat_single` for [`ConvFCBBoxHead`]
//! (`mmdet/models/roi_heads/bbox_heads/bbox_head.py`): softmax scores, the
//! class-specific boxes decoded and clipped to the image, optionally scaled
//! back to the original image, then [`multiclass_nms`].
//!
//! Shape shorthand: `R` RoIs of one image, `K` classes, `k` detections.

use detc::registry::models::train_test::RcnnTestConfig;
use tch::{Kind, Tensor};

use super::convfc_bbox_head::{ConvFCBBoxHead, NAME};
use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::multiclass_nms::{multiclass_nms, NmsOp};
use crate::models::roi_heads::DetInstances;
use crate::models::ops::upload_as;

/// `test_cfg.rcnn`'s box part, parsed once.
#[derive(Debug, Clone)]
pub struct BoxTestCfg {
    pub score_thr: f64,
    /// `None`: no NMS, the candidates sorted by score.
    pub nms: Option<NmsOp>,
    pub max_per_img: i64,
}

impl BoxTestCfg {
    pub fn from_cfg(cfg: &RcnnTestConfig) -> ModelResult<Self> {
        Ok(BoxTestCfg {
            score_thr: cfg.score_thr,
            nms: cfg
                .nms
                .as_ref()
                .map(|n| NmsOp::from_cfg(n, "test_cfg.rcnn.nms"))
                .transpose()?,
            max_per_img: cfg.max_per_img as i64,
        })
    }
}

impl ConvFCBBoxHead {
    /// The part of `_predict_by_feat_single` before NMS: roi (R, 5),
    /// cls_score (R, K + 1), bbox_pred (R, 4K) or (R, 4) -> boxes (R, 4K)
    /// (or (R, 4)) decoded against the RoIs and clipped to `img_shape`
    /// `(h, w)`, and the softmax scores (R, K + 1). With `rescale_by`
    /// (`scale_factor` `(w, h)`) the boxes are multiplied by its reciprocal
    /// (mmdet's `scale_boxes(bboxes, [1 / s for s in scale_factor])`).
    pub fn decode_single(
        &self,
        roi: &Tensor,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        img_shape: (f64, f64),
        rescale_by: Option<(f64, f64)>,
    ) -> ModelResult<(Tensor, Tensor)> {
        let r = roi.size().first().copied().unwrap_or(0);
        if roi.size() != [r, 5] || cls_score.size() != [r, self.num_classes + 1] {
            return Err(ModelError::new(
                NAME,
                format!(
                    "predict expects roi ({r}, 5) and cls_score ({r}, {}), got {:?} and {:?}",
                    self.num_classes + 1,
                    roi.size(),
                    cls_score.size()
                ),
            ));
        }
        let scores = cls_score.f_softmax(-1, cls_score.kind())?;
        let mut bboxes =
            self.bbox_coder
                .decode(&roi.f_narrow(1, 1, 4)?, bbox_pred, Some(img_shape))?;
        if let (Some((w, h)), true) = (rescale_by, r > 0) {
            let inv = upload_as(&[1.0 / w, 1.0 / h, 1.0 / w, 1.0 / h], bboxes.kind(), bboxes.device())?
                .f_repeat([bboxes.size()[1] / 4])?;
            bboxes = bboxes.f_mul(&inv)?;
        }
        Ok((bboxes, scores))
    }

    /// `regress_by_class` (Cascade R-CNN's refinement): priors (n, 4) moved by
    /// the deltas of class `labels` (n,) in `bbox_pred` (n, 4K), or by the
    /// class-agnostic (n, 4), decoded and clipped to `img_shape` `(h, w)`.
    pub fn regress_by_class(
        &self,
        priors: &Tensor,
        labels: &Tensor,
        bbox_pred: &Tensor,
        img_shape: (f64, f64),
    ) -> ModelResult<Tensor> {
        let deltas = if self.reg_class_agnostic {
            bbox_pred.shallow_clone()
        } else {
            let first = labels.f_mul_scalar(4)?.f_unsqueeze(1)?;
            let columns = first.f_add(&Tensor::f_arange(4, (Kind::Int64, labels.device()))?.f_unsqueeze(0)?)?;
            bbox_pred.f_gather(1, &columns, false)?
        };
        self.bbox_coder.decode(priors, &deltas, Some(img_shape))
    }

    /// `_predict_by_feat_single` with a test cfg: [`decode_single`](Self::decode_single),
    /// then `multiclass_nms(score_thr, nms, max_per_img)`. No RoI gives empty
    /// instances (bboxes (0, 4), scores (0,), labels (0,)).
    pub fn predict_by_feat_single(
        &self,
        roi: &Tensor,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        img_shape: (f64, f64),
        rescale_by: Option<(f64, f64)>,
        cfg: &BoxTestCfg,
    ) -> ModelResult<DetInstances> {
        if roi.size().first() == Some(&0) {
            return empty_instances(roi);
        }
        let (bboxes, scores) =
            self.decode_single(roi, cls_score, bbox_pred, img_shape, rescale_by)?;
        let dets = multiclass_nms(
            &bboxes,
            &scores,
            cfg.score_thr,
            cfg.nms.as_ref(),
            cfg.max_per_img,
        )?;
        Ok(DetInstances {
            bboxes: dets.bboxes,
            scores: dets.scores,
            labels: dets.labels,
            masks: None,
        })
    }
}

/// mmdet's `empty_instances(task_type='bbox')` on the device of `like`.
pub fn empty_instances(like: &Tensor) -> ModelResult<DetInstances> {
    let dev = like.device();
    Ok(DetInstances {
        bboxes: Tensor::f_zeros([0, 4], (Kind::Float, dev))?,
        scores: Tensor::f_zeros([0], (Kind::Float, dev))?,
        labels: Tensor::f_zeros([0], (Kind::Int64, dev))?,
        masks: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::assert_close;
    use crate::models::roi_heads::bbox_heads::convfc_bbox_head::tests::loaded;
    use crate::models::roi_heads::standard_roi_head::tests::fx;

    /// (head, case, rescale, nms, max_per_img) of the reference's predict_case calls.
    const CASES: &[(&str, &str, bool, bool, i64)] = &[
        ("box", "r1", true, true, 8),
        ("box", "r0", false, true, 100),
        ("box", "nonms", false, false, 100),
        ("agn", "agn", true, true, 100),
    ];

    fn test_cfg(nms: bool, max_per_img: i64) -> BoxTestCfg {
        let cfg: RcnnTestConfig = serde_json::from_value(serde_json::json!({
            "score_thr": 0.05,
            "nms": if nms { serde_json::json!({"type": "nms", "iou_threshold": 0.5}) } else { serde_json::Value::Null },
            "max_per_img": max_per_img
        }))
        .unwrap();
        BoxTestCfg::from_cfg(&cfg).unwrap()
    }

    #[test]
    fn shared2fc_predict_equals_mmdet() {
        for &(head_prefix, case, rescale, nms, max_per_img) in CASES {
            let (_vs, head) = loaded(head_prefix);
            let t = |k: &str| fx(&format!("pred.{case}.{k}"));
            let (cls, reg) = (t("cls_score"), t("bbox_pred"));
            let scale = rescale.then_some((1.25, 1.28));
            let (bboxes, scores) = head
                .decode_single(&t("roi"), &cls, &reg, (64.0, 80.0), scale)
                .unwrap();
            assert_close(
                &bboxes,
                &t("in_bboxes"),
                1e-4,
                1e-5,
                &format!("{case} decoded"),
            );
            assert_close(
                &scores,
                &t("in_scores"),
                1e-7,
                1e-5,
                &format!("{case} scores"),
            );
            let cfg = test_cfg(nms, max_per_img);
            let res = head
                .predict_by_feat_single(&t("roi"), &cls, &reg, (64.0, 80.0), scale, &cfg)
                .unwrap();
            assert_close(
                &res.bboxes,
                &t("bboxes"),
                1e-4,
                1e-5,
                &format!("{case} bboxes"),
            );
            assert_close(
                &res.scores,
                &t("scores"),
                1e-7,
                1e-5,
                &format!("{case} scores"),
            );
            assert_eq!(res.labels, t("labels"), "{case} labels");
        }
    }

    #[test]
    fn shared2fc_predict_of_no_roi_is_empty() {
        let (_vs, head) = loaded("box");
        let none = |c| Tensor::zeros([0, c], (Kind::Float, tch::Device::Cpu));
        let res = head
            .predict_by_feat_single(
                &none(5),
                &none(4),
                &none(12),
                (64.0, 80.0),
                None,
                &test_cfg(true, 100),
            )
            .unwrap();
        assert_eq!(
            (res.bboxes.size(), res.scores.size(), res.labels.size()),
            (vec![0, 4], vec![0], vec![0])
        );
    }
}
