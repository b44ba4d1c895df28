//! What MMDetection's `BaseDenseHead` does at test time for the dense heads
//! of single-stage detectors (`RetinaHead`, `FCOSHead`): per level the top
//! `nms_pre` (prior, class) scores above `score_thr`
//! ([`filter_scores_and_topk`]), then for the image the boxes rescaled,
//! scored by their score factors (FCOS's centerness), filtered by size and
//! NMS'ed per class ([`bbox_post_process`]).
//!
//! Shape shorthand: `P` priors of a level, `K` classes, `k` kept detections.

use detc::registry::models::ops::NmsConfig;
use detc::registry::models::train_test::DenseTestConfig;
use tch::{Kind, Tensor};

use super::anchor_head::larger_than;
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::nms::{batched_nms_cfg, nms_config};
use crate::models::roi_heads::DetInstances;

/// `test_cfg` of a dense head, built.
#[derive(Debug)]
pub struct DenseTest {
    pub nms_pre: i64,
    pub min_bbox_size: f64,
    pub score_thr: f64,
    pub nms: NmsConfig,
    pub max_per_img: i64,
}

impl DenseTest {
    pub fn new(cfg: &DenseTestConfig, owner: &str) -> ModelResult<Self> {
        Ok(DenseTest {
            nms_pre: cfg.nms_pre,
            min_bbox_size: cfg.min_bbox_size,
            score_thr: cfg.score_thr,
            nms: nms_config(&cfg.nms, &format!("{owner}.test_cfg.nms"))?,
            max_per_img: cfg.max_per_img as i64,
        })
    }
}

/// `filter_scores_and_topk`: of a level's (P, K) scores, those above
/// `score_thr`, the top `nms_pre` of them (Python's slice `[:nms_pre]`),
/// best first. Returns their scores, class labels and prior indices.
pub fn filter_scores_and_topk(scores: &Tensor, score_thr: f64, nms_pre: i64) -> ModelResult<(Tensor, Tensor, Tensor)> {
    let valid = scores.f_gt(score_thr)?;
    let kept = scores.f_masked_select(&valid)?;
    let valid_idxs = valid.f_nonzero()?;
    let m = valid_idxs.size()[0];
    let top = nms_pre.min(m);
    let top = if top < 0 { (m + top).max(0) } else { top };
    let (sorted, order) = kept.f_sort(0, true)?;
    let chosen = valid_idxs.f_index_select(0, &order.f_narrow(0, 0, top)?)?;
    Ok((sorted.f_narrow(0, 0, top)?, chosen.f_select(1, 1)?, chosen.f_select(1, 0)?))
}

/// `_bbox_post_process` of one image's decoded detections: rescaled to the
/// original image with `rescale`, their scores multiplied by
/// `score_factors`, the boxes not larger than `min_bbox_size` dropped, then
/// per-class NMS and the best `max_per_img`.
pub fn bbox_post_process(
    mut bboxes: Tensor,
    mut scores: Tensor,
    mut labels: Tensor,
    score_factors: Option<Tensor>,
    sample: &DetDataSample,
    cfg: &DenseTest,
    rescale: bool,
    owner: &str,
) -> ModelResult<DetInstances> {
    if rescale {
        let (sw, sh) = sample
            .meta
            .scale_factor
            .ok_or_else(|| ModelError::new(owner, "rescale needs scale_factor in the sample's meta"))?;
        let s = Tensor::from_slice(&[sw, sh, sw, sh]).f_to_kind(bboxes.kind())?.f_to_device(bboxes.device())?;
        bboxes = bboxes.f_div(&s)?;
    }
    if let Some(factors) = score_factors {
        scores = scores.f_mul(&factors)?;
    }
    if let Some(keep) = larger_than(&bboxes, cfg.min_bbox_size)? {
        bboxes = bboxes.f_index_select(0, &keep)?;
        scores = scores.f_index_select(0, &keep)?;
        labels = labels.f_index_select(0, &keep)?;
    }
    if bboxes.numel() > 0 {
        let keep = batched_nms_cfg(&bboxes, &scores, &labels, &cfg.nms, Some(cfg.max_per_img as usize))?;
        let keep = keep.f_narrow(0, 0, cfg.max_per_img.min(keep.size()[0]))?;
        bboxes = bboxes.f_index_select(0, &keep)?;
        scores = scores.f_index_select(0, &keep)?;
        labels = labels.f_index_select(0, &keep)?;
    }
    Ok(DetInstances { bboxes, scores, labels: labels.f_to_kind(Kind::Int64)?, masks: None })
}

/// The two images of the dense-head references
/// (`tests/reference/dense_head_images.py`), read from their fixture with `fx`.
#[cfg(test)]
pub(crate) fn reference_samples(fx: impl Fn(&str) -> Tensor) -> Vec<DetDataSample> {
    use crate::models::data_preprocessors::InstanceTensors;
    use detc::data::SampleMeta;
    use tch::Device;
    (0..2)
        .map(|i| {
            let meta = Vec::<f64>::try_from(fx(&format!("img.{i}.meta"))).unwrap();
            let (h, w) = (meta[0] as usize, meta[1] as usize);
            let (sw, sh) = (meta[4], meta[5]);
            DetDataSample {
                meta: SampleMeta {
                    img_shape: Some((h, w)),
                    pad_shape: Some((meta[2] as usize, meta[3] as usize)),
                    scale_factor: Some((sw, sh)),
                    ori_shape: Some(((h as f64 / sh).round() as usize, (w as f64 / sw).round() as usize)),
                    ..SampleMeta::default()
                },
                batch_input_shape: (meta[2] as usize, meta[3] as usize),
                gt_instances: InstanceTensors {
                    bboxes: fx(&format!("img.{i}.bboxes")),
                    labels: fx(&format!("img.{i}.labels")),
                    masks: None,
                },
                ignored_instances: InstanceTensors {
                    bboxes: Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
                    labels: Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
                    masks: None,
                },
            }
        })
        .collect()
}

/// The dense-head reference checks after the losses: the gradient of every
/// parameter of `vs` and of the features `x` against `{prefix}grad.*`
/// (within 1e-5 of the largest value), then `predict(rescale)` for both
/// `rescale`s against `{prefix}pred{0,1}.{i}.*`.
#[cfg(test)]
pub(crate) fn check_grads_and_predictions(
    fx: impl Fn(&str) -> Tensor,
    prefix: &str,
    vs: &tch::nn::VarStore,
    x: &[Tensor],
    predict: impl Fn(&[Tensor], bool) -> Vec<DetInstances>,
) {
    use crate::models::layers::fixtures::assert_close;
    let scaled = |got: &Tensor, key: &str| {
        let want = fx(&format!("{prefix}grad.{key}"));
        let tol = 1e-5 * want.abs().max().double_value(&[]).max(1e-6);
        assert_close(got, &want, tol, 1e-4, &format!("{prefix}gradient of {key}"));
    };
    for (name, t) in &vs.variables() {
        scaled(&t.grad(), name);
    }
    for (l, t) in x.iter().enumerate() {
        scaled(&t.grad(), &format!("x.{l}"));
    }
    let x: Vec<Tensor> = x.iter().map(Tensor::detach).collect();
    for rescale in [true, false] {
        let res = tch::no_grad(|| predict(&x, rescale));
        for (i, r) in res.iter().enumerate() {
            let p = format!("{prefix}pred{}.{i}", rescale as i32);
            assert_close(&r.bboxes, &fx(&format!("{p}.bboxes")), 1e-4, 1e-5, &format!("{p} bboxes"));
            assert_close(&r.scores, &fx(&format!("{p}.scores")), 1e-6, 1e-5, &format!("{p} scores"));
            assert_eq!(r.labels, fx(&format!("{p}.labels")), "{p} labels");
        }
    }
}
