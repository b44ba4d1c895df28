//! What MMDetection's `BitmapMasks` / `PolygonMasks` do to instance masks
//! when the image is resized, flipped or padded (`mmdet/structures/mask/structures.py`).

use crate::data::image::{flip_planes, rescale_size, resize_nearest_planes};
use crate::data::{Flip, Masks};

/// `(height, width)` of the masks.
pub fn shape(masks: &Masks) -> (usize, usize) {
    match masks {
        Masks::Bitmap { height, width, .. } | Masks::Polygons { height, width, .. } => (*height, *width),
    }
}

/// `masks.rescale(scale)`: the size MMCV's `rescale_size` gives for the
/// masks' own size, then as [`resize`].
pub fn rescale(masks: &Masks, scale: (usize, usize)) -> Masks {
    let (h, w) = shape(masks);
    let ((new_w, new_h), _) = rescale_size((w, h), scale);
    resize(masks, new_h, new_w)
}

/// `masks.resize((height, width))`: bitmaps nearest-neighbour (as `cv2.INTER_NEAREST`),
/// polygon coordinates scaled by `new / old` per axis.
pub fn resize(masks: &Masks, out_h: usize, out_w: usize) -> Masks {
    match masks {
        Masks::Bitmap { data, count, height, width } => Masks::Bitmap {
            data: resize_nearest_planes(data, *count, *height, *width, 1, out_h, out_w),
            count: *count,
            height: out_h,
            width: out_w,
        },
        Masks::Polygons { polygons, height, width } => {
            let (sy, sx) = (out_h as f64 / *height as f64, out_w as f64 / *width as f64);
            let polygons = map_points(polygons, |x| x * sx, |y| y * sy);
            Masks::Polygons { polygons, height: out_h, width: out_w }
        }
    }
}

/// `masks.flip(direction)`, in place: polygons as `x' = width - x`, `y' = height - y`.
pub fn flip(masks: &mut Masks, direction: Flip) {
    match masks {
        Masks::Bitmap { data, height, width, .. } => flip_planes(data, *height, *width, 1, direction),
        Masks::Polygons { polygons, height, width } => {
            let (w, h) = (*width as f64, *height as f64);
            let (fx, fy) = (direction != Flip::Vertical, direction != Flip::Horizontal);
            *polygons = map_points(polygons, |x| if fx { w - x } else { x }, |y| if fy { h - y } else { y });
        }
    }
}

/// `masks.pad((height, width), pad_val)`: bitmaps padded at the bottom and
/// right; polygons only change their canvas size.
pub fn pad(masks: &Masks, out_h: usize, out_w: usize, pad_val: u8) -> Masks {
    match masks {
        Masks::Bitmap { data, count, height, width } => {
            let (h, w) = (out_h.max(*height), out_w.max(*width));
            let mut out = vec![pad_val; count * h * w];
            for (src, dst) in data.chunks_exact((height * width).max(1)).zip(out.chunks_exact_mut((h * w).max(1))) {
                for (s, d) in src.chunks_exact((*width).max(1)).zip(dst.chunks_exact_mut(w.max(1))) {
                    d[..*width].copy_from_slice(s);
                }
            }
            Masks::Bitmap { data: out, count: *count, height: h, width: w }
        }
        Masks::Polygons { polygons, .. } => Masks::Polygons { polygons: polygons.clone(), height: out_h, width: out_w },
    }
}

/// The masks of instances `keep`, in that order (indexing `masks[idx]`);
/// indices past the last mask are skipped.
pub fn select(masks: &Masks, keep: &[usize]) -> Masks {
    match masks {
        Masks::Bitmap { data, count, height, width } => {
            let plane = height * width;
            let mut out = Vec::with_capacity(keep.len() * plane);
            let keep: Vec<usize> = keep.iter().copied().filter(|&i| i < *count).collect();
            for &i in &keep {
                out.extend_from_slice(&data[i * plane..(i + 1) * plane]);
            }
            Masks::Bitmap { data: out, count: keep.len(), height: *height, width: *width }
        }
        Masks::Polygons { polygons, height, width } => Masks::Polygons {
            polygons: keep.iter().filter_map(|&i| polygons.get(i).cloned()).collect(),
            height: *height,
            width: *width,
        },
    }
}

/// Every `(x, y)` of every polygon mapped through `fx`, `fy`.
fn map_points(polygons: &[Vec<Vec<f64>>], fx: impl Fn(f64) -> f64, fy: impl Fn(f64) -> f64) -> Vec<Vec<Vec<f64>>> {
    polygons
        .iter()
        .map(|obj| {
            obj.iter()
                .map(|p| p.iter().enumerate().map(|(i, &v)| if i % 2 == 0 { fx(v) } else { fy(v) }).collect())
                .collect()
        })
        .collect()
}
