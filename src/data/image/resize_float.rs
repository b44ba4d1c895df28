//! `cv2.resize(img, (width, height), interpolation=INTER_LINEAR)` for a
//! float64 image, as the opencv-python wheels compute it.
//!
//! Those wheels hand float64 linear resizes to Intel IPP (`ipp_resize` in
//! OpenCV 4.10's `imgproc/src/resize.cpp`), whose arithmetic is not
//! published; with IPP off, OpenCV's own kernel (float weights, which need
//! not sum to 1) gives results IPP does not, e.g. `113.99999...` for a
//! region of `114.0`. detc uses what agrees best with IPP of what we
//! measured: half-pixel positions in double, edge pixels replicated, and
//! `a + (b - a) * t` per axis, horizontal first, which keeps constant
//! regions exact. Truncated to 8 bits, as `CachedMixUp` uses it, it differs
//! from cv2 on about 2 channel values in 10,000 (where the result is within
//! 1e-13 of an integer), by one. An exact halving of both sides is
//! `INTER_AREA`'s 2x2 mean, as OpenCV switches to it.
//!
//! `CachedMixUp` needs it: with a float `pad_val` (MMDetection's default
//! `114.0`) its canvas is a float64 array, which MMCV resizes as such before
//! truncating to 8 bits.

/// Source columns (or rows) and the weight of the second one.
#[derive(Clone, Copy)]
struct Tap {
    src0: usize,
    src1: usize,
    frac: f64,
}

/// Position `(d + 0.5) * src / dst - 0.5` in double, the two source
/// indices around it clamped into `0..src` (the edge replicated).
fn taps(src: usize, dst: usize) -> Vec<Tap> {
    let scale = src as f64 / dst as f64;
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let f = (d as f64 + 0.5) * scale - 0.5;
            let s = f.floor();
            Tap { src0: (s as i64).clamp(0, last) as usize, src1: (s as i64 + 1).clamp(0, last) as usize, frac: f - s }
        })
        .collect()
}

/// `a + (b - a) * frac`: exact where `a == b`, as IPP's results are.
fn lerp(a: f64, b: f64, frac: f64) -> f64 {
    a + (b - a) * frac
}

/// `data` (`height x width x channels`, row-major) resized to `out_w x out_h`.
/// All sizes must be positive.
pub fn resize_linear_f64(
    data: &[f64],
    (height, width, channels): (usize, usize, usize),
    out_w: usize,
    out_h: usize,
) -> Vec<f64> {
    let cn = channels;
    if (out_w, out_h) == (width, height) {
        return data.to_vec();
    }
    if width == 2 * out_w && height == 2 * out_h {
        return halve(data, (height, width, cn));
    }
    let cols = taps(width, out_w);
    let rows = taps(height, out_h);
    let src_row = width * cn;
    let filtered: Vec<Vec<f64>> = (0..height)
        .map(|y| {
            let s = &data[y * src_row..(y + 1) * src_row];
            cols.iter()
                .flat_map(|t| (0..cn).map(move |c| lerp(s[t.src0 * cn + c], s[t.src1 * cn + c], t.frac)))
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(out_w * out_h * cn);
    for t in &rows {
        let (r0, r1) = (&filtered[t.src0], &filtered[t.src1]);
        out.extend(r0.iter().zip(r1).map(|(&a, &b)| lerp(a, b, t.frac)));
    }
    out
}

/// `INTER_AREA` for an exact halving (`resizeAreaFast_`): `(a + b + c + d) * 0.25`.
fn halve(data: &[f64], (height, width, cn): (usize, usize, usize)) -> Vec<f64> {
    let (out_h, out_w) = (height / 2, width / 2);
    let at = |y: usize, x: usize, c: usize| data[(y * width + x) * cn + c];
    let mut out = Vec::with_capacity(out_h * out_w * cn);
    for y in 0..out_h {
        for x in 0..out_w {
            for c in 0..cn {
                let (y0, x0) = (2 * y, 2 * x);
                let sum = 0.0 + at(y0, x0, c) + at(y0, x0 + 1, c) + at(y0 + 1, x0, c) + at(y0 + 1, x0 + 1, c);
                out.push(sum * 0.25);
            }
        }
    }
    out
}
