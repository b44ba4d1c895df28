//! `RepPointsHead` (Yang et al., "RepPoints: Point Set Representation for
//! Object Detection", <https://arxiv.org/abs/1904.11490>) as
//! `mmdet/models/dense_heads/reppoints_head.py` on `AnchorFreeHead`: per
//! level a classification and a point tower, then an initial set of
//! `num_points` points per location (`reppoints_pts_init_conv`,
//! `reppoints_pts_init_out`, offsets in strides from the location). Those
//! points place the taps of two deformable convs (their gradient scaled by
//! `gradient_mul`): one predicts a refinement of the points
//! (`reppoints_pts_refine_*`), one the class scores (`reppoints_cls_*`). A
//! point set becomes a box by its moments (with a learned factor,
//! `moment_transfer`), its extent, or the extent of its first four points.
//! With `use_grid_points` the head regresses boxes instead and samples a
//! grid of points in them.
//!
//! Training: the initial points are assigned by `train_cfg.init` (to the
//! location points by `PointAssigner`, or to boxes around them by
//! `MaxIoUAssigner`), the refined ones by `train_cfg.refine` on the initial
//! points' boxes; both boxes are trained by their loss in units of
//! `point_base_scale` strides, the scores by the refinement's labels.
//! Testing: the refined points' boxes, clipped to the image.
//!
//! Shape shorthand: `N` images, `K` classes, `P` points per set, `H, W` a
//! level's size, `T` locations of all levels.

use detc::registry::models::dense_heads::{PointsTransform, RepPointsHeadConfig};
use detc::registry::models::train_test::{DenseTestConfig, RepPointsTrainConfig};
use indexmap::IndexMap;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::anchor_head::{featmap_sizes, image_hw, TargetFill, Targets};
use super::base_dense_head::{bbox_post_process, filter_scores_and_topk, DenseTest, TowerSpec, Towers};
use crate::models::data_preprocessors::DetDataSample;
use crate::models::layers::deform_conv::deform_conv2d;
use crate::models::layers::{make_conv, param, Conv2d, ConvGeom, ModelError, ModelResult};
use crate::models::losses::{cfg_type, Loss, LossArgs};
use crate::models::roi_heads::DetInstances;
use crate::models::task_modules::point_assigner::PointAssigner;
use crate::models::task_modules::{MaxIoUAssigner, MlvlPointGenerator, PseudoSampler};
use crate::models::ops::upload_as;

const NAME: &str = "RepPointsHead";

/// The initial stage's assigner.
#[derive(Debug)]
enum InitAssigner {
    /// To the location points.
    Point(PointAssigner),
    /// To boxes of `point_base_scale` strides around the locations.
    MaxIoU(MaxIoUAssigner),
}

/// The head's `train_cfg`, built.
#[derive(Debug)]
struct RepPointsTrain {
    init: InitAssigner,
    init_pos_weight: f64,
    refine: MaxIoUAssigner,
    refine_pos_weight: f64,
}

impl RepPointsTrain {
    fn new(t: &RepPointsTrainConfig) -> ModelResult<Self> {
        for (stage, c) in [("init", &t.init), ("refine", &t.refine)] {
            if c.sampler.as_ref().is_some_and(|s| cfg_type(&s.0, "sampler").ok() != Some("PseudoSampler")) {
                return Err(ModelError::new(NAME, format!("train_cfg.{stage}.sampler must be null or PseudoSampler")));
            }
        }
        let init = match cfg_type(&t.init.assigner.0, "train_cfg.init.assigner")? {
            "PointAssigner" => InitAssigner::Point(PointAssigner::from_cfg(&t.init.assigner)?),
            _ => InitAssigner::MaxIoU(MaxIoUAssigner::from_cfg(&t.init.assigner)?),
        };
        Ok(RepPointsTrain {
            init,
            init_pos_weight: t.init.pos_weight,
            refine: MaxIoUAssigner::from_cfg(&t.refine.assigner)?,
            refine_pos_weight: t.refine.pos_weight,
        })
    }
}

#[derive(Debug)]
pub struct RepPointsHead {
    towers: Towers,
    cls_dconv: Tensor,
    cls_out: Conv2d,
    pts_init_conv: Conv2d,
    pts_init_out: Conv2d,
    refine_dconv: Tensor,
    pts_refine_out: Conv2d,
    /// `moment_transfer` (2,): log factors of the half width and height.
    moment_transfer: Option<Tensor>,
    moment_mul: f64,
    transform: PointsTransform,
    kernel: i64,
    gradient_mul: f64,
    strides: Vec<i64>,
    base_scale: f64,
    use_grid_points: bool,
    center_init: bool,
    points: MlvlPointGenerator,
    loss_cls: Loss,
    loss_init: Loss,
    loss_refine: Loss,
    num_classes: i64,
    train: Option<RepPointsTrain>,
    test: Option<DenseTest>,
}

/// What `forward` gives per level: class logits (N, K, H, W), the initial
/// and refined point offsets in strides, (y, x) per point (N, 2P, H, W);
/// in eval mode `refined` is the refined box (N, 4, H, W) instead and
/// `initial` is empty.
pub struct RepPointsOutputs {
    pub cls_scores: Vec<Tensor>,
    pub initial: Vec<Tensor>,
    pub refined: Vec<Tensor>,
}

impl RepPointsHead {
    /// Builds under `p` (`bbox_head`): `cls_convs.{i}`, `reg_convs.{i}`,
    /// `reppoints_cls_conv.weight`, `reppoints_cls_out`,
    /// `reppoints_pts_init_{conv,out}`, `reppoints_pts_refine_conv.weight`,
    /// `reppoints_pts_refine_out` and with `moment` `moment_transfer`.
    /// `train_cfg` / `test_cfg` are the detector's.
    pub fn new(cfg: &RepPointsHeadConfig, train_cfg: Option<&RepPointsTrainConfig>, test_cfg: Option<&DenseTestConfig>, p: &nn::Path) -> ModelResult<Self> {
        if !cfg.loss_cls.0.get("use_sigmoid").and_then(|v| v.as_bool()).unwrap_or(false) {
            return Err(ModelError::new(NAME, "loss_cls must be a sigmoid loss (use_sigmoid: true)"));
        }
        let kernel = (cfg.num_points as f64).sqrt().round() as i64;
        if kernel * kernel != cfg.num_points as i64 || kernel % 2 == 0 {
            return Err(ModelError::new(NAME, format!("num_points must be an odd square (9, 25, ...), got {}", cfg.num_points)));
        }
        let built = Towers::build(
            p,
            &TowerSpec {
                owner: NAME,
                cls_name: "reppoints_cls_out",
                stacked_convs: cfg.stacked_convs,
                in_channels: cfg.in_channels,
                feat_channels: cfg.feat_channels,
                conv_cfg: cfg.conv_cfg.as_ref(),
                norm_cfg: cfg.norm_cfg.as_ref(),
                init_cfg: cfg.init_cfg.as_ref(),
                // RepPoints builds its towers with ConvModule's `bias='auto'`.
                conv_bias: None,
                // No learned per-level scales.
                levels: 0,
                dcn_on_last_conv: false,
                cls_tower: true,
            },
        )?;
        let (last, conv_init, cls_init) = (built.out_channels, built.conv_init, built.cls_init);
        let point_feat = cfg.point_feat_channels as i64;
        let pts_out = if cfg.use_grid_points { 4 } else { 2 * cfg.num_points as i64 };
        let k1 = ConvGeom::k(1);
        // MMCV's DeformConv2d.reset_parameters (kaiming_uniform_, ReLU gain);
        // the head's Normal init is for Conv2d only.
        let bound = (6.0 / (last * kernel * kernel) as f64).sqrt();
        let dconv = |name: &str| param(&(p / name), "weight", &[point_feat, last, kernel, kernel], Init::Uniform { lo: -bound, up: bound }, true);
        let strides: Vec<i64> = cfg.point_strides.iter().map(|&s| s as i64).collect();
        Ok(RepPointsHead {
            towers: built.towers,
            cls_dconv: dconv("reppoints_cls_conv")?,
            cls_out: make_conv(&(p / "reppoints_cls_out"), point_feat, cfg.num_classes as i64, k1, cls_init)?,
            pts_init_conv: make_conv(&(p / "reppoints_pts_init_conv"), last, point_feat, ConvGeom::k(3).padding(1), conv_init)?,
            pts_init_out: make_conv(&(p / "reppoints_pts_init_out"), point_feat, pts_out, k1, conv_init)?,
            refine_dconv: dconv("reppoints_pts_refine_conv")?,
            pts_refine_out: make_conv(&(p / "reppoints_pts_refine_out"), point_feat, pts_out, k1, conv_init)?,
            moment_transfer: (cfg.transform_method == PointsTransform::Moment)
                .then(|| param(p, "moment_transfer", &[2], Init::Const(0.0), true))
                .transpose()?,
            moment_mul: cfg.moment_mul,
            transform: cfg.transform_method,
            kernel,
            gradient_mul: cfg.gradient_mul,
            points: MlvlPointGenerator { strides: strides.iter().map(|&s| (s, s)).collect(), offset: 0.0 },
            strides,
            base_scale: cfg.point_base_scale as f64,
            use_grid_points: cfg.use_grid_points,
            center_init: cfg.center_init,
            loss_cls: Loss::from_cfg(&cfg.loss_cls)?,
            loss_init: Loss::from_cfg(&cfg.loss_bbox_init)?,
            loss_refine: Loss::from_cfg(&cfg.loss_bbox_refine)?,
            num_classes: cfg.num_classes as i64,
            train: train_cfg.map(RepPointsTrain::new).transpose()?,
            test: test_cfg.or(cfg.test_cfg.as_ref()).map(|t| DenseTest::new(t, NAME)).transpose()?,
        })
    }

    /// The deformable convs' regular taps as (1, 2P, 1, 1) offsets, (y, x)
    /// per tap row by row (`dcn_base_offset`).
    fn base_offset(&self, like: &Tensor) -> ModelResult<Tensor> {
        let pad = (self.kernel - 1) / 2;
        let mut v = Vec::with_capacity((2 * self.kernel * self.kernel) as usize);
        for i in 0..self.kernel {
            for j in 0..self.kernel {
                v.push((i - pad) as f32);
                v.push((j - pad) as f32);
            }
        }
        Ok(upload_as(&v, like.kind(), like.device())?.f_view([1, -1, 1, 1])?)
    }

    /// `forward` (`train`: training outputs and batch statistics).
    pub fn forward_t(&self, x: &[Tensor], train: bool) -> ModelResult<RepPointsOutputs> {
        if x.len() != self.strides.len() {
            return Err(ModelError::new(NAME, format!("{} feature levels for {} point_strides", x.len(), self.strides.len())));
        }
        let mut out = RepPointsOutputs { cls_scores: vec![], initial: vec![], refined: vec![] };
        let geom = ConvGeom::k(self.kernel).padding((self.kernel - 1) / 2);
        for level in x {
            let base = self.base_offset(level)?;
            let scale = self.base_scale / 2.0;
            let (cls_feat, pts_feat) = self.towers.forward_t(level, train)?;
            let init = self.pts_init_out.forward(&self.pts_init_conv.forward(&pts_feat)?.f_relu()?)?;
            let (init, init_box) = if self.use_grid_points {
                let square = upload_as(&[-scale, -scale, scale, scale], init.kind(), init.device())?.f_view([1, 4, 1, 1])?;
                let (grid, boxes) = self.grid_from_reg(&init, &square)?;
                (grid, Some(boxes))
            } else if self.center_init {
                (init, None)
            } else {
                let max = base.f_max()?;
                (init.f_add(&base.f_div(&max)?.f_mul_scalar(scale)?)?, None)
            };
            let g = self.gradient_mul;
            let offset = init.f_detach()?.f_mul_scalar(1.0 - g)?.f_add(&init.f_mul_scalar(g)?)?.f_sub(&base)?;
            let cls = self.cls_out.forward(&deform_conv2d(&cls_feat, &offset, None, &self.cls_dconv, None, geom, 1)?.f_relu()?)?;
            let refine = self.pts_refine_out.forward(&deform_conv2d(&pts_feat, &offset, None, &self.refine_dconv, None, geom, 1)?.f_relu()?)?;
            let refined = match &init_box {
                Some(boxes) => self.grid_from_reg(&refine, &boxes.f_detach()?)?.0,
                None => refine.f_add(&init.f_detach()?)?,
            };
            out.cls_scores.push(cls);
            if train {
                out.initial.push(init);
                out.refined.push(refined);
            } else {
                out.refined.push(self.points2bbox(&refined, true)?);
            }
        }
        Ok(out)
    }

    /// `gen_grid_from_reg`: a box regression (N, 4, H, W) on the previous
    /// boxes -> a `kernel` x `kernel` grid of (y, x) points in the new box
    /// (N, 2P, H, W) and the new box (N, 4, H, W).
    fn grid_from_reg(&self, reg: &Tensor, previous: &Tensor) -> ModelResult<(Tensor, Tensor)> {
        let (b, _, h, w) = reg.size4()?;
        let k = self.kernel;
        let (lt, rb) = (previous.f_narrow(1, 0, 2)?, previous.f_narrow(1, 2, 2)?);
        let centre = lt.f_add(&rb)?.f_div_scalar(2.0)?;
        let wh = rb.f_sub(&lt)?.f_clamp_min(1e-6)?;
        let scale = reg.f_narrow(1, 2, 2)?.f_exp()?;
        let top_left = centre.f_add(&wh.f_mul(&reg.f_narrow(1, 0, 2)?)?)?.f_sub(&wh.f_mul(&scale)?.f_mul_scalar(0.5)?)?;
        let grid_wh = wh.f_mul(&scale)?;
        let (left, top) = (top_left.f_narrow(1, 0, 1)?, top_left.f_narrow(1, 1, 1)?);
        let (width, height) = (grid_wh.f_narrow(1, 0, 1)?, grid_wh.f_narrow(1, 1, 1)?);
        let steps = Tensor::f_linspace(0.0, 1.0, k, (reg.kind(), reg.device()))?.f_view([1, k, 1, 1])?;
        // Point (i, j) of the grid: row i's y, column j's x.
        let xs = left.f_add(&width.f_mul(&steps)?)?.f_unsqueeze(1)?.f_expand([b, k, k, h, w], false)?;
        let ys = top.f_add(&height.f_mul(&steps)?)?.f_unsqueeze(2)?.f_expand([b, k, k, h, w], false)?;
        let grid = Tensor::f_stack(&[ys.f_reshape([b, k * k, h, w])?, xs.f_reshape([b, k * k, h, w])?], 2)?.f_reshape([b, 2 * k * k, h, w])?;
        let boxes = Tensor::f_cat(&[&left, &top, &left.f_add(&width)?, &top.f_add(&height)?], 1)?;
        Ok((grid, boxes))
    }

    /// `points2bbox`: point sets (M, 2P, ...) -> boxes (M, 4, ...); the
    /// pairs are (y, x) with `y_first`, else (x, y).
    fn points2bbox(&self, pts: &Tensor, y_first: bool) -> ModelResult<Tensor> {
        let mut shape = pts.size();
        shape[1] /= 2;
        shape.insert(2, 2);
        let pairs = pts.f_reshape(shape.as_slice())?;
        let (ys, xs) = if y_first { (pairs.f_select(2, 0)?, pairs.f_select(2, 1)?) } else { (pairs.f_select(2, 1)?, pairs.f_select(2, 0)?) };
        let extent = |xs: &Tensor, ys: &Tensor| -> ModelResult<Tensor> {
            Ok(Tensor::f_cat(&[xs.f_amin([1], true)?, ys.f_amin([1], true)?, xs.f_amax([1], true)?, ys.f_amax([1], true)?], 1)?)
        };
        match self.transform {
            PointsTransform::Minmax => extent(&xs, &ys),
            PointsTransform::PartialMinmax => extent(&xs.f_narrow(1, 0, 4)?, &ys.f_narrow(1, 0, 4)?),
            PointsTransform::Moment => {
                let mt = self.moment_transfer.as_ref().ok_or_else(|| ModelError::new(NAME, "moment_transfer is missing"))?;
                let mt = mt.f_mul_scalar(self.moment_mul)?.f_add(&mt.f_detach()?.f_mul_scalar(1.0 - self.moment_mul)?)?;
                let (ym, xm) = (ys.f_mean_dim(1, true, None)?, xs.f_mean_dim(1, true, None)?);
                let std = |v: &Tensor, m: &Tensor| v.f_sub(m)?.f_std_correction(1, 1, true);
                let half_w = std(&xs, &xm)?.f_mul(&mt.f_get(0)?.f_exp()?)?;
                let half_h = std(&ys, &ym)?.f_mul(&mt.f_get(1)?.f_exp()?)?;
                Ok(Tensor::f_cat(&[xm.f_sub(&half_w)?, ym.f_sub(&half_h)?, xm.f_add(&half_w)?, ym.f_add(&half_h)?], 1)?)
            }
        }
    }

    /// `offset_to_pts`: one level's (N, 2P, H, W) offsets in strides, (y,
    /// x) per point -> (N, H*W, 2P) absolute (x, y) points.
    fn offset_to_pts(&self, centres: &Tensor, pred: &Tensor, stride: f64) -> ModelResult<Tensor> {
        let (n, c, _, _) = pred.size4()?;
        let yx = pred.f_permute([0, 2, 3, 1])?.f_reshape([n, -1, c / 2, 2])?;
        let xy = Tensor::f_stack(&[yx.f_select(3, 1)?, yx.f_select(3, 0)?], 3)?.f_reshape([n, -1, c])?;
        let centre = centres.f_narrow(1, 0, 2)?.f_repeat([1, c / 2])?.f_unsqueeze(0)?;
        Ok(xy.f_mul_scalar(stride)?.f_add(&centre)?)
    }

    /// `loss`: `loss_cls`, `loss_pts_init` and `loss_pts_refine`, each summed over levels.
    pub fn loss(&self, x: &[Tensor], samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        let out = self.forward_t(x, true)?;
        self.loss_by_feat(&out, samples)
    }

    /// `loss_by_feat` on the head's training outputs.
    pub fn loss_by_feat(&self, out: &RepPointsOutputs, samples: &[DetDataSample]) -> ModelResult<IndexMap<String, Tensor>> {
        let train = self.train.as_ref().ok_or_else(|| ModelError::new(NAME, "training needs model.train_cfg"))?;
        let sizes = featmap_sizes(&out.cls_scores);
        let device = out.cls_scores[0].device();
        let centres = self.points.grid_priors(&sizes, device, true)?; // (H*W, 4): x, y, stride_w, stride_h
        let flat_centres = Tensor::f_cat(&centres, 0)?;
        let centre_boxes = |c: &Tensor, half: &Tensor| -> ModelResult<Tensor> {
            let xy = c.f_narrow(1, 0, 2)?;
            Ok(Tensor::f_cat(&[xy.f_sub(half)?, xy.f_add(half)?], 1)?)
        };
        // The initial stage's candidates: the points, or boxes around them.
        let init_candidates = match &train.init {
            InitAssigner::Point(_) => flat_centres.shallow_clone(),
            InitAssigner::MaxIoU(_) => centre_boxes(&flat_centres, &flat_centres.f_narrow(1, 2, 1)?.f_mul_scalar(self.base_scale * 0.5)?)?,
        };
        // The refined stage's: each image's initial point sets as boxes.
        let mut refine_candidates = Vec::with_capacity(samples.len());
        for i in 0..samples.len() as i64 {
            let per_level = out
                .initial
                .iter()
                .zip(&centres)
                .zip(&self.strides)
                .map(|((pred, c), &stride)| {
                    let boxes = self.points2bbox(&pred.f_get(i)?.f_unsqueeze(0)?.f_detach()?, true)?.f_mul_scalar(stride)?;
                    let shift = boxes.f_squeeze_dim(0)?.f_permute([1, 2, 0])?.f_reshape([-1, 4])?;
                    Ok(shift.f_add(&c.f_narrow(1, 0, 2)?.f_repeat([1, 2])?)?)
                })
                .collect::<ModelResult<Vec<_>>>()?;
            refine_candidates.push(Tensor::f_cat(&per_level, 0)?);
        }
        let fill = |w: f64| TargetFill { num_classes: self.num_classes, pos_weight: w, total: flat_centres.size()[0] };
        let (mut init_t, mut refine_t) = (vec![], vec![]);
        for (i, sample) in samples.iter().enumerate() {
            let pad = image_hw(sample.meta.pad_shape, "pad_shape", NAME)?;
            let valid = Tensor::f_cat(&self.points.valid_flags(&sizes, pad, device)?, 0)?.f_nonzero()?.f_view([-1])?;
            if valid.numel() == 0 {
                return Err(ModelError::new(NAME, "no valid point inside the padded image: check the image size"));
            }
            let gt = sample.gt_instances.bboxes.f_view([-1, 4])?;
            let labels = &sample.gt_instances.labels;
            let init = init_candidates.f_index_select(0, &valid)?;
            let assigned = match &train.init {
                InitAssigner::Point(a) => a.assign(&init, &gt, labels)?,
                InitAssigner::MaxIoU(a) => a.assign(&init, &gt, labels, None)?,
            };
            init_t.push(stage_targets(&fill(train.init_pos_weight), &assigned, &init, &gt, labels, &valid)?);
            let refine = refine_candidates[i].f_index_select(0, &valid)?;
            let assigned = train.refine.assign(&refine, &gt, labels, None)?;
            refine_t.push(stage_targets(&fill(train.refine_pos_weight), &assigned, &refine, &gt, labels, &valid)?);
        }
        let avg = |t: &[Targets]| t.iter().map(|t| t.avg_factor).sum::<i64>() as f64;
        let (avg_init, avg_refine) = (avg(&init_t), avg(&refine_t));
        let stack = |t: &[Targets], f: fn(&Targets) -> &Tensor| -> ModelResult<Tensor> { Ok(Tensor::f_stack(&t.iter().map(f).collect::<Vec<_>>(), 0)?) };
        let (labels, label_weights) = (stack(&refine_t, |t| &t.labels)?, stack(&refine_t, |t| &t.label_weights)?);
        let (gt_init, w_init) = (stack(&init_t, |t| &t.bbox_targets)?, stack(&init_t, |t| &t.bbox_weights)?);
        let (gt_refine, w_refine) = (stack(&refine_t, |t| &t.bbox_targets)?, stack(&refine_t, |t| &t.bbox_weights)?);
        let (mut loss_cls, mut loss_init, mut loss_refine) = (vec![], vec![], vec![]);
        let mut start = 0;
        for (level, c) in centres.iter().enumerate() {
            let count = c.size()[0];
            let cut = |t: &Tensor, cols: i64| -> ModelResult<Tensor> {
                let t = t.f_narrow(1, start, count)?;
                Ok(if cols > 0 { t.f_reshape([-1, cols])? } else { t.f_reshape([-1])? })
            };
            let stride = self.strides[level] as f64;
            let cls = out.cls_scores[level].f_permute([0, 2, 3, 1])?.f_reshape([-1, self.num_classes])?;
            loss_cls.push(self.loss_cls.forward(&cls, &cut(&labels, 0)?, LossArgs::default().weight(&cut(&label_weights, 0)?).avg_factor(avg_refine))?);
            let norm = self.base_scale * stride;
            let boxes = |pred: &Tensor| -> ModelResult<Tensor> {
                let pts = self.offset_to_pts(c, pred, stride)?;
                let p2 = pts.size()[2];
                Ok(self.points2bbox(&pts.f_reshape([-1, p2])?, false)?.f_div_scalar(norm)?)
            };
            let (init_w, refine_w) = (cut(&w_init, 4)?, cut(&w_refine, 4)?);
            let args = |w, a| LossArgs::default().weight(w).avg_factor(a);
            loss_init.push(self.loss_init.forward(&boxes(&out.initial[level])?, &cut(&gt_init, 4)?.f_div_scalar(norm)?, args(&init_w, avg_init))?);
            loss_refine.push(self.loss_refine.forward(&boxes(&out.refined[level])?, &cut(&gt_refine, 4)?.f_div_scalar(norm)?, args(&refine_w, avg_refine))?);
            start += count;
        }
        let total = |parts: Vec<Tensor>| -> ModelResult<Tensor> {
            let mut it = parts.into_iter();
            let first = it.next().ok_or_else(|| ModelError::new(NAME, "no feature level"))?;
            it.try_fold(first, |acc, t| acc.f_add(&t)).map_err(Into::into)
        };
        Ok(IndexMap::from([
            ("loss_cls".to_string(), total(loss_cls)?),
            ("loss_pts_init".to_string(), total(loss_init)?),
            ("loss_pts_refine".to_string(), total(loss_refine)?),
        ]))
    }

    /// `predict`: per image the detections after `test_cfg`, in
    /// original-image pixels with `rescale`.
    pub fn predict(&self, x: &[Tensor], samples: &[DetDataSample], rescale: bool) -> ModelResult<Vec<DetInstances>> {
        let cfg = self.test.as_ref().ok_or_else(|| ModelError::new(NAME, "predict needs model.test_cfg"))?;
        let out = self.forward_t(x, false)?;
        let sizes = featmap_sizes(&out.cls_scores);
        let points = self.points.grid_priors(&sizes, out.cls_scores[0].device(), false)?;
        samples
            .iter()
            .enumerate()
            .map(|(i, sample)| {
                let (img_h, img_w) = image_hw(sample.meta.img_shape, "img_shape", NAME)?;
                let (mut all_boxes, mut all_scores, mut all_labels) = (vec![], vec![], vec![]);
                for (level, level_points) in points.iter().enumerate() {
                    let img = |maps: &[Tensor], c: i64| -> ModelResult<Tensor> {
                        Ok(maps[level].f_get(i as i64)?.f_detach()?.f_permute([1, 2, 0])?.f_reshape([-1, c])?)
                    };
                    let scores = img(&out.cls_scores, self.num_classes)?.f_sigmoid()?;
                    let (scores, labels, keep) = filter_scores_and_topk(&scores, cfg.score_thr, cfg.nms_pre)?;
                    let centre = level_points.f_index_select(0, &keep)?.f_repeat([1, 2])?;
                    let boxes = img(&out.refined, 4)?.f_index_select(0, &keep)?.f_mul_scalar(self.strides[level])?.f_add(&centre)?;
                    let clip = |j: i64, max: i64| boxes.f_select(1, j)?.f_clamp(0.0, max as f64);
                    all_boxes.push(Tensor::f_stack(&[clip(0, img_w)?, clip(1, img_h)?, clip(2, img_w)?, clip(3, img_h)?], -1)?);
                    all_scores.push(scores);
                    all_labels.push(labels);
                }
                let (boxes, scores, labels) = (Tensor::f_cat(&all_boxes, 0)?, Tensor::f_cat(&all_scores, 0)?, Tensor::f_cat(&all_labels, 0)?);
                bbox_post_process(boxes, scores, labels, None, sample, cfg, rescale, NAME)
            })
            .collect()
    }
}

/// One stage's `_get_targets_single` of an image: its valid candidates'
/// assignment (`valid` of all `T`), the positives regressing to their
/// ground truth, unmapped onto every location.
fn stage_targets(
    fill: &TargetFill,
    assigned: &crate::models::task_modules::AssignResult,
    candidates: &Tensor,
    gt: &Tensor,
    labels: &Tensor,
    valid: &Tensor,
) -> ModelResult<Targets> {
    let sampled = PseudoSampler::sample(assigned, candidates, gt, labels)?;
    fill.targets(&sampled, &sampled.pos_gt_bboxes.f_to_kind(Kind::Float)?, candidates.size()[0], Some(valid))
}

#[cfg(test)]
#[path = "reppoints_tests.rs"]
mod tests;
