//! Non-maximum suppression: `torchvision.ops.nms` / `batched_nms`, and
//! `mmcv.ops.batched_nms` driven by an `nms` config dict (which is
//! torchvision's NMS for `offset=0`, up to the order of equal scores).
//!
//! Results equal torchvision's CPU kernel: boxes in decreasing score order,
//! equal scores in input order (torchvision sorts stably), a box dropped
//! when its IoU with a kept box is `> iou_threshold`, IoUs in the boxes'
//! precision with the kernel's float ops. On CUDA the boxes are sorted on
//! the device and swept by `nms.cu`'s kernels (a bit mask of suppressions,
//! then a one-block sweep), with one host read per NMS: the kept count.
//! Elsewhere (or with `DETC_NMS=host`) the greedy sweep runs on the host:
//! on the CPU a scalar loop; on another device over IoUs computed there a
//! block of rows at a time, only for boxes not yet suppressed, each block's
//! boolean mask read on the host. The kept indices go back to the boxes'
//! device.
//!
//! Shape shorthand: `N` boxes (x1y1x2y2).

use detc::registry::models::ops::NmsConfig;
use detc::registry::refs::NmsCfg;
use tch::{Device, Kind, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::losses::{cfg_type, parse_cfg};
use super::upload;
use super::upload::to_host_later;

/// IoUs (rows x columns) computed per block of the sweep: a block's
/// intermediate tensors stay a few MB whatever N is; an accelerator takes
/// larger blocks (fewer host round trips).
fn block_ious(device: Device) -> i64 {
    if device == Device::Cpu {
        1 << 20
    } else {
        1 << 22
    }
}

fn check(boxes: &Tensor, scores: &Tensor, what: &str) -> ModelResult<i64> {
    let n = scores.size().first().copied().unwrap_or(0);
    if scores.dim() != 1 || boxes.size() != [n, 4] {
        return Err(ModelError::new(
            what,
            format!(
                "needs boxes (N, 4) and scores (N,), got {:?} and {:?}",
                boxes.size(),
                scores.size()
            ),
        ));
    }
    Ok(n)
}

pub(super) fn empty_keep(device: Device) -> ModelResult<Tensor> {
    Ok(Tensor::f_empty([0], (Kind::Int64, device))?)
}

/// Indices by decreasing score, equal scores in input order (torchvision's
/// `scores.sort(stable=True, descending=True)`; NaN sorts first, as torch's).
fn score_order(scores: &Tensor) -> ModelResult<Vec<i64>> {
    let s = Vec::<f64>::try_from(
        &scores
            .f_detach()?
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Double)?,
    )?;
    let mut order: Vec<i64> = (0..s.len() as i64).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (s[a as usize], s[b as usize]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    Ok(order)
}

/// (R, C) bool on the boxes' device: IoU(rows[r], cols[c]) above `thr`,
/// computed with the float ops of torchvision's kernel in its order
/// (`inter / (area_i + area_j - inter)`), so every comparison agrees with it;
/// mmcv's `offset` is added to widths and heights.
fn suppression_mask(rows: &Tensor, cols: &Tensor, thr: f64, offset: f64) -> ModelResult<Tensor> {
    let side = |b: &Tensor, lo: i64, hi: i64| -> ModelResult<Tensor> {
        let d = b.f_select(1, hi)?.f_sub(&b.f_select(1, lo)?)?;
        Ok(if offset != 0.0 {
            d.f_add_scalar(offset)?
        } else {
            d
        })
    };
    let area = |b: &Tensor| -> ModelResult<Tensor> { Ok(side(b, 0, 2)?.f_mul(&side(b, 1, 3)?)?) };
    let r = |k: i64| -> ModelResult<Tensor> { Ok(rows.f_select(1, k)?.f_unsqueeze(1)?) };
    let c = |k: i64| -> ModelResult<Tensor> { Ok(cols.f_select(1, k)?.f_unsqueeze(0)?) };
    let extent = |lo: i64, hi: i64| -> ModelResult<Tensor> {
        let d = r(hi)?
            .f_minimum(&c(hi)?)?
            .f_sub(&r(lo)?.f_maximum(&c(lo)?)?)?;
        let d = if offset != 0.0 {
            d.f_add_scalar(offset)?
        } else {
            d
        };
        Ok(d.f_clamp_min(0.0)?)
    };
    let inter = extent(0, 2)?.f_mul(&extent(1, 3)?)?;
    let union = area(rows)?
        .f_unsqueeze(1)?
        .f_add(&area(cols)?.f_unsqueeze(0)?)?
        .f_sub(&inter)?;
    let ovr = inter.f_div(&union)?;
    if ovr.kind() == Kind::Double {
        return Ok(ovr.f_gt(thr)?);
    }
    // torchvision compares the float IoU with the double threshold; a float
    // tensor compares with the threshold rounded to float. `x > thr` for a
    // float x is `x >= t` with t the least float above thr.
    let t = thr as f32;
    let t = if (t as f64) > thr { t } else { next_up(t) };
    Ok(ovr.f_ge(t as f64)?)
}

/// The least f32 greater than `x` (finite `x`).
fn next_up(x: f32) -> f32 {
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// The greedy sweep of torchvision's `nms_kernel_impl` over `sorted` (N, 4)
/// boxes in decreasing score order: returns the kept positions, at most
/// `limit`. On the CPU a scalar loop as torchvision's kernel (it skips
/// suppressed boxes and stops at `limit`, where IoU blocks would compute
/// nearly all N² pairs); elsewhere [`sweep_blocked`].
fn sweep(sorted: &Tensor, thr: f64, offset: f64, limit: usize) -> ModelResult<Vec<usize>> {
    if sorted.device() == Device::Cpu {
        return Ok(if sorted.kind() == Kind::Double {
            sweep_scalar(
                &Vec::<f64>::try_from(sorted.f_reshape([-1])?)?,
                thr,
                offset,
                limit,
            )
        } else {
            let b = Vec::<f32>::try_from(sorted.f_reshape([-1])?)?;
            sweep_scalar(&b, thr, offset as f32, limit)
        });
    }
    sweep_blocked(sorted, thr, offset, limit)
}

/// [`sweep`] for boxes on an accelerator: the IoUs are computed on the
/// device a block of rows at a time, only for rows and columns not yet
/// suppressed; the greedy pass reads each block's mask on the host.
fn sweep_blocked(sorted: &Tensor, thr: f64, offset: f64, limit: usize) -> ModelResult<Vec<usize>> {
    let n = sorted.size()[0] as usize;
    let device = sorted.device();
    let block = (block_ious(device) / n.max(1) as i64).clamp(64, n.max(64) as i64) as usize;
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let rows: Vec<i64> = (start..end)
            .filter(|&p| !suppressed[p])
            .map(|p| p as i64)
            .collect();
        if rows.is_empty() {
            start = end;
            continue;
        }
        let cols: Vec<i64> = (start..n)
            .filter(|&p| !suppressed[p])
            .map(|p| p as i64)
            .collect();
        let pick = |idx: &[i64]| -> ModelResult<Tensor> {
            Ok(sorted.f_index_select(0, &upload(idx, device)?)?)
        };
        let mask = suppression_mask(&pick(&rows)?, &pick(&cols)?, thr, offset)?;
        let mask = Vec::<bool>::try_from(&mask.f_to_device(Device::Cpu)?.f_reshape([-1])?)?;
        for (ri, &p) in rows.iter().enumerate() {
            if suppressed[p as usize] {
                continue;
            }
            keep.push(p as usize);
            if keep.len() == limit {
                return Ok(keep);
            }
            let row = &mask[ri * cols.len()..(ri + 1) * cols.len()];
            let after = cols.partition_point(|&q| q <= p);
            for (&q, &hit) in cols[after..].iter().zip(&row[after..]) {
                if hit {
                    suppressed[q as usize] = true;
                }
            }
        }
        start = end;
    }
    Ok(keep)
}

/// The greedy sweep of torchvision's CPU kernel over boxes sorted by score
/// (flat `x1 y1 x2 y2` rows), in their precision: each kept box suppresses
/// the later ones it overlaps by IoU `> thr`; stops after `limit` kept.
fn sweep_scalar<T>(b: &[T], thr: f64, offset: T, limit: usize) -> Vec<usize>
where
    T: Copy
        + PartialOrd
        + Default
        + Into<f64>
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>,
{
    let n = b.len() / 4;
    let max = |x: T, y: T| if x < y { y } else { x };
    let min = |x: T, y: T| if y < x { y } else { x };
    let zero = T::default();
    let area: Vec<T> = (0..n)
        .map(|i| (b[4 * i + 2] - b[4 * i] + offset) * (b[4 * i + 3] - b[4 * i + 1] + offset))
        .collect();
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for i in 0..n {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        if keep.len() == limit {
            break;
        }
        let (x1, y1, x2, y2) = (b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]);
        for j in i + 1..n {
            if suppressed[j] {
                continue;
            }
            let w = max(zero, min(x2, b[4 * j + 2]) - max(x1, b[4 * j]) + offset);
            let h = max(zero, min(y2, b[4 * j + 3]) - max(y1, b[4 * j + 1]) + offset);
            let inter = w * h;
            let ovr: f64 = (inter / (area[i] + area[j] - inter)).into();
            if ovr > thr {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// NMS of one set of boxes with mmcv's `offset`: the kept indices in
/// decreasing score order (equal scores in input order), on the host.
/// Boxes other than float64 are swept in float32 (torchvision's CUDA
/// kernel also computes half boxes in float).
fn nms_host(
    boxes: &Tensor,
    scores: &Tensor,
    thr: f64,
    offset: u32,
    limit: usize,
) -> ModelResult<Vec<i64>> {
    let order = score_order(scores)?;
    let boxes = boxes.f_detach()?;
    let boxes = if boxes.kind() == Kind::Double {
        boxes
    } else {
        boxes.f_to_kind(Kind::Float)?
    };
    let sorted =
        boxes.f_index_select(0, &upload(&order, boxes.device())?)?;
    Ok(sweep(&sorted, thr, offset as f64, limit)?
        .into_iter()
        .map(|p| order[p])
        .collect())
}

/// The environment setting that picks NMS's implementation on CUDA:
/// `kernel` (the default) or `host` (the host sweep, to compare).
pub const IMPLEMENTATION_VAR: &str = "DETC_NMS";

/// NMS of one set of boxes with mmcv's `offset`: the kept indices on the
/// boxes' device, in decreasing score order (equal scores in input order),
/// at most `limit`.
fn nms_keep(boxes: &Tensor, scores: &Tensor, thr: f64, offset: u32, limit: usize) -> ModelResult<Tensor> {
    match nms_kernels(boxes, scores, thr, offset, limit)? {
        Some(keep) => Ok(keep),
        None => to_index(&nms_host(boxes, scores, thr, offset, limit)?, boxes.device()),
    }
}

/// [`nms_keep`] with `nms.cu`'s kernels, for CUDA boxes once they are
/// loaded (`None` otherwise).
fn nms_kernels(boxes: &Tensor, scores: &Tensor, thr: f64, offset: u32, limit: usize) -> ModelResult<Option<Tensor>> {
    if !kernels_sweep(boxes.device()) {
        return Ok(None);
    }
    Ok(Some(sweep_with_kernels(boxes, scores, thr, offset, limit)?))
}

/// Whether `nms.cu`'s kernels sweep boxes on `device`: CUDA once they are
/// loaded, unless `DETC_NMS=host`.
fn kernels_sweep(device: Device) -> bool {
    let Device::Cuda(index) = device else { return false };
    !host_by_request() && crate::engine::native::roi_align::cuda_kernels(index).is_ok()
}

/// NMS with `nms.cu`'s kernels on the boxes' device (on the CPU emulated:
/// tests): the stable sort by decreasing score and the sweep stay there;
/// `nonzero` reads the kept count.
fn sweep_with_kernels(boxes: &Tensor, scores: &Tensor, thr: f64, offset: u32, limit: usize) -> ModelResult<Tensor> {
    let image = |t: &Tensor| t.f_unsqueeze(0);
    let mut kept = sweep_images_with_kernels(&image(boxes)?, &image(scores)?, thr, offset, limit, None)?;
    Ok(kept.remove(0))
}

/// [`sweep_with_kernels`] for B images at once, boxes (B, N, 4) and scores
/// (B, N): every image's sort, suppression mask and sweep in one call
/// each, and one wait for the device for all their kept indices (each
/// image's, by decreasing score). With `valid` (B, N) bool only those boxes
/// are swept, the others sorted last (their scores taken as -inf, below
/// every valid box's) and counted out on the device.
fn sweep_images_with_kernels(
    boxes: &Tensor,
    scores: &Tensor,
    thr: f64,
    offset: u32,
    limit: usize,
    valid: Option<&Tensor>,
) -> ModelResult<Vec<Tensor>> {
    let (batch, n) = scores.size2()?;
    let scores = scores.f_detach()?;
    let (key, count) = match valid {
        Some(v) => (
            scores.f_masked_fill(&v.f_logical_not()?, f64::NEG_INFINITY)?,
            Some(v.f_sum_dim_intlist(1, false, Kind::Int64)?),
        ),
        None => (scores, None),
    };
    let (_, order) = key.f_sort_stable(true, 1, true)?;
    let boxes = boxes.f_detach()?;
    let boxes = if boxes.kind() == Kind::Double { boxes } else { boxes.f_to_kind(Kind::Float)? };
    let sorted = boxes.f_gather(1, &order.f_unsqueeze(2)?.f_expand([batch, n, 4], false)?, false)?;
    let kept = crate::engine::native::nms_sorted(&sorted, thr, offset as f64, limit, count.as_ref())
        .map_err(|e| ModelError::new("nms", e.to_string()))?;
    // Each image's kept count on its way to the host, queued before the
    // `nonzero`, whose own read of its size waits for the stream: when it
    // returns, the counts are there too (one wait for both).
    let per_image = if batch > 1 { Some(to_host_later(&kept.f_sum_dim_intlist(1, false, Kind::Int64)?)?) } else { None };
    let flat = kept.f_view([-1])?.f_nonzero()?.f_view([-1])?;
    // Positions in the flattened (B, N) order are the images' own indices.
    let picked = order.f_view([-1])?.f_index_select(0, &flat)?;
    match per_image {
        None => Ok(vec![picked]),
        Some(counts) => Ok(picked.f_split_with_sizes(&Vec::<i64>::try_from(&counts)?, 0)?),
    }
}

/// `DETC_NMS=host`; any value but `kernel` and `host` is an error that
/// says so (`check_implementation_setting`).
fn host_by_request() -> bool {
    static HOST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| check_implementation_setting() == Ok(true))
}

/// Refuses a `DETC_NMS` other than `kernel` or `host`; `Ok(true)` for `host`.
pub fn check_implementation_setting() -> Result<bool, String> {
    crate::engine::native::kernel_or(IMPLEMENTATION_VAR, "host", "an NMS implementation")
}

pub(super) fn to_index(keep: &[i64], device: Device) -> ModelResult<Tensor> {
    Ok(upload(keep, device)?)
}

/// `torchvision.ops.nms`: boxes (N, 4) x1y1x2y2, scores (N,) -> int64 indices
/// of the kept boxes, by decreasing score (equal scores in input order).
/// A box is dropped when its IoU with a higher-scoring kept box is
/// `> iou_threshold`.
pub fn nms(boxes: &Tensor, scores: &Tensor, iou_threshold: f64) -> ModelResult<Tensor> {
    if check(boxes, scores, "nms")? == 0 {
        return empty_keep(boxes.device());
    }
    nms_keep(boxes, scores, iou_threshold, 0, usize::MAX)
}

/// torchvision's `_batched_nms_coordinate_trick`: every category's boxes are
/// shifted by `idx * (max coordinate + 1)` so that categories never overlap.
pub(super) fn offset_by_category(boxes: &Tensor, idxs: &Tensor) -> ModelResult<Tensor> {
    offset_by(boxes, idxs, &boxes.f_max()?)
}

/// [`offset_by_category`] with `max_coordinate`: a scalar tensor for boxes
/// (N, 4), or one per image, (B, 1), for B images' boxes (B, N, 4).
fn offset_by(boxes: &Tensor, idxs: &Tensor, max_coordinate: &Tensor) -> ModelResult<Tensor> {
    let offsets = idxs
        .f_to_kind(boxes.kind())?
        .f_mul(&max_coordinate.f_add_scalar(1)?)?;
    Ok(boxes.f_add(&offsets.f_unsqueeze(-1)?)?)
}

/// Kept indices (ascending) re-ordered by decreasing score with torch's
/// default (unstable) sort on the boxes' device, as torchvision's
/// `_batched_nms_vanilla` and mmcv's split path order them.
fn sort_kept_by_score(keep: &Tensor, scores: &Tensor) -> ModelResult<Tensor> {
    let (_, order) = scores.f_index_select(0, keep)?.f_sort(0, true)?;
    Ok(keep.f_index_select(0, &order)?)
}

/// Runs `nms_one` on the members of each category of `idxs` (ascending
/// category ids, as `torch.unique`), each getting the (M,) member indices
/// and returning the kept ones as positions into them; returns which of the
/// N boxes were kept.
pub(super) fn per_category(
    idxs: &Tensor,
    device: Device,
    mut nms_one: impl FnMut(&Tensor) -> ModelResult<Vec<i64>>,
) -> ModelResult<Vec<bool>> {
    let classes = Vec::<i64>::try_from(&idxs.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)?;
    let mut unique = classes.clone();
    unique.sort_unstable();
    unique.dedup();
    let mut kept = vec![false; classes.len()];
    for c in unique {
        let members: Vec<i64> = (0..classes.len() as i64)
            .filter(|&i| classes[i as usize] == c)
            .collect();
        for k in nms_one(&to_index(&members, device)?)? {
            kept[members[k as usize] as usize] = true;
        }
    }
    Ok(kept)
}

/// [`check`] plus the category of each box: `idxs` (N,); returns N.
pub(super) fn check_batched(boxes: &Tensor, scores: &Tensor, idxs: &Tensor) -> ModelResult<i64> {
    let n = check(boxes, scores, "batched_nms")?;
    if idxs.size() != [n] {
        return Err(ModelError::new(
            "batched_nms",
            format!("idxs must be (N,) = ({n},), got {:?}", idxs.size()),
        ));
    }
    Ok(n)
}

/// `torchvision.ops.batched_nms`: NMS within each category of `idxs` (N,)
/// int64 -> int64 indices of the kept boxes, by decreasing score.
///
/// Follows torchvision's dispatch so that ties and rounding match it: above
/// 4000 box coordinates on the CPU (100 000 elsewhere) every category is
/// swept on its own and the kept boxes re-sorted by score; below, the
/// categories are separated by offsetting the boxes.
pub fn batched_nms(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    iou_threshold: f64,
) -> ModelResult<Tensor> {
    let n = check_batched(boxes, scores, idxs)?;
    let device = boxes.device();
    if n == 0 {
        return empty_keep(device);
    }
    let vanilla_above = if device == Device::Cpu { 4000 } else { 100_000 };
    if boxes.numel() as i64 > vanilla_above {
        let kept = per_category(idxs, device, |members| {
            nms_host(
                &boxes.f_index_select(0, members)?,
                &scores.f_index_select(0, members)?,
                iou_threshold,
                0,
                usize::MAX,
            )
        })?;
        let ascending: Vec<i64> = (0..n).filter(|&i| kept[i as usize]).collect();
        sort_kept_by_score(&to_index(&ascending, device)?, scores)
    } else {
        nms(&offset_by_category(boxes, idxs)?, scores, iou_threshold)
    }
}

/// Reads an `nms` config dict (`type: nms`); other types (`soft_nms`) are an
/// error naming `owner`.
pub fn nms_config(cfg: &NmsCfg, owner: &str) -> ModelResult<NmsConfig> {
    match cfg_type(&cfg.0, owner)? {
        "nms" => parse_cfg(&cfg.0, "nms"),
        other => Err(ModelError::new(
            owner,
            format!("nms type {other:?} is not supported (use type: nms)"),
        )),
    }
}

/// mmcv's `nms` op (`NMSop`): boxes scoring `<= score_threshold` (when
/// positive) are dropped first, then NMS with `offset`, then the first
/// `max_num` (when positive) are kept.
fn mmcv_nms(boxes: &Tensor, scores: &Tensor, cfg: &NmsConfig, limit: usize) -> ModelResult<Tensor> {
    let device = boxes.device();
    let (boxes, scores, valid) = if cfg.score_threshold > 0.0 {
        let valid = scores
            .f_gt(cfg.score_threshold)?
            .f_nonzero()?
            .f_view([-1])?;
        (
            boxes.f_index_select(0, &valid)?,
            scores.f_index_select(0, &valid)?,
            Some(valid),
        )
    } else {
        (boxes.shallow_clone(), scores.shallow_clone(), None)
    };
    if scores.numel() == 0 {
        return empty_keep(device);
    }
    let limit = if cfg.max_num > 0 {
        limit.min(cfg.max_num as usize)
    } else {
        limit
    };
    let keep = nms_keep(&boxes, &scores, cfg.iou_threshold, cfg.offset, limit)?;
    Ok(match valid {
        Some(v) => v.f_index_select(0, &keep)?,
        None => keep,
    })
}

/// `mmcv.ops.batched_nms(boxes, scores, idxs, nms_cfg)` for `type: nms`:
/// boxes (N, 4), scores (N,), idxs (N,) -> int64 indices of the kept boxes
/// by decreasing score (the scores of plain NMS are unchanged, so the kept
/// boxes and scores are `boxes[keep]`, `scores[keep]`).
///
/// Categories are separated by offsetting the boxes unless `class_agnostic`;
/// from `split_thr` boxes on, each category is swept on its own (with
/// `score_threshold` and `max_num` per category) and the union re-sorted
/// and cut to `max_num`, as mmcv does. The sweep is torchvision's, so
/// equal scores keep their input order where mmcv's own kernel may not.
///
/// `keep_at_most`: the caller keeps only the first `k` (the RPN's
/// `max_per_img`, the R-CNN head's `max_per_img`), so the result is cut
/// there and the sweep may stop as soon as it has them.
pub fn batched_nms_cfg(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    cfg: &NmsConfig,
    keep_at_most: Option<usize>,
) -> ModelResult<Tensor> {
    let n = check_batched(boxes, scores, idxs)?;
    let device = boxes.device();
    if n == 0 {
        return empty_keep(device);
    }
    let boxes_for_nms = if cfg.class_agnostic {
        boxes.shallow_clone()
    } else {
        offset_by_category(boxes, idxs)?
    };
    let at_most = keep_at_most.unwrap_or(usize::MAX);
    if n < cfg.split_thr as i64 {
        return mmcv_nms(&boxes_for_nms, scores, cfg, at_most);
    }
    let kept = per_category(idxs, device, |members| {
        let keep = mmcv_nms(
            &boxes_for_nms.f_index_select(0, members)?,
            &scores.f_index_select(0, members)?,
            cfg,
            usize::MAX,
        )?;
        Ok(Vec::<i64>::try_from(&keep.f_to_device(Device::Cpu)?)?)
    })?;
    let ascending: Vec<i64> = (0..n).filter(|&i| kept[i as usize]).collect();
    let keep = sort_kept_by_score(&to_index(&ascending, device)?, scores)?;
    let max_num = if cfg.max_num > 0 {
        (cfg.max_num as usize).min(at_most)
    } else {
        at_most
    };
    Ok(keep.f_narrow(0, 0, (max_num as i64).min(keep.size()[0]))?)
}

/// [`batched_nms_cfg`] over the boxes where `valid` (N,) bool holds, as if
/// the others had been removed first (MMDetection's proposals drop the
/// boxes not above `min_bbox_size` before NMS): indices into all N. With
/// `in_sweep` (where `nms.cu`'s kernels sweep, CUDA; on the CPU they run
/// emulated: tests), the filter goes into the sweep with nothing read back
/// for it (the valid boxes' scores must be above -inf, as probabilities
/// are); otherwise, from `split_thr` boxes on, or with a score threshold,
/// the boxes are filtered first (one read whether all are valid, one
/// `nonzero` if not).
fn batched_nms_where_on(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    valid: &Tensor,
    cfg: &NmsConfig,
    keep_at_most: Option<usize>,
    in_sweep: bool,
) -> ModelResult<Tensor> {
    let n = check_batched(boxes, scores, idxs)?;
    if valid.size() != [n] || valid.kind() != Kind::Bool {
        return Err(ModelError::new("batched_nms", format!("valid must be (N,) = ({n},) bool, got {:?}", valid.size())));
    }
    if n == 0 {
        return empty_keep(boxes.device());
    }
    if in_sweep && filter_in_sweep(cfg, n) {
        let image = |t: &Tensor| t.f_unsqueeze(0);
        let mut kept = sweep_where(&image(boxes)?, &image(scores)?, idxs, &image(valid)?, cfg, keep_at_most)?;
        return Ok(kept.remove(0));
    }
    if bool::try_from(valid.f_all()?)? {
        return batched_nms_cfg(boxes, scores, idxs, cfg, keep_at_most);
    }
    let inds = valid.f_nonzero()?.f_view([-1])?;
    let pick = |t: &Tensor| t.f_index_select(0, &inds);
    let keep = batched_nms_cfg(&pick(boxes)?, &pick(scores)?, &pick(idxs)?, cfg, keep_at_most)?;
    Ok(inds.f_index_select(0, &keep)?)
}

/// [`batched_nms_where_on`] for B images whose boxes share their categories
/// `idxs` (N,) (an RPN's levels): boxes (B, N, 4), scores and `valid`
/// (B, N) -> each image's kept indices. Where `nms.cu`'s kernels sweep
/// (CUDA), every image in one call of each kernel and one wait for the
/// device for all; elsewhere image by image.
pub fn batched_nms_where_images(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    valid: &Tensor,
    cfg: &NmsConfig,
    keep_at_most: Option<usize>,
) -> ModelResult<Vec<Tensor>> {
    batched_nms_where_images_on(boxes, scores, idxs, valid, cfg, keep_at_most, kernels_sweep(boxes.device()))
}

/// [`batched_nms_where_images`], every image in one sweep of `nms.cu`'s
/// kernels if `in_sweep` (which on the CPU runs them emulated: tests).
fn batched_nms_where_images_on(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    valid: &Tensor,
    cfg: &NmsConfig,
    keep_at_most: Option<usize>,
    in_sweep: bool,
) -> ModelResult<Vec<Tensor>> {
    let (batch, n) = match scores.size().as_slice() {
        &[b, n] => (b, n),
        s => return Err(ModelError::new("batched_nms", format!("scores must be (B, N), got {s:?}"))),
    };
    if boxes.size() != [batch, n, 4] || valid.size() != [batch, n] || valid.kind() != Kind::Bool {
        return Err(ModelError::new(
            "batched_nms",
            format!(
                "boxes must be (B, N, 4) and valid (B, N) bool for scores ({batch}, {n}), got {:?} and {:?}",
                boxes.size(),
                valid.size()
            ),
        ));
    }
    if !(in_sweep && batch > 0 && n > 0 && filter_in_sweep(cfg, n)) {
        return (0..batch)
            .map(|i| {
                batched_nms_where_on(&boxes.f_get(i)?, &scores.f_get(i)?, idxs, &valid.f_get(i)?, cfg, keep_at_most, in_sweep)
            })
            .collect();
    }
    if idxs.size() != [n] {
        return Err(ModelError::new("batched_nms", format!("idxs must be (N,) = ({n},), got {:?}", idxs.size())));
    }
    sweep_where(boxes, scores, idxs, valid, cfg, keep_at_most)
}

/// Whether NMS of `n` boxes with `cfg` can take its size filter into the
/// kernels' sweep: what [`batched_nms_cfg`] does there is `mmcv_nms` on
/// every box (below `split_thr`, no score threshold).
fn filter_in_sweep(cfg: &NmsConfig, n: i64) -> bool {
    n < cfg.split_thr as i64 && cfg.score_threshold <= 0.0
}

/// What the filtered boxes' [`batched_nms_cfg`] does below `split_thr`
/// (`mmcv_nms`), for B images (boxes (B, N, 4), scores and `valid` (B, N))
/// in one sweep of `nms.cu`'s kernels: each image's boxes offset by level
/// with the maximum coordinate of its own valid boxes.
fn sweep_where(
    boxes: &Tensor,
    scores: &Tensor,
    idxs: &Tensor,
    valid: &Tensor,
    cfg: &NmsConfig,
    keep_at_most: Option<usize>,
) -> ModelResult<Vec<Tensor>> {
    let boxes_for_nms = if cfg.class_agnostic {
        boxes.shallow_clone()
    } else {
        let invalid = valid.f_logical_not()?.f_unsqueeze(2)?;
        let max = boxes.f_masked_fill(&invalid, f64::NEG_INFINITY)?.f_amax([1i64, 2].as_slice(), false)?;
        offset_by(boxes, idxs, &max.f_unsqueeze(1)?)?
    };
    let at_most = keep_at_most.unwrap_or(usize::MAX);
    let limit = if cfg.max_num > 0 { at_most.min(cfg.max_num as usize) } else { at_most };
    sweep_images_with_kernels(&boxes_for_nms, scores, cfg.iou_threshold, cfg.offset, limit, Some(valid))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::models::layers::fixtures::{script_state_dict, tensor, StateDict};

    /// tests/models/two_stage_dense_reference.py's output (NMS, anchors,
    /// assigner, sampler, RPN head), made once per test process.
    pub(crate) fn fixture() -> &'static StateDict {
        static FX: OnceLock<StateDict> = OnceLock::new();
        FX.get_or_init(|| script_state_dict("tests/models/two_stage_dense_reference.py", "detc-two-stage-dense", "two_stage_dense.pth"))
    }

    pub(crate) fn ints(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(&t.to_kind(Kind::Int64).to_device(Device::Cpu)).unwrap()
    }

    #[test]
    fn nms_and_batched_nms_match_torchvision() {
        let fx = fixture();
        for case in ["small", "large", "ties", "cont"] {
            let t = |k: &str| tensor(fx, &format!("nms.{case}.{k}"));
            let (boxes, scores, idxs) = (t("boxes"), t("scores"), t("idxs"));
            let thr = t("thr").double_value(&[]);
            let keep = nms(&boxes, &scores, thr).unwrap();
            assert_eq!(ints(&keep), ints(&t("keep")), "nms {case}");
            let keep = batched_nms(&boxes, &scores, &idxs, thr).unwrap();
            assert_eq!(ints(&keep), ints(&t("batched")), "batched_nms {case}");
        }
        let keep = nms(
            &tensor(fx, "nms.f64.boxes"),
            &tensor(fx, "nms.f64.scores"),
            0.4,
        )
        .unwrap();
        assert_eq!(ints(&keep), ints(&tensor(fx, "nms.f64.keep")), "nms f64");
    }

    #[test]
    fn batched_nms_cfg_matches_mmcv() {
        let fx = fixture();
        let (boxes, scores, idxs) = (
            tensor(fx, "nms.small.boxes"),
            tensor(fx, "nms.small.scores"),
            tensor(fx, "nms.small.idxs"),
        );
        let cases = [
            (
                "plain",
                serde_json::json!({"type": "nms", "iou_threshold": 0.5}),
            ),
            (
                "split",
                serde_json::json!({"type": "nms", "iou_threshold": 0.5, "split_thr": 100, "max_num": 40}),
            ),
            (
                "filter",
                serde_json::json!({"type": "nms", "iou_threshold": 0.5, "score_threshold": 0.4, "max_num": 25}),
            ),
            (
                "split_filter",
                serde_json::json!({"type": "nms", "iou_threshold": 0.5, "split_thr": 10,
                                   "score_threshold": 0.4, "max_num": 7}),
            ),
            (
                "agnostic",
                serde_json::json!({"type": "nms", "iou_threshold": 0.5, "class_agnostic": true}),
            ),
        ];
        for (name, json) in cases {
            let cfg = nms_config(&NmsCfg(json), "test").unwrap();
            let keep = batched_nms_cfg(&boxes, &scores, &idxs, &cfg, None).unwrap();
            assert_eq!(
                ints(&keep),
                ints(&tensor(fx, &format!("mmcv.{name}.keep"))),
                "{name}"
            );
        }
        let soft = NmsCfg(serde_json::json!({"type": "soft_nms", "iou_threshold": 0.5}));
        assert_eq!(
            nms_config(&soft, "RPNHead").unwrap_err().component,
            "RPNHead"
        );
    }

    #[test]
    fn nms_handles_empty_and_bad_inputs() {
        let none = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let no_scores = Tensor::zeros([0], (Kind::Float, Device::Cpu));
        let keep = nms(&none, &no_scores, 0.5).unwrap();
        assert_eq!((keep.size(), keep.kind()), (vec![0], Kind::Int64));
        let no_idx = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let keep = batched_nms(&none, &no_scores, &no_idx, 0.5).unwrap();
        assert_eq!((keep.size(), keep.kind()), (vec![0], Kind::Int64));
        let three = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        assert!(nms(&three, &no_scores, 0.5).is_err());
        let scores = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        assert!(batched_nms(&three, &scores, &no_idx, 0.5).is_err());
    }

    /// The two sweeps (the CPU's scalar loop, the accelerator's IoU blocks,
    /// run here on CPU tensors) keep the same boxes, on the RPN's load (2000
    /// dense, overlapping anchors of each of 5 levels of an 800x1216 image)
    /// and on 3000 scattered boxes; a limit keeps the first kept ones, and
    /// `keep_at_most` equals cutting the full result.
    #[test]
    fn scalar_and_blocked_sweeps_agree_and_stop_at_the_limit() {
        use crate::models::task_modules::AnchorGenerator;
        use detc::registry::refs::AnchorGeneratorCfg;
        let _seeded = crate::models::layers::fixtures::seeded();
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let gen = AnchorGenerator::from_cfg(&AnchorGeneratorCfg(serde_json::json!({
            "type": "AnchorGenerator", "strides": [4, 8, 16, 32, 64], "ratios": [0.5, 1.0, 2.0], "scales": [8]})))
        .unwrap();
        let sizes = [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)];
        let mut boxes = Vec::new();
        let mut levels = Vec::new();
        for (l, a) in gen
            .grid_priors(&sizes, Device::Cpu)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let n = a.size()[0].min(2000);
            let pick = Tensor::randperm(a.size()[0], (Kind::Int64, Device::Cpu)).narrow(0, 0, n);
            boxes.push(a.index_select(0, &pick) + Tensor::randn([n, 4], opts) * 2.0);
            levels.push(Tensor::full([n], l as i64, (Kind::Int64, Device::Cpu)));
        }
        let (rpn, levels) = (Tensor::cat(&boxes, 0), Tensor::cat(&levels, 0));
        let xy = Tensor::rand([3000, 2], opts) * 800.0;
        let scattered = Tensor::cat(
            &[&xy, &(&xy + Tensor::rand([3000, 2], opts) * 200.0 + 4.0)],
            1,
        );
        for boxes in [offset_by_category(&rpn, &levels).unwrap(), scattered] {
            let order = score_order(&Tensor::rand([boxes.size()[0]], opts)).unwrap();
            let sorted = boxes.index_select(0, &Tensor::from_slice(&order));
            let all = sweep(&sorted, 0.7, 0.0, usize::MAX).unwrap();
            assert_eq!(all, sweep_blocked(&sorted, 0.7, 0.0, usize::MAX).unwrap());
            assert_eq!(
                sweep(&sorted, 0.7, 0.0, 300).unwrap(),
                all[..300.min(all.len())]
            );
            assert_eq!(
                sweep_blocked(&sorted, 0.7, 0.0, 300).unwrap(),
                all[..300.min(all.len())]
            );
        }
        let scores = Tensor::rand([rpn.size()[0]], opts);
        let cfg = nms_config(
            &serde_json::from_value(serde_json::json!({"type": "nms", "iou_threshold": 0.7}))
                .unwrap(),
            "test",
        )
        .unwrap();
        let full = batched_nms_cfg(&rpn, &scores, &levels, &cfg, None).unwrap();
        let cut = batched_nms_cfg(&rpn, &scores, &levels, &cfg, Some(1000)).unwrap();
        assert_eq!(cut, full.narrow(0, 0, 1000));
    }

    /// `nms.cu`'s kernels (emulated on one CPU thread) keep what the host
    /// sweep keeps: float and double, mmcv's offset, IoUs exactly at the
    /// threshold (integer boxes), more than one 64-box word per row, a
    /// limit, NaN boxes, and no boxes.
    #[test]
    fn the_cuda_kernels_keep_what_the_host_sweep_keeps() {
        tch::manual_seed(3);
        let cases = [
            (500, Kind::Float, 0u32, 0.7, usize::MAX, false),
            (500, Kind::Double, 1, 0.5, usize::MAX, false),
            (700, Kind::Float, 0, 0.5, usize::MAX, true),
            (700, Kind::Float, 1, 0.3, 41, true),
            (64, Kind::Float, 0, 0.6, usize::MAX, false),
            (65, Kind::Double, 0, 0.6, 64, false),
            (1, Kind::Float, 0, 0.5, usize::MAX, false),
            (0, Kind::Float, 0, 0.5, usize::MAX, false),
        ];
        for (n, kind, offset, thr, limit, integer) in cases {
            let opts = (kind, Device::Cpu);
            let xy = Tensor::rand([n, 2], opts) * 60.0;
            let mut boxes = Tensor::cat(&[&xy, &(&xy + Tensor::rand([n, 2], opts) * 30.0 + 1.0)], 1);
            if integer {
                boxes = boxes.round();
            }
            if n > 10 {
                let _ = boxes.get(3).fill_(f64::NAN);
            }
            let sorted = boxes.index_select(0, &Tensor::from_slice(&score_order(&Tensor::rand([n], opts)).unwrap()));
            let expected = sweep(&sorted, thr, offset as f64, limit).unwrap();
            let flags = crate::engine::native::nms_sorted(&sorted, thr, offset as f64, limit, None).unwrap();
            let kept: Vec<usize> = Vec::<bool>::try_from(&flags)
                .unwrap()
                .iter()
                .enumerate()
                .filter_map(|(i, &k)| k.then_some(i))
                .collect();
            assert_eq!(kept, expected, "n {n}, {kind:?}, offset {offset}, thr {thr}, limit {limit}");
            if n > 100 {
                assert!(kept.len() > 64 || limit < 64, "the case should keep more than one word's boxes");
            }
        }
    }

    /// The size filter inside `nms.cu`'s sweep (the kernels emulated on the
    /// CPU) keeps what filtering the boxes first keeps, by level and
    /// class-agnostic, with a cap, with ties, with every or no box valid.
    #[test]
    fn the_filter_in_the_sweep_keeps_what_filtering_first_keeps() {
        tch::manual_seed(5);
        let opts = (Kind::Float, Device::Cpu);
        let n = 600;
        let xy = Tensor::rand([n, 2], opts) * 80.0;
        let wh = Tensor::rand([n, 2], opts) * 40.0;
        // A fifth of the boxes degenerate (zero width or height, as a box
        // clamped at the border is), so the filter drops them.
        let flat = Tensor::rand([n, 1], opts).lt(0.2).to_kind(Kind::Float);
        let wh = &wh * Tensor::cat(&[Tensor::ones([n, 1], opts) - &flat, Tensor::ones([n, 1], opts)], 1);
        let boxes = Tensor::cat(&[&xy, &(&xy + &wh)], 1);
        // Scores in steps of 1/16: many ties.
        let scores = (Tensor::rand([n], opts) * 16.0).floor() / 16.0;
        let levels = Tensor::randint(5, [n], (Kind::Int64, Device::Cpu));
        let nms = |agnostic: bool, max_num: i64| {
            serde_json::from_value::<NmsConfig>(serde_json::json!({
                "iou_threshold": 0.5, "class_agnostic": agnostic, "max_num": max_num
            }))
            .unwrap()
        };
        let some = crate::models::dense_heads::anchor_head::larger_than_mask(&boxes, 0.0).unwrap().unwrap();
        let valid_count = some.sum(Kind::Int64).int64_value(&[]);
        assert!(valid_count > 400 && valid_count < 560, "{valid_count} valid");
        let all = Tensor::ones([n], (Kind::Bool, Device::Cpu));
        let none = Tensor::zeros([n], (Kind::Bool, Device::Cpu));
        for (valid, label) in [(&some, "some"), (&all, "all"), (&none, "none")] {
            for (cfg, at_most) in [(nms(false, -1), None), (nms(false, -1), Some(50)), (nms(true, 30), None)] {
                let swept = batched_nms_where_on(&boxes, &scores, &levels, valid, &cfg, at_most, true).unwrap();
                let first = batched_nms_where_on(&boxes, &scores, &levels, valid, &cfg, at_most, false).unwrap();
                assert_eq!(ints(&swept), ints(&first), "{label} valid, {cfg:?}, at most {at_most:?}");
            }
        }
        let kept = batched_nms_where_on(&boxes, &scores, &levels, &some, &nms(false, -1), None, true).unwrap();
        assert!(kept.size()[0] > 100, "the case should keep many boxes");
        assert_eq!(some.index_select(0, &kept).all().int64_value(&[]), 1, "only valid boxes are kept");
    }

    /// Several images in one sweep of `nms.cu`'s kernels (emulated on the
    /// CPU) keep what each image keeps on its own, filtered first: with
    /// every, some or no box valid per image, by level and class-agnostic,
    /// with a cap, and with one image's boxes copied into another (which
    /// must not suppress them).
    #[test]
    fn every_image_in_one_sweep_keeps_what_each_image_keeps() {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let (b, n) = (4, 500);
        let xy = Tensor::rand([b, n, 2], opts) * 80.0;
        let wh = Tensor::rand([b, n, 2], opts) * 40.0;
        let flat = Tensor::rand([b, n, 1], opts).lt(0.2).to_kind(Kind::Float);
        let wh = &wh * Tensor::cat(&[Tensor::ones([b, n, 1], opts) - &flat, Tensor::ones([b, n, 1], opts)], 2);
        let boxes = Tensor::cat(&[&xy, &(&xy + &wh)], 2);
        let scores = (Tensor::rand([b, n], opts) * 16.0).floor() / 16.0;
        // Image 3 is image 0 again.
        boxes.get(3).copy_(&boxes.get(0));
        scores.get(3).copy_(&scores.get(0));
        let levels = Tensor::randint(5, [n], (Kind::Int64, Device::Cpu));
        let valid = crate::models::dense_heads::anchor_head::larger_than_mask(&boxes, 0.0).unwrap().unwrap();
        let _ = valid.get(1).fill_(1);
        let _ = valid.get(2).fill_(0);
        let nms = |agnostic: bool, max_num: i64| {
            serde_json::from_value::<NmsConfig>(serde_json::json!({
                "iou_threshold": 0.6, "class_agnostic": agnostic, "max_num": max_num
            }))
            .unwrap()
        };
        for (cfg, at_most) in [(nms(false, -1), None), (nms(false, -1), Some(40)), (nms(true, 25), None)] {
            let swept = batched_nms_where_images_on(&boxes, &scores, &levels, &valid, &cfg, at_most, true).unwrap();
            assert_eq!(swept.len(), b as usize);
            for (i, kept) in swept.iter().enumerate() {
                let i = i as i64;
                let (bx, sc, va) = (boxes.get(i), scores.get(i), valid.get(i));
                let alone = batched_nms_where_on(&bx, &sc, &levels, &va, &cfg, at_most, true).unwrap();
                let first = batched_nms_where_on(&bx, &sc, &levels, &va, &cfg, at_most, false).unwrap();
                assert_eq!(ints(kept), ints(&alone), "image {i}, {cfg:?}, at most {at_most:?}");
                assert_eq!(ints(kept), ints(&first), "image {i}, {cfg:?}, at most {at_most:?}");
            }
            assert_eq!(ints(&swept[3]), ints(&swept[0]), "an image's copy is kept as it is");
            assert!(swept[2].numel() == 0 && swept[1].numel() > 20, "{cfg:?}");
        }
        // Elsewhere (no sweep) image by image, the same.
        let cfg = nms(false, -1);
        let each = batched_nms_where_images_on(&boxes, &scores, &levels, &valid, &cfg, None, false).unwrap();
        let swept = batched_nms_where_images_on(&boxes, &scores, &levels, &valid, &cfg, None, true).unwrap();
        assert_eq!(each.iter().map(ints).collect::<Vec<_>>(), swept.iter().map(ints).collect::<Vec<_>>());
        // No images, and images without boxes.
        let none = batched_nms_where_images_on(
            &Tensor::zeros([0, n, 4], opts), &Tensor::zeros([0, n], opts), &levels,
            &Tensor::zeros([0, n], (Kind::Bool, Device::Cpu)), &cfg, None, true,
        )
        .unwrap();
        assert!(none.is_empty());
        let empty = batched_nms_where_images_on(
            &Tensor::zeros([2, 0, 4], opts), &Tensor::zeros([2, 0], opts), &Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
            &Tensor::zeros([2, 0], (Kind::Bool, Device::Cpu)), &cfg, None, true,
        )
        .unwrap();
        assert_eq!(empty.iter().map(|k| k.numel()).collect::<Vec<_>>(), [0, 0]);
        let wrong = batched_nms_where_images_on(&boxes.get(0), &scores, &levels, &valid, &cfg, None, true);
        assert!(wrong.unwrap_err().to_string().contains("(B, N, 4)"));
    }

    /// The device path's order: torch's stable descending sort equals
    /// [`score_order`] (ties in input order, NaN first).
    #[test]
    fn the_stable_sort_orders_as_score_order() {
        let scores = Tensor::from_slice(&[0.5f32, f32::NAN, 0.7, 0.5, 0.1, 0.7, f32::NAN, 0.5]);
        let (_, order) = scores.sort_stable(true, 0, true);
        assert_eq!(Vec::<i64>::try_from(&order).unwrap(), score_order(&scores).unwrap());
    }
}
