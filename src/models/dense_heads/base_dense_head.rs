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
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use detc::registry::models::common::OneOrMany;
use detc::registry::models::task_modules::DistancePointBBoxCoderConfig;
use detc::registry::refs::{BBoxCoderCfg, ConvCfg, InitCfg, NormCfg};

use super::anchor_head::{image_hw, larger_than};
use super::retina_head::conv_inits;
use crate::models::losses::{cfg_type, parse_cfg};
use crate::models::ops::{upload_as, DeltaXYWHBBoxCoder};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::{
    kaiming_normal_fan_out, make_conv, Activation, Conv2d, ConvGeom, ConvInit, ConvKind, ConvModule, ModelError, ModelResult, Norm,
    NormSpec,
};
use crate::models::layers::deform_conv::{DeformConv2d, DeformInit, DeformSpec};
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

/// The `stacked_convs` 3x3 ConvModules (conv, optional norm, ReLU) of a
/// head's classification or regression branch, `{i}.conv` and `{i}.gn`.
#[derive(Debug, Clone)]
struct ConvBranch {
    stacked_convs: i64,
    in_channels: i64,
    feat_channels: i64,
    norm: Option<NormSpec>,
    conv_kind: ConvKind,
    /// The head's init of its convs; `TorchDefault` (no `init_cfg`) leaves
    /// ConvModule's own Kaiming init.
    conv_init: ConvInit,
    bias: bool,
    /// The last conv is a DCNv2 (`dcn_on_last_conv`).
    dcn_on_last_conv: bool,
}

/// One layer of a tower: a ConvModule, or with `dcn_on_last_conv` the last
/// one, whose conv is MMCV's `ModulatedDeformConv2dPack` (`DCNv2`).
#[derive(Debug)]
pub(super) enum TowerConv {
    Plain(ConvModule),
    Deform { conv: DeformConv2d, norm: Option<Norm> },
}

impl TowerConv {
    pub(super) fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<Tensor> {
        match self {
            TowerConv::Plain(m) => m.forward_t(x, train),
            TowerConv::Deform { conv, norm } => {
                let mut y = conv.forward(x)?;
                if let Some(norm) = norm {
                    y = norm.forward_t(&y, train)?;
                }
                Ok(y.f_relu()?)
            }
        }
    }
}

impl ConvBranch {
    /// The branch under `p` (`bbox_head.cls_convs`).
    fn build(&self, p: &nn::Path) -> ModelResult<Vec<TowerConv>> {
        (0..self.stacked_convs)
            .map(|i| {
                let (q, c_in) = (p / i, if i == 0 { self.in_channels } else { self.feat_channels });
                if self.dcn_on_last_conv && i == self.stacked_convs - 1 {
                    self.deform_module(&q, c_in)
                } else {
                    Ok(TowerConv::Plain(self.conv_module(&q, c_in)?))
                }
            })
            .collect()
    }

    /// The DCNv2 layer under `q`, with its own init (the weight uniform,
    /// `conv_offset` zero), which MMDetection's heads leave as it is.
    fn deform_module(&self, q: &nn::Path, c_in: i64) -> ModelResult<TowerConv> {
        let spec = DeformSpec { modulated: true, deform_groups: 1 };
        let conv = DeformConv2d::new(&(q / "conv"), c_in, self.feat_channels, ConvGeom::k(3).padding(1), self.bias, spec, DeformInit::Scratch, true)?;
        let norm = match &self.norm {
            Some(spec) => Some(Norm::new(&(q / spec.abbr()), self.feat_channels, spec, true)?),
            None => None,
        };
        Ok(TowerConv::Deform { conv, norm })
    }

    /// One of the branch's ConvModules under `q`, from `c_in` channels.
    fn conv_module(&self, q: &nn::Path, c_in: i64) -> ModelResult<ConvModule> {
        let (feat, k3) = (self.feat_channels, ConvGeom::k(3).padding(1));
        let conv = match self.conv_init {
            ConvInit::Normal { .. } if self.bias => make_conv(&(q / "conv"), c_in, feat, k3, self.conv_init)?,
            ConvInit::Normal { mean, std, .. } => Conv2d::new(&(q / "conv"), c_in, feat, k3, false, Init::Randn { mean, stdev: std }, true)?,
            _ => Conv2d::new(&(q / "conv"), c_in, feat, k3, self.bias, kaiming_normal_fan_out(&[feat, c_in, 3, 3]), true)?,
        };
        let norm = match &self.norm {
            Some(spec) => Some(Norm::new(&(q / spec.abbr()), feat, spec, true)?),
            None => None,
        };
        Ok(ConvModule { conv: conv.with_kind(self.conv_kind), norm, act: Some(Activation::Relu) })
    }
}

/// The classification and regression towers of a dense head
/// (`cls_convs.{i}`, `reg_convs.{i}`) and its learned per-level scalar
/// (`scales.{i}.scale`, MMCV's `Scale(1.0)`): FCOS's, ATSS's and GFL's.
#[derive(Debug)]
pub struct Towers {
    cls_convs: Vec<TowerConv>,
    reg_convs: Vec<TowerConv>,
    pub scales: Vec<Tensor>,
    branch: ConvBranch,
}

/// What a dense head's config says of its towers.
pub struct TowerSpec<'a> {
    /// The head, named in errors.
    pub owner: &'static str,
    /// The classifier conv whose bias `init_cfg` may set from a prior (`conv_cls`).
    pub cls_name: &'a str,
    pub stacked_convs: u32,
    pub in_channels: u32,
    pub feat_channels: u32,
    pub conv_cfg: Option<&'a ConvCfg>,
    pub norm_cfg: Option<&'a NormCfg>,
    pub init_cfg: Option<&'a OneOrMany<InitCfg>>,
    /// The towers' conv bias; `None` is ConvModule's `'auto'` (none before a norm).
    pub conv_bias: Option<bool>,
    /// Feature levels (one learned scale each).
    pub levels: usize,
    /// The last conv of each tower is a DCNv2 (AnchorFreeHead's `dcn_on_last_conv`).
    pub dcn_on_last_conv: bool,
    /// Build the classification tower (FoveaBox's `with_deform` has its own).
    pub cls_tower: bool,
}

/// A head's towers and what its predictor convs take from the same config.
pub struct BuiltTowers {
    pub towers: Towers,
    /// The init of the head's convs, and of its classifier.
    pub conv_init: ConvInit,
    pub cls_init: ConvInit,
    /// Channels the towers give the predictors.
    pub out_channels: i64,
}

impl Towers {
    /// Both towers and the scales of `spec`, under the head's `p`.
    pub fn build(p: &nn::Path, spec: &TowerSpec) -> ModelResult<BuiltTowers> {
        let norm = spec.norm_cfg.map(|n| NormSpec::from_cfg(n, spec.owner)).transpose()?;
        let (conv_init, cls_init) = conv_inits(spec.init_cfg, spec.owner, spec.cls_name)?;
        let branch = ConvBranch {
            stacked_convs: spec.stacked_convs as i64,
            in_channels: spec.in_channels as i64,
            feat_channels: spec.feat_channels as i64,
            bias: spec.conv_bias.unwrap_or(norm.is_none()),
            norm,
            conv_kind: ConvKind::from_cfg(spec.conv_cfg, spec.owner)?,
            conv_init,
            dcn_on_last_conv: spec.dcn_on_last_conv,
        };
        let scales = (0..spec.levels as i64)
            .map(|i| crate::models::layers::param(&(p / "scales" / i), "scale", &[], Init::Const(1.0), true))
            .collect::<ModelResult<Vec<_>>>()?;
        let cls_convs = if spec.cls_tower { branch.build(&(p / "cls_convs"))? } else { vec![] };
        let towers = Towers { cls_convs, reg_convs: branch.build(&(p / "reg_convs"))?, scales, branch };
        let out_channels = if spec.stacked_convs > 0 { spec.feat_channels } else { spec.in_channels } as i64;
        Ok(BuiltTowers { towers, conv_init, cls_init, out_channels })
    }

    /// One more 3x3 ConvModule of the towers' kind (VFNet's `vfnet_reg_conv`)
    /// under `p`, from `c_in` channels to `feat_channels`. It keeps
    /// ConvModule's own Kaiming init: MMEngine calls a direct child's
    /// `init_weights` after the head's `init_cfg`, which reaches the towers'
    /// convs only.
    pub fn extra_conv_module(&self, p: &nn::Path, c_in: i64) -> ModelResult<ConvModule> {
        ConvBranch { conv_init: ConvInit::Kaiming, ..self.branch.clone() }.conv_module(p, c_in)
    }

    /// Checks that `x` has one map per level; `owner` names the head.
    pub fn check_levels(&self, x: &[Tensor], owner: &str) -> ModelResult<()> {
        match x.len() == self.scales.len() {
            true => Ok(()),
            false => Err(ModelError::new(owner, format!("{} feature levels for {} strides", x.len(), self.scales.len()))),
        }
    }

    /// One level's (N, C, H, W) map through both towers: (cls_feat, reg_feat).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelResult<(Tensor, Tensor)> {
        let (mut c, mut r) = (x.shallow_clone(), x.shallow_clone());
        for conv in &self.cls_convs {
            c = conv.forward_t(&c, train)?;
        }
        for conv in &self.reg_convs {
            r = conv.forward_t(&r, train)?;
        }
        Ok((c, r))
    }
}

/// The `clip_border` of a head's `bbox_coder`, which must be `DistancePointBBoxCoder`.
pub fn distance_coder_clip_border(cfg: &BBoxCoderCfg, owner: &str) -> ModelResult<bool> {
    match cfg_type(&cfg.0, &format!("{owner}.bbox_coder"))? {
        "DistancePointBBoxCoder" => Ok(parse_cfg::<DistancePointBBoxCoderConfig>(&cfg.0, "DistancePointBBoxCoder")?.clip_border),
        other => Err(ModelError::new(owner, format!("bbox coder {other:?} is not supported (only DistancePointBBoxCoder)"))),
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
        let s = upload_as(&[sw, sh, sw, sh], bboxes.kind(), bboxes.device())?;
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

/// `_predict_by_feat_single` of an anchor head for one image: per level its
/// (A*C, H, W) class logits, (A*4, H, W) deltas, optionally (A, H, W)
/// score-factor logits (ATSS's centerness), and its (H*W*A, 4) anchors.
/// Scores are sigmoids of `num_classes` channels, or a softmax over
/// `num_classes + 1` without the background. The deltas of the kept
/// (anchor, class) pairs are decoded within the image, then
/// [`bbox_post_process`].
pub struct AnchorPrediction<'a> {
    pub coder: &'a DeltaXYWHBBoxCoder,
    pub num_classes: i64,
    pub use_sigmoid_cls: bool,
    pub owner: &'a str,
}

impl AnchorPrediction<'_> {
    #[allow(clippy::too_many_arguments)]
    pub fn predict_single(
        &self,
        cls_scores: &[Tensor],
        bbox_preds: &[Tensor],
        score_factors: Option<&[Tensor]>,
        mlvl_priors: &[Tensor],
        sample: &DetDataSample,
        cfg: &DenseTest,
        rescale: bool,
    ) -> ModelResult<DetInstances> {
        let (mut all_deltas, mut all_priors, mut all_scores, mut all_labels, mut all_factors) = (vec![], vec![], vec![], vec![], vec![]);
        let channels = if self.use_sigmoid_cls { self.num_classes } else { self.num_classes + 1 };
        for (level, (cls, priors)) in cls_scores.iter().zip(mlvl_priors).enumerate() {
            let deltas = bbox_preds[level].f_permute([1, 2, 0])?.f_reshape([-1, 4])?;
            let logits = cls.f_permute([1, 2, 0])?.f_reshape([-1, channels])?;
            let scores = if self.use_sigmoid_cls {
                logits.f_sigmoid()?
            } else {
                logits.f_softmax(-1, logits.kind())?.f_narrow(1, 0, self.num_classes)?
            };
            let (scores, labels, keep) = filter_scores_and_topk(&scores, cfg.score_thr, cfg.nms_pre)?;
            if let Some(factors) = score_factors {
                let f = factors[level].f_permute([1, 2, 0])?.f_reshape([-1])?.f_sigmoid()?;
                all_factors.push(f.f_index_select(0, &keep)?);
            }
            all_scores.push(scores);
            all_labels.push(labels);
            all_deltas.push(deltas.f_index_select(0, &keep)?);
            all_priors.push(priors.f_index_select(0, &keep)?);
        }
        let (h, w) = image_hw(sample.meta.img_shape, "img_shape", self.owner)?;
        let bboxes = self.coder.decode(&Tensor::f_cat(&all_priors, 0)?, &Tensor::f_cat(&all_deltas, 0)?, Some((h as f64, w as f64)))?;
        let (scores, labels) = (Tensor::f_cat(&all_scores, 0)?, Tensor::f_cat(&all_labels, 0)?);
        let factors = if score_factors.is_some() { Some(Tensor::f_cat(&all_factors, 0)?) } else { None };
        bbox_post_process(bboxes, scores, labels, factors, sample, cfg, rescale, self.owner)
    }
}

/// What `_predict_by_feat_single` reads of a point head (FCOS, VFNet): the
/// points of each level and how the side distances decode.
pub struct PointPrediction<'a> {
    /// Per level the (H*W, 2) points.
    pub points: &'a [Tensor],
    pub num_classes: i64,
    /// Clip the decoded boxes to the image (`DistancePointBBoxCoder.clip_border`).
    pub clip_border: bool,
    pub owner: &'a str,
}

impl PointPrediction<'_> {
    /// The detections of image `i` of the batch from per-level class logits
    /// (N, K, H, W), distances (N, 4, H, W) and optional score-factor logits
    /// (N, 1, H, W): per level the top `nms_pre` sigmoid scores above
    /// `score_thr`, the boxes decoded from their points, then
    /// [`bbox_post_process`].
    #[allow(clippy::too_many_arguments)]
    pub fn predict_single(
        &self,
        i: usize,
        cls_scores: &[Tensor],
        bbox_preds: &[Tensor],
        score_factors: Option<&[Tensor]>,
        sample: &DetDataSample,
        cfg: &DenseTest,
        rescale: bool,
    ) -> ModelResult<DetInstances> {
        let (mut scores_all, mut labels_all, mut dists, mut pts, mut factors) = (vec![], vec![], vec![], vec![], vec![]);
        for (lvl, level_points) in self.points.iter().enumerate() {
            let img = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
                Ok(maps[lvl].f_get(i as i64)?.f_detach()?.f_permute([1, 2, 0])?.f_reshape([-1, c])?)
            };
            let scores = img(cls_scores, self.num_classes)?.f_sigmoid()?;
            let (scores, labels, keep) = filter_scores_and_topk(&scores, cfg.score_thr, cfg.nms_pre)?;
            scores_all.push(scores);
            labels_all.push(labels);
            dists.push(img(bbox_preds, 4)?.f_index_select(0, &keep)?);
            pts.push(level_points.f_index_select(0, &keep)?);
            if let Some(maps) = score_factors {
                factors.push(img(maps, 1)?.f_view([-1])?.f_sigmoid()?.f_index_select(0, &keep)?);
            }
        }
        let (h, w) = image_hw(sample.meta.img_shape, "img_shape", self.owner)?;
        let max_shape = self.clip_border.then_some((h as f64, w as f64));
        let bboxes = crate::models::ops::distance2bbox(&Tensor::f_cat(&pts, 0)?, &Tensor::f_cat(&dists, 0)?, max_shape)?;
        let (scores, labels) = (Tensor::f_cat(&scores_all, 0)?, Tensor::f_cat(&labels_all, 0)?);
        let factors = score_factors.map(|_| Tensor::f_cat(&factors, 0)).transpose()?;
        bbox_post_process(bboxes, scores, labels, factors, sample, cfg, rescale, self.owner)
    }
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

/// One case `case` of a dense-head reference (`dense_head_images.py`'s
/// `record_head`) on the head built under `vs`: the state-dict names and
/// shapes, the init (biases, norms and scales exactly; weights by their spread),
/// then on the reference's perturbed weights the losses `loss` gives for the
/// features `x.{l}` (with `reduce_mean` the identity), every gradient and the
/// detections (`check_grads_and_predictions`).
#[cfg(test)]
pub(crate) fn check_head_case(
    fixture: &crate::models::layers::fixtures::StateDict,
    case: &str,
    vs: &tch::nn::VarStore,
    loss: impl Fn(&[Tensor], crate::models::roi_heads::sparse_roi_head::ReduceMean) -> indexmap::IndexMap<String, Tensor>,
    predict: impl Fn(&[Tensor], bool) -> Vec<DetInstances>,
) {
    use crate::models::layers::fixtures::{assert_close, tensor};
    use crate::models::weights::{load_state_dict, to_tensor, with_prefix, Shapes};
    let fx = |key: &str| tensor(fixture, key);
    let ours = vs.variables();
    let init = with_prefix(fixture, &format!("{case}.init")).unwrap();
    assert_eq!(ours.len(), init.len(), "{case}: number of state-dict entries");
    for (name, t) in &init {
        let want = to_tensor(t).unwrap();
        assert_eq!(ours[name].size(), want.size(), "{case}: {name}");
        if name.ends_with("bias") || name.contains(".gn.") || name.starts_with("scales") {
            assert_eq!(ours[name], want, "{case}: initial {name}");
        } else if want.numel() >= 64 {
            // Random inits: the spread of MMDetection's (N(0, 0.01) or a module's own).
            let (std, want_std) = (ours[name].std(true).double_value(&[]), want.std(true).double_value(&[]));
            // Two sample spreads of n values differ by about 1/sqrt(n) relatively: 4 of that, at least 0.35.
            let tol = (4.0 / (want.numel() as f64).sqrt()).max(0.35);
            let alike = if want_std == 0.0 { std == 0.0 } else { (std / want_std - 1.0).abs() < tol };
            assert!(alike, "{case}: {name}: std {std}, MMDetection's {want_std}");
        }
    }
    let report = load_state_dict(vs, "", &with_prefix(fixture, &format!("{case}.sd")).unwrap(), Shapes::Refuse).unwrap();
    assert!(report.is_exact(), "{report:?}");
    let levels = fixture.keys().filter(|k| k.starts_with("x.")).count();
    let x: Vec<Tensor> = (0..levels).map(|l| fx(&format!("x.{l}")).set_requires_grad(true)).collect();
    let one = |v: f64| Ok(v);
    let losses = loss(&x, &one);
    let want: Vec<String> = fixture.keys().filter_map(|k| k.strip_prefix(&format!("{case}.loss.")).map(str::to_string)).collect();
    assert_eq!(losses.keys().collect::<Vec<_>>(), want.iter().collect::<Vec<_>>(), "{case}: loss names, in order");
    let mut total = Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
    for (name, v) in &losses {
        assert_close(v, &fx(&format!("{case}.loss.{name}")), 1e-6, 1e-5, &format!("{case}: {name}"));
        total = total + v;
    }
    total.backward();
    check_grads_and_predictions(fx, &format!("{case}."), vs, &x, predict);
}

/// The dense-head reference checks after the losses: the gradient of every
/// trainable parameter of `vs` and of the features `x` against `{prefix}grad.*`
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
    let aliases = crate::models::layers::shared_aliases(vs);
    for (name, t) in vs.variables().iter().filter(|(n, t)| t.requires_grad() && !aliases.contains(*n)) {
        // Zero for a parameter the losses never reach, as the reference records it.
        let grad = t.grad();
        scaled(&if grad.defined() { grad } else { t.zeros_like() }, name);
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
