//! The synthetic shapes dataset behind `detc data shapes`: COCO JSON and JPEG images of drawn shapes with instance masks.
//!
//! Each image is a noisy two-colour gradient with one to six filled shapes
//! (rectangle, ellipse, triangle, cross) of random colour, size (COCO's
//! small, medium and large when the image allows), aspect and rotation.
//! Later shapes are drawn over earlier ones; a shape is placed only where it
//! leaves every earlier shape at least half visible, so no annotation is a
//! sliver. Every shape is a polygon rasterised with pycocotools' rule
//! ([`Rle::from_polygon`]); each annotation's mask is the visible part, so
//! masks are exact by construction:
//! - an unoccluded shape is stored as its polygon (the very one rasterised);
//! - an occluded shape as an RLE, compressed or (about one in four)
//!   uncompressed, so all three COCO segmentation forms occur;
//! - `area` is the mask's pixel count and `bbox` its tight box.
//!
//! Output is deterministic for a seed: every image draws from its own random
//! stream (seed, split, index), so the parallel writers produce the same bytes
//! as a serial run. Existing files of the same names are overwritten; other
//! files in the folder are left alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{DataError, DataResult};
use crate::evaluation::mask::Rle;

/// Category names; category `i + 1` in the JSON.
pub const CLASSES: [&str; 4] = ["rectangle", "ellipse", "triangle", "cross"];

/// Smallest image side the generator accepts.
pub const MIN_SIZE: u32 = 32;

/// What to generate.
#[derive(Debug, Clone)]
pub struct ShapesOptions {
    pub train: u32,
    pub val: u32,
    /// Side of the square images, at least [`MIN_SIZE`].
    pub size: u32,
    pub seed: u64,
}

/// What was written, per split.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapesSummary {
    pub train_images: usize,
    pub train_annotations: usize,
    pub val_images: usize,
    pub val_annotations: usize,
    pub seconds: f64,
}

/// Writes `out/annotations/instances_{train,val}.json` and `out/{train,val}/*.jpg`.
pub fn write_dataset(out: &Path, opts: &ShapesOptions) -> DataResult<ShapesSummary> {
    if opts.size < MIN_SIZE {
        return Err(DataError::new(format!(
            "--size {} is too small: shapes need images of at least {MIN_SIZE} pixels",
            opts.size
        )));
    }
    let start = Instant::now();
    let (train_images, train_annotations) = write_split(out, "train", 0, opts.train, opts)?;
    let (val_images, val_annotations) = write_split(out, "val", 1, opts.val, opts)?;
    Ok(ShapesSummary {
        train_images,
        train_annotations,
        val_images,
        val_annotations,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn create_dir(dir: &Path) -> DataResult<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| DataError::new(format!("cannot create folder `{}`: {e}", dir.display())))
}

/// One split: images written by worker threads, then the annotation file.
fn write_split(
    out: &Path,
    split: &str,
    tag: u64,
    count: u32,
    opts: &ShapesOptions,
) -> DataResult<(usize, usize)> {
    let img_dir = out.join(split);
    let ann_dir = out.join("annotations");
    create_dir(&img_dir)?;
    create_dir(&ann_dir)?;
    let count = count as usize;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count.div_ceil(16))
        .max(1);
    let per_worker = count.div_ceil(workers).max(1);
    let results: Vec<DataResult<Vec<Vec<Object>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let range = (w * per_worker).min(count)..((w + 1) * per_worker).min(count);
                let img_dir = &img_dir;
                s.spawn(move || {
                    range
                        .map(|i| write_image(img_dir, opts, tag, i))
                        .collect::<DataResult<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DataError::new("an image writer thread panicked")))
            })
            .collect()
    });
    let mut objects = Vec::with_capacity(count);
    for r in results {
        objects.extend(r?);
    }
    let file = coco_file(&objects, opts.size);
    let num_anns = file.annotations.len();
    let path = ann_dir.join(format!("instances_{split}.json"));
    let json = serde_json::to_vec(&file)
        .map_err(|e| DataError::new(format!("cannot encode `{}`: {e}", path.display())))?;
    std::fs::write(&path, json)
        .map_err(|e| DataError::new(format!("cannot write `{}`: {e}", path.display())))?;
    Ok((count, num_anns))
}

fn file_name(index: usize) -> String {
    format!("{:06}.jpg", index + 1)
}

/// Renders image `index` of a split, writes its JPEG and returns its objects.
fn write_image(
    dir: &Path,
    opts: &ShapesOptions,
    tag: u64,
    index: usize,
) -> DataResult<Vec<Object>> {
    let scene = render(opts.seed, tag, index, opts.size);
    let path: PathBuf = dir.join(file_name(index));
    let size = opts.size as usize;
    let image = turbojpeg::Image {
        pixels: scene.rgb.as_slice(),
        width: size,
        pitch: size * 3,
        height: size,
        format: turbojpeg::PixelFormat::RGB,
    };
    let jpeg = turbojpeg::compress(image, 90, turbojpeg::Subsamp::Sub2x2)
        .map_err(|e| DataError::new(format!("cannot encode `{}` as JPEG: {e}", path.display())))?;
    std::fs::write(&path, &*jpeg)
        .map_err(|e| DataError::new(format!("cannot write `{}`: {e}", path.display())))?;
    Ok(scene.objects)
}

// --------------------------------------------------------------------------
// Scenes

/// One annotated shape of a rendered image.
#[derive(Debug, Clone)]
pub struct Object {
    /// Index into [`CLASSES`].
    pub class: usize,
    /// The visible mask.
    pub mask: Rle,
    /// The rasterised polygon when nothing covers the shape.
    pub polygon: Option<Vec<f64>>,
    /// Store the RLE uncompressed (occluded shapes only).
    pub uncompressed: bool,
}

/// A rendered image: RGB pixels (row-major, `size x size x 3`) and its objects in drawing order.
pub struct Scene {
    pub rgb: Vec<u8>,
    pub objects: Vec<Object>,
}

/// A shape being placed: class, polygon, colour, its full and currently visible pixel counts.
struct Placed {
    class: usize,
    polygon: Vec<f64>,
    colour: [f32; 3],
    full: u64,
    visible: u64,
}

/// Fewest pixels a shape must show.
const MIN_VISIBLE: u64 = 12;

/// Renders image `index` of split `tag`, from its own random stream.
pub fn render(seed: u64, tag: u64, index: usize, size: u32) -> Scene {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(mix(seed, tag, index as u64));
    let n = size as usize;
    let background = Background::random(&mut rng);
    let mut owner = vec![0u16; n * n];
    let mut placed: Vec<Placed> = Vec::new();
    let wanted = rng.random_range(1..=6);
    for _ in 0..wanted {
        for _attempt in 0..12 {
            let extent = random_extent(&mut rng, size, placed.is_empty());
            let (class, polygon) = random_shape(&mut rng, size, extent);
            let mask = Rle::from_polygon(&polygon, size, size).to_row_major();
            if try_place(
                &mut owner,
                &mut placed,
                &mask,
                class,
                polygon,
                &mut rng,
                &background,
            ) {
                break;
            }
        }
    }
    let rgb = paint(&owner, &placed, &background, &mut rng, n);
    let objects = placed
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let visible: Vec<u8> = owner
                .iter()
                .map(|&o| u8::from(o as usize == k + 1))
                .collect();
            let occluded = p.visible < p.full;
            Object {
                class: p.class,
                mask: Rle::from_row_major(&visible, size, size),
                polygon: (!occluded).then(|| p.polygon.clone()),
                uncompressed: occluded && rng.random_range(0..4) == 0,
            }
        })
        .collect();
    Scene { rgb, objects }
}

/// Draws the shape over the scene when it leaves every earlier shape at least
/// half (and [`MIN_VISIBLE`] pixels) visible; returns whether it did.
fn try_place(
    owner: &mut [u16],
    placed: &mut Vec<Placed>,
    mask: &[u8],
    class: usize,
    polygon: Vec<f64>,
    rng: &mut rand_pcg::Pcg64Mcg,
    background: &Background,
) -> bool {
    let full = mask.iter().filter(|&&m| m != 0).count() as u64;
    if full < MIN_VISIBLE * 2 {
        return false;
    }
    let mut covered = vec![0u64; placed.len()];
    for (&m, &o) in mask.iter().zip(owner.iter()) {
        if m != 0 && o != 0 {
            covered[o as usize - 1] += 1;
        }
    }
    let keeps_visible = placed.iter().zip(&covered).all(|(p, &c)| {
        let left = p.visible - c;
        c == 0 || (left >= MIN_VISIBLE && 2 * left >= p.full)
    });
    if !keeps_visible {
        return false;
    }
    for (p, c) in placed.iter_mut().zip(&covered) {
        p.visible -= c;
    }
    let id = placed.len() as u16 + 1;
    for (o, &m) in owner.iter_mut().zip(mask) {
        if m != 0 {
            *o = id;
        }
    }
    let others: Vec<[f32; 3]> = placed.iter().map(|p| p.colour).collect();
    let colour = distinct_colour(rng, background, &others);
    placed.push(Placed {
        class,
        polygon,
        colour,
        full,
        visible: full,
    });
    true
}

/// SplitMix64 over (seed, split, index): one unrelated stream per image.
fn mix(seed: u64, tag: u64, index: u64) -> u64 {
    let mut z =
        seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A shape's extent in pixels, log-uniform within a size bucket around COCO's
/// 32² and 96² area thresholds: small or medium, or, for the first shape of
/// an image (drawn first, so others may cover it), large one time in four.
fn random_extent(rng: &mut rand_pcg::Pcg64Mcg, size: u32, first: bool) -> f64 {
    let s = f64::from(size);
    let fit = 0.95 * s;
    let (lo, hi) = if first && fit > 100.0 && rng.random_range(0..4) == 0 {
        // up to beyond the image: `random_shape` shrinks what does not fit
        ((0.75 * s).max(100.0), 1.25 * s)
    } else if rng.random_range(0..20) < 11 {
        ((s / 16.0).max(8.0), 36.0f64.min(fit))
    } else {
        (36.0f64.min(fit / 2.0), 100.0f64.min(fit))
    };
    (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp()
}

/// A random polygon of a random class with about this extent, inside the
/// image, its vertices rounded to 1/100 pixel.
fn random_shape(rng: &mut rand_pcg::Pcg64Mcg, size: u32, extent: f64) -> (usize, Vec<f64>) {
    let class = rng.random_range(0..CLASSES.len());
    let s = f64::from(size);
    let aspect = (rng.random::<f64>() * 0.8 - 0.4).exp();
    let (rx, ry) = (extent / 2.0 * aspect, extent / 2.0 / aspect);
    let local: Vec<(f64, f64)> = match class {
        0 => vec![(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)],
        1 => {
            let k = ((std::f64::consts::PI * (rx + ry) / 3.0).ceil() as usize).clamp(12, 64);
            (0..k)
                .map(|i| (i as f64 * std::f64::consts::TAU / k as f64).sin_cos())
                .map(|(sn, cs)| (cs, sn))
                .collect()
        }
        2 => [-90.0f64, 30.0, 150.0]
            .iter()
            .map(|a| (a.to_radians().cos(), a.to_radians().sin()))
            .collect(),
        _ => {
            let t = 0.3 + 0.1 * rng.random::<f64>();
            #[rustfmt::skip]
            let pts = vec![(t, 1.0), (-t, 1.0), (-t, t), (-1.0, t), (-1.0, -t), (-t, -t),
                           (-t, -1.0), (t, -1.0), (t, -t), (1.0, -t), (1.0, t), (t, t)];
            pts
        }
    };
    // Rectangles and crosses stay near upright so they read as such.
    let theta = match class {
        0 | 3 => rng.random::<f64>() * 0.8 - 0.4,
        _ => rng.random::<f64>() * std::f64::consts::TAU,
    };
    let (sin, cos) = theta.sin_cos();
    let pts: Vec<(f64, f64)> = local
        .iter()
        .map(|&(x, y)| (x * rx, y * ry))
        .map(|(x, y)| (x * cos - y * sin, x * sin + y * cos))
        .collect();
    let (min_x, max_x) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (min_y, max_y) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    // Shrink what does not fit, then place it fully inside the image.
    let room = s - 2.0;
    let shrink = (room / (max_x - min_x))
        .min(room / (max_y - min_y))
        .min(1.0);
    let cx = 1.0 - min_x * shrink + rng.random::<f64>() * (room - (max_x - min_x) * shrink);
    let cy = 1.0 - min_y * shrink + rng.random::<f64>() * (room - (max_y - min_y) * shrink);
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let polygon = pts
        .iter()
        .flat_map(|&(x, y)| [round(cx + x * shrink), round(cy + y * shrink)])
        .collect();
    (class, polygon)
}

// --------------------------------------------------------------------------
// Colours and painting

/// A noisy linear gradient between two dull colours.
struct Background {
    from: [f32; 3],
    to: [f32; 3],
    direction: (f32, f32),
}

impl Background {
    fn random(rng: &mut rand_pcg::Pcg64Mcg) -> Self {
        let mut dull = || {
            hsv(
                rng.random::<f32>(),
                0.3 * rng.random::<f32>(),
                0.2 + 0.6 * rng.random::<f32>(),
            )
        };
        let (from, to) = (dull(), dull());
        let angle = rng.random::<f32>() * std::f32::consts::TAU;
        Background {
            from,
            to,
            direction: (angle.cos(), angle.sin()),
        }
    }

    fn mean(&self) -> [f32; 3] {
        [0, 1, 2].map(|c| (self.from[c] + self.to[c]) / 2.0)
    }
}

/// HSV (all in 0..1) to RGB in 0..255.
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let rgb = match i as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    };
    rgb.map(|c| c * 255.0)
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f32>().sqrt()
}

/// A saturated colour that stands out from the background and the other shapes.
fn distinct_colour(
    rng: &mut rand_pcg::Pcg64Mcg,
    background: &Background,
    others: &[[f32; 3]],
) -> [f32; 3] {
    let mut best = ([0.0; 3], -1.0f32);
    for _ in 0..16 {
        let c = hsv(
            rng.random::<f32>(),
            0.6 + 0.4 * rng.random::<f32>(),
            0.55 + 0.45 * rng.random::<f32>(),
        );
        let margin = others
            .iter()
            .map(|&o| distance(c, o))
            .fold(distance(c, background.mean()), f32::min);
        if margin > 90.0 {
            return c;
        }
        if margin > best.1 {
            best = (c, margin);
        }
    }
    best.0
}

/// Pixels: the background gradient, each shape's colour where it is visible, plus noise.
fn paint(
    owner: &[u16],
    placed: &[Placed],
    bg: &Background,
    rng: &mut rand_pcg::Pcg64Mcg,
    n: usize,
) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(n * n * 3);
    let scale = 1.0 / (n as f32 * std::f32::consts::SQRT_2);
    for y in 0..n {
        for x in 0..n {
            let o = owner[y * n + x] as usize;
            let base = if o > 0 {
                placed[o - 1].colour
            } else {
                // position along the gradient direction, in 0..1
                let t = ((x as f32 - n as f32 / 2.0) * bg.direction.0
                    + (y as f32 - n as f32 / 2.0) * bg.direction.1)
                    * scale
                    + 0.5;
                [0, 1, 2].map(|c| bg.from[c] + (bg.to[c] - bg.from[c]) * t)
            };
            let noise = rng.random_range(-8.0f32..8.0);
            rgb.extend(base.map(|c| {
                (c + noise + rng.random_range(-4.0f32..4.0))
                    .round()
                    .clamp(0.0, 255.0) as u8
            }));
        }
    }
    rgb
}

// --------------------------------------------------------------------------
// The annotation file

#[derive(Serialize)]
struct CocoFile {
    info: Info,
    images: Vec<ImageEntry>,
    annotations: Vec<AnnEntry>,
    categories: Vec<CategoryEntry>,
}

#[derive(Serialize)]
struct Info {
    description: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct ImageEntry {
    id: u64,
    file_name: String,
    height: u32,
    width: u32,
}

#[derive(Serialize)]
struct CategoryEntry {
    id: u64,
    name: &'static str,
    supercategory: &'static str,
}

#[derive(Serialize)]
struct AnnEntry {
    id: u64,
    image_id: u64,
    category_id: u64,
    segmentation: SegmEntry,
    area: f64,
    bbox: [f64; 4],
    iscrowd: u8,
}

#[derive(Serialize)]
#[serde(untagged)]
enum SegmEntry {
    Polygons(Vec<Vec<f64>>),
    Rle { size: [u32; 2], counts: Counts },
}

#[derive(Serialize)]
#[serde(untagged)]
enum Counts {
    List(Vec<u32>),
    Compressed(String),
}

/// COCO JSON of one split: image ids from 1, annotation ids from 1 in image order.
fn coco_file(objects: &[Vec<Object>], size: u32) -> CocoFile {
    let images = (0..objects.len())
        .map(|i| ImageEntry {
            id: i as u64 + 1,
            file_name: file_name(i),
            height: size,
            width: size,
        })
        .collect();
    let mut annotations = Vec::new();
    for (i, objs) in objects.iter().enumerate() {
        for o in objs {
            let segmentation = match (&o.polygon, o.uncompressed) {
                (Some(p), _) => SegmEntry::Polygons(vec![p.clone()]),
                (None, true) => SegmEntry::Rle {
                    size: [size, size],
                    counts: Counts::List(o.mask.counts.clone()),
                },
                (None, false) => SegmEntry::Rle {
                    size: [size, size],
                    counts: Counts::Compressed(o.mask.to_compressed()),
                },
            };
            annotations.push(AnnEntry {
                id: annotations.len() as u64 + 1,
                image_id: i as u64 + 1,
                category_id: o.class as u64 + 1,
                segmentation,
                area: o.mask.area() as f64,
                bbox: o.mask.to_bbox(),
                iscrowd: 0,
            });
        }
    }
    let categories = CLASSES
        .iter()
        .enumerate()
        .map(|(i, &name)| CategoryEntry {
            id: i as u64 + 1,
            name,
            supercategory: "shape",
        })
        .collect();
    CocoFile {
        info: Info {
            description: "detc synthetic shapes",
            version: "1.0",
        },
        images,
        annotations,
        categories,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_deterministic_and_masks_agree() {
        let a = render(3, 0, 5, 96);
        let b = render(3, 0, 5, 96);
        assert_eq!(a.rgb, b.rgb);
        assert_ne!(a.rgb, render(4, 0, 5, 96).rgb);
        for o in &a.objects {
            assert!(o.mask.area() >= MIN_VISIBLE);
            if let Some(p) = &o.polygon {
                assert_eq!(
                    Rle::from_polygon(p, 96, 96),
                    o.mask,
                    "an unoccluded shape's mask is its polygon"
                );
            }
        }
    }

    #[test]
    fn all_forms_and_classes_occur() {
        let scenes: Vec<Scene> = (0..60).map(|i| render(0, 0, i, 128)).collect();
        let objects: Vec<&Object> = scenes.iter().flat_map(|s| &s.objects).collect();
        assert!(objects.iter().any(|o| o.polygon.is_some()));
        assert!(objects
            .iter()
            .any(|o| o.polygon.is_none() && o.uncompressed));
        assert!(objects
            .iter()
            .any(|o| o.polygon.is_none() && !o.uncompressed));
        for class in 0..CLASSES.len() {
            assert!(objects.iter().any(|o| o.class == class));
        }
        let areas: Vec<u64> = objects.iter().map(|o| o.mask.area()).collect();
        assert!(
            areas.iter().any(|&a| a < 32 * 32)
                && areas.iter().any(|&a| (32 * 32..96 * 96).contains(&a))
        );
    }
}
