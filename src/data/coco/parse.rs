//! The annotation file as serde reads it (only the fields MMDetection uses),
//! and mmdet's `parse_data_info` over it: one [`DataInfo`] per image, or an
//! error naming the file, the annotation and the image.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::SKIP_HELP;
use crate::data::{DataError, DataInfo, DataResult, Instance, Segmentation};
use crate::evaluation::mask::Rle;

#[derive(Deserialize)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) images: Vec<RawImage>,
    #[serde(default)]
    annotations: Vec<RawAnn>,
    #[serde(default)]
    pub(super) categories: Vec<RawCategory>,
}

impl RawFile {
    /// `Objects365V1Dataset`: the categories in id order (which sets the labels).
    pub(super) fn sort_categories_by_id(&mut self) {
        self.categories.sort_by_key(|c| c.id);
    }

    /// `Objects365V2Dataset`: each `file_name` cut to its last directory and
    /// its name (`a/b/patch1/x.jpg` is `patch1/x.jpg`), and the images whose
    /// cut name is in `broken` dropped.
    pub(super) fn objects365_v2_images(&mut self, broken: &[&str]) {
        for img in &mut self.images {
            let path = std::path::Path::new(&img.file_name);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let dir = path.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().into_owned());
            img.file_name = match dir {
                Some(d) => format!("{d}/{name}"),
                None => name,
            };
        }
        self.images.retain(|img| !broken.contains(&img.file_name.as_str()));
    }
}

#[derive(Deserialize)]
pub(super) struct RawImage {
    id: u64,
    file_name: String,
    height: u32,
    width: u32,
}

#[derive(Deserialize)]
pub(super) struct RawCategory {
    id: u64,
    pub(super) name: String,
}

#[derive(Deserialize)]
pub(super) struct RawAnn {
    id: u64,
    image_id: u64,
    category_id: u64,
    #[serde(default)]
    bbox: Value,
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Value,
    #[serde(default)]
    ignore: Value,
    #[serde(default)]
    segmentation: Option<RawSegm>,
}

/// A segmentation as the file holds it. Read by hand rather than as an
/// untagged enum: serde buffers every untagged value first, which tripled
/// the load time of a polygon-heavy file.
pub(super) enum RawSegm {
    Polygons(Vec<Vec<f64>>),
    Rle {
        size: Vec<u64>,
        counts: RawCounts,
    },
    /// Python-falsy values (`{}`, `0`, `""`, `false`): no mask, as MMDetection reads them.
    Empty,
    /// Anything else, described for the error message.
    Invalid(String),
}

pub(super) enum RawCounts {
    List(Vec<u64>),
    Compressed(String),
}

impl<'de> Deserialize<'de> for RawSegm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SegmVisitor)
    }
}

struct SegmVisitor;

impl SegmVisitor {
    fn scalar(truthy: bool, shown: String) -> RawSegm {
        if truthy {
            RawSegm::Invalid(shown)
        } else {
            RawSegm::Empty
        }
    }
}

impl<'de> Visitor<'de> for SegmVisitor {
    type Value = RawSegm;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a COCO segmentation: a list of polygons or an RLE object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSegm, A::Error> {
        let mut polygons = Vec::new();
        let mut flat = false;
        while let Some(p) = seq.next_element::<Polygon>()? {
            match p.0 {
                Some(p) => polygons.push(p),
                None => flat = true,
            }
        }
        Ok(if flat {
            RawSegm::Invalid("a list holding numbers or objects".into())
        } else {
            RawSegm::Polygons(polygons)
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSegm, A::Error> {
        let (mut size, mut counts, mut keys) = (None, None, 0);
        while let Some(key) = map.next_key::<String>()? {
            keys += 1;
            match key.as_str() {
                "size" => size = Some(map.next_value::<Vec<u64>>()?),
                "counts" => counts = Some(map.next_value::<RawCounts>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match (size, counts) {
            (Some(size), Some(counts)) => RawSegm::Rle { size, counts },
            _ if keys == 0 => RawSegm::Empty,
            _ => RawSegm::Invalid("an object without both `size` and `counts`".into()),
        })
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawSegm, E> {
        Ok(Self::scalar(v, v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSegm, E> {
        Ok(Self::scalar(v != 0, v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSegm, E> {
        Ok(Self::scalar(v != 0, v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawSegm, E> {
        Ok(Self::scalar(v != 0.0, v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSegm, E> {
        Ok(Self::scalar(!v.is_empty(), format!("{v:?}")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawSegm, E> {
        Ok(RawSegm::Empty)
    }
}

/// One polygon of a list, or `None` for an element that is not a list
/// (a flat `[x0, y0, ...]` list, a box); a non-number inside a polygon is a
/// JSON error with its line and column.
struct Polygon(Option<Vec<f64>>);

impl<'de> Deserialize<'de> for Polygon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PolygonVisitor)
    }
}

struct PolygonVisitor;

impl<'de> Visitor<'de> for PolygonVisitor {
    type Value = Polygon;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a polygon [x0, y0, x1, y1, ...]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Polygon, A::Error> {
        let mut coords = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(c) = seq.next_element::<f64>()? {
            coords.push(c);
        }
        Ok(Polygon(Some(coords)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Polygon, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Polygon(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Polygon, E> {
        Ok(Polygon(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Polygon, E> {
        Ok(Polygon(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Polygon, E> {
        Ok(Polygon(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Polygon, E> {
        Ok(Polygon(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Polygon, E> {
        Ok(Polygon(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Polygon, E> {
        Ok(Polygon(None))
    }
}

impl<'de> Deserialize<'de> for RawCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CountsVisitor)
    }
}

struct CountsVisitor;

impl<'de> Visitor<'de> for CountsVisitor {
    type Value = RawCounts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("RLE counts: a list of run lengths or a compressed string")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCounts, A::Error> {
        let mut counts = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(c) = seq.next_element::<u64>()? {
            counts.push(c);
        }
        Ok(RawCounts::List(counts))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCounts, E> {
        Ok(RawCounts::Compressed(v.to_string()))
    }
}

/// Python truthiness of a JSON value (`ann.get('iscrowd', False)`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The file's categories and the label of each kept one.
pub(super) struct Categories {
    known: HashSet<u64>,
    pub(super) cat_ids: Vec<u64>,
    cat2label: HashMap<u64, i64>,
}

impl Categories {
    /// pycocotools `getCatIds(catNms=classes)`: the categories whose name is in
    /// `classes`, in the file's order; all of them when `classes` is absent or empty.
    pub(super) fn new(
        raw: &[RawCategory],
        classes: Option<&[String]>,
        file: &str,
        warnings: &mut Vec<String>,
    ) -> DataResult<Self> {
        let mut known = HashSet::new();
        for c in raw {
            if !known.insert(c.id) {
                return Err(DataError::new(format!("`{file}`: category id {} appears twice in `categories`; give each category its own id", c.id)));
            }
        }
        let wanted: Option<HashSet<&str>> = classes
            .filter(|c| !c.is_empty())
            .map(|c| c.iter().map(String::as_str).collect());
        let cat_ids: Vec<u64> = raw
            .iter()
            .filter(|c| wanted.as_ref().is_none_or(|w| w.contains(c.name.as_str())))
            .map(|c| c.id)
            .collect();
        if let Some(classes) = classes {
            let names: HashSet<&str> = raw.iter().map(|c| c.name.as_str()).collect();
            let missing: Vec<&str> = classes
                .iter()
                .map(String::as_str)
                .filter(|n| !names.contains(n))
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "metainfo.classes names {} that `{file}` has no category for; they get no labels",
                    missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let cat2label = cat_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as i64))
            .collect();
        Ok(Categories {
            known,
            cat_ids,
            cat2label,
        })
    }
}

pub(super) struct Parsed {
    /// Each record, and whether an annotation of a kept category refers to it.
    pub(super) records: Vec<(DataInfo, bool)>,
    pub(super) skipped: usize,
    pub(super) first_error: Option<String>,
    /// Annotations lying wholly outside their image, and the first of them.
    pub(super) outside: (usize, Option<String>),
}

/// mmdet `load_data_list`: images in file order, each with its annotations in file order.
pub(super) fn parse_images(
    raw: RawFile,
    cats: &Categories,
    img_prefix: &Path,
    file: &str,
    skip_invalid: bool,
) -> DataResult<Parsed> {
    let mut index_of = HashMap::with_capacity(raw.images.len());
    for (i, img) in raw.images.iter().enumerate() {
        if index_of.insert(img.id, i).is_some() {
            return Err(DataError::new(format!(
                "`{file}`: image id {} appears twice in `images`; give each image its own id",
                img.id
            )));
        }
    }
    let mut anns_of: Vec<Vec<RawAnn>> = (0..raw.images.len()).map(|_| Vec::new()).collect();
    let mut ann_ids = HashSet::with_capacity(raw.annotations.len());
    for ann in raw.annotations {
        // pycocotools indexes annotations of unknown images but nothing loads them.
        let Some(&i) = index_of.get(&ann.image_id) else {
            continue;
        };
        if !ann_ids.insert(ann.id) {
            return Err(DataError::new(format!(
                "`{file}`: annotation id {} appears twice; annotation ids must be unique",
                ann.id
            )));
        }
        anns_of[i].push(ann);
    }
    let mut parsed = Parsed {
        records: Vec::with_capacity(raw.images.len()),
        skipped: 0,
        first_error: None,
        outside: (0, None),
    };
    for (img, anns) in raw.images.iter().zip(anns_of) {
        let in_cat = anns
            .iter()
            .any(|a| cats.cat2label.contains_key(&a.category_id));
        match parse_image(img, anns, cats, img_prefix, file, &mut parsed.outside) {
            Ok(record) => {
                parsed.records.push((record, in_cat));
            }
            Err(e) if skip_invalid => {
                parsed.skipped += 1;
                parsed.first_error.get_or_insert(e);
            }
            Err(e) => return Err(DataError::new(format!("{e}; {SKIP_HELP}"))),
        }
    }
    Ok(parsed)
}

/// mmdet `parse_data_info` for one image; the error names the file,
/// annotation and image. Annotations lying wholly outside the image are
/// dropped as MMDetection drops them, and counted in `outside` (with the first).
fn parse_image(
    img: &RawImage,
    anns: Vec<RawAnn>,
    cats: &Categories,
    img_prefix: &Path,
    file: &str,
    outside: &mut (usize, Option<String>),
) -> Result<DataInfo, String> {
    let img_path = img_prefix.join(&img.file_name);
    let name = format!("image {} (`{}`)", img.id, img.file_name);
    if !img_path.is_file() {
        return Err(format!(
            "`{file}`: {name}: image file `{}` does not exist (check `data_root` and `data_prefix.img`)",
            img_path.display()
        ));
    }
    let mut instances = Vec::new();
    for ann in anns {
        let id = ann.id;
        match parse_ann(ann, img, cats) {
            Ok(AnnOutcome::Kept(instance)) => instances.push(instance),
            Ok(AnnOutcome::Dropped) => {}
            Ok(AnnOutcome::Outside) => {
                outside.0 += 1;
                outside.1.get_or_insert_with(|| format!("annotation {id} of {name}"));
            }
            Err(what) => return Err(format!("`{file}`: annotation {id} of {name}: {what}")),
        }
    }
    Ok(DataInfo {
        img_id: img.id,
        img_path,
        height: img.height,
        width: img.width,
        instances,
    })
}

/// What becomes of one well-formed annotation.
enum AnnOutcome {
    Kept(Instance),
    /// Ignored, crowd-less tiny, or of a class not trained: MMDetection drops it.
    Dropped,
    /// Its box lies wholly outside the image (dropped too, but worth a warning).
    Outside,
}

/// One annotation: `Err` when malformed.
fn parse_ann(ann: RawAnn, img: &RawImage, cats: &Categories) -> Result<AnnOutcome, String> {
    if !cats.known.contains(&ann.category_id) {
        let mut ids: Vec<u64> = cats.known.iter().copied().collect();
        ids.sort_unstable();
        return Err(format!(
            "category_id {} is not one of the file's categories {ids:?}",
            ann.category_id
        ));
    }
    let [x1, y1, w, h] = parse_bbox(&ann.bbox)?;
    if w < 0.0 || h < 0.0 {
        return Err(format!(
            "bbox {:?} has a negative width or height (COCO boxes are [x, y, width, height])",
            [x1, y1, w, h]
        ));
    }
    let area = ann.area.ok_or("it has no `area`")?;
    let mask = parse_segmentation(ann.segmentation, img)?;
    // mirrors mmdet coco.py parse_data_info: the order and the exact tests.
    if truthy(&ann.ignore) {
        return Ok(AnnOutcome::Dropped);
    }
    let (width, height) = (f64::from(img.width), f64::from(img.height));
    let inter_w = ((x1 + w).min(width) - x1.max(0.0)).max(0.0);
    let inter_h = ((y1 + h).min(height) - y1.max(0.0)).max(0.0);
    if inter_w * inter_h == 0.0 && w >= 1.0 && h >= 1.0 {
        return Ok(AnnOutcome::Outside);
    }
    if inter_w * inter_h == 0.0 || area <= 0.0 || w < 1.0 || h < 1.0 {
        return Ok(AnnOutcome::Dropped);
    }
    let Some(&bbox_label) = cats.cat2label.get(&ann.category_id) else {
        return Ok(AnnOutcome::Dropped);
    };
    Ok(AnnOutcome::Kept(Instance {
        bbox: [x1 as f32, y1 as f32, (x1 + w) as f32, (y1 + h) as f32],
        bbox_label,
        ignore_flag: truthy(&ann.iscrowd),
        mask,
    }))
}

fn parse_bbox(v: &Value) -> Result<[f64; 4], String> {
    let nums: Option<Vec<f64>> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect());
    match nums {
        Some(n) if n.len() == 4 && v.as_array().is_some_and(|a| a.len() == 4) => {
            Ok([n[0], n[1], n[2], n[3]])
        }
        _ => Err(format!(
            "bbox {v} is not four numbers [x, y, width, height]"
        )),
    }
}

/// A segmentation as MMDetection keeps it (`None` when empty, as `if ann.get('segmentation')`).
fn parse_segmentation(
    segm: Option<RawSegm>,
    img: &RawImage,
) -> Result<Option<Segmentation>, String> {
    match segm {
        None => Ok(None),
        Some(RawSegm::Polygons(polys)) if polys.is_empty() => Ok(None),
        Some(RawSegm::Polygons(polys)) => {
            for (i, p) in polys.iter().enumerate() {
                if p.len() % 2 != 0 || p.len() < 6 {
                    return Err(format!(
                        "polygon {i} of its segmentation has {} coordinates; a polygon needs an even number, at least 6 (three points x, y)",
                        p.len()
                    ));
                }
            }
            Ok(Some(Segmentation::Polygons(polys)))
        }
        Some(RawSegm::Rle { size, counts }) => {
            parse_rle(&size, counts, img).map(|r| Some(Segmentation::Rle(r)))
        }
        Some(RawSegm::Empty) => Ok(None),
        Some(RawSegm::Invalid(found)) => Err(format!(
            "segmentation ({found}) is neither a list of polygons [[x0, y0, x1, y1, ...], ...] nor an RLE {{\"size\": [h, w], \"counts\": ...}}"
        )),
    }
}

fn parse_rle(size: &[u64], counts: RawCounts, img: &RawImage) -> Result<Rle, String> {
    let (h, w) = (u64::from(img.height), u64::from(img.width));
    if size != [h, w] {
        return Err(format!(
            "RLE size {size:?} is not the image's [height, width] [{h}, {w}]"
        ));
    }
    let rle = match counts {
        RawCounts::List(list) => {
            let counts = list
                .iter()
                .map(|&c| u32::try_from(c))
                .collect::<Result<Vec<u32>, _>>();
            let counts = counts.map_err(|_| "uncompressed RLE counts exceed 2^32".to_string())?;
            Rle {
                height: img.height,
                width: img.width,
                counts,
            }
        }
        RawCounts::Compressed(s) => Rle::from_compressed(&s, img.height, img.width)
            .map_err(|e| format!("compressed RLE counts are broken: {e}"))?,
    };
    let total: u64 = rle.counts.iter().map(|&c| u64::from(c)).sum();
    if total != h * w {
        return Err(format!(
            "RLE counts cover {total} pixels, not height x width = {}",
            h * w
        ));
    }
    Ok(rle)
}
