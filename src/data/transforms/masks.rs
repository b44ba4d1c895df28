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

/// `BitmapMasks.crop(bbox)` with `bbox = [x1, y1, x2, y2]`: the box clipped
/// to the masks, at least one pixel wide and high. Bitmaps only (`RandomCrop`
/// refuses polygons before this).
pub fn crop(masks: &Masks, x1: usize, y1: usize, x2: usize, y2: usize) -> Masks {
    let Masks::Bitmap { data, count, height, width } = masks else {
        return masks.clone();
    };
    let (x1, x2) = (x1.min(*width), x2.min(*width));
    let (y1, y2) = (y1.min(*height), y2.min(*height));
    let (w, h) = (x2.saturating_sub(x1).max(1), y2.saturating_sub(y1).max(1));
    // numpy's slice `[y1:y1 + h, x1:x1 + w]` stops at the edge.
    let (rows, cols) = ((y1 + h).min(*height) - y1, (x1 + w).min(*width) - x1);
    let mut out = Vec::with_capacity(count * rows * cols);
    for plane in data.chunks_exact((height * width).max(1)).take(*count) {
        for y in y1..y1 + rows {
            out.extend_from_slice(&plane[y * width + x1..y * width + x1 + cols]);
        }
    }
    Masks::Bitmap { data: out, count: *count, height: rows, width: cols }
}

/// `BitmapMasks.get_bboxes()`: per mask `[x_min, y_min, x_max + 1, y_max + 1]`
/// of its set pixels, zeros for an empty one.
pub fn bitmap_boxes(masks: &Masks) -> Vec<[f32; 4]> {
    let Masks::Bitmap { data, count, height, width } = masks else {
        return Vec::new();
    };
    let plane = (height * width).max(1);
    data.chunks_exact(plane)
        .take(*count)
        .map(|m| {
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for (i, _) in m.iter().enumerate().filter(|(_, &v)| v != 0) {
                let (y, x) = (i / width, i % width);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
            if x0 == usize::MAX {
                [0.0; 4]
            } else {
                [x0 as f32, y0 as f32, (x1 + 1) as f32, (y1 + 1) as f32]
            }
        })
        .collect()
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
