//! `RoIAlign` (He et al., "Mask R-CNN", <https://arxiv.org/abs/1703.06870>)
//! with the semantics of `mmcv.ops.RoIAlign` / `torchvision.ops.roi_align`
//! (`aligned`, adaptive `sampling_ratio=0`, `avg`/`max` pooling), and the
//! level mapping of `SingleRoIExtractor`.
//!
//! Two paths with the same results. For average pooling, kernels do
//! torchvision's arithmetic in one pass each way (`engine::native::roi_align`):
//! C++ on the CPU (float or double features), CUDA compiled by NVRTC on a
//! GPU. Everywhere else (max pooling, a build without CUDA, or
//! `DETC_ROI_ALIGN=sampled`) the op is built from libtorch's
//! `grid_sampler_2d`, which has fused CPU and CUDA kernels for both passes,
//! so it runs on any device and autograd gives the backward (w.r.t. the
//! features; boxes get no gradient, as in MMCV).
//!
//! The sampled path: RoIAlign's bilinear rule — clamp a sample in `[-1, 0]`
//! to 0 and one in `[H-1, H]` to `H-1`, zero outside `[-1, H]` — is
//! `grid_sample(padding_mode='border')` times a validity mask. All RoIs
//! (each with its own adaptive grid) are sampled in one call on a flat list
//! of points, then pooled into their bins with `index_add`; memory is one
//! value per sample (`R x C x Ph*gy x Pw*gx`), transient (autograd keeps only
//! the points and indices), never a gathered window.
//!
//! Shape shorthand: `N` images, `C` channels, `H, W` feature size, `R` RoIs,
//! `Ph, Pw` output size, `gy, gx` samples per bin.

use detc::registry::models::common::IntOrPair;
use detc::registry::models::ops::{PoolMode, RoIAlignConfig};
use tch::{Device, Kind, Tensor};

use crate::engine::native;
use crate::models::layers::{ModelError, ModelResult};
use super::upload;

const NAME: &str = "RoIAlign";

/// mmcv's `RoIAlign` op.
#[derive(Debug, Clone, PartialEq)]
pub struct RoIAlign {
    /// `(Ph, Pw)`.
    pub output_size: (i64, i64),
    /// Image to feature coordinates (`1 / stride`).
    pub spatial_scale: f64,
    /// Samples per bin side; 0 = `ceil(roi_size / output_size)` per RoI.
    pub sampling_ratio: i64,
    pub pool_mode: PoolMode,
    /// Shift by -0.5 px (pixel centres at half-integers); false also floors RoI sizes at 1.
    pub aligned: bool,
}

impl RoIAlign {
    pub fn new(cfg: &RoIAlignConfig) -> Self {
        let output_size = match cfg.output_size {
            IntOrPair::Int(s) => (s as i64, s as i64),
            IntOrPair::Pair((h, w)) => (h as i64, w as i64),
        };
        RoIAlign {
            output_size,
            // The extractor sets each level's scale (`with_scale`).
            spatial_scale: 1.0,
            sampling_ratio: cfg.sampling_ratio as i64,
            pool_mode: cfg.pool_mode,
            aligned: cfg.aligned,
        }
    }

    /// The same op at another scale (an extractor builds one per level).
    pub fn with_scale(&self, spatial_scale: f64) -> Self {
        RoIAlign {
            spatial_scale,
            ..self.clone()
        }
    }

    /// input: (N, C, H, W) float; rois: (R, 5) `[batch_idx, x1, y1, x2, y2]`
    /// in image coordinates -> (R, C, Ph, Pw).
    pub fn forward(&self, input: &Tensor, rois: &Tensor) -> ModelResult<Tensor> {
        roi_align(input, rois, self)
    }
}

/// Sample geometry of a set of RoIs along one axis, computed in the
/// feature dtype in torchvision's order so the adaptive grid sizes agree.
struct Axis {
    /// (R,) start of the RoI in feature pixels.
    start: Tensor,
    /// (R,) bin size.
    bin: Tensor,
    /// (R,) int64 samples per bin side.
    grid: Tensor,
}

fn axis(lo: &Tensor, hi: &Tensor, op: &RoIAlign, pooled: i64) -> ModelResult<Axis> {
    let offset = if op.aligned { 0.5 } else { 0.0 };
    let scale = op.spatial_scale as f32 as f64;
    let start = lo.f_mul_scalar(scale)?.f_sub_scalar(offset)?;
    let end = hi.f_mul_scalar(scale)?.f_sub_scalar(offset)?;
    let mut size = end.f_sub(&start)?;
    if !op.aligned {
        size = size.f_clamp_min(1.0)?;
    }
    let bin = size.f_div_scalar(pooled as f64)?;
    let grid = if op.sampling_ratio > 0 {
        size.f_full_like(op.sampling_ratio)?
            .f_to_kind(Kind::Int64)?
    } else {
        // NaN/negative sizes give no samples; absurd ones are capped so the
        // sample count cannot overflow (a 65536-sample bin side is ~460k px).
        bin.f_nan_to_num(0.0, None, None)?
            .f_clamp(0.0, MAX_GRID)?
            .f_ceil()?
            .f_to_kind(Kind::Int64)?
    };
    Ok(Axis { start, bin, grid })
}

/// Cap on the adaptive samples per bin side.
const MAX_GRID: f64 = 65536.0;

/// Above this many sampled values (`samples x C`) a call is split by RoIs,
/// bounding the transient memory (1 GiB of f32); each split costs one more
/// pass over the feature map's gradient.
const MAX_SAMPLED_VALUES: i64 = 1 << 28;

/// mmcv/torchvision `roi_align`: the kernels where they apply (see
/// [`native::roi_align_supports`]), else [`roi_align_sampled`].
pub fn roi_align(input: &Tensor, rois: &Tensor, op: &RoIAlign) -> ModelResult<Tensor> {
    if op.pool_mode == PoolMode::Avg && native::roi_align_supports(input) {
        return native::roi_align(input, &rois.f_detach()?, kernel_args(op))
            .map_err(|e| ModelError::new(NAME, e.message));
    }
    roi_align_sampled(input, rois, op)
}

fn kernel_args(op: &RoIAlign) -> native::RoiAlignArgs {
    native::RoiAlignArgs {
        spatial_scale: op.spatial_scale,
        output_size: op.output_size,
        sampling_ratio: op.sampling_ratio,
        aligned: op.aligned,
    }
}

/// `roi_align` on `grid_sampler_2d`, for any device, dtype and pool mode;
/// see the module doc.
pub fn roi_align_sampled(input: &Tensor, rois: &Tensor, op: &RoIAlign) -> ModelResult<Tensor> {
    let (n, c, _h, _w) = input
        .size4()
        .map_err(|e| ModelError::new(NAME, format!("input must be (N, C, H, W): {e}")))?;
    let (r, five) = rois
        .size2()
        .map_err(|e| ModelError::new(NAME, format!("rois must be (R, 5): {e}")))?;
    if five != 5 {
        return Err(ModelError::new(
            NAME,
            format!("rois must be (R, 5) [batch, x1, y1, x2, y2], got (R, {five})"),
        ));
    }
    let (ph, pw) = op.output_size;
    let (dev, kind) = (input.device(), input.kind());
    if r == 0 {
        return Ok(Tensor::f_zeros([0, c, ph, pw], (kind, dev))?);
    }
    let rois = rois.f_detach()?.f_to_kind(kind)?;
    let ay = axis(&rois.f_select(1, 2)?, &rois.f_select(1, 4)?, op, ph)?;
    let ax = axis(&rois.f_select(1, 1)?, &rois.f_select(1, 3)?, op, pw)?;
    // One host copy: image index and grid sizes fix every sample's slot.
    let batch = rois.f_select(1, 0)?.f_to_kind(Kind::Int64)?;
    let keys = Tensor::f_stack(
        &[
            batch.shallow_clone(),
            ay.grid.shallow_clone(),
            ax.grid.shallow_clone(),
        ],
        1,
    )?;
    let keys = Vec::<i64>::try_from(keys.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)
        .map_err(|e| ModelError::new(NAME, e.to_string()))?;
    let mut rois_host = Vec::with_capacity(r as usize);
    for (k, key) in keys.chunks_exact(3).enumerate() {
        if key[0] < 0 || key[0] >= n {
            return Err(ModelError::new(
                NAME,
                format!("roi {k} has batch index {} outside the {n} images", key[0]),
            ));
        }
        rois_host.push(RoiPlan {
            index: k as i64,
            image: key[0],
            samples: ph * pw * key[1] * key[2],
        });
    }
    let total: i64 = rois_host.iter().map(|p| p.samples).sum();
    if total > 1 << 31 {
        return Err(ModelError::new(
            NAME,
            format!("{total} sampling points: the RoIs are far larger than the feature map (diverged boxes?)"),
        ));
    }
    let chunks = split_by_budget(&rois_host, MAX_SAMPLED_VALUES / c.max(1));
    let fill = if op.pool_mode == PoolMode::Max {
        -10000.0
    } else {
        0.0
    };
    let mut out = Tensor::f_full([c, r * ph * pw], fill, (kind, dev))?;
    for chunk in chunks {
        out = pool_chunk(input, &ay, &ax, chunk, op, out)?;
    }
    // (C, R*Ph*Pw) -> (R, C, Ph, Pw)
    Ok(out
        .f_view([c, r, ph, pw])?
        .f_permute([1, 0, 2, 3])?
        .f_contiguous()?)
}

/// One RoI's share of the sampling: its index, image and sample count.
#[derive(Debug, Clone, Copy)]
struct RoiPlan {
    index: i64,
    image: i64,
    samples: i64,
}

/// Splits the RoIs into runs of at most `budget` samples (one RoI per run at least).
fn split_by_budget(rois: &[RoiPlan], budget: i64) -> Vec<&[RoiPlan]> {
    let (mut out, mut begin, mut acc) = (Vec::new(), 0, 0);
    for (k, p) in rois.iter().enumerate() {
        if acc > 0 && acc + p.samples > budget {
            out.push(&rois[begin..k]);
            (begin, acc) = (k, 0);
        }
        acc += p.samples;
    }
    out.push(&rois[begin..]);
    out
}

/// Samples the RoIs of `plan` with one `grid_sampler_2d` call and pools
/// them into their bins of `out` (C, R*Ph*Pw).
fn pool_chunk(
    input: &Tensor,
    ay: &Axis,
    ax: &Axis,
    plan: &[RoiPlan],
    op: &RoIAlign,
    out: Tensor,
) -> ModelResult<Tensor> {
    let (n, _c, h, w) = input.size4()?;
    let (ph, pw) = op.output_size;
    let (dev, kind) = (input.device(), input.kind());
    // Samples are laid out image by image: sort the RoIs by image (stable).
    let mut plan = plan.to_vec();
    plan.sort_by_key(|p| p.image);
    let mut per_image = vec![0i64; n as usize];
    for p in &plan {
        per_image[p.image as usize] += p.samples;
    }
    let total: i64 = per_image.iter().sum();
    let s_max = per_image.iter().copied().max().unwrap_or(0);
    if total == 0 {
        return Ok(out);
    }
    let img_start: Vec<i64> = per_image
        .iter()
        .scan(0, |acc, &s| Some(std::mem::replace(acc, *acc + s)))
        .collect();
    let first: Vec<i64> = plan
        .iter()
        .scan(0, |acc, p| Some(std::mem::replace(acc, *acc + p.samples)))
        .collect();
    let upload =
        |v: Vec<i64>| -> ModelResult<Tensor> { Ok(upload(&v, dev)?) };
    let counts = upload(plan.iter().map(|p| p.samples).collect())?;
    let rep = |v: Vec<i64>| -> ModelResult<Tensor> {
        Ok(upload(v)?.f_repeat_interleave_self_tensor(&counts, 0, total)?)
    };
    // Per sample s: its RoI, its rank inside the RoI, its slot in the (N, s_max) grid.
    let roi = rep(plan.iter().map(|p| p.index).collect())?;
    let rank = Tensor::f_arange(total, (Kind::Int64, dev))?.f_sub(&rep(first)?)?;
    let image = rep(plan.iter().map(|p| p.image).collect())?;
    let starts = upload(img_start)?.f_index_select(0, &image)?;
    let slot = image
        .f_mul_scalar(s_max)?
        .f_add(&Tensor::f_arange(total, (Kind::Int64, dev))?.f_sub(&starts)?)?;
    // rank -> (py, iy, px, ix), radix (Ph, gy, Pw, gx)
    let gy = ay.grid.f_index_select(0, &roi)?;
    let gx = ax.grid.f_index_select(0, &roi)?;
    let row = gy.f_mul(&gx)?.f_mul_scalar(pw)?;
    let (py, rem) = (
        rank.f_div_tensor_mode(&row, "floor")?,
        rank.f_remainder_tensor(&row)?,
    );
    let pgx = gx.f_mul_scalar(pw)?;
    let (iy, rem) = (
        rem.f_div_tensor_mode(&pgx, "floor")?,
        rem.f_remainder_tensor(&pgx)?,
    );
    let (px, ix) = (
        rem.f_div_tensor_mode(&gx, "floor")?,
        rem.f_remainder_tensor(&gx)?,
    );
    let y = coord(ay, &roi, &py, &iy, &gy, kind)?;
    let x = coord(ax, &roi, &px, &ix, &gx, kind)?;
    let valid = y.f_ge(-1.0)?.f_logical_and(&y.f_le(h as f64)?)?;
    let valid = valid
        .f_logical_and(&x.f_ge(-1.0)?)?
        .f_logical_and(&x.f_le(w as f64)?)?;
    // grid_sample(align_corners=False) reads pixel p at (2p + 1) / size - 1.
    let norm = |t: &Tensor, size: i64| -> ModelResult<Tensor> {
        let t = t
            .f_to_kind(Kind::Double)?
            .f_mul_scalar(2.0)?
            .f_add_scalar(1.0)?;
        Ok(t.f_div_scalar(size as f64)?
            .f_sub_scalar(1.0)?
            .f_to_kind(kind)?)
    };
    let points = Tensor::f_stack(&[norm(&x, w)?, norm(&y, h)?], 1)?; // (S, 2) [x, y]
    let grid = Tensor::f_zeros([n * s_max, 2], (kind, dev))?.f_index_copy(0, &slot, &points)?;
    // bilinear (0), border padding (1): (N, C, 1, s_max)
    let sampled = input.f_grid_sampler_2d(&grid.f_view([n, 1, s_max, 2])?, 0, 1, false)?;
    let bin = roi
        .f_mul_scalar(ph * pw)?
        .f_add(&py.f_mul_scalar(pw)?)?
        .f_add(&px)?;
    let valid = valid.f_to_kind(kind)?;
    let weight = match op.pool_mode {
        PoolMode::Avg => valid.f_div(&gy.f_mul(&gx)?.f_to_kind(kind)?)?,
        PoolMode::Max => valid,
    };
    // Pool image by image in the sampler's (C, samples) layout: no transpose
    // of the samples, one multiply and one scatter pass.
    let mut out = out;
    let mut begin = 0;
    for (img, vals) in sampled
        .f_squeeze_dim(2)?
        .f_unbind(0)?
        .into_iter()
        .enumerate()
    {
        let len = per_image[img];
        if len == 0 {
            continue;
        }
        let vals = vals.f_narrow(1, 0, len)?; // (C, S_n)
        let w = weight.f_narrow(0, begin, len)?.f_unsqueeze(0)?;
        let bins = bin.f_narrow(0, begin, len)?;
        // Under autocast the sampler runs in f32; the output keeps the features' dtype (mmcv).
        let vals = vals.f_mul(&w)?.f_to_kind(out.kind())?;
        out = match op.pool_mode {
            PoolMode::Avg => out.f_index_add(1, &bins, &vals)?,
            // mmcv: max over the samples, invalid ones counting as 0, from -10000.
            PoolMode::Max => out.f_index_reduce(1, &bins, &vals, "amax", true)?,
        };
        begin += len;
    }
    Ok(out)
}

/// Sample positions along one axis, as torchvision computes them:
/// `start + p * bin + (i + .5) * bin / g` (all (S,)).
fn coord(
    a: &Axis,
    roi: &Tensor,
    p: &Tensor,
    i: &Tensor,
    g: &Tensor,
    kind: Kind,
) -> ModelResult<Tensor> {
    let start = a.start.f_index_select(0, roi)?;
    let bin = a.bin.f_index_select(0, roi)?;
    let i = i.f_to_kind(kind)?.f_add_scalar(0.5)?;
    Ok(start
        .f_add(&p.f_to_kind(kind)?.f_mul(&bin)?)?
        .f_add(&i.f_mul(&bin)?.f_div(&g.f_to_kind(kind)?)?)?)
}

/// `SingleRoIExtractor.map_roi_levels`: rois (R, 5) -> (R,) int64 level in
/// `[0, num_levels - 1]`: `floor(log2(sqrt(w*h) / finest_scale + 1e-6))`.
pub fn map_roi_levels(rois: &Tensor, num_levels: i64, finest_scale: f64) -> ModelResult<Tensor> {
    let w = rois.f_select(1, 3)?.f_sub(&rois.f_select(1, 1)?)?;
    let h = rois.f_select(1, 4)?.f_sub(&rois.f_select(1, 2)?)?;
    let scale = w.f_mul(&h)?.f_sqrt()?;
    let lvl = scale
        .f_div_scalar(finest_scale)?
        .f_add_scalar(1e-6)?
        .f_log2()?
        .f_floor()?;
    Ok(lvl
        .f_clamp(0.0, (num_levels - 1) as f64)?
        .f_to_kind(Kind::Int64)?)
}

/// `SingleRoIExtractor.forward` (without `roi_scale_factor`): each RoI is
/// pooled from the level `map_roi_levels` picks, with `op` at that level's
/// scale `1 / featmap_strides[i]`.
/// feats: `L` levels (N, C, Hi, Wi); rois (R, 5) -> (R, C, Ph, Pw).
pub fn multi_level_roi_align(
    feats: &[Tensor],
    rois: &Tensor,
    op: &RoIAlign,
    featmap_strides: &[i64],
    finest_scale: f64,
) -> ModelResult<Tensor> {
    if feats.is_empty() || feats.len() != featmap_strides.len() {
        return Err(ModelError::new(
            "SingleRoIExtractor",
            format!(
                "{} feature levels for {} featmap_strides",
                feats.len(),
                featmap_strides.len()
            ),
        ));
    }
    if feats.len() == 1 {
        return op
            .with_scale(1.0 / featmap_strides[0] as f64)
            .forward(&feats[0], rois);
    }
    let levels = map_roi_levels(rois, feats.len() as i64, finest_scale)?;
    if op.pool_mode == PoolMode::Avg
        && feats[0].device().is_cuda()
        && native::roi_align_supports(&feats[0])
    {
        return pool_levels_with_kernels(feats, rois, &levels, op, featmap_strides, false);
    }
    let (_n, c, _h, _w) = feats[0].size4()?;
    let (r, _) = rois.size2()?;
    let (ph, pw) = op.output_size;
    let mut out = Tensor::f_zeros([r, c, ph, pw], (feats[0].kind(), feats[0].device()))?;
    for (i, (feat, &stride)) in feats.iter().zip(featmap_strides).enumerate() {
        let inds = levels.f_eq(i as i64)?.f_nonzero()?.f_squeeze_dim(1)?;
        if inds.numel() == 0 {
            // mmdet: `roi_feats += feats[i].sum() * 0.`, so every level gets a
            // (zero) gradient and distributed training sees no unused input.
            out = out.f_add(&feat.f_sum(feat.kind())?.f_mul_scalar(0.0)?)?;
            continue;
        }
        let pooled = op
            .with_scale(1.0 / stride as f64)
            .forward(feat, &rois.f_index_select(0, &inds)?)?;
        out = out.f_index_copy(0, &inds, &pooled)?;
    }
    Ok(out)
}

/// The levels in one call of the CUDA kernels (`emulate`: their code on the
/// CPU, for the tests): no per-level `nonzero`, which reads the device back
/// once per level, and no gathering or scattering of RoIs by level.
fn pool_levels_with_kernels(
    feats: &[Tensor],
    rois: &Tensor,
    levels: &Tensor,
    op: &RoIAlign,
    featmap_strides: &[i64],
    emulate: bool,
) -> ModelResult<Tensor> {
    let scales: Vec<f64> = featmap_strides.iter().map(|&s| 1.0 / s as f64).collect();
    native::roi_align::roi_align_levels(
        feats,
        &rois.f_detach()?,
        levels,
        &scales,
        kernel_args(op),
        emulate,
    )
    .map_err(|e| ModelError::new("SingleRoIExtractor", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{self, assert_close, tensor};

    pub(super) type RoiAlignFn = fn(&Tensor, &Tensor, &RoIAlign) -> ModelResult<Tensor>;

    /// The CPU kernel (what `forward` picks here) and the grid-sampler path.
    pub(super) const PATHS: [(&str, RoiAlignFn); 2] =
        [("kernel", roi_align), ("sampled", roi_align_sampled)];

    /// [`PATHS`] and the CUDA kernels' code, run on the CPU.
    const CHECKED_PATHS: [(&str, RoiAlignFn); 3] = [
        PATHS[0],
        PATHS[1],
        ("cuda kernels (emulated)", cuda_kernels_emulated),
    ];

    fn cuda_kernels_emulated(input: &Tensor, rois: &Tensor, op: &RoIAlign) -> ModelResult<Tensor> {
        native::roi_align::roi_align_cuda_emulated(input, &rois.detach(), kernel_args(op))
            .map_err(|e| ModelError::new(NAME, e.message))
    }

    fn case(stride: i64, ratio: i64, aligned: bool, path: (&str, RoiAlignFn)) {
        let fx = &fixtures::get().roi_align;
        let key = format!("s{stride}_r{ratio}_a{}", aligned as i64);
        let x = tensor(fx, &format!("{key}.x")).set_requires_grad(true);
        let rois = tensor(fx, &format!("{key}.rois"));
        let op = RoIAlign {
            output_size: (7, 7),
            spatial_scale: 1.0 / stride as f64,
            sampling_ratio: ratio,
            pool_mode: PoolMode::Avg,
            aligned,
        };
        let label = format!("{key} ({})", path.0);
        let y = path.1(&x, &rois, &op).unwrap();
        assert_close(
            &y,
            &tensor(fx, &format!("{key}.out")),
            1e-5,
            0.0,
            &format!("{label} output"),
        );
        (&y * tensor(fx, &format!("{key}.grad_w")))
            .sum(Kind::Float)
            .backward();
        assert_close(
            &x.grad(),
            &tensor(fx, &format!("{key}.grad_x")),
            1e-5,
            0.0,
            &format!("{label} grad"),
        );
    }

    #[test]
    fn roi_align_matches_torchvision_with_gradients() {
        for path in CHECKED_PATHS {
            for stride in [4, 8, 16, 32] {
                for ratio in [0, 2] {
                    case(stride, ratio, true, path);
                }
            }
            case(8, 0, false, path);
            case(8, 2, false, path);
        }
    }

    /// `multi_level_roi_align` on the CPU (level by level), and the CUDA
    /// kernels' one call for all levels, run on the CPU.
    type MultiLevelFn = fn(&[Tensor], &Tensor, &RoIAlign, &[i64], f64) -> ModelResult<Tensor>;
    const MULTI_LEVEL_PATHS: [(&str, MultiLevelFn); 2] = [
        ("level by level", multi_level_roi_align),
        ("cuda kernels (emulated)", levels_with_kernels_emulated),
    ];

    fn levels_with_kernels_emulated(
        feats: &[Tensor],
        rois: &Tensor,
        op: &RoIAlign,
        strides: &[i64],
        finest_scale: f64,
    ) -> ModelResult<Tensor> {
        let levels = map_roi_levels(rois, feats.len() as i64, finest_scale)?;
        pool_levels_with_kernels(feats, rois, &levels, op, strides, true)
    }

    #[test]
    fn multi_level_matches_mmdet_single_roi_extractor() {
        let fx = &fixtures::get().roi_align;
        let rois = tensor(fx, "extractor.rois");
        let op = RoIAlign {
            output_size: (7, 7),
            spatial_scale: 1.0,
            sampling_ratio: 2,
            pool_mode: PoolMode::Avg,
            aligned: true,
        };
        for (name, f) in MULTI_LEVEL_PATHS {
            let feats: Vec<Tensor> = (0..4)
                .map(|i| tensor(fx, &format!("extractor.feat.{i}")).set_requires_grad(true))
                .collect();
            let y = f(&feats, &rois, &op, &[4, 8, 16, 32], 56.0).unwrap();
            assert_close(
                &y,
                &tensor(fx, "extractor.out"),
                1e-5,
                0.0,
                &format!("SingleRoIExtractor output ({name})"),
            );
            (&y * tensor(fx, "extractor.grad_w"))
                .sum(Kind::Float)
                .backward();
            for (i, f) in feats.iter().enumerate() {
                assert_close(
                    &f.grad(),
                    &tensor(fx, &format!("extractor.grad.{i}")),
                    1e-5,
                    0.0,
                    &format!("level {i} grad ({name})"),
                );
            }
        }
    }

    /// All levels in one call of the CUDA kernels' code equal the level-by-
    /// level CPU path bit for bit, forward and every level's gradient, also
    /// with a level no RoI maps to (zero gradient, as MMDetection's
    /// `feats[i].sum() * 0.`).
    #[test]
    fn multi_level_kernels_equal_level_by_level_bit_for_bit() {
        let _seed = fixtures::seeded();
        let op = RoIAlign {
            output_size: (7, 7),
            spatial_scale: 1.0,
            sampling_ratio: 0,
            pool_mode: PoolMode::Avg,
            aligned: true,
        };
        // Sides 20..400 px (some past the 256 px image): levels 0..2 of 4
        // (2 from 224 px), level 3 (from 448 px) empty.
        let side = Tensor::rand([30, 1], (Kind::Float, Device::Cpu)) * 380.0 + 20.0;
        let x1 = Tensor::rand([30, 1], (Kind::Float, Device::Cpu)) * 60.0;
        let y1 = Tensor::rand([30, 1], (Kind::Float, Device::Cpu)) * 60.0;
        let image = Tensor::arange(30, (Kind::Float, Device::Cpu))
            .remainder(2)
            .unsqueeze(1);
        let rois = Tensor::cat(
            &[
                image,
                x1.shallow_clone(),
                y1.shallow_clone(),
                &x1 + &side,
                &y1 + &side,
            ],
            1,
        );
        let levels = map_roi_levels(&rois, 4, 56.0).unwrap();
        assert_eq!(levels.max().int64_value(&[]), 2, "level 3 stays empty");
        let grad_w = Tensor::randn([30, 3, 7, 7], (Kind::Float, Device::Cpu));
        let feats: Vec<Tensor> = [64, 32, 16, 8]
            .iter()
            .map(|&s| Tensor::randn([2, 3, s, s], (Kind::Float, Device::Cpu)))
            .collect();
        let run = |f: MultiLevelFn| {
            let feats: Vec<Tensor> = feats
                .iter()
                .map(|t| t.detach().set_requires_grad(true))
                .collect();
            let y = f(&feats, &rois, &op, &[4, 8, 16, 32], 56.0).unwrap();
            (&y * &grad_w).sum(Kind::Float).backward();
            (y, feats.iter().map(Tensor::grad).collect::<Vec<_>>())
        };
        let (y_cpu, g_cpu) = run(multi_level_roi_align);
        let (y_cuda, g_cuda) = run(levels_with_kernels_emulated);
        assert!(y_cpu.equal(&y_cuda), "forward");
        for (i, (a, b)) in g_cpu.iter().zip(&g_cuda).enumerate() {
            assert!(a.equal(b), "level {i} gradient");
        }
        assert_eq!(g_cuda[3].abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    /// Outside autograd (inference) every path refuses bad RoIs at once.
    #[test]
    fn roi_align_empty_rois_bad_indices_and_diverged_boxes() {
        let _inference = tch::no_grad_guard();
        let x = Tensor::ones([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        let op = RoIAlign {
            output_size: (7, 7),
            spatial_scale: 1.0,
            sampling_ratio: 2,
            pool_mode: PoolMode::Avg,
            aligned: true,
        };
        let adaptive = RoIAlign {
            sampling_ratio: 0,
            ..op.clone()
        };
        let nan = Tensor::from_slice(&[0.0f32, 0., 0., f32::NAN, 4.]).view([1, 5]);
        let huge = Tensor::from_slice(&[0.0f32, 0., 0., 1e9, 1e9]).view([1, 5]);
        for (name, f) in CHECKED_PATHS {
            let y = f(&x, &Tensor::zeros([0, 5], (Kind::Float, Device::Cpu)), &op).unwrap();
            assert_eq!(y.size(), [0, 3, 7, 7], "{name}");
            let bad = f(
                &x,
                &Tensor::from_slice(&[3.0f32, 0., 0., 4., 4.]).view([1, 5]),
                &op,
            );
            let msg = bad.unwrap_err().message;
            assert!(
                msg.contains("batch index 3 outside the 1 images"),
                "{name}: {msg}"
            );
            // Diverged boxes: NaN pools nothing, a huge adaptive grid is refused.
            for op in [&op, &adaptive] {
                let y = f(&x, &nan, op).unwrap();
                assert_eq!(y.abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}");
            }
            let msg = f(&x, &huge, &adaptive).unwrap_err().message;
            assert!(msg.contains("sampling points"), "{name}: {msg}");
        }
    }

    /// In training the CUDA kernels' check is not read at the call: a
    /// refused call pools NaN and no gradient, and the first refusal waits
    /// for `settle_checks` (the runner's read of the losses), which reports
    /// it once.
    #[test]
    fn cuda_kernels_refuse_bad_rois_in_training_when_the_checks_are_settled() {
        let x = Tensor::ones([2, 3, 8, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let op = RoIAlign {
            output_size: (7, 7),
            spatial_scale: 1.0,
            sampling_ratio: 0,
            pool_mode: PoolMode::Avg,
            aligned: true,
        };
        let rois = |rows: &[[f32; 5]]| Tensor::from_slice(rows.concat().as_slice()).view([-1, 5]);
        let good = rois(&[[0.0, 0., 0., 4., 4.], [1.0, 1., 1., 6., 6.]]);
        let bad_index = rois(&[[0.0, 0., 0., 4., 4.], [1.0, 0., 0., 4., 4.], [2.0, 0., 0., 4., 4.]]);
        let huge = rois(&[[0.0, 0., 0., 1e9, 1e9]]);
        native::roi_align::settle_checks().unwrap();
        let y = cuda_kernels_emulated(&x, &good, &op).unwrap();
        assert_eq!(y.isnan().any().int64_value(&[]), 0);
        native::roi_align::settle_checks().unwrap();

        // The first refusal is the one reported; later calls still pool.
        let y = cuda_kernels_emulated(&x, &bad_index, &op).unwrap();
        assert_eq!(y.isnan().all().int64_value(&[]), 1);
        y.sum(Kind::Float).backward();
        assert_eq!(x.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
        let y = cuda_kernels_emulated(&x, &huge, &op).unwrap();
        assert_eq!(y.isnan().all().int64_value(&[]), 1);
        let y = cuda_kernels_emulated(&x, &good, &op).unwrap();
        assert_eq!(y.isnan().any().int64_value(&[]), 0);
        let msg = native::roi_align::settle_checks().unwrap_err().message;
        assert!(msg.contains("roi 2 has batch index 2 outside the 2 images"), "{msg}");
        native::roi_align::settle_checks().unwrap();

        let y = cuda_kernels_emulated(&x, &huge, &op).unwrap();
        assert_eq!(y.isnan().all().int64_value(&[]), 1);
        let msg = native::roi_align::settle_checks().unwrap_err().message;
        assert!(msg.contains("more than 2^31 sampling points"), "{msg}");

        // The multi-level call, likewise.
        let feats = [Tensor::ones([2, 3, 8, 8], (Kind::Float, Device::Cpu))];
        let levels = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        let y = pool_levels_with_kernels(&feats, &bad_index, &levels, &op, &[1], true).unwrap();
        assert_eq!(y.isnan().all().int64_value(&[]), 1);
        let msg = native::roi_align::settle_checks().unwrap_err().message;
        assert!(msg.contains("roi 2 has batch index 2"), "{msg}");
        native::roi_align::settle_checks().unwrap();
    }

    /// The CUDA kernels' code, run in order on one thread, is the CPU
    /// kernel bit for bit, forward and backward, in float and double, with
    /// RoIs inside, across and outside the map.
    #[test]
    fn cuda_kernels_emulated_equal_the_cpu_kernel_bit_for_bit() {
        let _seed = fixtures::seeded();
        for kind in [Kind::Float, Kind::Double] {
            let x = Tensor::randn([2, 3, 13, 17], (kind, Device::Cpu));
            let corners = Tensor::rand([40, 4], (kind, Device::Cpu)) * 90.0 - 20.0;
            let (lo, hi) = (
                corners.narrow(1, 0, 2).minimum(&corners.narrow(1, 2, 2)),
                corners.narrow(1, 0, 2).maximum(&corners.narrow(1, 2, 2)),
            );
            let image = Tensor::arange(40, (kind, Device::Cpu))
                .remainder(2)
                .unsqueeze(1);
            let rois = Tensor::cat(&[image, lo, hi], 1);
            for (ratio, aligned) in [(0, true), (2, true), (0, false), (3, false)] {
                let op = RoIAlign {
                    output_size: (7, 5),
                    spatial_scale: 0.25,
                    sampling_ratio: ratio,
                    pool_mode: PoolMode::Avg,
                    aligned,
                };
                let grad_w = Tensor::randn([40, 3, 7, 5], (kind, Device::Cpu));
                let run = |f: RoiAlignFn| {
                    let x = x.detach().set_requires_grad(true);
                    let y = f(&x, &rois, &op).unwrap();
                    (&y * &grad_w).sum(kind).backward();
                    (y, x.grad())
                };
                let (y_cpu, g_cpu) = run(roi_align);
                let (y_cuda, g_cuda) = run(cuda_kernels_emulated);
                let label = format!("{kind:?}, ratio {ratio}, aligned {aligned}");
                assert!(y_cpu.abs().sum(kind).double_value(&[]) > 0.0, "{label}");
                assert!(y_cpu.equal(&y_cuda), "{label}: forward");
                assert!(g_cpu.equal(&g_cuda), "{label}: backward");
            }
        }
    }

    /// Half and bfloat16 features are pooled in float32 and the output and
    /// gradient cast back, as torchvision's autocast rule does (what the
    /// CUDA kernels do under AmpOptimWrapper).
    #[test]
    fn reduced_precision_features_are_pooled_in_float32() {
        let _seed = fixtures::seeded();
        let x = Tensor::randn([1, 4, 16, 16], (Kind::Float, Device::Cpu));
        let rois =
            Tensor::from_slice(&[0.0f32, 1., 2., 40., 50., 0., 10., 10., 30., 20.]).view([2, 5]);
        let op = RoIAlign {
            output_size: (7, 7),
            spatial_scale: 0.25,
            sampling_ratio: 0,
            pool_mode: PoolMode::Avg,
            aligned: true,
        };
        for kind in [Kind::BFloat16, Kind::Half] {
            let reduced = x.to_kind(kind).set_requires_grad(true);
            let wide = reduced
                .detach()
                .to_kind(Kind::Float)
                .set_requires_grad(true);
            for (input, emulate) in [(&reduced, true), (&wide, false)] {
                let y = if emulate {
                    cuda_kernels_emulated(input, &rois, &op)
                } else {
                    roi_align(input, &rois, &op)
                }
                .unwrap();
                assert_eq!(y.kind(), input.kind());
                y.to_kind(Kind::Float).sum(Kind::Float).backward();
            }
            let y_reduced = cuda_kernels_emulated(&reduced, &rois, &op).unwrap();
            let y_wide = roi_align(&wide, &rois, &op).unwrap();
            assert!(y_reduced.equal(&y_wide.to_kind(kind)), "{kind:?} forward");
            assert_eq!(reduced.grad().kind(), kind);
            assert!(
                reduced.grad().equal(&wide.grad().to_kind(kind)),
                "{kind:?} backward"
            );
        }
    }

    /// NVRTC compiles the CUDA kernels for the GPUs detc is measured on
    /// (A100 sm_80, H100/H200 sm_90) and, as PTX for the driver to compile,
    /// for one newer than it knows; no GPU is needed for that. The engine
    /// has them whenever its libtorch has CUDA (the PyPI wheel has).
    #[test]
    fn cuda_kernels_compile_with_nvrtc() {
        let cuda_libtorch = std::path::Path::new(env!("DETC_LIBTORCH_LIB"))
            .join("libtorch_cuda.so")
            .exists();
        let compile = |arch| native::roi_align::compile_cuda_kernels(arch).unwrap();
        let Some(target) = compile(80) else {
            assert!(
                !cuda_libtorch,
                "a CUDA libtorch, but no CUDA kernels were built"
            );
            return;
        };
        assert_eq!(target, "sm_80");
        assert_eq!(compile(90).unwrap(), "sm_90");
        let future = compile(999).unwrap();
        assert!(future.starts_with("compute_"), "{future}");
    }

    /// Where the kernels cannot load (here: no GPU driver), the reason names
    /// what is missing, and RoIAlign keeps the grid-sampler path; on a
    /// machine with a GPU they load for its architecture.
    #[test]
    fn cuda_kernels_say_why_they_are_unavailable() {
        match native::roi_align::cuda_kernels(0) {
            Ok(target) => assert!(target.starts_with("sm_"), "{target}"),
            Err(why) => assert!(
                why.contains("cannot open the CUDA driver: libcuda.so.1")
                    || why.contains("built without CUDA kernels"),
                "{why}"
            ),
        }
    }

    #[test]
    fn roi_align_max_pools_samples() {
        // A ramp along x: each bin's max is its right-most sample.
        let x = Tensor::arange(8, (Kind::Float, Device::Cpu))
            .view([1, 1, 1, 8])
            .expand([1, 1, 8, 8], false);
        let op = RoIAlign {
            output_size: (1, 2),
            spatial_scale: 1.0,
            sampling_ratio: 2,
            pool_mode: PoolMode::Max,
            aligned: true,
        };
        let rois = Tensor::from_slice(&[0.0f32, 0.5, 0.5, 4.5, 4.5]).view([1, 5]);
        let y = Vec::<f32>::try_from(op.forward(&x, &rois).unwrap().view([-1])).unwrap();
        // bins [0, 2) and [2, 4) in pixel-centre coordinates; samples at 0.5, 1.5 | 2.5, 3.5
        assert_eq!(y, [1.5, 3.5]);
    }

    #[test]
    fn map_roi_levels_follows_finest_scale() {
        // sqrt(wh) = 10, 56, 111.9, 112, 224, 1000 -> 0, 0, 0, 1, 2, 3
        let sides = [10.0f32, 56.0, 111.9, 112.0, 224.0, 1000.0];
        let rois: Vec<f32> = sides
            .iter()
            .flat_map(|&s| [0.0, 5.0, 5.0, 5.0 + s, 5.0 + s])
            .collect();
        let rois = Tensor::from_slice(&rois).view([-1, 5]);
        let lv = Vec::<i64>::try_from(map_roi_levels(&rois, 4, 56.0).unwrap()).unwrap();
        assert_eq!(lv, [0, 0, 0, 1, 2, 3]);
    }
}

#[cfg(test)]
mod bench {
    use super::tests::PATHS;
    use super::*;

    /// Timing, not a check: `cargo test --bin detc-engine roi_align_speed -- --ignored --nocapture`.
    /// QueryInst-sized: 2 images, 100 RoIs each, C=256, a stride-4 level of an 800x1344 image.
    #[test]
    #[ignore]
    fn roi_align_speed() {
        tch::manual_seed(0);
        let x =
            Tensor::randn([2, 256, 200, 336], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let xy = Tensor::rand([200, 2], (Kind::Float, Device::Cpu)) * 1200.0;
        let wh = Tensor::rand([200, 2], (Kind::Float, Device::Cpu)) * 56.0 + 56.0;
        let b = Tensor::cat(
            &[
                Tensor::zeros([100, 1], (Kind::Float, Device::Cpu)),
                Tensor::ones([100, 1], (Kind::Float, Device::Cpu)),
            ],
            0,
        );
        let rois = Tensor::cat(&[b, xy.shallow_clone(), &xy + wh], 1);
        for (ratio, (name, f)) in [2, 0].into_iter().flat_map(|r| PATHS.map(|p| (r, p))) {
            let op = RoIAlign {
                output_size: (7, 7),
                spatial_scale: 0.25,
                sampling_ratio: ratio,
                pool_mode: PoolMode::Avg,
                aligned: true,
            };
            let n = 5;
            let t = std::time::Instant::now();
            for _ in 0..n {
                let y = f(&x, &rois, &op).unwrap();
                y.sum(Kind::Float).backward();
            }
            let both = t.elapsed().as_secs_f64() * 1e3 / n as f64;
            let t = std::time::Instant::now();
            for _ in 0..n {
                let _ = tch::no_grad(|| f(&x, &rois, &op).unwrap());
            }
            let fwd = t.elapsed().as_secs_f64() * 1e3 / n as f64;
            println!("{name}, sampling_ratio {ratio}: forward {fwd:.1} ms, forward+backward {both:.1} ms");
        }
    }
}
