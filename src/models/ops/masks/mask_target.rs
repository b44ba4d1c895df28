//! Mask targets: `mask_target_single` (`mmdet/structures/mask/mask_target.py`)
//! with `BitmapMasks` / `PolygonMasks.crop_and_resize(binarize=True)`: each
//! positive's GT mask cropped by its box and resized to `mask_size`.
//!
//! Why a host RoIAlign here instead of `ops::roi_align`: binarising at
//! `>= 0.5` turns float rounding into flipped pixels. Boxes on integer or
//! clipped coordinates make many bins average to exactly 0.5 in real numbers,
//! and the float32 result falls just above or below 0.5 depending on the
//! order of the operations (the `grid_sample`-based `ops::roi_align` flipped 2
//! of 3276 target pixels of the reference test). So the targets follow
//! torchvision's CPU kernel (`roi_align_kernel.cpp`: per-RoI bilinear
//! weights, samples summed in row order, then divided by the count) op for op
//! in float32, which reproduces MMDetection's CPU targets bit for bit on any
//! device. (MMDetection on GPU runs mmcv's CUDA kernel, whose fused
//! multiply-adds round these ties differently again.) MMDetection keeps the
//! GT masks on the host and uploads all of them on every call, then reads the
//! targets back. Here, on CUDA, bitmap masks stay on the device:
//! `mask_target.cu`'s kernel does the same arithmetic, each float operation
//! rounded on its own, so its targets are the host's bit for bit (the tests
//! run it on the CPU against the host's) and nothing waits for the device.
//! Elsewhere (the CPU, polygons, `DETC_MASK_TARGETS=host`) the boxes, indices
//! and the masks the positives use come down once per call, and large boxes
//! are spread over a few threads (`mask_target_speed` below times a
//! COCO-sized case).
//!
//! Shape shorthand: `K` positives, `G` GT masks of the image, `Hm, Wm` the
//! mask canvas (the padded batch size in training), `h, w` the mask size.

use detc::evaluation::mask::Rle;
use tch::{Device, Kind, Tensor};

use crate::models::data_preprocessors::MaskTensors;
use crate::models::layers::{ModelError, ModelResult};
use crate::models::ops::upload::{to_host_later, upload, wait_for};

const NAME: &str = "mask_target";

/// `mask_target_single` with `binarize=True` (mmdet's default, no
/// `soft_mask_target`): (K, h, w) float32 of 0/1 on the proposals' device.
///
/// pos_proposals: (K, 4) x1y1x2y2 in the (resized, padded) image, taken as
/// float32 and clipped to the mask canvas `[0, Wm] x [0, Hm]` first, as mmdet
/// does; pos_assigned_gt_inds: (K,) indices into `gt_masks`; mask_size:
/// `(h, w)` (`mask_size: 28` is `(28, 28)`).
/// Bitmaps: RoIAlign (aligned, adaptive sampling, avg) of the mask, `>= 0.5`.
/// Polygons: each polygon shifted by the box corner, scaled by
/// `mask_size / max(box side, 1)` and rasterised as pycocotools does.
/// K == 0 gives (0, h, w). An index outside the `G` masks is an error (mmdet
/// raises, or returns a (0, h, w) target that the loss then rejects).
pub fn mask_target(
    pos_proposals: &Tensor,
    pos_assigned_gt_inds: &Tensor,
    gt_masks: &MaskTensors,
    mask_size: (i64, i64),
) -> ModelResult<Tensor> {
    mask_targets(&[PositivesOf { pos_proposals, pos_assigned_gt_inds, gt_masks }], mask_size)
}

/// One image's positives and ground-truth masks, for [`mask_targets`].
pub struct PositivesOf<'a> {
    pub pos_proposals: &'a Tensor,
    pub pos_assigned_gt_inds: &'a Tensor,
    pub gt_masks: &'a MaskTensors,
}

/// [`mask_target`] of each image of a batch, concatenated: (ΣK, h, w) on
/// the proposals' device. On CUDA with bitmap masks, the kernel's, without
/// a wait; otherwise every image's boxes and indices come down from the
/// device together, then the bitmap masks they use: at most two waits for
/// the device per batch, where one image at a time (as mmdet's
/// `mask_target` maps `mask_target_single`) waits two or three times each.
pub fn mask_targets(images: &[PositivesOf], mask_size: (i64, i64)) -> ModelResult<Tensor> {
    let (h, w) = mask_size;
    if h <= 0 || w <= 0 {
        return Err(ModelError::new(
            NAME,
            format!("mask_size must be positive, got ({h}, {w})"),
        ));
    }
    let device = images.first().map_or(Device::Cpu, |i| i.pos_proposals.device());
    for image in images {
        check_positives(image)?;
    }
    if let Some(targets) = on_the_device(images, mask_size)? {
        return Ok(targets);
    }
    // Each image's (K, G) and its boxes and indices on their way to the host.
    let mut pending = Vec::with_capacity(images.len());
    for image in images {
        let g = num_masks(image.gt_masks)?;
        let boxes = to_host_later(&image.pos_proposals.f_detach()?.f_to_kind(Kind::Float)?)?;
        let inds = to_host_later(&image.pos_assigned_gt_inds.f_to_kind(Kind::Int64)?)?;
        pending.push((g, boxes, inds));
    }
    wait_for(device);
    let mut picked = Vec::with_capacity(images.len());
    for (image, (g, boxes, inds)) in images.iter().zip(&pending) {
        let inds = gt_indices(inds, *g)?;
        let (hm, wm) = canvas(image.gt_masks)?;
        let boxes = clipped_boxes(boxes, hm, wm)?;
        // The bitmap masks the positives use, on their way to the host.
        let used = match image.gt_masks {
            MaskTensors::Bitmap(masks) if !inds.is_empty() => {
                let mut used = inds.clone();
                used.sort_unstable();
                used.dedup();
                let pick = upload(&used.iter().map(|&g| g as i64).collect::<Vec<_>>(), masks.device())?;
                let bytes = to_host_later(&masks.f_index_select(0, &pick)?.f_to_kind(Kind::Uint8)?)?;
                Some((used, bytes))
            }
            _ => None,
        };
        picked.push((inds, boxes, used));
    }
    if picked.iter().any(|p| p.2.is_some()) {
        wait_for(device);
    }
    let (h, w) = (h as usize, w as usize);
    let mut all = Vec::new();
    for (image, (inds, boxes, used)) in images.iter().zip(&picked) {
        match (image.gt_masks, used) {
            (MaskTensors::Bitmap(masks), Some((used, bytes))) => {
                let (_, hm, wm) = masks.size3()?;
                let bytes = Vec::<u8>::try_from(&bytes.f_view([-1])?).map_err(|e| ModelError::new(NAME, e.to_string()))?;
                all.extend(bitmap_targets(&bytes, used, (hm as usize, wm as usize), boxes, inds, (h, w)));
            }
            (MaskTensors::Polygons { polygons, .. }, _) => all.extend(polygon_targets(polygons, boxes, inds, (h, w))),
            _ => {}
        }
    }
    let total = (all.len() / (h * w)) as i64;
    Ok(upload(&all, device)?.f_view([total, h as i64, w as i64])?)
}

/// The positives' shapes: boxes (K, 4) and indices (K,).
fn check_positives(image: &PositivesOf) -> ModelResult<()> {
    let k = match image.pos_proposals.size().as_slice() {
        [k, 4] => *k,
        s => return Err(ModelError::new(NAME, format!("pos_proposals must be (K, 4), got {s:?}"))),
    };
    if image.pos_assigned_gt_inds.size() != [k] {
        return Err(ModelError::new(
            NAME,
            format!("pos_assigned_gt_inds must be ({k},), got {:?}", image.pos_assigned_gt_inds.size()),
        ));
    }
    Ok(())
}

/// `DETC_MASK_TARGETS`: `kernel` (the default) or `host`.
pub const IMPLEMENTATION_VAR: &str = "DETC_MASK_TARGETS";

/// Refuses a `DETC_MASK_TARGETS` other than `kernel` or `host`; `Ok(true)` for `host`.
pub fn check_implementation_setting() -> Result<bool, String> {
    crate::engine::native::kernel_or(IMPLEMENTATION_VAR, "host", "a mask-target implementation")
}

fn host_by_request() -> bool {
    static HOST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HOST.get_or_init(|| check_implementation_setting() == Ok(true))
}

/// The targets on CUDA, where every image's masks are bitmaps and the
/// kernels loaded (`None` otherwise): `mask_target.cu`'s kernel, image by
/// image, the host's numbers with nothing read back. The one check it
/// leaves out is that each index names one of the image's masks (the
/// assigners' indices do; one that does not gives an empty target), as
/// torch's `one_hot` checks its classes on the CPU only.
fn on_the_device(images: &[PositivesOf], mask_size: (i64, i64)) -> ModelResult<Option<Tensor>> {
    let Some(Device::Cuda(index)) = images.first().map(|i| i.pos_proposals.device()) else {
        return Ok(None);
    };
    let all_bitmaps = images.iter().all(|i| matches!(i.gt_masks, MaskTensors::Bitmap(_)));
    if !all_bitmaps || host_by_request() || crate::engine::native::roi_align::cuda_kernels(index).is_err() {
        return Ok(None);
    }
    kernel_targets(images, mask_size).map(Some)
}

/// Every image's targets from `mask_target.cu`'s kernel (emulated on the
/// CPU), concatenated; each image's masks must be bitmaps.
fn kernel_targets(images: &[PositivesOf], mask_size: (i64, i64)) -> ModelResult<Tensor> {
    let mut all = Vec::with_capacity(images.len());
    for image in images {
        let MaskTensors::Bitmap(masks) = image.gt_masks else {
            return Err(ModelError::new(NAME, "the mask-target kernel takes bitmap masks"));
        };
        num_masks(image.gt_masks)?;
        let boxes = image.pos_proposals.f_detach()?.f_to_kind(Kind::Float)?;
        let inds = image.pos_assigned_gt_inds.f_to_kind(Kind::Int64)?;
        let targets = crate::engine::native::mask_target_bitmap(masks, &boxes, &inds, mask_size)
            .map_err(|e| ModelError::new(NAME, e.to_string()))?;
        all.push(targets);
    }
    Ok(match all.len() {
        0 => Tensor::f_zeros([0, mask_size.0, mask_size.1], (Kind::Float, Device::Cpu))?,
        1 => all.remove(0),
        _ => Tensor::f_cat(&all, 0)?,
    })
}

fn num_masks(gt_masks: &MaskTensors) -> ModelResult<i64> {
    match gt_masks {
        MaskTensors::Bitmap(m) => match m.size().as_slice() {
            [g, _, _] => Ok(*g),
            s => Err(ModelError::new(
                NAME,
                format!("bitmap gt_masks must be (G, Hm, Wm), got {s:?}"),
            )),
        },
        MaskTensors::Polygons { polygons, .. } => Ok(polygons.len() as i64),
    }
}

/// `(Hm, Wm)`: `gt_masks.height, gt_masks.width`.
fn canvas(gt_masks: &MaskTensors) -> ModelResult<(usize, usize)> {
    match gt_masks {
        MaskTensors::Bitmap(m) => {
            let (_, hm, wm) = m.size3()?;
            Ok((hm as usize, wm as usize))
        }
        MaskTensors::Polygons { height, width, .. } => Ok((*height, *width)),
    }
}

/// The (K,) indices (int64, on the host), each checked against the `g` masks.
fn gt_indices(host: &Tensor, g: i64) -> ModelResult<Vec<usize>> {
    let v = Vec::<i64>::try_from(host).map_err(|e| ModelError::new(NAME, e.to_string()))?;
    v.iter()
        .map(|&i| {
            if (0..g).contains(&i) {
                Ok(i as usize)
            } else {
                Err(ModelError::new(
                    NAME,
                    format!("a positive is assigned to GT {i}, but the image has {g} masks"),
                ))
            }
        })
        .collect()
}

/// The (K, 4) float32 boxes (on the host), x clipped to `[0, Wm]` and y to
/// `[0, Hm]` (`np.clip`: NaN stays NaN).
fn clipped_boxes(host: &Tensor, hm: usize, wm: usize) -> ModelResult<Vec<[f32; 4]>> {
    let flat = Vec::<f32>::try_from(&host.f_view([-1])?)
        .map_err(|e| ModelError::new(NAME, e.to_string()))?;
    let clip = |v: f32, hi: f32| {
        if v < 0.0 {
            0.0
        } else if v > hi {
            hi
        } else {
            v
        }
    };
    let (hm, wm) = (hm as f32, wm as f32);
    Ok(flat
        .chunks_exact(4)
        .map(|b| {
            [
                clip(b[0], wm),
                clip(b[1], hm),
                clip(b[2], wm),
                clip(b[3], hm),
            ]
        })
        .collect())
}

/// `BitmapMasks.crop_and_resize(binarize=True)`: (K * h * w) 0/1 values.
/// `bytes` holds the masks `used` (ascending, the distinct `inds`), each
/// `hm x wm`.
fn bitmap_targets(
    bytes: &[u8],
    used: &[usize],
    (hm, wm): (usize, usize),
    boxes: &[[f32; 4]],
    inds: &[usize],
    size: (usize, usize),
) -> Vec<f32> {
    let plane = hm * wm;
    let per = size.0 * size.1;
    let one = |out: &mut [f32], b: &[f32; 4], g: &usize| {
        // `used` holds every index of `inds`, so the search always succeeds.
        let slot = used.binary_search(g).unwrap_or(0);
        let mask = &bytes[slot * plane..(slot + 1) * plane];
        roi_align_mask(mask, (hm, wm), *b, size, out);
        for v in out.iter_mut() {
            *v = if *v >= 0.5 { 1.0 } else { 0.0 };
        }
    };
    let mut out = vec![0.0f32; inds.len() * per];
    // The positives are independent: large boxes (a sample grid per bin of
    // up to ~30x50 on COCO canvases) are spread over a few threads.
    let area: f32 = boxes
        .iter()
        .map(|b| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0))
        .sum();
    let threads = if area > PARALLEL_AREA {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    } else {
        1
    };
    // Round-robin, so that a few large boxes land on different threads.
    let mut shares: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, task) in out.chunks_mut(per).zip(boxes).zip(inds).enumerate() {
        shares[i % threads].push(task);
    }
    std::thread::scope(|s| {
        for share in shares {
            s.spawn(move || {
                for ((o, b), g) in share {
                    one(o, b, g);
                }
            });
        }
    });
    out
}

/// Summed box area (px) above which the targets use several threads.
const PARALLEL_AREA: f32 = 262_144.0;
const MAX_THREADS: usize = 8;

/// Bilinear sample positions along one axis of a RoI (torchvision's
/// `pre_calc_for_bilinear_interpolate`, which is separable in y and x):
/// per bin `p` and sample `i`, `None` outside `[-1, size]`, else
/// `(low, high, l, 1 - l)` after clamping into the mask.
fn axis_samples(
    start: f32,
    bin: f32,
    grid: usize,
    pooled: usize,
    size: usize,
) -> Vec<Option<(usize, usize, f32, f32)>> {
    let mut out = Vec::with_capacity(pooled * grid);
    for p in 0..pooled {
        for i in 0..grid {
            // start + p * bin + (i + .5) * bin / grid, in float32
            let mut y = start + p as f32 * bin + (i as f32 + 0.5) * bin / grid as f32;
            if !(y >= -1.0 && y <= size as f32) {
                out.push(None);
                continue;
            }
            if y <= 0.0 {
                y = 0.0;
            }
            let mut low = y as usize;
            let high = if low >= size - 1 {
                low = size - 1;
                y = low as f32;
                low
            } else {
                low + 1
            };
            let l = y - low as f32;
            out.push(Some((low, high, l, 1.0 - l)));
        }
    }
    out
}

/// torchvision's CPU `roi_align` (aligned=True, spatial_scale 1,
/// sampling_ratio 0, avg) of one single-channel (Hm, Wm) 0/1 mask by box
/// `b`, in float32 and in the kernel's order, into `out` (h * w).
fn roi_align_mask(
    mask: &[u8],
    (hm, wm): (usize, usize),
    b: [f32; 4],
    (ph, pw): (usize, usize),
    out: &mut [f32],
) {
    if hm == 0 || wm == 0 {
        out.fill(0.0);
        return;
    }
    let (start_w, start_h) = (b[0] - 0.5, b[1] - 0.5);
    let (roi_w, roi_h) = ((b[2] - 0.5) - start_w, (b[3] - 0.5) - start_h);
    let (bin_h, bin_w) = (roi_h / ph as f32, roi_w / pw as f32);
    // ceil(roi / pooled) as int: <= 0 (or NaN) samples nothing, output 0.
    let grid = |roi: f32, pooled: usize| (roi / pooled as f32).ceil().max(0.0) as usize;
    let (gh, gw) = (grid(roi_h, ph), grid(roi_w, pw));
    let count = (gh * gw).max(1) as f32;
    let ys = axis_samples(start_h, bin_h, gh, ph, hm);
    let xs = axis_samples(start_w, bin_w, gw, pw, wm);
    let v = |y: usize, x: usize| mask[y * wm + x] as f32;
    for py in 0..ph {
        for px in 0..pw {
            let mut acc = 0.0f32;
            for sy in &ys[py * gh..(py + 1) * gh] {
                for sx in &xs[px * gw..(px + 1) * gw] {
                    let (Some((y0, y1, ly, hy)), Some((x0, x1, lx, hx))) = (sy, sx) else {
                        continue; // zero weights: adds 0
                    };
                    let (w1, w2, w3, w4) = (hy * hx, hy * lx, ly * hx, ly * lx);
                    acc +=
                        w1 * v(*y0, *x0) + w2 * v(*y0, *x1) + w3 * v(*y1, *x0) + w4 * v(*y1, *x1);
                }
            }
            out[py * pw + px] = acc / count;
        }
    }
}

/// `PolygonMasks.crop_and_resize` then `to_ndarray`: (K * h * w) 0/1 values.
/// The arithmetic follows numpy's types there: the box side is a float32
/// difference widened to f64 by `np.maximum(side, 1)`; the polygons are f64.
/// A box with a NaN coordinate gives an empty target.
fn polygon_targets(
    polygons: &[Vec<Vec<f64>>],
    boxes: &[[f32; 4]],
    inds: &[usize],
    (h, w): (usize, usize),
) -> Vec<f32> {
    let mut out = Vec::with_capacity(inds.len() * h * w);
    for (b, &g) in boxes.iter().zip(inds) {
        if b.iter().any(|v| v.is_nan()) {
            out.extend(std::iter::repeat_n(0.0, h * w));
            continue;
        }
        let (x0, y0) = (b[0] as f64, b[1] as f64);
        // max(side, 1) >= 1, so mmdet's further max(side, 0.1) never applies.
        let w_scale = w as f64 / ((b[2] - b[0]) as f64).max(1.0);
        let h_scale = h as f64 / ((b[3] - b[1]) as f64).max(1.0);
        let resized: Vec<Vec<f64>> = polygons[g]
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        if j % 2 == 0 {
                            (v - x0) * w_scale
                        } else {
                            (v - y0) * h_scale
                        }
                    })
                    .collect()
            })
            .collect();
        out.extend(rasterise(&resized, h, w));
    }
    out
}

/// `polygon_to_bitmap`: the union of the polygons (`frPyObjects` + `merge`),
/// decoded row-major as 0/1. An object without polygons (mmdet would fail)
/// is empty.
fn rasterise(polygons: &[Vec<f64>], h: usize, w: usize) -> Vec<f32> {
    let bits = Rle::from_polygons(polygons, h as u32, w as u32).to_row_major();
    if bits.len() != h * w {
        return vec![0.0; h * w];
    }
    bits.into_iter().map(f32::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::fixtures::tensor;
    use crate::models::ops::masks::fixture::{assert_same, fixture, polygons};

    #[test]
    fn mask_target_matches_mmdet() {
        let fx = fixture();
        let (boxes, inds) = (tensor(fx, "boxes"), tensor(fx, "inds"));
        let bitmap = MaskTensors::Bitmap(tensor(fx, "bitmap.masks"));
        let poly = polygons(fx);
        for (name, size) in [("s28", (28, 28)), ("s13x21", (13, 21))] {
            for (kind, masks) in [("bitmap", &bitmap), ("poly", &poly)] {
                let got = mask_target(&boxes, &inds, masks, size).unwrap();
                assert_same(
                    &got,
                    &tensor(fx, &format!("{kind}.{name}")),
                    &format!("{kind} {name}"),
                );
            }
        }
    }

    #[test]
    fn mask_target_matches_mmdet_at_ties() {
        let fx = fixture();
        let (boxes, inds) = (tensor(fx, "ties.boxes"), tensor(fx, "ties.inds"));
        let bitmap = MaskTensors::Bitmap(tensor(fx, "bitmap.masks"));
        let poly = polygons(fx);
        for (name, size) in [("s28", (28, 28)), ("s7", (7, 7))] {
            for (kind, masks) in [("bitmap", &bitmap), ("poly", &poly)] {
                let got = mask_target(&boxes, &inds, masks, size).unwrap();
                let key = format!("ties.{kind}.{name}");
                assert_same(&got, &tensor(fx, &key), &key);
            }
        }
    }

    /// A batch's targets, read back from the device together, are each
    /// image's in order, whatever the masks' kind and with an image
    /// without positives among them.
    #[test]
    fn mask_targets_of_a_batch_are_each_images_in_order() {
        let fx = fixture();
        let (boxes, inds) = (tensor(fx, "boxes"), tensor(fx, "inds"));
        let bitmap = MaskTensors::Bitmap(tensor(fx, "bitmap.masks"));
        let poly = polygons(fx);
        let none = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let no_inds = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let (head, tail) = (boxes.narrow(0, 0, 3), boxes.narrow(0, 3, boxes.size()[0] - 3));
        let (head_inds, tail_inds) = (inds.narrow(0, 0, 3), inds.narrow(0, 3, inds.size()[0] - 3));
        let batch = [
            PositivesOf { pos_proposals: &head, pos_assigned_gt_inds: &head_inds, gt_masks: &bitmap },
            PositivesOf { pos_proposals: &none, pos_assigned_gt_inds: &no_inds, gt_masks: &bitmap },
            PositivesOf { pos_proposals: &tail, pos_assigned_gt_inds: &tail_inds, gt_masks: &poly },
        ];
        let got = mask_targets(&batch, (28, 28)).unwrap();
        let want = Tensor::cat(
            &[
                mask_target(&head, &head_inds, &bitmap, (28, 28)).unwrap(),
                mask_target(&tail, &tail_inds, &poly, (28, 28)).unwrap(),
            ],
            0,
        );
        assert_eq!(got, want);
        let whole = [&tensor(fx, "bitmap.s28").narrow(0, 0, 3), &tensor(fx, "poly.s28").narrow(0, 3, tail.size()[0])];
        assert_same(&got, &Tensor::cat(&whole, 0), "a batch against mmdet");
        assert_eq!(mask_targets(&[], (7, 7)).unwrap().size(), [0, 7, 7]);
    }

    #[test]
    fn mask_target_edge_cases() {
        let fx = fixture();
        let bitmap = MaskTensors::Bitmap(tensor(fx, "bitmap.masks"));
        let none = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let no_inds = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
        let t = mask_target(&none, &no_inds, &bitmap, (13, 21)).unwrap();
        assert_eq!((t.size(), t.kind()), (vec![0, 13, 21], Kind::Float));
        let one = Tensor::from_slice(&[1.0f32, 2., 30., 20.]).view([1, 4]);
        let err = mask_target(&one, &Tensor::from_slice(&[3i64]), &bitmap, (28, 28)).unwrap_err();
        assert!(err.message.contains("GT 3"), "{err}");
        assert!(mask_target(&one, &no_inds, &bitmap, (28, 28)).is_err());
        assert!(mask_target(&one, &Tensor::from_slice(&[0i64]), &bitmap, (0, 28)).is_err());
        // NaN boxes sample nothing (torchvision: no samples; polygons: empty).
        let nan = Tensor::from_slice(&[f32::NAN, 2., 30., 20.]).view([1, 4]);
        for masks in [&bitmap, &polygons(fx)] {
            let t = mask_target(&nan, &Tensor::from_slice(&[0i64]), masks, (28, 28)).unwrap();
            assert_eq!(t.sum(Kind::Float).double_value(&[]), 0.0);
        }
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::models::layers::fixtures::tensor;
    use crate::models::ops::masks::fixture::fixture;

    fn kernel(boxes: &Tensor, inds: &Tensor, masks: &MaskTensors, size: (i64, i64)) -> Tensor {
        let image = PositivesOf { pos_proposals: boxes, pos_assigned_gt_inds: inds, gt_masks: masks };
        kernel_targets(&[image], size).unwrap()
    }

    /// `mask_target.cu`'s kernel, run on one CPU thread, gives the host's
    /// targets bit for bit: MMDetection's cases, its ties at 0.5, and boxes
    /// past the canvas, reversed, empty or NaN on a mask with a border.
    #[test]
    fn the_cuda_kernel_emulated_equals_the_host_bit_for_bit() {
        let fx = fixture();
        let bitmap = MaskTensors::Bitmap(tensor(fx, "bitmap.masks"));
        for prefix in ["", "ties."] {
            let (boxes, inds) = (tensor(fx, &format!("{prefix}boxes")), tensor(fx, &format!("{prefix}inds")));
            for size in [(28, 28), (13, 21), (7, 7)] {
                let want = mask_target(&boxes, &inds, &bitmap, size).unwrap();
                assert!(kernel(&boxes, &inds, &bitmap, size).equal(&want), "{prefix} {size:?}");
            }
        }
        tch::manual_seed(3);
        let masks = Tensor::rand([3, 37, 53], (Kind::Float, Device::Cpu)).ge(0.6).to_kind(Kind::Uint8);
        let _ = masks.narrow(1, 30, 7).fill_(0);
        let masks = MaskTensors::Bitmap(masks);
        let corners = Tensor::rand([40, 2], (Kind::Float, Device::Cpu)) * 70.0 - 8.0;
        let sides = Tensor::rand([40, 2], (Kind::Float, Device::Cpu)) * 40.0 - 4.0;
        let boxes = Tensor::cat(&[corners.shallow_clone(), corners + sides], 1).round();
        let _ = boxes.narrow(0, 0, 20).g_add_scalar_(0.25);
        let _ = boxes.get(5).get(2).fill_(f64::NAN);
        let _ = boxes.get(6).copy_(&Tensor::from_slice(&[10.0f32, 10., 10., 10.]));
        let inds = Tensor::arange(40, (Kind::Int64, Device::Cpu)).remainder(3);
        for size in [(28, 28), (5, 9)] {
            let want = mask_target(&boxes, &inds, &masks, size).unwrap();
            assert!(want.sum(Kind::Float).double_value(&[]) > 0.0);
            assert!(kernel(&boxes, &inds, &masks, size).equal(&want), "random boxes {size:?}");
        }
        // An index outside the masks, which the host refuses, is an empty target.
        let outside = Tensor::from_slice(&[0i64, 3, -1]);
        let t = kernel(&boxes.narrow(0, 0, 3), &outside, &masks, (7, 7));
        assert_eq!(t.sum_dim_intlist(&[1i64, 2][..], false, Kind::Float).narrow(0, 1, 2), Tensor::zeros([2], (Kind::Float, Device::Cpu)));
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// Timing, not a check: `cargo test --release --bin detc-engine mask_target_speed -- --ignored --nocapture`.
    /// One COCO-sized image: 20 GT masks on an 800x1344 canvas, 20 positives
    /// of about 150x200 px (a 6x8 sample grid per bin) and 2 of the whole image.
    #[test]
    #[ignore]
    fn mask_target_speed() {
        tch::manual_seed(0);
        let masks = Tensor::rand([20, 800, 1344], (Kind::Float, Device::Cpu))
            .ge(0.5)
            .to_kind(Kind::Uint8);
        let xy = Tensor::rand([22, 2], (Kind::Float, Device::Cpu)) * 1000.0;
        let wh = Tensor::from_slice(&[200.0f32, 150.0]).view([1, 2]);
        let boxes = Tensor::cat(&[xy.shallow_clone(), &xy + wh], 1);
        boxes
            .narrow(0, 20, 2)
            .copy_(&Tensor::from_slice(&[0.0f32, 0., 1344., 800.]).view([1, 4]));
        let inds = Tensor::arange(22, (Kind::Int64, Device::Cpu)).remainder(20);
        let bitmap = MaskTensors::Bitmap(masks);
        let n = 5;
        let t = std::time::Instant::now();
        for _ in 0..n {
            let _ = mask_target(&boxes, &inds, &bitmap, (28, 28)).unwrap();
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        println!("mask_target, 22 positives: {ms:.1} ms");
    }
}
