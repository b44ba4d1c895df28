//! `DIIHead`'s targets and losses: mmdet's `DIIHead.get_targets` /
//! `_get_targets_single` and `loss_and_target` with `concat=True`.
//! `reg_decoded_bbox` is always true for DIIHead, so the box targets are the
//! ground-truth boxes themselves, not coder deltas.
//!
//! Shape shorthand: `M` proposals of all images (`N*P`), `K` class scores,
//! `Np` positives of the batch.

use indexmap::IndexMap;
use tch::{Kind, Tensor};

use super::bbox_head_loss::{BBoxTargets, KnownCounts};
use super::dii_head::DIIHead;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::LossArgs;
use crate::models::task_modules::SamplingResult;

/// DIIHead's targets: [`BBoxTargets`] whose `bbox_targets` are the
/// ground-truth boxes themselves (it regresses decoded boxes).
pub type DIITargets = BBoxTargets;

impl DIIHead {
    /// `get_targets(concat=True)`: every image's targets (mmdet's
    /// `_get_targets_single`: a row per prior, the positives at their
    /// indices), concatenated in image order. `pos_weight` is the rcnn train
    /// cfg's (`<= 0` means 1). The batch is built at once, each image's
    /// indices shifted past the rows of the images before: the same numbers
    /// as image by image, with each operation launched once.
    pub fn get_targets(
        &self,
        sampling_results: &[SamplingResult],
        pos_weight: f64,
    ) -> ModelResult<DIITargets> {
        let Some(first) = sampling_results.first() else {
            return Err(ModelError::new("DIIHead", "get_targets needs at least one image's sampling"));
        };
        let dev = first.pos_priors.device();
        let float = (first.pos_priors.kind(), dev);
        // Each image's indices shifted to its rows of the batch.
        let rows_of = |inds: fn(&SamplingResult) -> &Tensor| -> ModelResult<Tensor> {
            let mut offset = 0;
            let mut shifted = Vec::with_capacity(sampling_results.len());
            for s in sampling_results {
                let i = inds(s);
                shifted.push(if offset == 0 { i.shallow_clone() } else { i.f_add_scalar(offset)? });
                offset += s.pos_priors.size()[0] + s.neg_priors.size()[0];
            }
            Ok(if shifted.len() == 1 { shifted.remove(0) } else { Tensor::f_cat(&shifted, 0)? })
        };
        let cat = |f: fn(&SamplingResult) -> &Tensor| -> ModelResult<Tensor> {
            Ok(Tensor::f_cat(&sampling_results.iter().map(f).collect::<Vec<_>>(), 0)?)
        };
        let count = |f: fn(&SamplingResult) -> &Tensor| -> i64 { sampling_results.iter().map(|s| f(s).size()[0]).sum() };
        let (num_pos, num_neg) = (count(|s| &s.pos_priors), count(|s| &s.neg_priors));
        let rows = num_pos + num_neg;
        // The sampler's positives: unique and ascending (`unique()`) in each image.
        let pos_rows = rows_of(|s| &s.pos_inds)?;
        let mut labels = Tensor::f_full([rows], self.num_classes, (Kind::Int64, dev))?;
        let mut label_weights = Tensor::f_zeros([rows], float)?;
        let mut bbox_targets = Tensor::f_zeros([rows, 4], float)?;
        let mut bbox_weights = Tensor::f_zeros([rows, 4], float)?;
        if num_pos > 0 {
            let at = [Some(pos_rows.shallow_clone())];
            let pos_weight = if pos_weight <= 0.0 { 1.0 } else { pos_weight };
            labels = labels.f_index_put(&at, &cat(|s| &s.pos_gt_labels)?.f_to_kind(Kind::Int64)?, false)?;
            label_weights = label_weights.f_index_fill(0, &pos_rows, pos_weight)?;
            bbox_targets = bbox_targets.f_index_put(&at, &cat(|s| &s.pos_gt_bboxes)?.f_to_kind(float.0)?, false)?;
            bbox_weights = bbox_weights.f_index_fill(0, &pos_rows, 1.0)?;
        }
        if num_neg > 0 {
            label_weights = label_weights.f_index_fill(0, &rows_of(|s| &s.neg_inds)?, 1.0)?;
        }
        let known = KnownCounts { pos_rows, num_pos, num_weighted: None };
        Ok(DIITargets { labels, label_weights, bbox_targets, bbox_weights, known: Some(known) })
    }

    /// `loss_and_target` (`concat=True`): `loss_cls`, `pos_acc` (mmdet's
    /// `accuracy` in percent, (1,), or a 0 scalar without positives),
    /// `loss_bbox` (L1 on boxes divided by `imgs_whwh`) and `loss_iou`, each
    /// averaged over `reduce_mean(num_pos)`; without positives the box
    /// losses are `bbox_pred.sum() * 0`. Keys carry no stage prefix.
    ///
    /// cls_score: (M, K); bbox_pred: (M, 4) decoded x1y1x2y2 boxes;
    /// sampling_results: one per image, in the order of the M rows;
    /// imgs_whwh: (M, 4) or (N, P, 4) `[w, h, w, h]` of each row's image;
    /// pos_weight: the rcnn train cfg's; reduce_mean: the mean over processes
    /// (the identity in one process).
    pub fn loss_and_target(
        &self,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        sampling_results: &[SamplingResult],
        imgs_whwh: &Tensor,
        pos_weight: f64,
        reduce_mean: &dyn Fn(f64) -> ModelResult<f64>,
    ) -> ModelResult<IndexMap<String, Tensor>> {
        let t = self.get_targets(sampling_results, pos_weight)?;
        let m = t.labels.size()[0];
        if bbox_pred.size() != [m, 4]
            || cls_score.size().first() != Some(&m)
            || imgs_whwh.numel() as i64 != m * 4
        {
            return Err(ModelError::new(
                "DIIHead",
                format!(
                    "loss_and_target expects cls_score ({m}, K), bbox_pred ({m}, 4) and imgs_whwh of {m}x4 \
                     for {m} sampled proposals, got {:?}, {:?} and {:?}",
                    cls_score.size(),
                    bbox_pred.size(),
                    imgs_whwh.size()
                ),
            ));
        }
        // Background is `num_classes`; the rest (0..num_classes) are positives.
        let (pos_rows, num_pos) = match &t.known {
            Some(k) => (k.pos_rows.shallow_clone(), k.num_pos),
            None => {
                let pos = t.labels.f_ge(0)?.f_logical_and(&t.labels.f_lt(self.num_classes)?)?;
                let rows = pos.f_nonzero()?.f_view([-1])?;
                let n = rows.size()[0];
                (rows, n)
            }
        };
        let pos_rows_of = |x: &Tensor| -> ModelResult<Tensor> { Ok(x.f_index_select(0, &pos_rows)?) };
        let num_pos = num_pos as f64;
        let avg_factor = reduce_mean(num_pos)?;
        let mut losses = IndexMap::new();
        if cls_score.numel() > 0 {
            let args = LossArgs::default()
                .weight(&t.label_weights)
                .avg_factor(avg_factor);
            losses.insert(
                "loss_cls".into(),
                self.loss_cls.forward(cls_score, &t.labels, args)?,
            );
            let pos_acc = accuracy(&pos_rows_of(cls_score)?, &pos_rows_of(&t.labels)?)?;
            losses.insert("pos_acc".into(), pos_acc);
        }
        if num_pos > 0.0 {
            let pred = pos_rows_of(bbox_pred)?;
            let whwh = pos_rows_of(&imgs_whwh.f_reshape([m, 4])?)?;
            let target = pos_rows_of(&t.bbox_targets)?;
            let weight = pos_rows_of(&t.bbox_weights)?;
            let args = LossArgs::default().weight(&weight).avg_factor(avg_factor);
            let loss_bbox =
                self.loss_bbox
                    .forward(&pred.f_div(&whwh)?, &target.f_div(&whwh)?, args)?;
            losses.insert("loss_bbox".into(), loss_bbox);
            losses.insert(
                "loss_iou".into(),
                self.loss_iou.forward(&pred, &target, args)?,
            );
        } else {
            let zero = || -> ModelResult<Tensor> {
                Ok(bbox_pred.f_sum(bbox_pred.kind())?.f_mul_scalar(0)?)
            };
            losses.insert("loss_bbox".into(), zero()?);
            losses.insert("loss_iou".into(), zero()?);
        }
        Ok(losses)
    }
}

/// mmdet's `accuracy(pred, target, topk=1)`: the percentage of rows whose
/// top-1 class is the target, as a (1,) tensor; a 0 scalar for no rows.
pub fn accuracy(pred: &Tensor, target: &Tensor) -> ModelResult<Tensor> {
    let n = pred.size().first().copied().unwrap_or(0);
    if n == 0 {
        return Ok(Tensor::f_zeros([], (pred.kind(), pred.device()))?);
    }
    let (_, top) = pred.f_topk(1, 1, true, true)?;
    // (n, 1) -> (1, n), compared with the (1, n) targets
    let correct = top
        .f_transpose(0, 1)?
        .f_eq_tensor(&target.f_view([1, -1])?)?;
    Ok(correct
        .f_reshape([-1])?
        .f_to_kind(Kind::Float)?
        .f_sum_dim_intlist(0, true, Kind::Float)?
        .f_mul_scalar(100.0 / n as f64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, tensor};
    use crate::models::roi_heads::bbox_heads::dii_head::tests::{fixture, loaded_head};
    use crate::models::task_modules::{AssignResult, PseudoSampler};

    const GRAD_KEYS: &[&str] = &[
        "fc_cls.weight",
        "fc_reg.weight",
        "attention.attn.in_proj_weight",
        "instance_interactive_conv.dynamic_layer.weight",
        "instance_interactive_conv.fc_layer.weight",
        "ffn.layers.0.0.weight",
        "reg_fcs.3.weight",
    ];

    /// Runs the fixture's `case` (`loss` or `nopos`) through forward, the
    /// coder, the PseudoSampler and loss_and_target; compares everything
    /// with mmdet's values, then the gradients of the summed loss.
    fn check_case(case: &str) {
        let fx = fixture();
        let t = |k: &str| tensor(fx, &format!("{case}.{k}"));
        let (vs, head) = loaded_head();
        let roi = t("roi_feat").set_requires_grad(true);
        let feat = t("proposal_feat").set_requires_grad(true);
        let out = head.forward_t(&roi, &feat, true).unwrap();
        let decoded = head
            .bbox_coder
            .decode(&t("rois"), &out.bbox_pred.view([-1, 4]), None)
            .unwrap();
        assert_close(
            &decoded,
            &t("decoded"),
            1e-4,
            1e-5,
            &format!("{case} decoded"),
        );
        let proposals = decoded.detach().view([2, 3, 4]);
        let sampling: Vec<SamplingResult> = (0..2)
            .map(|i| {
                let assign = AssignResult {
                    num_gts: t(&format!("gt_bboxes.{i}")).size()[0],
                    gt_inds: t(&format!("gt_inds.{i}")),
                    labels: t(&format!("assigned_labels.{i}")),
                    max_overlaps: None,
                    matches: None,
                };
                let s = PseudoSampler::sample(
                    &assign,
                    &proposals.get(i),
                    &t(&format!("gt_bboxes.{i}")),
                    &t(&format!("gt_labels.{i}")),
                )
                .unwrap();
                check_sampling(
                    &s,
                    &|k| t(&format!("samp.{i}.{k}")),
                    &format!("{case} image {i}"),
                );
                s
            })
            .collect();
        let k = out.cls_score.size()[2];
        let targets = head.get_targets(&sampling, 1.0).unwrap();
        super::super::bbox_head_loss::tests::assert_known_counts(&targets, k, false);
        let losses = head
            .loss_and_target(
                &out.cls_score.view([-1, k]),
                &decoded,
                &sampling,
                &t("imgs_whwh"),
                1.0,
                &|x| Ok(x),
            )
            .unwrap();
        let keys: Vec<&str> = losses.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["loss_cls", "pos_acc", "loss_bbox", "loss_iou"]);
        for (name, v) in &losses {
            assert_close(
                v,
                &t(&format!("out.{name}")),
                1e-6,
                1e-5,
                &format!("{case} {name}"),
            );
        }
        let total = &losses["loss_cls"] + &losses["loss_bbox"] + &losses["loss_iou"];
        total.backward();
        let vars = vs.variables();
        for key in GRAD_KEYS {
            let want = t(&format!("grad.{key}"));
            let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
            assert_close(
                &vars[*key].grad(),
                &want,
                tol,
                1e-5,
                &format!("{case} grad {key}"),
            );
        }
        for (name, x) in [("roi_feat", &roi), ("proposal_feat", &feat)] {
            let want = t(&format!("grad.{name}"));
            let tol = 1e-6 * want.abs().max().double_value(&[]).max(1.0);
            assert_close(&x.grad(), &want, tol, 1e-5, &format!("{case} grad {name}"));
        }
    }

    fn check_sampling(s: &SamplingResult, want: &dyn Fn(&str) -> Tensor, what: &str) {
        let pairs = [
            ("pos_inds", &s.pos_inds),
            ("neg_inds", &s.neg_inds),
            ("pos_priors", &s.pos_priors),
            ("neg_priors", &s.neg_priors),
            ("pos_assigned_gt_inds", &s.pos_assigned_gt_inds),
            ("pos_gt_labels", &s.pos_gt_labels),
            ("pos_gt_bboxes", &s.pos_gt_bboxes),
            ("pos_is_gt", &s.pos_is_gt),
        ];
        for (name, got) in pairs {
            let w = want(name);
            assert_eq!(got.kind(), w.kind(), "{what} {name} dtype");
            assert_eq!(got, &w, "{what} {name}");
        }
        assert_eq!(
            s.num_gts,
            want("num_gts").int64_value(&[]),
            "{what} num_gts"
        );
        assert_eq!(
            s.avg_factor,
            want("avg_factor").int64_value(&[]),
            "{what} avg_factor"
        );
    }

    #[test]
    fn dii_loss_sampling_and_grads_equal_mmdet_with_an_empty_image() {
        check_case("loss");
    }

    #[test]
    fn dii_loss_without_any_positive_equals_mmdet() {
        check_case("nopos");
    }

    #[test]
    fn accuracy_of_no_rows_is_a_zero_scalar() {
        let pred = Tensor::zeros([0, 5], (Kind::Float, tch::Device::Cpu));
        let acc = accuracy(&pred, &Tensor::zeros([0], (Kind::Int64, tch::Device::Cpu))).unwrap();
        assert_eq!(acc.size(), Vec::<i64>::new());
        let pred = Tensor::from_slice(&[0.1f32, 0.9, 0.8, 0.2]).view([2, 2]);
        let acc = accuracy(&pred, &Tensor::from_slice(&[1i64, 1])).unwrap();
        assert_eq!(Vec::<f32>::try_from(acc).unwrap(), [50.0]);
    }
}
