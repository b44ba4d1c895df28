//! Box ops the heads need, as MMDetection computes them:
//! `bbox_overlaps` (`mmdet/structures/bbox/bbox_overlaps.py`: IoU, IoF and
//! GIoU, pairwise or aligned, `eps=1e-6`), box format conversions, and
//! `DeltaXYWHBBoxCoder` (`mmdet/models/task_modules/coders/delta_xywh_bbox_coder.py`).
//!
//! Shape shorthand: `...` leading batch dims, `M`, `K` box counts; boxes are
//! `x1y1x2y2` unless named `cxcywh`.

use detc::registry::models::task_modules::DeltaXYWHBBoxCoderConfig;
use tch::{Kind, Tensor};

use crate::models::layers::{ModelError, ModelResult};
use super::{upload_as, upload_repeated};

/// What `bbox_overlaps` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapMode {
    /// Intersection over union.
    Iou,
    /// Intersection over the first box's area.
    Iof,
    /// Generalised IoU (Rezatofighi et al., 2019).
    Giou,
}

fn area(b: &Tensor) -> ModelResult<Tensor> {
    let w = b.f_select(-1, 2)?.f_sub(&b.f_select(-1, 0)?)?;
    let h = b.f_select(-1, 3)?.f_sub(&b.f_select(-1, 1)?)?;
    Ok(w.f_mul(&h)?)
}

/// `bbox_overlaps(bboxes1, bboxes2, mode, is_aligned, eps=1e-6)`.
/// Pairwise: (..., M, 4), (..., K, 4) -> (..., M, K); aligned: (..., M, 4)
/// twice -> (..., M).
pub fn bbox_overlaps(
    b1: &Tensor,
    b2: &Tensor,
    mode: OverlapMode,
    aligned: bool,
) -> ModelResult<Tensor> {
    let (s1, s2) = (b1.size(), b2.size());
    if s1.last() != Some(&4) || s2.last() != Some(&4) {
        return Err(ModelError::new(
            "bbox_overlaps",
            format!("boxes must end in 4 coordinates, got {s1:?} and {s2:?}"),
        ));
    }
    if aligned && s1 != s2 {
        return Err(ModelError::new(
            "bbox_overlaps",
            format!("aligned boxes must have one shape, got {s1:?} and {s2:?}"),
        ));
    }
    let eps = 1e-6;
    let (area1, area2) = (area(b1)?, area(b2)?);
    // Broadcast views: aligned (..., M, 2) both; pairwise (..., M, 1, 2) vs (..., 1, K, 2).
    let (p1, p2, a1, a2) = if aligned {
        (b1.shallow_clone(), b2.shallow_clone(), area1, area2)
    } else {
        (
            b1.f_unsqueeze(-2)?,
            b2.f_unsqueeze(-3)?,
            area1.f_unsqueeze(-1)?,
            area2.f_unsqueeze(-2)?,
        )
    };
    let (lo1, hi1) = (p1.f_narrow(-1, 0, 2)?, p1.f_narrow(-1, 2, 2)?);
    let (lo2, hi2) = (p2.f_narrow(-1, 0, 2)?, p2.f_narrow(-1, 2, 2)?);
    let wh = hi1
        .f_minimum(&hi2)?
        .f_sub(&lo1.f_maximum(&lo2)?)?
        .f_clamp_min(0.0)?;
    let overlap = wh.f_select(-1, 0)?.f_mul(&wh.f_select(-1, 1)?)?;
    let union = match mode {
        OverlapMode::Iof => a1.shallow_clone(),
        _ => a1.f_add(&a2)?.f_sub(&overlap)?,
    };
    let union = union.f_clamp_min(eps)?;
    let ious = overlap.f_div(&union)?;
    if mode != OverlapMode::Giou {
        return Ok(ious);
    }
    let ewh = hi1
        .f_maximum(&hi2)?
        .f_sub(&lo1.f_minimum(&lo2)?)?
        .f_clamp_min(0.0)?;
    let enclose = ewh
        .f_select(-1, 0)?
        .f_mul(&ewh.f_select(-1, 1)?)?
        .f_clamp_min(eps)?;
    Ok(ious.f_sub(&enclose.f_sub(&union)?.f_div(&enclose)?)?)
}

/// (..., 4) x1y1x2y2 -> (..., 4) cx cy w h (`bbox_xyxy_to_cxcywh`).
pub fn xyxy_to_cxcywh(b: &Tensor) -> ModelResult<Tensor> {
    let (lo, hi) = (b.f_narrow(-1, 0, 2)?, b.f_narrow(-1, 2, 2)?);
    Ok(Tensor::f_cat(
        &[lo.f_add(&hi)?.f_div_scalar(2.0)?, hi.f_sub(&lo)?],
        -1,
    )?)
}

/// (..., 4) cx cy w h -> (..., 4) x1y1x2y2 (`bbox_cxcywh_to_xyxy`).
pub fn cxcywh_to_xyxy(b: &Tensor) -> ModelResult<Tensor> {
    let (c, wh) = (b.f_narrow(-1, 0, 2)?, b.f_narrow(-1, 2, 2)?);
    let half = wh.f_mul_scalar(0.5)?;
    Ok(Tensor::f_cat(&[c.f_sub(&half)?, c.f_add(&half)?], -1)?)
}

/// `distance2bbox`: points (M, 2) and distances (M, 4) (left, top, right,
/// bottom) -> boxes (M, 4), clamped to `max_shape` `(h, w)` when given.
pub fn distance2bbox(points: &Tensor, distances: &Tensor, max_shape: Option<(f64, f64)>) -> ModelResult<Tensor> {
    let (px, py) = (points.f_select(1, 0)?, points.f_select(1, 1)?);
    let d = |i: i64| distances.f_select(1, i);
    let (mut x1, mut y1) = (px.f_sub(&d(0)?)?, py.f_sub(&d(1)?)?);
    let (mut x2, mut y2) = (px.f_add(&d(2)?)?, py.f_add(&d(3)?)?);
    if let Some((h, w)) = max_shape {
        x1 = x1.f_clamp(0.0, w)?;
        x2 = x2.f_clamp(0.0, w)?;
        y1 = y1.f_clamp(0.0, h)?;
        y2 = y2.f_clamp(0.0, h)?;
    }
    Ok(Tensor::f_stack(&[x1, y1, x2, y2], -1)?)
}

/// `bbox2distance` (`DistancePointBBoxCoder.encode`): points (M, 2) and boxes
/// (M, 4) -> the (M, 4) distances of each point to the box's left, top,
/// right and bottom, clamped to `[0, max_dis - eps]` when `max_dis` is given.
pub fn bbox2distance(points: &Tensor, bboxes: &Tensor, max_dis: Option<f64>, eps: f64) -> ModelResult<Tensor> {
    let (px, py) = (points.f_select(1, 0)?, points.f_select(1, 1)?);
    let b = |i: i64| bboxes.f_select(1, i);
    let sides = [px.f_sub(&b(0)?)?, py.f_sub(&b(1)?)?, b(2)?.f_sub(&px)?, b(3)?.f_sub(&py)?];
    let sides = match max_dis {
        Some(m) => sides.iter().map(|d| d.f_clamp(0.0, m - eps)).collect::<Result<Vec<_>, _>>()?,
        None => Vec::from(sides),
    };
    Ok(Tensor::f_stack(&sides, -1)?)
}

/// `DeltaXYWHBBoxCoder`: boxes as `((gx-px)/pw, (gy-py)/ph, log(gw/pw), log(gh/ph))`,
/// normalised by `target_means` / `target_stds`. `legacy` is
/// `LegacyDeltaXYWHBBoxCoder` (MMDetection 1.x): widths and heights are
/// `x2 - x1 + 1`, and decoded boxes are clamped to `[0, w - 1]`, `[0, h - 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaXYWHBBoxCoder {
    pub means: [f64; 4],
    pub stds: [f64; 4],
    pub clip_border: bool,
    pub add_ctr_clamp: bool,
    pub ctr_clamp: f64,
    pub legacy: bool,
}

impl DeltaXYWHBBoxCoder {
    pub fn new(cfg: &DeltaXYWHBBoxCoderConfig) -> Self {
        DeltaXYWHBBoxCoder {
            means: cfg.target_means,
            stds: cfg.target_stds,
            clip_border: cfg.clip_border,
            add_ctr_clamp: cfg.add_ctr_clamp,
            ctr_clamp: cfg.ctr_clamp as f64,
            legacy: false,
        }
    }

    /// A head's `bbox_coder` (`owner` names it in errors): `DeltaXYWHBBoxCoder`
    /// or `LegacyDeltaXYWHBBoxCoder`.
    pub fn from_cfg(cfg: &detc::registry::refs::BBoxCoderCfg, owner: &str) -> ModelResult<Self> {
        use crate::models::losses::{cfg_type, parse_cfg};
        match cfg_type(&cfg.0, owner)? {
            "DeltaXYWHBBoxCoder" => Ok(Self::new(&parse_cfg(&cfg.0, "DeltaXYWHBBoxCoder")?)),
            "LegacyDeltaXYWHBBoxCoder" => {
                let c: detc::registry::models::task_modules::LegacyDeltaXYWHBBoxCoderConfig =
                    parse_cfg(&cfg.0, "LegacyDeltaXYWHBBoxCoder")?;
                Ok(DeltaXYWHBBoxCoder {
                    means: c.target_means,
                    stds: c.target_stds,
                    clip_border: true,
                    add_ctr_clamp: false,
                    ctr_clamp: 0.0,
                    legacy: true,
                })
            }
            other => Err(ModelError::new(
                owner,
                format!("bbox coder {other:?} is not supported (DeltaXYWHBBoxCoder and LegacyDeltaXYWHBBoxCoder are)"),
            )),
        }
    }

    /// The extra pixel of a legacy width.
    fn one(&self) -> f64 {
        if self.legacy { 1.0 } else { 0.0 }
    }

    fn consts(&self, like: &Tensor) -> ModelResult<(Tensor, Tensor)> {
        let opts = (like.kind(), like.device());
        let to = |v: &[f64; 4]| -> ModelResult<Tensor> {
            Ok(upload_as(v, opts.0, opts.1)?)
        };
        Ok((to(&self.means)?, to(&self.stds)?))
    }

    /// `bbox2delta`: proposals, gt (..., 4) -> deltas (..., 4).
    pub fn encode(&self, proposals: &Tensor, gt: &Tensor) -> ModelResult<Tensor> {
        if proposals.size() != gt.size() {
            return Err(ModelError::new(
                "DeltaXYWHBBoxCoder",
                format!(
                    "encode needs boxes of one shape, got {:?} and {:?}",
                    proposals.size(),
                    gt.size()
                ),
            ));
        }
        let (p, g) = (
            xyxy_to_cxcywh(&proposals.f_to_kind(Kind::Float)?)?,
            xyxy_to_cxcywh(&gt.f_to_kind(Kind::Float)?)?,
        );
        let (pc, pwh) = (p.f_narrow(-1, 0, 2)?, p.f_narrow(-1, 2, 2)?.f_add_scalar(self.one())?);
        let (gc, gwh) = (g.f_narrow(-1, 0, 2)?, g.f_narrow(-1, 2, 2)?.f_add_scalar(self.one())?);
        let dxy = gc.f_sub(&pc)?.f_div(&pwh)?;
        let dwh = gwh.f_div(&pwh)?.f_log()?;
        let deltas = Tensor::f_cat(&[dxy, dwh], -1)?;
        let (means, stds) = self.consts(&deltas)?;
        Ok(deltas.f_sub(&means)?.f_div(&stds)?)
    }

    /// `delta2bbox`: rois (M, 4), deltas (M, 4*K) -> boxes (M, 4*K); the
    /// size ratio is clipped at `|log(16/1000)|`, and with `clip_border`
    /// boxes are clamped to `max_shape` `(h, w)` when given.
    pub fn decode(
        &self,
        rois: &Tensor,
        deltas: &Tensor,
        max_shape: Option<(f64, f64)>,
    ) -> ModelResult<Tensor> {
        let rows = deltas.size().first().copied().unwrap_or(0);
        self.decode_images(rois, deltas, max_shape.map(|s| vec![(s, rows)]).as_deref())
    }

    /// [`decode`](Self::decode) of several images' rows at once: with
    /// `clip_border`, each image's `count` consecutive rows are clamped to
    /// its own `(h, w)` (`images`: `((h, w), count)` in row order), the
    /// numbers of decoding each image alone.
    pub fn decode_images(
        &self,
        rois: &Tensor,
        deltas: &Tensor,
        images: Option<&[((f64, f64), i64)]>,
    ) -> ModelResult<Tensor> {
        let (m, k4) = deltas.size2().map_err(|e| {
            ModelError::new(
                "DeltaXYWHBBoxCoder",
                format!("deltas must be (M, 4*K): {e}"),
            )
        })?;
        if m == 0 {
            return Ok(deltas.shallow_clone());
        }
        if k4 % 4 != 0 || rois.size() != [m, 4] {
            return Err(ModelError::new(
                "DeltaXYWHBBoxCoder",
                format!(
                    "decode needs rois (M, 4) and deltas (M, 4*K), got {:?} and {:?}",
                    rois.size(),
                    deltas.size()
                ),
            ));
        }
        let k = k4 / 4;
        let d = deltas.f_reshape([-1, 4])?;
        let (means, stds) = self.consts(&d)?;
        let d = d.f_mul(&stds)?.f_add(&means)?;
        let (dxy, dwh) = (d.f_narrow(-1, 0, 2)?, d.f_narrow(-1, 2, 2)?);
        // (M, 4) -> (M, 4*K) -> (M*K, 4)
        let r = rois.f_repeat([1, k])?.f_reshape([-1, 4])?;
        let (lo, hi) = (r.f_narrow(-1, 0, 2)?, r.f_narrow(-1, 2, 2)?);
        let pxy = lo.f_add(&hi)?.f_mul_scalar(0.5)?;
        let pwh = hi.f_sub(&lo)?.f_add_scalar(self.one())?;
        let mut dxy_wh = pwh.f_mul(&dxy)?;
        let max_ratio = (16.0f64 / 1000.0).ln().abs();
        let dwh = if self.add_ctr_clamp {
            dxy_wh = dxy_wh.f_clamp(-self.ctr_clamp, self.ctr_clamp)?;
            dwh.f_clamp_max(max_ratio)?
        } else {
            dwh.f_clamp(-max_ratio, max_ratio)?
        };
        let gxy = pxy.f_add(&dxy_wh)?;
        let half = pwh.f_mul(&dwh.f_exp()?)?.f_mul_scalar(0.5)?;
        let mut boxes = Tensor::f_cat(&[gxy.f_sub(&half)?, gxy.f_add(&half)?], -1)?;
        if let (true, Some(images)) = (self.clip_border, images) {
            let counted: i64 = images.iter().map(|&(_, n)| n).sum();
            if counted != m {
                return Err(ModelError::new(
                    "DeltaXYWHBBoxCoder",
                    format!("decode was given the shapes of {counted} rows for {m}"),
                ));
            }
            let whwh = |(h, w): (f64, f64)| [w - self.one(), h - self.one(), w - self.one(), h - self.one()];
            let hi = if let [(shape, _)] = images {
                upload_as(&whwh(*shape), boxes.kind(), boxes.device())?
            } else {
                // A row of bounds per roi, the same for its K boxes.
                let rows: Vec<_> = images.iter().map(|&(shape, n)| (whwh(shape), n)).collect();
                upload_repeated(&rows, boxes.kind(), boxes.device())?.f_view([m, 1, 4])?
            };
            boxes = boxes.f_view([m, k, 4])?.f_clamp_min(0.0)?.f_minimum(&hi)?;
        }
        Ok(boxes.f_reshape([m, k4])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::{self, assert_close, tensor};

    #[test]
    fn overlaps_match_torchvision_and_mmdet() {
        let fx = &fixtures::get().boxes;
        let (a, b, a2) = (tensor(fx, "a"), tensor(fx, "b"), tensor(fx, "a2"));
        let giou = bbox_overlaps(&a, &b, OverlapMode::Giou, false).unwrap();
        assert_close(
            &giou,
            &tensor(fx, "tv_giou"),
            1e-6,
            1e-6,
            "GIoU vs torchvision",
        );
        assert_close(&giou, &tensor(fx, "mm_giou"), 1e-6, 1e-6, "GIoU vs mmdet");
        let iou = bbox_overlaps(&a, &b, OverlapMode::Iou, false).unwrap();
        assert_close(
            &iou,
            &tensor(fx, "tv_iou"),
            1e-6,
            1e-6,
            "IoU vs torchvision",
        );
        assert_close(&iou, &tensor(fx, "mm_iou"), 1e-6, 1e-6, "IoU vs mmdet");
        let iof = bbox_overlaps(&a, &b, OverlapMode::Iof, false).unwrap();
        assert_close(&iof, &tensor(fx, "mm_iof"), 1e-6, 1e-6, "IoF vs mmdet");
        let al = bbox_overlaps(&a2, &b, OverlapMode::Giou, true).unwrap();
        assert_close(
            &al,
            &tensor(fx, "mm_giou_aligned"),
            1e-6,
            1e-6,
            "aligned GIoU vs mmdet",
        );
        assert!(bbox_overlaps(&a, &b, OverlapMode::Iou, true).is_err());
    }

    #[test]
    fn delta_coder_matches_mmdet() {
        let fx = &fixtures::get().boxes;
        let cfg: DeltaXYWHBBoxCoderConfig = serde_json::from_value(serde_json::json!({
            "target_means": [0.1, -0.1, 0.05, 0.0], "target_stds": [0.5, 0.5, 1.0, 1.0], "clip_border": false
        }))
        .unwrap();
        let coder = DeltaXYWHBBoxCoder::new(&cfg);
        let (a2, b, deltas) = (tensor(fx, "a2"), tensor(fx, "b"), tensor(fx, "deltas"));
        assert_close(
            &coder.encode(&a2, &b).unwrap(),
            &tensor(fx, "enc"),
            1e-5,
            1e-5,
            "encode",
        );
        assert_close(
            &coder.decode(&a2, &deltas, None).unwrap(),
            &tensor(fx, "dec"),
            1e-4,
            1e-5,
            "decode",
        );
        let clip = DeltaXYWHBBoxCoder {
            clip_border: true,
            ..coder.clone()
        };
        assert_close(
            &clip.decode(&a2, &deltas, Some((90.0, 120.0))).unwrap(),
            &tensor(fx, "dec_clip"),
            1e-4,
            1e-5,
            "decode clipped",
        );
        // decode inverts encode
        let back = coder
            .decode(&a2, &coder.encode(&a2, &b).unwrap(), None)
            .unwrap();
        assert_close(&back, &b, 1e-3, 1e-5, "round trip");
    }

    #[test]
    fn decoding_images_at_once_clamps_each_to_its_own_shape() {
        let coder = DeltaXYWHBBoxCoder::new(&serde_json::from_value(serde_json::json!({})).unwrap());
        tch::manual_seed(0);
        let rois = (Tensor::rand([7, 2], (Kind::Float, tch::Device::Cpu)) * 60.0).repeat([1, 2])
            + Tensor::from_slice(&[0.0f32, 0.0, 30.0, 40.0]);
        // K = 2 classes, with deltas that push boxes past either border.
        let deltas = Tensor::randn([7, 8], (Kind::Float, tch::Device::Cpu)) * 2.0;
        let images = [((50.0, 70.0), 3), ((90.0, 40.0), 4)];
        let together = coder.decode_images(&rois, &deltas, Some(&images)).unwrap();
        let alone = Tensor::cat(
            &[
                coder.decode(&rois.narrow(0, 0, 3), &deltas.narrow(0, 0, 3), Some((50.0, 70.0))).unwrap(),
                coder.decode(&rois.narrow(0, 3, 4), &deltas.narrow(0, 3, 4), Some((90.0, 40.0))).unwrap(),
            ],
            0,
        );
        assert!(together.equal(&alone), "{together} {alone}");
        let unclamped = coder.decode(&rois, &deltas, None).unwrap();
        assert!(!together.equal(&unclamped), "the deltas should reach a border");
        let wrong = [((50.0, 70.0), 3), ((90.0, 40.0), 3)];
        assert!(coder.decode_images(&rois, &deltas, Some(&wrong)).is_err());
    }

    #[test]
    fn format_conversions_invert() {
        let b = Tensor::from_slice(&[1.0f32, 2.0, 5.0, 10.0]).view([1, 4]);
        let c = xyxy_to_cxcywh(&b).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(c.view([-1])).unwrap(),
            [3.0, 6.0, 4.0, 8.0]
        );
        assert_eq!(
            Vec::<f32>::try_from(cxcywh_to_xyxy(&c).unwrap().view([-1])).unwrap(),
            [1.0, 2.0, 5.0, 10.0]
        );
    }
}
