//! `BBoxHead`'s targets and losses for [`ConvFCBBoxHead`]: mmdet's
//! `get_targets` / `_get_targets_single` and `loss` with `concat=True`
//! (`mmdet/models/roi_heads/bbox_heads/bbox_head.py`).
//!
//! Shape shorthand: `M` sampled RoIs of all images (each image's positives,
//! then its negatives, image after image), `K` classes.

use indexmap::IndexMap;
use tch::{Kind, Tensor};

use super::convfc_bbox_head::{ConvFCBBoxHead, NAME};
use super::dii_head_loss::accuracy;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::LossArgs;
use crate::models::ops::upload;
use crate::models::task_modules::SamplingResult;

/// The concatenated per-RoI targets of a batch.
#[derive(Debug)]
pub struct BBoxTargets {
    /// (M,) int64: the class of each positive, `K` (background) elsewhere.
    pub labels: Tensor,
    /// (M,) `pos_weight` on positives, 1 on negatives.
    pub label_weights: Tensor,
    /// (M, 4) coder deltas (or ground-truth boxes with `reg_decoded_bbox`)
    /// of the positives, 0 elsewhere.
    pub bbox_targets: Tensor,
    /// (M, 4) 1 on positives, 0 elsewhere.
    pub bbox_weights: Tensor,
    /// What the sampling told the host, so that the loss reads nothing back
    /// from the device (`None`: read it from `labels` and `label_weights`).
    pub known: Option<KnownCounts>,
}

/// Counts of a batch's targets known on the host from its sampling.
#[derive(Debug)]
pub struct KnownCounts {
    /// (P,) int64: the rows of the positives (labels `0..K`), ascending.
    pub pos_rows: Tensor,
    /// P, on the host.
    pub num_pos: i64,
    /// The rows with a label weight above 0, when known.
    pub num_weighted: Option<i64>,
}

impl ConvFCBBoxHead {
    /// `get_targets(concat=True)`: every image's targets (mmdet's
    /// `_get_targets_single`: its positives first, then its negatives), in
    /// image order. `pos_weight` is the rcnn train cfg's (`<= 0` means 1).
    /// The rows are laid out on the host from the sampling's counts, so the
    /// batch is built at once (one encoding of every positive) rather than
    /// image by image and concatenated: the same numbers, row by row.
    pub fn get_targets(
        &self,
        sampling_results: &[SamplingResult],
        pos_weight: f64,
    ) -> ModelResult<BBoxTargets> {
        let Some(first) = sampling_results.first() else {
            return Err(ModelError::new(NAME, "get_targets needs at least one image's sampling"));
        };
        let dev = first.pos_priors.device();
        let float = (first.pos_priors.kind(), dev);
        let (mut pos_rows, mut rows) = (Vec::new(), 0i64);
        for s in sampling_results {
            let num_pos = s.pos_priors.size()[0];
            pos_rows.extend(rows..rows + num_pos);
            rows += num_pos + s.neg_priors.size()[0];
        }
        let num_pos = pos_rows.len() as i64;
        let pos_rows = upload(&pos_rows, dev)?;
        let mut labels = Tensor::f_full([rows], self.num_classes, (Kind::Int64, dev))?;
        let mut label_weights = Tensor::f_ones([rows], float)?;
        let mut bbox_targets = Tensor::f_zeros([rows, 4], float)?;
        let mut bbox_weights = Tensor::f_zeros([rows, 4], float)?;
        if num_pos > 0 {
            let cat = |f: fn(&SamplingResult) -> &Tensor| -> ModelResult<Tensor> {
                Ok(Tensor::f_cat(&sampling_results.iter().map(f).collect::<Vec<_>>(), 0)?)
            };
            let gt_bboxes = cat(|s| &s.pos_gt_bboxes)?;
            let targets = if self.reg_decoded_bbox {
                gt_bboxes.f_to_kind(float.0)?
            } else {
                self.bbox_coder.encode(&cat(|s| &s.pos_priors)?, &gt_bboxes)?
            };
            let at = [Some(pos_rows.shallow_clone())];
            labels = labels.f_index_put(&at, &cat(|s| &s.pos_gt_labels)?.f_to_kind(Kind::Int64)?, false)?;
            let pos_weight = if pos_weight <= 0.0 { 1.0 } else { pos_weight };
            label_weights = label_weights.f_index_fill(0, &pos_rows, pos_weight)?;
            bbox_targets = bbox_targets.f_index_put(&at, &targets.f_to_kind(float.0)?, false)?;
            bbox_weights = bbox_weights.f_index_fill(0, &pos_rows, 1.0)?;
        }
        // Every label weight is above 0.
        let known = KnownCounts { pos_rows, num_pos, num_weighted: Some(rows) };
        Ok(BBoxTargets { labels, label_weights, bbox_targets, bbox_weights, known: Some(known) })
    }

    /// `loss_and_target`: [`get_targets`](Self::get_targets) then
    /// [`loss`](Self::loss). cls_score (M, K + 1), bbox_pred (M, 4K) or
    /// (M, 4), rois (M, 5) of the sampled priors (`bbox2roi` of each image's
    /// `priors()`), sampling_results in the order of the rows.
    pub fn loss_and_target(
        &self,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        rois: &Tensor,
        sampling_results: &[SamplingResult],
        pos_weight: f64,
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let targets = self.get_targets(sampling_results, pos_weight)?;
        self.loss(cls_score, bbox_pred, rois, &targets)
    }

    /// `loss`: `loss_cls` (averaged over `max(#(label_weights > 0), 1)`),
    /// `acc` (top-1 accuracy in percent over all M rows, (1,)) and
    /// `loss_bbox` on the positives' deltas of their own class, averaged over
    /// M (mmdet's `avg_factor=bbox_targets.size(0)`); with no positive,
    /// `loss_bbox` is the (zero) sum of no predictions, keeping the graph.
    pub fn loss(
        &self,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        rois: &Tensor,
        t: &BBoxTargets,
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let m = t.labels.size()[0];
        let reg_dim = if self.reg_class_agnostic {
            4
        } else {
            4 * self.num_classes
        };
        if cls_score.size() != [m, self.num_classes + 1]
            || bbox_pred.size() != [m, reg_dim]
            || rois.size() != [m, 5]
        {
            return Err(ModelError::new(
                NAME,
                format!(
                    "loss expects cls_score ({m}, {}), bbox_pred ({m}, {reg_dim}) and rois ({m}, 5) \
                     for {m} sampled RoIs, got {:?}, {:?} and {:?}",
                    self.num_classes + 1,
                    cls_score.size(),
                    bbox_pred.size(),
                    rois.size()
                ),
            ));
        }
        let mut losses = IndexMap::new();
        let num_weighted = match t.known.as_ref().and_then(|k| k.num_weighted) {
            Some(n) => n as f64,
            None => t.label_weights.f_gt(0.0)?.f_sum(Kind::Float)?.f_double_value(&[])?,
        };
        if cls_score.numel() > 0 {
            let args = LossArgs::default()
                .weight(&t.label_weights)
                .avg_factor(num_weighted.max(1.0));
            losses.insert(
                "loss_cls".into(),
                self.loss_cls.forward(cls_score, &t.labels, args)?,
            );
            losses.insert("acc".into(), accuracy(cls_score, &t.labels)?);
        }
        let pos_inds = match &t.known {
            Some(k) => k.pos_rows.shallow_clone(),
            None => t.labels.f_ge(0)?.f_logical_and(&t.labels.f_lt(self.num_classes)?)?.f_nonzero()?.f_view([-1])?,
        };
        let num_pos = pos_inds.size()[0];
        let loss_bbox = if num_pos > 0 {
            let pred = if self.reg_decoded_bbox {
                // Decoded against the RoIs, unclipped (no max_shape).
                self.bbox_coder
                    .decode(&rois.f_narrow(1, 1, 4)?, bbox_pred, None)?
            } else {
                bbox_pred.shallow_clone()
            };
            let pred = pred.f_index_select(0, &pos_inds)?;
            let pos_pred = if self.reg_class_agnostic {
                pred
            } else {
                // (Np, K, 4)[i, label_i]
                let labels = t.labels.f_index_select(0, &pos_inds)?;
                let rows = Tensor::f_arange(num_pos, (Kind::Int64, pred.device()))?;
                pred.f_view([num_pos, self.num_classes, 4])?
                    .f_index(&[Some(rows), Some(labels)])?
            };
            let weight = t.bbox_weights.f_index_select(0, &pos_inds)?;
            let args = LossArgs::default().weight(&weight).avg_factor(m as f64);
            self.loss_bbox.forward(
                &pos_pred,
                &t.bbox_targets.f_index_select(0, &pos_inds)?,
                args,
            )?
        } else {
            bbox_pred
                .f_index_select(0, &pos_inds)?
                .f_sum(bbox_pred.kind())?
        };
        losses.insert("loss_bbox".into(), loss_bbox);
        Ok(losses)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::models::layers::fixtures::assert_close;
    use crate::models::roi_heads::bbox_heads::convfc_bbox_head::tests::loaded;
    use crate::models::roi_heads::standard_roi_head::tests::{fx, sampling};

    const GRAD_KEYS: &[&str] = &[
        "shared_fcs.0.weight",
        "shared_fcs.1.bias",
        "fc_cls.weight",
        "fc_reg.weight",
        "fc_reg.bias",
    ];

    /// Forward on the case's RoI features, get_targets and loss_and_target
    /// on mmdet's sampling results, then the gradients of the summed loss.
    fn check_case(head_prefix: &str, case: &str, samp_prefix: &str, pos_weight: f64) {
        let (vs, head) = loaded(head_prefix);
        let t = |k: &str| fx(&format!("{case}.{k}"));
        let samp = sampling(samp_prefix);
        let feat = t("feat").set_requires_grad(true);
        let (cls, reg) = head.forward_t(&feat, true).unwrap();
        let targets = head.get_targets(&samp, pos_weight).unwrap();
        assert_eq!(targets.labels, t("t.labels"), "{case} labels");
        for (name, got) in [
            ("label_weights", &targets.label_weights),
            ("bbox_targets", &targets.bbox_targets),
            ("bbox_weights", &targets.bbox_weights),
        ] {
            assert_close(
                got,
                &t(&format!("t.{name}")),
                1e-6,
                1e-5,
                &format!("{case} {name}"),
            );
        }
        assert_known_counts(&targets, head.num_classes, true);
        let losses = head
            .loss_and_target(&cls, &reg, &t("rois"), &samp, pos_weight)
            .unwrap();
        let keys: Vec<&str> = losses.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["loss_cls", "acc", "loss_bbox"]);
        for (name, v) in &losses {
            assert_close(
                v,
                &t(&format!("out.{name}")),
                1e-6,
                1e-5,
                &format!("{case} {name}"),
            );
        }
        (&losses["loss_cls"] + &losses["loss_bbox"]).backward();
        let vars = vs.variables();
        let grads = GRAD_KEYS.iter().map(|k| (k.to_string(), vars[*k].grad()));
        for (key, got) in grads.chain([("feat".to_string(), feat.grad())]) {
            let want = t(&format!("grad.{key}"));
            let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
            assert_close(&got, &want, tol, 1e-5, &format!("{case} grad {key}"));
        }
    }

    /// What the sampling told the host agrees with the targets: the rows
    /// labelled `0..K`, and (`weighted`) the rows with a label weight.
    pub(in crate::models::roi_heads::bbox_heads) fn assert_known_counts(targets: &BBoxTargets, num_classes: i64, weighted: bool) {
        let known = targets.known.as_ref().expect("get_targets knows its counts");
        let labels = &targets.labels;
        let pos = labels.ge(0).logical_and(&labels.lt(num_classes)).nonzero().view([-1]);
        assert_eq!(known.pos_rows, pos);
        assert_eq!(known.num_pos, pos.size()[0]);
        let with_weight = targets.label_weights.gt(0.0).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(known.num_weighted, weighted.then_some(with_weight));
    }

    #[test]
    fn shared2fc_targets_loss_and_grads_equal_mmdet() {
        check_case("box", "box", "box", -1.0);
    }

    #[test]
    fn shared2fc_loss_without_positives_equals_mmdet() {
        check_case("box", "boxnp", "boxnp", -1.0);
    }

    #[test]
    fn shared2fc_class_agnostic_decoded_giou_loss_equals_mmdet() {
        check_case("agn", "agn", "box", 2.0);
    }
}
