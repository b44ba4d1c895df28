//! `AnchorHead`'s training (`mmdet/models/dense_heads/anchor_head.py`),
//! shared by `RPNHead` (one class-agnostic class) and `RetinaHead`: the
//! anchors of every level, each image's assignment and sampling of those
//! inside it, the per-anchor targets, and the per-level classification and
//! regression losses over the whole batch.
//!
//! Shape shorthand: `N` images, `A` anchors per location, `C` classifier
//! channels per anchor, `H, W` a level's size, `T` anchors of all levels.

use detc::registry::models::train_test::RpnTrainConfig;
use detc::registry::refs::{AnchorGeneratorCfg, BBoxCoderCfg};
use tch::{Kind, Tensor};

use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, AvgFactor, Loss, LossArgs};
use crate::models::ops::DeltaXYWHBBoxCoder;
use crate::models::task_modules::anchor_generator::anchor_inside_flags;
use crate::models::task_modules::{
    pseudo_sample_masks, AnchorGenerator, AssignResult, MaxIoUAssigner, PseudoSampler, RandomSampler, SampledMasks, SamplingResult,
};

/// The head's `train_cfg`, built.
#[derive(Debug)]
pub struct AnchorTrain {
    assigner: MaxIoUAssigner,
    /// `None`: `PseudoSampler` (also the config's `sampler: null`).
    sampler: Option<RandomSampler>,
    allowed_border: i64,
    pos_weight: f64,
    /// Sample as masks on the CPU too (as on a GPU; the tests' switch).
    pub(super) masks_on_cpu: bool,
}

impl AnchorTrain {
    /// `owner` names the head in errors.
    pub fn new(t: &RpnTrainConfig, owner: &str) -> ModelResult<Self> {
        let sampler = match &t.sampler {
            None => None,
            Some(s) if cfg_type(&s.0, "sampler")? == "PseudoSampler" => None,
            Some(s) => {
                let s = RandomSampler::from_cfg(s)?;
                if s.cfg.add_gt_as_proposals {
                    return Err(ModelError::new(
                        owner,
                        "the anchor sampler needs add_gt_as_proposals: false (ground truths are not anchors)",
                    ));
                }
                Some(s)
            }
        };
        Ok(AnchorTrain {
            assigner: MaxIoUAssigner::from_cfg(&t.assigner)?,
            sampler,
            allowed_border: t.allowed_border,
            pos_weight: t.pos_weight,
            masks_on_cpu: false,
        })
    }
}

/// The per-anchor targets of one image (all anchors of all levels, `T` of them).
pub(super) struct Targets {
    /// (T,) int64: the class of positives, `num_classes` elsewhere.
    pub labels: Tensor,
    /// (T,) float: `pos_weight` (or 1) for positives, 1 for negatives, 0 else.
    pub label_weights: Tensor,
    /// (T, 4) deltas (or boxes with `reg_decoded_bbox`), 0 except positives.
    pub bbox_targets: Tensor,
    /// (T, 4): 1 for positives.
    pub bbox_weights: Tensor,
    pub avg_factor: i64,
    /// The count behind `avg_factor` when it is left on the device (the
    /// sampling as masks; `avg_factor` is then 0).
    pub avg_count: Option<Tensor>,
}

/// How [`Targets`] are laid out: the background label, the positives'
/// classification weight (`pos_weight`, 1 when not positive) and `T`.
pub(super) struct TargetFill {
    pub num_classes: i64,
    pub pos_weight: f64,
    pub total: i64,
}

impl TargetFill {
    /// The targets of the `n_in` anchors inside the image (`inside_inds` of
    /// all `T`, or all of them with `None`) from their sampling, the
    /// positives regressing to `pos_targets` (Np, 4), then `unmap`ped onto
    /// every anchor (background label, zero weights outside).
    pub fn targets(&self, sampled: &SamplingResult, pos_targets: &Tensor, n_in: i64, inside_inds: Option<&Tensor>) -> ModelResult<Targets> {
        let device = pos_targets.device();
        let fopts = (Kind::Float, device);
        let mut bbox_targets = Tensor::f_zeros([n_in, 4], fopts)?;
        let mut bbox_weights = Tensor::f_zeros([n_in, 4], fopts)?;
        let mut labels = Tensor::f_full([n_in], self.num_classes, (Kind::Int64, device))?;
        let mut label_weights = Tensor::f_zeros([n_in], fopts)?;
        let pos = &sampled.pos_inds;
        if pos.numel() > 0 {
            let idx = [Some(pos.shallow_clone())];
            bbox_targets = bbox_targets.f_index_put(&idx, pos_targets, false)?;
            bbox_weights = bbox_weights.f_index_put(&idx, &Tensor::f_ones([1], fopts)?, false)?;
            labels = labels.f_index_put(&idx, &sampled.pos_gt_labels, false)?;
            let w = if self.pos_weight <= 0.0 { 1.0 } else { self.pos_weight };
            label_weights = label_weights.f_index_put(&idx, &Tensor::f_full([1], w, fopts)?, false)?;
        }
        if sampled.neg_inds.numel() > 0 {
            let idx = [Some(sampled.neg_inds.shallow_clone())];
            label_weights = label_weights.f_index_put(&idx, &Tensor::f_ones([1], fopts)?, false)?;
        }
        let unmap = |data: Tensor, fill: f64| -> ModelResult<Tensor> {
            let Some(inside) = inside_inds else { return Ok(data) };
            let mut size = data.size();
            size[0] = self.total;
            let idx = [Some(inside.shallow_clone())];
            Ok(Tensor::f_full(size.as_slice(), fill, (data.kind(), device))?.f_index_put(&idx, &data, false)?)
        };
        Ok(Targets {
            labels: unmap(labels, self.num_classes as f64)?,
            label_weights: unmap(label_weights, 0.0)?,
            bbox_targets: unmap(bbox_targets, 0.0)?,
            bbox_weights: unmap(bbox_weights, 0.0)?,
            avg_factor: sampled.avg_factor,
            avg_count: None,
        })
    }
}

/// An anchor head's `anchor_generator` and `bbox_coder` (only
/// `DeltaXYWHBBoxCoder`), with `A`, the anchors per location, which every
/// level must share; `owner` names the head in errors.
pub(super) fn anchors_and_coder(
    anchor_generator: &AnchorGeneratorCfg,
    bbox_coder: &BBoxCoderCfg,
    owner: &str,
) -> ModelResult<(AnchorGenerator, i64, DeltaXYWHBBoxCoder)> {
    let prior_generator = AnchorGenerator::from_cfg(anchor_generator)?;
    let per_level = prior_generator.num_base_priors();
    let a = per_level[0];
    if per_level.iter().any(|&n| n != a) {
        return Err(ModelError::new(owner, format!("every level needs the same number of anchors, got {per_level:?}")));
    }
    let coder = DeltaXYWHBBoxCoder::from_cfg(bbox_coder, &format!("{owner}.bbox_coder"))?;
    Ok((prior_generator, a, coder))
}

/// `(h, w)` of a sample's `what` (`img_shape`, `pad_shape`).
pub fn image_hw(shape: Option<(usize, usize)>, what: &str, owner: &str) -> ModelResult<(i64, i64)> {
    shape
        .map(|(h, w)| (h as i64, w as i64))
        .ok_or_else(|| ModelError::new(owner, format!("a data sample has no {what}")))
}

/// What `AnchorHead.loss_by_feat` reads of a head.
pub struct AnchorLoss<'a> {
    pub prior_generator: &'a AnchorGenerator,
    pub bbox_coder: &'a DeltaXYWHBBoxCoder,
    pub loss_cls: &'a Loss,
    pub loss_bbox: &'a Loss,
    pub reg_decoded_bbox: bool,
    /// `C`: the classifier's channels per anchor.
    pub cls_out_channels: i64,
    /// The background label (`num_classes`).
    pub num_classes: i64,
    /// Every ground truth is class 0 (the RPN).
    pub class_agnostic: bool,
    /// The head, named in errors.
    pub owner: &'static str,
}

impl AnchorLoss<'_> {
    /// `loss_by_feat`: the classification and regression losses, each summed
    /// over levels (MMEngine's `parse_losses` sums the per-level lists),
    /// normalised by the sampled anchors of the batch (`avg_factor`).
    pub fn loss_by_feat(
        &self,
        train: &AnchorTrain,
        cls_scores: &[Tensor],
        bbox_preds: &[Tensor],
        samples: &[DetDataSample],
    ) -> ModelResult<(Tensor, Tensor)> {
        let num_imgs = samples.len() as i64;
        if cls_scores.first().map(|c| c.size()[0]) != Some(num_imgs) {
            return Err(ModelError::new(
                self.owner,
                format!("{num_imgs} data samples for a batch of {:?}", cls_scores.first().map(|c| c.size())),
            ));
        }
        let sizes = featmap_sizes(cls_scores);
        let device = cls_scores[0].device();
        let mlvl_anchors = self.prior_generator.grid_priors(&sizes, device)?;
        let flat_anchors = Tensor::f_cat(&mlvl_anchors, 0)?;
        crate::engine::profile::section("dense head: anchors");
        let mut per_image = Vec::with_capacity(samples.len());
        for sample in samples {
            let pad = image_hw(sample.meta.pad_shape, "pad_shape", self.owner)?;
            // Known on the host: every anchor is inside when the padded
            // image covers every level and the border is not checked.
            let inside = if train.allowed_border < 0 && self.prior_generator.all_valid(&sizes, pad) {
                None
            } else {
                Some(Tensor::f_cat(&self.prior_generator.valid_flags(&sizes, pad, device)?, 0)?)
            };
            per_image.push(self.targets_single(train, &flat_anchors, inside.as_ref(), sample)?);
        }
        crate::engine::profile::section("dense head: assign and sample");
        // The images sampled as indices count on the host (0 for the others).
        let host_count = per_image.iter().map(|t| t.avg_factor).sum::<i64>() as f64;
        let counts: Vec<&Tensor> = per_image.iter().filter_map(|t| t.avg_count.as_ref()).collect();
        let avg_count = match counts.len() {
            0 => None,
            _ => Some(Tensor::f_stack(&counts, 0)?.f_sum(Kind::Float)?.f_add_scalar(host_count)?),
        };
        let avg_factor = match &avg_count {
            Some(count) => AvgFactor::Device(count),
            None => AvgFactor::Host(host_count),
        };
        let stack = |f: fn(&Targets) -> &Tensor| -> ModelResult<Tensor> {
            let all: Vec<&Tensor> = per_image.iter().map(f).collect();
            Ok(Tensor::f_stack(&all, 0)?)
        };
        // (N, T) / (N, T, 4), split into levels below (`images_to_levels`).
        let labels = stack(|t| &t.labels)?;
        let label_weights = stack(|t| &t.label_weights)?;
        let bbox_targets = stack(|t| &t.bbox_targets)?;
        let bbox_weights = stack(|t| &t.bbox_weights)?;
        // (N, H*W*A, channels) per level, in the anchors' order.
        let flatten = |t: &Tensor, channels: i64| -> ModelResult<Tensor> {
            Ok(t.f_permute([0, 2, 3, 1])?.f_reshape([num_imgs, -1, channels])?)
        };
        if self.loss_cls.is_sum_over_elements() && self.loss_bbox.is_sum_over_elements() {
            // One call per loss over every level at once: MMDetection calls
            // each loss per level and `parse_losses` sums them, which for a
            // loss summed over its elements and divided by `avg_factor` is
            // the same number (up to float rounding), in a fifth of the
            // operators (each a kernel launch on a GPU).
            let levels = |ts: &[Tensor], channels: i64| -> ModelResult<Tensor> {
                let flat = ts.iter().map(|t| flatten(t, channels)).collect::<ModelResult<Vec<_>>>()?;
                Ok(Tensor::f_cat(&flat, 1)?)
            };
            let cls = levels(cls_scores, self.cls_out_channels)?;
            let pred = levels(bbox_preds, 4)?;
            return self.loss_single(&cls, &pred, &flat_anchors, &labels, &label_weights, &bbox_targets, &bbox_weights, avg_factor);
        }
        let mut loss_cls: Option<Tensor> = None;
        let mut loss_bbox: Option<Tensor> = None;
        let mut start = 0i64;
        for (level, anchors) in mlvl_anchors.iter().enumerate() {
            let n = anchors.size()[0];
            let cut = |t: &Tensor| t.f_narrow(1, start, n);
            let (c, b) = self.loss_single(
                &flatten(&cls_scores[level], self.cls_out_channels)?,
                &flatten(&bbox_preds[level], 4)?,
                anchors,
                &cut(&labels)?,
                &cut(&label_weights)?,
                &cut(&bbox_targets)?,
                &cut(&bbox_weights)?,
                avg_factor,
            )?;
            loss_cls = Some(match loss_cls {
                None => c,
                Some(acc) => acc.f_add(&c)?,
            });
            loss_bbox = Some(match loss_bbox {
                None => b,
                Some(acc) => acc.f_add(&b)?,
            });
            start += n;
        }
        let none = || ModelError::new(self.owner, "no feature level");
        Ok((loss_cls.ok_or_else(none)?, loss_bbox.ok_or_else(none)?))
    }

    /// `_get_targets_single`: assigns and samples the anchors inside the
    /// image, then maps the targets back onto all `T` anchors. `valid_flags`
    /// `None`: every anchor is valid and inside, so none is picked out nor
    /// mapped back (no `nonzero`, which waits for a GPU).
    fn targets_single(
        &self,
        train: &AnchorTrain,
        flat_anchors: &Tensor,
        valid_flags: Option<&Tensor>,
        sample: &DetDataSample,
    ) -> ModelResult<Targets> {
        let as_masks = flat_anchors.device().is_cuda() || train.masks_on_cpu;
        if valid_flags.is_none() && as_masks {
            return self.targets_from_masks(train, flat_anchors, sample);
        }
        let inside_inds = match valid_flags {
            None => None,
            Some(flags) => {
                let img = image_hw(sample.meta.img_shape, "img_shape", self.owner)?;
                let inside = anchor_inside_flags(flat_anchors, flags, img, train.allowed_border)?;
                let inside_inds = inside.f_nonzero()?.f_view([-1])?;
                if inside_inds.numel() == 0 {
                    return Err(ModelError::new(
                        self.owner,
                        "no valid anchor is inside the image: check the image and anchor sizes, \
                         or set allowed_border to -1 in the head's train_cfg",
                    ));
                }
                Some(inside_inds)
            }
        };
        let anchors = match &inside_inds {
            Some(inds) => flat_anchors.f_index_select(0, inds)?,
            None => flat_anchors.shallow_clone(),
        };
        let (assign, gt_bboxes, gt_labels) = self.assign(train, &anchors, sample)?;
        let sampled: SamplingResult = match &train.sampler {
            Some(s) => s.sample(&assign, &anchors, &gt_bboxes, &gt_labels)?,
            None => PseudoSampler::sample(&assign, &anchors, &gt_bboxes, &gt_labels)?,
        };
        let pos_targets = if self.reg_decoded_bbox {
            sampled.pos_gt_bboxes.f_to_kind(Kind::Float)?
        } else {
            self.bbox_coder.encode(&sampled.pos_priors, &sampled.pos_gt_bboxes)?
        };
        let fill = TargetFill { num_classes: self.num_classes, pos_weight: train.pos_weight, total: flat_anchors.size()[0] };
        fill.targets(&sampled, &pos_targets, anchors.size()[0], inside_inds.as_ref())
    }

    /// The image's ground truths (boxes (G, 4), labels (G,): all 0 for a
    /// class-agnostic head) and the `anchors`' assignment to them.
    fn assign(&self, train: &AnchorTrain, anchors: &Tensor, sample: &DetDataSample) -> ModelResult<(AssignResult, Tensor, Tensor)> {
        let gt_bboxes = sample.gt_instances.bboxes.f_view([-1, 4])?;
        let gt_labels = if self.class_agnostic {
            Tensor::f_zeros([gt_bboxes.size()[0]], (Kind::Int64, anchors.device()))?
        } else {
            sample.gt_instances.labels.shallow_clone()
        };
        let ignore = &sample.ignored_instances.bboxes;
        let ignore = (ignore.numel() > 0).then_some(ignore);
        let assign = train.assigner.assign(anchors, &gt_bboxes, &gt_labels, ignore)?;
        Ok((assign, gt_bboxes, gt_labels))
    }

    /// `_get_targets_single` with every anchor inside, sampled as masks
    /// (`sample_masks`): nothing is read back to the host. The targets are
    /// computed for every anchor, each from the ground truth it is assigned
    /// (the first where none), and kept where sampled: the same numbers as
    /// the positives' targets put in place, row by row.
    fn targets_from_masks(&self, train: &AnchorTrain, anchors: &Tensor, sample: &DetDataSample) -> ModelResult<Targets> {
        let fopts = (Kind::Float, anchors.device());
        let (assign, gt_bboxes, _) = self.assign(train, anchors, sample)?;
        let num_gts = gt_bboxes.size()[0];
        let SampledMasks { pos, neg, avg_factor } = match &train.sampler {
            Some(s) => s.sample_masks(&assign.gt_inds)?,
            None => pseudo_sample_masks(&assign.gt_inds)?,
        };
        let total = anchors.size()[0];
        let pos4 = pos.f_unsqueeze(1)?.f_expand([total, 4], false)?;
        let bbox_targets = if num_gts == 0 {
            Tensor::f_zeros([total, 4], fopts)?
        } else {
            let assigned = gt_bboxes.f_index_select(0, &assign.gt_inds.f_sub_scalar(1)?.f_clamp_min(0)?)?;
            let targets = if self.reg_decoded_bbox {
                assigned.f_to_kind(Kind::Float)?
            } else {
                self.bbox_coder.encode(anchors, &assigned)?
            };
            targets.f_where_scalarother(&pos4, 0.0)?
        };
        let w = if train.pos_weight <= 0.0 { 1.0 } else { train.pos_weight };
        let label_weights = pos.f_to_kind(Kind::Float)?.f_mul_scalar(w)?.f_add(&neg.f_to_kind(Kind::Float)?)?;
        Ok(Targets {
            labels: assign.labels.f_where_scalarother(&pos, self.num_classes)?,
            label_weights,
            bbox_targets,
            bbox_weights: pos4.f_to_kind(Kind::Float)?,
            avg_factor: 0,
            avg_count: Some(avg_factor),
        })
    }

    /// `loss_by_feat_single`: the two losses of one level, or of several
    /// concatenated. cls_score (N, T, C) and bbox_pred (N, T, 4) in the
    /// anchors' order, anchors (T, 4), labels and weights (N, T), box
    /// targets and weights (N, T, 4).
    #[allow(clippy::too_many_arguments)]
    fn loss_single(
        &self,
        cls_score: &Tensor,
        bbox_pred: &Tensor,
        anchors: &Tensor,
        labels: &Tensor,
        label_weights: &Tensor,
        bbox_targets: &Tensor,
        bbox_weights: &Tensor,
        avg_factor: AvgFactor,
    ) -> ModelResult<(Tensor, Tensor)> {
        let cls = cls_score.f_reshape([-1, self.cls_out_channels])?;
        let label_weights = label_weights.f_reshape([-1])?;
        let loss_cls = self.loss_cls.forward(
            &cls,
            &labels.f_reshape([-1])?,
            LossArgs::default().weight(&label_weights).avg(avg_factor),
        )?;
        let mut pred = bbox_pred.f_reshape([-1, 4])?;
        if self.reg_decoded_bbox {
            let n = labels.size()[0];
            let anchors = anchors.f_unsqueeze(0)?.f_expand([n, -1, 4], false)?.f_reshape([-1, 4])?;
            pred = self.bbox_coder.decode(&anchors, &pred, None)?;
        }
        let bbox_weights = bbox_weights.f_reshape([-1, 4])?;
        let loss_bbox = self.loss_bbox.forward(
            &pred,
            &bbox_targets.f_reshape([-1, 4])?,
            LossArgs::default().weight(&bbox_weights).avg(avg_factor),
        )?;
        Ok((loss_cls, loss_bbox))
    }
}

/// `(H, W)` of each level's (N, C, H, W) (or (C, H, W)) map.
pub fn featmap_sizes(cls_scores: &[Tensor]) -> Vec<(i64, i64)> {
    cls_scores
        .iter()
        .map(|c| {
            let s = c.size();
            (s[s.len() - 2], s[s.len() - 1])
        })
        .collect()
}

/// `_bbox_post_process`'s size filter: with `min_size >= 0`, the indices of
/// the (n, 4) boxes wider and taller than it, or `None` when every box is
/// (or the filter is off).
pub fn larger_than(bboxes: &Tensor, min_size: f64) -> ModelResult<Option<Tensor>> {
    let Some(valid) = larger_than_mask(bboxes, min_size)? else {
        return Ok(None);
    };
    if bool::try_from(valid.f_all()?)? {
        return Ok(None);
    }
    Ok(Some(valid.f_nonzero()?.f_view([-1])?))
}

/// [`larger_than`]'s test as a bool mask on the boxes' device, (N,) for
/// (N, 4) boxes (or (B, N) for (B, N, 4)), nothing read back; `None` for a
/// negative `min_size` (no filter).
pub fn larger_than_mask(bboxes: &Tensor, min_size: f64) -> ModelResult<Option<Tensor>> {
    if min_size < 0.0 {
        return Ok(None);
    }
    let bw = bboxes.f_select(-1, 2)?.f_sub(&bboxes.f_select(-1, 0)?)?;
    let bh = bboxes.f_select(-1, 3)?.f_sub(&bboxes.f_select(-1, 1)?)?;
    Ok(Some(bw.f_gt(min_size)?.f_logical_and(&bh.f_gt(min_size)?)?))
}
