//! pycocotools' mask API (`maskApi.c`) in Rust: column-major run-length
//! encoding, the compressed string form, polygon rasterisation, area, bounding
//! box and IoU with crowd regions. No crate reproduces these semantics (see
//! `shared/notes/ecosystem.md`), and COCO mAP depends on them bit for bit.
//!
//! Each function mirrors the C function named in its doc, including its
//! rounding (`(int)(x + .5)` truncates toward zero) and its edge cases, as
//! built into pycocotools 2.0.8 (the maintained `ppwwyyxx/cocoapi` sources).

/// A binary mask as COCO's run-length encoding: alternating runs of 0s and 1s
/// over the mask in column-major (Fortran) order, starting with 0s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub height: u32,
    pub width: u32,
    pub counts: Vec<u32>,
}

impl Rle {
    /// Encodes a row-major `height x width` mask (non-zero bytes are 1).
    ///
    /// A `mask` shorter than `height * width` reads as 0 past its end.
    pub fn from_row_major(mask: &[u8], height: u32, width: u32) -> Rle {
        let (h, w) = (height as usize, width as usize);
        let mut counts = Vec::new();
        let (mut prev, mut run) = (false, 0u32);
        for x in 0..w {
            for y in 0..h {
                let v = mask.get(y * w + x).is_some_and(|&b| b != 0);
                if v != prev {
                    counts.push(run);
                    run = 0;
                    prev = v;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle {
            height,
            width,
            counts,
        }
    }

    /// Decodes into a row-major `height x width` mask of 0/1 bytes.
    ///
    /// Runs past the mask's end are cut off (pycocotools refuses such an RLE).
    pub fn to_row_major(&self) -> Vec<u8> {
        let (h, w) = (self.height as usize, self.width as usize);
        let total = h * w;
        let mut out = vec![0u8; total];
        let mut pos = 0usize;
        for (j, &c) in self.counts.iter().enumerate() {
            let end = (pos + c as usize).min(total);
            if j % 2 == 1 {
                for p in pos..end {
                    // column-major position p = x * h + y
                    out[(p % h) * w + p / h] = 1;
                }
            }
            pos = end;
        }
        out
    }

    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` as `rleFrPoly` does.
    pub fn from_polygon(polygon: &[f64], height: u32, width: u32) -> Rle {
        let k = polygon.len() / 2;
        if k == 0 {
            return Rle::empty(height, width);
        }
        let (xs, ys) = upsampled_vertices(polygon, k);
        let (u, v) = dense_boundary(&xs, &ys);
        let points = boundary_points(&u, &v, height, width);
        Rle {
            height,
            width,
            counts: counts_from_points(points, height, width),
        }
    }

    /// The union of several polygons (`frPyObjects` then `merge`, as `annToRLE`).
    ///
    /// (pycocotools raises a `TypeError` when the first polygon has exactly
    /// four numbers, taking the list for boxes; here every entry is a polygon.)
    pub fn from_polygons(polygons: &[Vec<f64>], height: u32, width: u32) -> Rle {
        let rles: Vec<Rle> = polygons
            .iter()
            .map(|p| Rle::from_polygon(p, height, width))
            .collect();
        Rle::merge(&rles, false)
    }

    /// A box `[x, y, w, h]` as a mask (`rleFrBbox`).
    pub fn from_bbox(bbox: [f64; 4], height: u32, width: u32) -> Rle {
        let [xs, ys, bw, bh] = bbox;
        let (xe, ye) = (xs + bw, ys + bh);
        Rle::from_polygon(&[xs, ys, xs, ye, xe, ye, xe, ys], height, width)
    }

    /// Union (or intersection) of masks of one size (`rleMerge`).
    ///
    /// No masks, or masks of different sizes, give the empty 0x0 RLE as in C.
    pub fn merge(rles: &[Rle], intersect: bool) -> Rle {
        let Some(first) = rles.first() else {
            return Rle {
                height: 0,
                width: 0,
                counts: Vec::new(),
            };
        };
        let (h, w) = (first.height, first.width);
        let mut acc = first.counts.clone();
        let mut next = Vec::with_capacity(acc.len());
        for b in &rles[1..] {
            if b.height != h || b.width != w {
                return Rle {
                    height: 0,
                    width: 0,
                    counts: Vec::new(),
                };
            }
            merge_two(&acc, &b.counts, intersect, &mut next);
            std::mem::swap(&mut acc, &mut next);
        }
        Rle {
            height: h,
            width: w,
            counts: acc,
        }
    }

    /// Number of foreground pixels (`rleArea`).
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// Tight box `[x, y, w, h]` (`rleToBbox`); all zeros for an empty mask.
    pub fn to_bbox(&self) -> [f64; 4] {
        let h = self.height as u64;
        let m = self.counts.len() / 2 * 2;
        if m == 0 || h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (self.width as u64, h, 0u64, 0u64);
        let mut cc = 0u64;
        for (j, &c) in self.counts[..m].iter().enumerate() {
            let start = cc;
            cc += c as u64;
            if j % 2 == 0 || c == 0 {
                continue;
            }
            let (x_start, y_start) = (start / h, start % h);
            let (x_end, y_end) = ((cc - 1) / h, (cc - 1) % h);
            xs = xs.min(x_start);
            xe = xe.max(x_end);
            if x_start < x_end {
                // the run crosses a column: it covers every row
                ys = 0;
                ye = h - 1;
            } else {
                ys = ys.min(y_start);
                ye = ye.max(y_end);
            }
        }
        // C computes these in unsigned ints: an all-zero mask wraps the same way
        let bw = (xe as u32).wrapping_sub(xs as u32).wrapping_add(1);
        let bh = (ye as u32).wrapping_sub(ys as u32).wrapping_add(1);
        [xs as f64, ys as f64, bw as f64, bh as f64]
    }

    /// COCO's compressed `counts` string (`rleToString`): LEB128-like, 5 bits a
    /// character offset by 48, counts after the third stored as differences.
    pub fn to_compressed(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = c as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut ch = (x & 0x1f) as u8;
                x >>= 5;
                let more = if ch & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    ch |= 0x20;
                }
                s.push((ch + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parses a compressed `counts` string (`rleFrString`).
    pub fn from_compressed(counts: &str, height: u32, width: u32) -> Result<Rle, String> {
        let bytes = counts.as_bytes();
        let mut out: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut p = 0usize;
        while p < bytes.len() {
            let (mut x, mut k) = (0i64, 0u32);
            loop {
                let Some(&b) = bytes.get(p) else {
                    return Err(format!(
                        "compressed RLE counts end inside a number (at character {p})"
                    ));
                };
                if !(48..=111).contains(&b) {
                    return Err(format!(
                        "compressed RLE counts hold {:?} at character {p}; expected characters `0`..`o`",
                        b as char
                    ));
                }
                let c = (b - 48) as i64;
                x |= (c & 0x1f).wrapping_shl(5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= (-1i64).wrapping_shl(5 * k);
                    }
                    break;
                }
                if k > 12 {
                    return Err(format!(
                        "compressed RLE counts hold a number too large (at character {p})"
                    ));
                }
            }
            let m = out.len();
            if m > 2 {
                x += out[m - 2] as i64;
            }
            out.push(x as u32);
        }
        Ok(Rle {
            height,
            width,
            counts: out,
        })
    }

    /// An all-background mask.
    fn empty(height: u32, width: u32) -> Rle {
        Rle {
            height,
            width,
            counts: vec![height.wrapping_mul(width)],
        }
    }
}

/// `rleMerge`'s inner loop for two count lists of one size, into `out`.
fn merge_two(a: &[u32], b: &[u32], intersect: bool, out: &mut Vec<u32>) {
    out.clear();
    let (mut a, mut b) = (Runs::new(a), Runs::new(b));
    let mut v = false;
    let mut cc = 0u32;
    while a.done() == b.done() {
        let c = a.left.min(b.left);
        cc = cc.wrapping_add(c);
        a.advance(c);
        b.advance(c);
        let ct = a.left as u64 + b.left as u64;
        let vp = v;
        v = if intersect { a.on && b.on } else { a.on || b.on };
        if v != vp || ct == 0 {
            out.push(cc);
            cc = 0;
        }
        if ct == 0 {
            break;
        }
    }
}

/// One mask's runs, walked as `maskApi.c` walks two side by side: `left`
/// pixels remain in the current run, which is foreground when `on`.
struct Runs<'a> {
    counts: &'a [u32],
    next: usize,
    left: u32,
    on: bool,
}

impl<'a> Runs<'a> {
    fn new(counts: &'a [u32]) -> Self {
        Runs { counts, next: 1, left: counts.first().copied().unwrap_or(0), on: false }
    }

    /// Every run spent. When one mask is done before the other (a corrupt RLE
    /// whose runs do not add up to its size), C loops forever; the walks stop.
    fn done(&self) -> bool {
        self.left == 0 && self.next >= self.counts.len()
    }

    /// Consumes `c` pixels, moving on to the next run when this one is spent.
    fn advance(&mut self, c: u32) {
        self.left -= c;
        if self.left == 0 && self.next < self.counts.len() {
            self.left = self.counts[self.next];
            self.next += 1;
            self.on = !self.on;
        }
    }
}

/// The polygon's vertices scaled by 5 and rounded as C's `(int)(5*x + .5)`,
/// closed by repeating the first.
fn upsampled_vertices(polygon: &[f64], k: usize) -> (Vec<i32>, Vec<i32>) {
    const SCALE: f64 = 5.0;
    let mut xs: Vec<i32> = (0..k)
        .map(|j| (SCALE * polygon[2 * j] + 0.5) as i32)
        .collect();
    let mut ys: Vec<i32> = (0..k)
        .map(|j| (SCALE * polygon[2 * j + 1] + 0.5) as i32)
        .collect();
    xs.push(xs[0]);
    ys.push(ys[0]);
    (xs, ys)
}

/// Every integer point along the upsampled boundary, edge by edge, stepping
/// along the longer axis as `rleFrPoly` does (flipping edges to run forward).
fn dense_boundary(xs: &[i32], ys: &[i32]) -> (Vec<i32>, Vec<i32>) {
    let k = xs.len() - 1;
    let total: usize = (0..k)
        .map(|j| {
            (xs[j] - xs[j + 1])
                .unsigned_abs()
                .max((ys[j] - ys[j + 1]).unsigned_abs()) as usize
                + 1
        })
        .sum();
    let (mut u, mut v) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for j in 0..k {
        let (mut x0, mut x1, mut y0, mut y1) = (xs[j], xs[j + 1], ys[j], ys[j + 1]);
        let dx = (x1 - x0).abs();
        let dy = (y0 - y1).abs();
        let flip = (dx >= dy && x0 > x1) || (dx < dy && y0 > y1);
        if flip {
            std::mem::swap(&mut x0, &mut x1);
            std::mem::swap(&mut y0, &mut y1);
        }
        if dx >= dy {
            let s = (y1 - y0) as f64 / dx as f64;
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + x0);
                // dx == 0 only for a repeated vertex: C's 0/0 is NaN, and x86
                // casts NaN to INT_MIN (the point never starts a column anyway)
                v.push(if dx == 0 {
                    i32::MIN
                } else {
                    (y0 as f64 + s * t as f64 + 0.5) as i32
                });
            }
        } else {
            let s = (x1 - x0) as f64 / dy as f64;
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + y0);
                u.push((x0 as f64 + s * t as f64 + 0.5) as i32);
            }
        }
    }
    (u, v)
}

/// Where the boundary crosses a pixel column centre, downsampled back to the
/// original grid: `(x, y)` of the first row inside the polygon at column `x`.
fn boundary_points(u: &[i32], v: &[i32], height: u32, width: u32) -> Vec<(i32, i32)> {
    const SCALE: f64 = 5.0;
    let (h, wmax) = (height as f64, width as f64 - 1.0);
    let mut out = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = if u[j] < u[j - 1] { u[j] } else { u[j] - 1 } as f64;
        let xd = (xd + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > wmax {
            continue;
        }
        let yd = v[j].min(v[j - 1]) as f64;
        let mut yd = (yd + 0.5) / SCALE - 0.5;
        if yd < 0.0 {
            yd = 0.0;
        } else if yd > h {
            yd = h;
        }
        out.push((xd as i32, yd.ceil() as i32));
    }
    out
}

/// The RLE counts from the boundary points: sorted column-major positions
/// toggle the mask; equal positions cancel out.
fn counts_from_points(points: Vec<(i32, i32)>, height: u32, width: u32) -> Vec<u32> {
    let mut a: Vec<u32> = points
        .iter()
        .map(|&(x, y)| (x.wrapping_mul(height as i32).wrapping_add(y)) as u32)
        .collect();
    a.push(height.wrapping_mul(width));
    a.sort_unstable();
    let mut prev = 0u32;
    for t in a.iter_mut() {
        let cur = *t;
        *t = cur.wrapping_sub(prev);
        prev = cur;
    }
    let mut b = Vec::with_capacity(a.len());
    b.push(a[0]);
    let mut j = 1;
    while j < a.len() {
        if a[j] > 0 {
            b.push(a[j]);
            j += 1;
        } else {
            j += 1;
            if j < a.len() {
                let last = b.len() - 1;
                b[last] += a[j];
                j += 1;
            }
        }
    }
    b
}

/// IoU of every detection with every ground truth, row-major `dt.len() x gt.len()`;
/// for a crowd ground truth the union is the detection's area (`rleIou`).
///
/// Pairs whose masks differ in size get -1, as in C.
pub fn iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool]) -> Vec<f64> {
    let db: Vec<[f64; 4]> = dt.iter().map(Rle::to_bbox).collect();
    let gb: Vec<[f64; 4]> = gt.iter().map(Rle::to_bbox).collect();
    let mut out = bbox_iou(&db, &gb, iscrowd);
    let n = gt.len();
    for (d, dr) in dt.iter().enumerate() {
        for (g, gr) in gt.iter().enumerate() {
            let o = &mut out[d * n + g];
            if *o > 0.0 {
                let crowd = iscrowd.get(g).copied().unwrap_or(false);
                *o = rle_pair_iou(dr, gr, crowd);
            }
        }
    }
    out
}

/// Exact IoU of two masks (`rleIou`'s inner loop), -1 when sizes differ.
pub(crate) fn rle_pair_iou(dt: &Rle, gt: &Rle, crowd: bool) -> f64 {
    if dt.height != gt.height || dt.width != gt.width {
        return -1.0;
    }
    let (mut a, mut b) = (Runs::new(&dt.counts), Runs::new(&gt.counts));
    let (mut inter, mut union) = (0u64, 0u64);
    while a.done() == b.done() {
        let c = a.left.min(b.left);
        if a.on || b.on {
            union += c as u64;
            if a.on && b.on {
                inter += c as u64;
            }
        }
        a.advance(c);
        b.advance(c);
        if a.left == 0 && b.left == 0 {
            break;
        }
    }
    // C keeps these in 32-bit unsigned ints
    let (inter, mut union) = (inter as u32, union as u32);
    if inter == 0 {
        union = 1;
    } else if crowd {
        union = dt.area() as u32;
    }
    inter as f64 / union as f64
}

/// The same for boxes `[x, y, w, h]` (`bbIou`).
pub fn bbox_iou(dt: &[[f64; 4]], gt: &[[f64; 4]], iscrowd: &[bool]) -> Vec<f64> {
    let n = gt.len();
    let mut out = vec![0.0; dt.len() * n];
    for (g, gb) in gt.iter().enumerate() {
        let crowd = iscrowd.get(g).copied().unwrap_or(false);
        for (d, db) in dt.iter().enumerate() {
            out[d * n + g] = box_pair_iou(db, gb, crowd);
        }
    }
    out
}

/// `bbIou` for one pair.
#[inline]
pub(crate) fn box_pair_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        // 3 rows x 4 columns, row-major
        let mask = [0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1];
        let rle = Rle::from_row_major(&mask, 3, 4);
        // pycocotools: b'254L', area 6, bbox [0, 0, 4, 3]
        assert_eq!(rle.to_compressed(), "254L");
        assert_eq!(rle.to_row_major(), mask.to_vec());
        assert_eq!(rle.area(), 6);
        assert_eq!(rle.to_bbox(), [0.0, 0.0, 4.0, 3.0]);
    }

    #[test]
    fn mask_starting_with_foreground_has_zero_first_run() {
        // pycocotools: encode([[1, 1], [0, 0]]) -> b'01100', bbox [0, 0, 2, 1]
        let rle = Rle::from_row_major(&[1, 1, 0, 0], 2, 2);
        assert_eq!(rle.counts, vec![0, 1, 1, 1, 1]);
        assert_eq!(rle.to_compressed(), "01100");
        assert_eq!(rle.to_bbox(), [0.0, 0.0, 2.0, 1.0]);
    }

    #[test]
    fn compressed_round_trip_and_known_string() {
        // pycocotools: a 10x10 mask with rows 2..5, columns 1..3 set -> b'<370T2'
        let rle = Rle {
            height: 10,
            width: 10,
            counts: vec![12, 3, 7, 3, 75],
        };
        let s = rle.to_compressed();
        assert_eq!(s, "<370T2");
        assert_eq!(Rle::from_compressed(&s, 10, 10).unwrap(), rle);
        assert!(Rle::from_compressed("0`", 1, 1).is_err());
        assert!(Rle::from_compressed("0 ", 1, 1).is_err());
    }

    #[test]
    fn bbox_and_polygon_rasterise_like_pycocotools() {
        // pycocotools: frPyObjects(np.array([[1,2,3,4.]]), 10, 10) -> b'<46000j1', area 12
        let rle = Rle::from_bbox([1.0, 2.0, 3.0, 4.0], 10, 10);
        assert_eq!(rle.to_compressed(), "<46000j1");
        assert_eq!(rle.area(), 12);
        assert_eq!(rle.to_bbox(), [1.0, 2.0, 3.0, 4.0]);
        let tri = Rle::from_polygon(&[0.0, 0.0, 8.0, 0.0, 0.0, 8.0], 10, 10);
        let tri2 = Rle::from_polygons(&[vec![0.0, 0.0, 8.0, 0.0, 0.0, 8.0]], 10, 10);
        assert_eq!(tri, tri2);
        // pycocotools: frPyObjects([[0,0,8,0,0,8]], 10, 10) -> b'073O1O1O1O1O1Oo0', area 28
        assert_eq!(tri.to_compressed(), "073O1O1O1O1O1Oo0");
        assert_eq!(tri.area(), 28);
    }

    #[test]
    fn merge_and_iou() {
        let a = Rle::from_bbox([0.0, 0.0, 4.0, 4.0], 8, 8);
        let b = Rle::from_bbox([2.0, 2.0, 4.0, 4.0], 8, 8);
        assert_eq!(Rle::merge(&[a.clone(), b.clone()], false).area(), 28);
        assert_eq!(Rle::merge(&[a.clone(), b.clone()], true).area(), 4);
        let o = iou(
            std::slice::from_ref(&a),
            &[b.clone(), a.clone()],
            &[false, false],
        );
        assert_eq!(o, vec![4.0 / 28.0, 1.0]);
        let crowd = iou(std::slice::from_ref(&a), std::slice::from_ref(&b), &[true]);
        assert_eq!(crowd, vec![4.0 / 16.0]);
        let bo = bbox_iou(&[[0.0, 0.0, 4.0, 4.0]], &[[2.0, 2.0, 4.0, 4.0]], &[false]);
        assert_eq!(bo, vec![4.0 / 28.0]);
    }
}
