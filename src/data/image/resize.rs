//! `cv2.resize` for 8-bit images, reproduced to the bit (OpenCV 4.10,
//! `imgproc/src/resize.cpp`):
//!
//! - `INTER_LINEAR`: separable; source positions `(d + 0.5) * scale - 0.5`
//!   (half-pixel centres, no antialiasing when shrinking), weights rounded to
//!   11-bit fixed point (`INTER_RESIZE_COEF_BITS`), a horizontal pass into
//!   32-bit rows, then the vertical pass as OpenCV's SIMD kernel computes it
//!   (`VResizeLinearVec_32s8u`: rows shifted right by 4, 16-bit high
//!   multiplies, `(x + 2) >> 2`). Measured against `cv2.resize`: identical on
//!   every tested size, also where OpenCV switches to `INTER_AREA` for an
//!   exact halving (the two agree there).
//! - `INTER_NEAREST`: source index `floor(d * (1 / (dst / src)))`, clamped.
//!
//! Each source row is filtered horizontally once and kept while two
//! consecutive output rows need it, so the cost is one pass over the
//! source plus one over the output. Both passes run eight or sixteen
//! elements at a time with SSE2 (`pmaddwd`, `pmulhw`, as OpenCV's own
//! kernels), with a scalar twin for the tails and other architectures.

use super::Image;

/// Fixed-point scale of the weights (`INTER_RESIZE_COEF_SCALE = 1 << 11`).
const COEF_SCALE: f32 = 2048.0;

/// Source position and fixed-point weights of one output column or row.
#[derive(Clone, Copy)]
struct Tap {
    /// First source index (already clamped for columns).
    src0: usize,
    /// Second source index (equal to `src0` at the borders).
    src1: usize,
    w0: i32,
    w1: i32,
}

/// OpenCV's `(d + 0.5) * scale - 0.5` in double, narrowed to float, split
/// into the integer source index and the float fraction.
fn source_position(d: usize, scale: f64) -> (i64, f32) {
    let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
    let s = f.floor();
    (s as i64, f - s)
}

/// `saturate_cast<short>(c * INTER_RESIZE_COEF_SCALE)`: rounds half to even.
fn fixed(c: f32) -> i32 {
    (c * COEF_SCALE).round_ties_even() as i32
}

/// Horizontal taps: borders use the edge pixel at full weight, as OpenCV's
/// `HResizeLinear` does past `xmax`.
fn column_taps(src: usize, dst: usize) -> Vec<Tap> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let mut edge = false;
    (0..dst)
        .map(|d| {
            let (s, f) = source_position(d, scale);
            // OpenCV moves a negative position to 0 before testing the right border.
            edge |= s.max(0) + 1 >= src as i64;
            if edge {
                let s = s.clamp(0, src as i64 - 1) as usize;
                Tap { src0: s, src1: s, w0: 2048, w1: 0 }
            } else if s < 0 {
                Tap { src0: 0, src1: 1, w0: 2048, w1: 0 }
            } else {
                Tap { src0: s as usize, src1: s as usize + 1, w0: fixed(1.0 - f), w1: fixed(f) }
            }
        })
        .collect()
}

/// Vertical taps: rows are clamped into the image, weights kept as computed.
fn row_taps(src: usize, dst: usize) -> Vec<Tap> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let (s, f) = source_position(d, scale);
            Tap {
                src0: s.clamp(0, last) as usize,
                src1: (s + 1).clamp(0, last) as usize,
                w0: fixed(1.0 - f),
                w1: fixed(f),
            }
        })
        .collect()
}

/// `cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)`.
/// `width` and `height` must be positive and the image non-empty.
pub fn resize_linear(img: &Image, width: usize, height: usize) -> Image {
    let cn = img.channels;
    let mut out = Image { data: vec![0u8; width * height * cn], height, width, channels: cn };
    if img.data.is_empty() || out.data.is_empty() {
        return out;
    }
    let cols = column_taps(img.width, width);
    let rows = row_taps(img.height, height);
    let n = width * cn;
    // Per output element: the byte offsets of its two source values and
    // their weights, interleaved as the horizontal kernel reads them.
    let mut offsets = Vec::with_capacity(2 * n);
    let mut weights = Vec::with_capacity(2 * n);
    for t in &cols {
        for c in 0..cn {
            offsets.extend([(t.src0 * cn + c) as u32, (t.src1 * cn + c) as u32]);
            weights.extend([t.w0 as i16, t.w1 as i16]);
        }
    }
    let src_row = img.width * cn;
    let mut pairs = vec![0i16; 2 * n];
    let mut horizontal = |y: usize, buf: &mut [i16]| {
        let s = &img.data[y * src_row..(y + 1) * src_row];
        if cn == 3 && s.len() == src_row {
            // Per pixel: both source pixels' three channels at once. This
            // gather is the hottest loop of the pipeline, hence unchecked.
            for (p, o) in pairs.chunks_exact_mut(6).zip(offsets.chunks_exact(6)) {
                let (a, b) = (o[0] as usize, o[1] as usize);
                // SAFETY: `a` and `b` are `3 * x` for a source column `x <
                // img.width` (taps are clamped into the image), so `a + 2`
                // and `b + 2` are below `src_row == s.len()`.
                let v = unsafe {
                    [
                        *s.get_unchecked(a),
                        *s.get_unchecked(b),
                        *s.get_unchecked(a + 1),
                        *s.get_unchecked(b + 1),
                        *s.get_unchecked(a + 2),
                        *s.get_unchecked(b + 2),
                    ]
                };
                for (d, v) in p.iter_mut().zip(v) {
                    *d = v as i16;
                }
            }
        } else {
            for (p, &o) in pairs.iter_mut().zip(&offsets) {
                *p = s[o as usize] as i16;
            }
        }
        kernels::horizontal(&pairs, &weights, buf);
    };
    let (mut a, mut b) = (vec![0i16; n], vec![0i16; n]);
    let (mut ya, mut yb) = (usize::MAX, usize::MAX);
    for (t, dst) in rows.iter().zip(out.data.chunks_exact_mut(n)) {
        if yb == t.src0 {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut ya, &mut yb);
        }
        if ya != t.src0 {
            horizontal(t.src0, &mut a);
            ya = t.src0;
        }
        if yb != t.src1 {
            horizontal(t.src1, &mut b);
            yb = t.src1;
        }
        kernels::vertical(&a, &b, t.w0 as i16, t.w1 as i16, dst);
    }
    out
}

/// The two arithmetic kernels, exactly as OpenCV computes them. Rows hold
/// the horizontally filtered values already shifted right by 4 (the
/// vertical kernel never uses the low 4 bits), which fit in `i16`.
mod kernels {
    /// `out[k] = (p0 * w0 + p1 * w1) >> 4` for the interleaved pairs
    /// `(p0, p1)` and weights `(w0, w1)` of each element.
    pub fn horizontal(pairs: &[i16], weights: &[i16], out: &mut [i16]) {
        let done = simd::horizontal(pairs, weights, out);
        for ((o, p), w) in
            out[done..].iter_mut().zip(pairs[2 * done..].chunks_exact(2)).zip(weights[2 * done..].chunks_exact(2))
        {
            *o = ((p[0] as i32 * w[0] as i32 + p[1] as i32 * w[1] as i32) >> 4) as i16;
        }
    }

    /// OpenCV's `VResizeLinearVec_32s8u`, element by element:
    /// `(mulhi(r0, w0) + mulhi(r1, w1) + 2) >> 2`, saturated to u8.
    pub fn vertical(r0: &[i16], r1: &[i16], w0: i16, w1: i16, dst: &mut [u8]) {
        let done = simd::vertical(r0, r1, w0, w1, dst);
        for ((d, &x0), &x1) in dst[done..].iter_mut().zip(&r0[done..]).zip(&r1[done..]) {
            let v = ((x0 as i32 * w0 as i32) >> 16) + ((x1 as i32 * w1 as i32) >> 16);
            *d = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }

    /// SSE2 (part of every x86-64 CPU): eight elements at a time, the same
    /// integer operations as the scalar code. Each returns how many leading
    /// elements it wrote.
    #[cfg(target_arch = "x86_64")]
    mod simd {
        use std::arch::x86_64::*;

        // SAFETY (both functions): SSE2 is part of x86-64, and every load and
        // store reads or writes one 16-byte block at `k` with `k + 8` (or
        // `k + 16` bytes) within the slices' lengths, which `n` guarantees.

        pub fn horizontal(pairs: &[i16], weights: &[i16], out: &mut [i16]) -> usize {
            let n = out.len().min(pairs.len() / 2).min(weights.len() / 2) / 8 * 8;
            for k in (0..n).step_by(8) {
                unsafe {
                    let p = pairs.as_ptr().add(2 * k) as *const __m128i;
                    let w = weights.as_ptr().add(2 * k) as *const __m128i;
                    let lo = _mm_srai_epi32(_mm_madd_epi16(_mm_loadu_si128(p), _mm_loadu_si128(w)), 4);
                    let hi = _mm_srai_epi32(_mm_madd_epi16(_mm_loadu_si128(p.add(1)), _mm_loadu_si128(w.add(1))), 4);
                    _mm_storeu_si128(out.as_mut_ptr().add(k) as *mut __m128i, _mm_packs_epi32(lo, hi));
                }
            }
            n
        }

        pub fn vertical(r0: &[i16], r1: &[i16], w0: i16, w1: i16, dst: &mut [u8]) -> usize {
            let n = dst.len().min(r0.len()).min(r1.len()) / 16 * 16;
            unsafe {
                let (b0, b1, two) = (_mm_set1_epi16(w0), _mm_set1_epi16(w1), _mm_set1_epi16(2));
                let half = |x0: __m128i, x1: __m128i| {
                    let v = _mm_adds_epi16(_mm_mulhi_epi16(x0, b0), _mm_mulhi_epi16(x1, b1));
                    _mm_srai_epi16(_mm_adds_epi16(v, two), 2)
                };
                for k in (0..n).step_by(16) {
                    let (a, b) = (r0.as_ptr().add(k) as *const __m128i, r1.as_ptr().add(k) as *const __m128i);
                    let lo = half(_mm_loadu_si128(a), _mm_loadu_si128(b));
                    let hi = half(_mm_loadu_si128(a.add(1)), _mm_loadu_si128(b.add(1)));
                    _mm_storeu_si128(dst.as_mut_ptr().add(k) as *mut __m128i, _mm_packus_epi16(lo, hi));
                }
            }
            n
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    mod simd {
        pub fn horizontal(_: &[i16], _: &[i16], _: &mut [i16]) -> usize {
            0
        }
        pub fn vertical(_: &[i16], _: &[i16], _: i16, _: i16, _: &mut [u8]) -> usize {
            0
        }
    }
}

/// Source indices of `cv2.INTER_NEAREST`: `min(floor(d * (1 / (dst / src))), src - 1)`.
fn nearest_indices(src: usize, dst: usize) -> Vec<usize> {
    let inv = 1.0 / (dst as f64 / src as f64);
    (0..dst).map(|d| ((d as f64 * inv).floor() as usize).min(src - 1)).collect()
}

/// `cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST)`.
pub fn resize_nearest(img: &Image, width: usize, height: usize) -> Image {
    let data = resize_nearest_planes(&img.data, 1, img.height, img.width, img.channels, height, width);
    Image { data, height, width, channels: img.channels }
}

/// Nearest-neighbour resize of `count` planes of `height x width` pixels of
/// `channels` bytes, stored one after another (bitmap masks: one per instance).
pub fn resize_nearest_planes(
    data: &[u8],
    count: usize,
    height: usize,
    width: usize,
    channels: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<u8> {
    let (src_row, dst_row) = (width * channels, out_width * channels);
    let mut out = vec![0u8; count * out_height * dst_row];
    if height == 0 || width == 0 || out.is_empty() {
        return out;
    }
    let xs = nearest_indices(width, out_width);
    let ys = nearest_indices(height, out_height);
    for (src, dst) in data.chunks_exact(height * src_row).zip(out.chunks_exact_mut(out_height * dst_row)) {
        // (source row, whether it is all zero) of the previous output row
        let mut prev: Option<(usize, bool)> = None;
        for (dy, &sy) in ys.iter().enumerate() {
            let (done, rest) = dst.split_at_mut(dy * dst_row);
            let row = &mut rest[..dst_row];
            if let Some((py, zero)) = prev {
                if py == sy {
                    // consecutive output rows from the same source row: copy the previous one
                    if !zero {
                        row.copy_from_slice(&done[(dy - 1) * dst_row..]);
                    }
                    continue;
                }
            }
            let s = &src[sy * src_row..(sy + 1) * src_row];
            // Masks are mostly background: an all-zero source row leaves the
            // (zero-initialised) output row as it is.
            let zero = is_zero(s);
            prev = Some((sy, zero));
            if zero {
                continue;
            }
            if channels == 1 {
                row.iter_mut().zip(&xs).for_each(|(d, &sx)| *d = s[sx]);
            } else {
                for (d, &sx) in row.chunks_exact_mut(channels).zip(&xs) {
                    d.copy_from_slice(&s[sx * channels..sx * channels + channels]);
                }
            }
        }
    }
    out
}

/// Whether every byte is zero (an OR over 64-byte blocks, which vectorises).
fn is_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    let blocks_zero = blocks.all(|b| b.iter().fold(0u8, |acc, &v| acc | v) == 0);
    blocks_zero && blocks.remainder().iter().all(|&v| v == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_keeps_pixels() {
        let img = Image { data: (0..60).map(|v| (v * 4) as u8).collect(), height: 4, width: 5, channels: 3 };
        assert_eq!(resize_linear(&img, 5, 4), img);
        assert_eq!(resize_nearest(&img, 5, 4), img);
    }

    #[test]
    fn single_pixel_images_upscale() {
        // cv2.resize(np.full((1, 1, 3), (1, 2, 3), np.uint8), (3, 2)) repeats the pixel
        let img = Image { data: vec![1, 2, 3], height: 1, width: 1, channels: 3 };
        assert_eq!(resize_linear(&img, 3, 2).data, [1, 2, 3].repeat(6));
        // values from cv2.resize on these arrays (OpenCV 4.10)
        let col = Image { data: vec![10, 20], height: 2, width: 1, channels: 1 };
        assert_eq!(resize_linear(&col, 2, 2).data, [10, 10, 20, 20]);
        assert_eq!(resize_linear(&col, 3, 4).data, [10, 10, 10, 13, 13, 13, 18, 18, 18, 20, 20, 20]);
        let row = Image { data: vec![10, 20], height: 1, width: 2, channels: 1 };
        assert_eq!(resize_linear(&row, 4, 3).data, [10, 12, 17, 20, 10, 13, 18, 20, 10, 12, 17, 20]);
    }

    #[test]
    fn halving_averages_blocks() {
        // cv2.resize(np.array([[0, 10], [20, 31]], np.uint8), (1, 1)) == 15 (area: (61 + 2) >> 2)
        let img = Image { data: vec![0, 10, 20, 31], height: 2, width: 2, channels: 1 };
        assert_eq!(resize_linear(&img, 1, 1).data, vec![15]);
    }
}
