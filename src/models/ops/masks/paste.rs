//! Pasting predicted masks: `FCNMaskHead.predict_by_feat` /
//! `_predict_by_feat_single` / `_do_paste_mask`
//! (`mmdet/models/roi_heads/mask_heads/fcn_mask_head.py`, after detectron2's
//! `paste_masks_in_image`): the `h x w` probabilities of each detection are
//! drawn into the image by `grid_sample` at the pixel centres its box covers,
//! then thresholded.
//!
//! Shape shorthand: `K` detections, `C` mask classes, `h, w` the mask size,
//! `H, W` the output image.

use detc::data::SampleMeta;
use tch::{Device, Kind, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::upload_as;

const PASTE: &str = "FCNMaskHead.predict_by_feat";

/// mmdet's cap on one pasted chunk on GPU (`GPU_MEM_LIMIT`, 1 GiB of f32).
const GPU_MEM_LIMIT: i64 = 1 << 30;
const BYTES_PER_FLOAT: i64 = 4;

/// `FCNMaskHead.predict_by_feat` for one image, as `SparseRoIHead.predict_mask`
/// calls it (`activate_map=False`: the logits are sigmoided here).
///
/// mask_preds: (K, C, h, w) logits (`C == 1`: already class-selected);
/// bboxes: (K, 4) x1y1x2y2 float32 in the resized image (not yet rescaled;
/// this function does not change them — mmdet divides `results.bboxes` by
/// `scale_factor` in place when `rescale`, so the caller must do the same);
/// labels: (K,) picking the class map when `C > 1`; meta: `ori_shape` and
/// `scale_factor` `(w, h)`.
/// Returns (K, H, W): bool `>= mask_thr_binary`, or uint8 `prob * 255` when
/// the threshold is negative; `(H, W)` is `ori_shape` with `rescale`, else
/// `round(ori_shape * scale_factor)` (the resized image). K == 0 gives
/// (0, ori_H, ori_W) whatever `rescale` says, as mmdet's `empty_instances`.
pub fn predict_masks(
    mask_preds: &Tensor,
    bboxes: &Tensor,
    labels: &Tensor,
    meta: &SampleMeta,
    mask_thr_binary: f64,
    rescale: bool,
) -> ModelResult<Tensor> {
    if bboxes.size().first() == Some(&0) {
        let (oh, ow) = meta_shapes(meta)?.0;
        return Ok(Tensor::f_zeros(
            [0, oh, ow],
            (mask_kind(mask_thr_binary), bboxes.device()),
        )?);
    }
    predict_by_feat_single(
        mask_preds,
        bboxes,
        labels,
        meta,
        mask_thr_binary,
        rescale,
        false,
    )
}

/// `FCNMaskHead._predict_by_feat_single`; see [`predict_masks`] for the
/// arguments. `activate_map`: the maps are probabilities already (mmdet's
/// test-time augmentation), so no sigmoid. On the CPU each mask is pasted
/// alone into the window around its box (`skip_empty`); on other devices
/// whole-image chunks of at most 1 GiB are pasted, as mmdet does — the two
/// differ slightly outside the windows, where only the uint8 output shows it.
pub fn predict_by_feat_single(
    mask_preds: &Tensor,
    bboxes: &Tensor,
    labels: &Tensor,
    meta: &SampleMeta,
    mask_thr_binary: f64,
    rescale: bool,
    activate_map: bool,
) -> ModelResult<Tensor> {
    let (k, c, _h, _w) = mask_preds.size4().map_err(|_| {
        ModelError::new(
            PASTE,
            format!(
                "mask_preds must be (K, C, h, w), got {:?}",
                mask_preds.size()
            ),
        )
    })?;
    if bboxes.size() != [k, 4] {
        return Err(ModelError::new(
            PASTE,
            format!("bboxes must be ({k}, 4), got {:?}", bboxes.size()),
        ));
    }
    if k == 0 {
        return Err(ModelError::new(
            PASTE,
            "no detections: use predict_masks, which handles K == 0",
        ));
    }
    let ((ori_h, ori_w), (sw, sh)) = meta_shapes(meta)?;
    let dev = bboxes.device();
    let boxes = bboxes.f_detach()?.f_to_kind(Kind::Float)?;
    // bboxes.new_tensor(scale_factor).repeat((1, 2)): float32 (1, 4).
    let scale = Tensor::from_slice(&[sw, sh, sw, sh])
        .f_to_kind(Kind::Float)?
        .f_view([1, 4])?;
    let probs = if activate_map {
        mask_preds
            .f_detach()?
            .f_to_kind(Kind::Float)?
            .f_to_device(dev)?
    } else {
        mask_preds.f_detach()?.f_sigmoid()?
    };
    let probs = select_class(&probs, labels, k, c)?; // (K, 1, h, w)
    let (boxes, img_h, img_w) = if rescale {
        (boxes.f_div(&upload_as(&[sw, sh, sw, sh], Kind::Float, dev)?.f_view([1, 4])?)?, ori_h, ori_w)
    } else {
        // np.round(img_h * h_scale.item()): float32 scale, half to even.
        let (hs, ws) = (scale.double_value(&[0, 1]), scale.double_value(&[0, 0]));
        (
            boxes,
            (ori_h as f64 * hs).round_ties_even() as i64,
            (ori_w as f64 * ws).round_ties_even() as i64,
        )
    };
    paste_all(
        &probs,
        &boxes,
        (img_h, img_w),
        mask_thr_binary,
        dev == Device::Cpu,
    )
}

/// The paste loop of `_predict_by_feat_single`: probs (K, 1, h, w) and
/// boxes (K, 4) float32 -> (K, H, W) bool or uint8. `skip_empty` (mmdet: on
/// the CPU) pastes one mask at a time into its window, else whole-image
/// chunks of at most 1 GiB.
fn paste_all(
    probs: &Tensor,
    boxes: &Tensor,
    (img_h, img_w): (i64, i64),
    mask_thr_binary: f64,
    skip_empty: bool,
) -> ModelResult<Tensor> {
    let k = boxes.size2()?.0;
    let im_mask = Tensor::f_zeros(
        [k, img_h, img_w],
        (mask_kind(mask_thr_binary), boxes.device()),
    )?;
    for (start, len) in chunks(k, img_h, img_w, skip_empty)? {
        let (pasted, win) = paste_masks(
            &probs.f_narrow(0, start, len)?,
            &boxes.f_narrow(0, start, len)?,
            img_h,
            img_w,
            skip_empty,
        )?;
        if win.height() == 0 || win.width() == 0 {
            continue;
        }
        let binary = if mask_thr_binary >= 0.0 {
            pasted.f_ge(mask_thr_binary)?
        } else {
            // for visualisation: probabilities as 0..255 (truncated)
            pasted.f_mul_scalar(255.0)?.f_to_kind(Kind::Uint8)?
        };
        let mut slot = im_mask
            .f_narrow(0, start, len)?
            .f_narrow(1, win.y0, win.height())?
            .f_narrow(2, win.x0, win.width())?;
        slot.f_copy_(&binary)?;
    }
    Ok(im_mask)
}

fn mask_kind(mask_thr_binary: f64) -> Kind {
    if mask_thr_binary >= 0.0 {
        Kind::Bool
    } else {
        Kind::Uint8
    }
}

/// `((ori_H, ori_W), (w_scale, h_scale))` from the sample's meta.
fn meta_shapes(meta: &SampleMeta) -> ModelResult<((i64, i64), (f64, f64))> {
    let (h, w) = meta.ori_shape.ok_or_else(|| {
        ModelError::new(PASTE, "pasting masks needs ori_shape in the sample's meta")
    })?;
    let scale = meta.scale_factor.ok_or_else(|| {
        ModelError::new(
            PASTE,
            "pasting masks needs scale_factor in the sample's meta",
        )
    })?;
    Ok(((h as i64, w as i64), scale))
}

/// `mask_preds[range(K), labels][:, None]` when there is a map per class;
/// a single map (class-agnostic, or picked by the caller) is kept.
/// (K, C, h, w) -> (K, 1, h, w).
fn select_class(probs: &Tensor, labels: &Tensor, k: i64, c: i64) -> ModelResult<Tensor> {
    if c == 1 {
        return Ok(probs.shallow_clone());
    }
    if labels.size() != [k] {
        return Err(ModelError::new(
            PASTE,
            format!("labels must be ({k},), got {:?}", labels.size()),
        ));
    }
    let labels = labels.f_to_kind(Kind::Int64)?.f_to_device(probs.device())?;
    let (lo, hi) = (
        labels.f_min()?.int64_value(&[]),
        labels.f_max()?.int64_value(&[]),
    );
    if lo < 0 || hi >= c {
        return Err(ModelError::new(
            PASTE,
            format!("labels span [{lo}, {hi}] but mask_preds has {c} classes"),
        ));
    }
    let rows = Tensor::f_arange(k, (Kind::Int64, probs.device()))?;
    Ok(probs.f_index(&[Some(rows), Some(labels)])?.f_unsqueeze(1)?)
}

/// `torch.chunk(arange(K), num_chunks)` as `(start, len)` runs: one mask per
/// chunk on the CPU, else `ceil(K * H * W * 4 B / 1 GiB)` chunks.
fn chunks(k: i64, img_h: i64, img_w: i64, skip_empty: bool) -> ModelResult<Vec<(i64, i64)>> {
    let num_chunks = if skip_empty {
        k
    } else {
        let bytes = k as i128 * img_h as i128 * img_w as i128 * BYTES_PER_FLOAT as i128;
        let n = (bytes + GPU_MEM_LIMIT as i128 - 1) / GPU_MEM_LIMIT as i128;
        if n > k as i128 {
            return Err(ModelError::new(
                PASTE,
                format!("one {img_h}x{img_w} mask exceeds the 1 GiB paste chunk (mmdet's GPU_MEM_LIMIT)"),
            ));
        }
        (n as i64).max(1)
    };
    let size = (k + num_chunks - 1) / num_chunks;
    Ok((0..k)
        .step_by(size as usize)
        .map(|s| (s, size.min(k - s)))
        .collect())
}

/// The image rows `y0..y1` and columns `x0..x1` a paste covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub y0: i64,
    pub y1: i64,
    pub x0: i64,
    pub x1: i64,
}

impl Window {
    pub fn height(&self) -> i64 {
        self.y1 - self.y0
    }
    pub fn width(&self) -> i64 {
        self.x1 - self.x0
    }
}

/// `_do_paste_mask` (after detectron2's `paste_masks_in_image`): samples
/// each (h, w) mask at the centres of the image pixels its box covers,
/// bilinearly, with zeros outside the mask (`grid_sample`,
/// `align_corners=False`). `skip_empty` restricts the pixels to the window
/// around all boxes (`floor(min x1) - 1 .. ceil(max x2) + 1`, clipped),
/// else the whole `img_h x img_w` image.
/// masks: (N, 1, h, w) probabilities; boxes: (N, 4) float32 ->
/// ((N, y1 - y0, x1 - x0) float32, the window).
/// A window that mmdet's `arange` would refuse (a box wholly left of or
/// above the image) is empty here; with `skip_empty`, non-finite boxes are
/// an error (mmdet fails on them too); without, they are sampled as mmdet
/// does.
pub fn paste_masks(
    masks: &Tensor,
    boxes: &Tensor,
    img_h: i64,
    img_w: i64,
    skip_empty: bool,
) -> ModelResult<(Tensor, Window)> {
    let n = masks.size4()?.0;
    let boxes = boxes.f_to_kind(Kind::Float)?;
    let win = if skip_empty {
        window(&boxes, img_h, img_w)?
    } else {
        Window {
            y0: 0,
            y1: img_h,
            x0: 0,
            x1: img_w,
        }
    };
    let dev = boxes.device();
    if win.height() == 0 || win.width() == 0 {
        return Ok((
            Tensor::f_zeros([n, win.height(), win.width()], (Kind::Float, dev))?,
            win,
        ));
    }
    let coords = |lo: i64, hi: i64, col: i64| -> ModelResult<Tensor> {
        // (arange + 0.5 - b0) / (b1 - b0) * 2 - 1, in float32: (N, len)
        let px = Tensor::f_arange_start(lo, hi, (Kind::Int64, dev))?
            .f_to_kind(Kind::Float)?
            .f_add_scalar(0.5)?;
        let b0 = boxes.f_narrow(1, col, 1)?;
        let b1 = boxes.f_narrow(1, col + 2, 1)?;
        let t = px
            .f_sub(&b0)?
            .f_div(&b1.f_sub(&b0)?)?
            .f_mul_scalar(2.0)?
            .f_sub_scalar(1.0)?;
        // zero-size boxes: inf -> 0, as mmdet (NaN stays)
        Ok(t.f_masked_fill(&t.f_isinf()?, 0.0)?)
    };
    let gy = coords(win.y0, win.y1, 1)?; // (N, h')
    let gx = coords(win.x0, win.x1, 0)?; // (N, w')
    let (hh, ww) = (win.height(), win.width());
    let gx = gx.f_unsqueeze(1)?.f_expand([n, hh, ww], false)?;
    let gy = gy.f_unsqueeze(2)?.f_expand([n, hh, ww], false)?;
    let grid = Tensor::f_stack(&[gx, gy], 3)?; // (N, h', w', 2) [x, y]
                                               // bilinear (0), zeros padding (0), align_corners=False
    let out = masks
        .f_to_kind(Kind::Float)?
        .f_grid_sampler(&grid, 0, 0, false)?;
    Ok((out.f_select(1, 0)?, win))
}

/// The `skip_empty` window: `floor(min(x1, y1)) - 1` clipped at 0 and
/// `ceil(max(x2, y2)) + 1` clipped at the image, as int32 (truncation).
fn window(boxes: &Tensor, img_h: i64, img_w: i64) -> ModelResult<Window> {
    let host = boxes
        .f_to_device(Device::Cpu)?
        .f_contiguous()?
        .f_view([-1])?;
    let b = Vec::<f32>::try_from(&host).map_err(|e| ModelError::new(PASTE, e.to_string()))?;
    if b.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::new(
            PASTE,
            "a box to paste a mask into is not finite (diverged model?)",
        ));
    }
    let fold = |col: usize, init: f32, f: fn(f32, f32) -> f32| {
        b.iter().skip(col).step_by(4).fold(init, |a, &v| f(a, v))
    };
    let lo = |col| ((fold(col, f32::INFINITY, f32::min).floor() - 1.0).max(0.0)) as i64;
    let hi = |col, bound: i64| {
        ((fold(col, f32::NEG_INFINITY, f32::max).ceil() + 1.0).min(bound as f32)) as i64
    };
    let (x0, y0) = (lo(0).min(img_w), lo(1).min(img_h));
    let (x1, y1) = (hi(2, img_w).max(x0), hi(3, img_h).max(y0));
    Ok(Window { y0, y1, x0, x1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{assert_close, tensor};
    use crate::models::ops::masks::fixture::{assert_same, fixture};

    fn meta() -> SampleMeta {
        SampleMeta {
            ori_shape: Some((30, 40)),
            scale_factor: Some((1.5, 1.6)),
            ..Default::default()
        }
    }

    #[test]
    fn predict_matches_fcn_mask_head_on_cpu() {
        let fx = fixture();
        let (boxes, labels) = (tensor(fx, "paste.boxes"), tensor(fx, "paste.labels"));
        for rescale in [false, true] {
            for act in [false, true] {
                for thr in [0.5, -1.0] {
                    let key = format!(
                        "paste.r{}_a{}_t{}",
                        rescale as u8,
                        act as u8,
                        if thr < 0.0 { "n" } else { "05" }
                    );
                    let preds = tensor(fx, if act { "paste.probs" } else { "paste.logits" });
                    let got =
                        predict_by_feat_single(&preds, &boxes, &labels, &meta(), thr, rescale, act)
                            .unwrap();
                    assert_same(&got, &tensor(fx, &key), &key);
                }
            }
        }
        // QueryInst's call: class-selected logits, activate_map=False.
        let rows = Tensor::arange(7, (Kind::Int64, Device::Cpu));
        let picked = tensor(fx, "paste.logits")
            .index(&[Some(rows), Some(labels.shallow_clone())])
            .unsqueeze(1);
        let got = predict_masks(&picked, &boxes, &labels, &meta(), 0.5, true).unwrap();
        assert_same(&got, &tensor(fx, "paste.r1_a0_t05"), "predict_masks");
    }

    #[test]
    fn whole_image_paste_matches_mmdet() {
        // The GPU path's paste (skip_empty=False), run on the CPU.
        let fx = fixture();
        let rows = Tensor::arange(7, (Kind::Int64, Device::Cpu));
        let probs = tensor(fx, "paste.probs")
            .index(&[Some(rows), Some(tensor(fx, "paste.labels"))])
            .unsqueeze(1);
        let (got, win) = paste_masks(&probs, &tensor(fx, "paste.boxes"), 48, 60, false).unwrap();
        assert_eq!(
            win,
            Window {
                y0: 0,
                y1: 48,
                x0: 0,
                x1: 60
            }
        );
        assert_close(
            &got,
            &tensor(fx, "full.probs"),
            0.0,
            0.0,
            "whole-image paste",
        );
    }

    #[test]
    fn predict_without_detections() {
        let none = Tensor::zeros([0, 1, 28, 28], (Kind::Float, Device::Cpu));
        let boxes = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let labels = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        for (thr, kind) in [(0.5, Kind::Bool), (-1.0, Kind::Uint8)] {
            for rescale in [false, true] {
                let m = predict_masks(&none, &boxes, &labels, &meta(), thr, rescale).unwrap();
                assert_eq!((m.size(), m.kind()), (vec![0, 30, 40], kind));
            }
        }
        let nan = Tensor::from_slice(&[1.0f32, f32::NAN, 5., 5.]).view([1, 4]);
        let one = Tensor::zeros([1, 1, 28, 28], (Kind::Float, Device::Cpu));
        assert!(predict_masks(&one, &nan, &labels.ones_like(), &meta(), 0.5, true).is_err());
    }

    #[test]
    fn gpu_chunks_follow_torch_chunk() {
        // ceil(K * H * W * 4 / 1 GiB) chunks of ceil(K / chunks) masks.
        assert_eq!(chunks(5, 800, 1333, false).unwrap(), [(0, 5)]);
        assert_eq!(
            chunks(300, 1000, 1000, false).unwrap(),
            [(0, 150), (150, 150)]
        );
        assert_eq!(
            chunks(10, 10_000, 10_000, false).unwrap(),
            [(0, 3), (3, 3), (6, 3), (9, 1)]
        );
        assert_eq!(chunks(3, 10, 10, true).unwrap(), [(0, 1), (1, 1), (2, 1)]);
        assert!(chunks(2, 20_000, 20_000, false).is_err());
    }
}
