//! Hand-written serde readers for COCO's polymorphic JSON values, and the
//! streaming reader of results files.
//!
//! `#[serde(untagged)]` would buffer every segmentation into an intermediate
//! tree before trying each shape; COCO-val-sized files hold ~500k of them, so
//! these visitors pick the shape from the first token instead. Results are
//! converted to annotations while the array is parsed, so a 150 MB results
//! file is never held twice.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::coco::{
    is_box_result, no_detections, CocoDt, CocoError, CocoGt, CountsJson, Detection, SegmJson,
    Truthy,
};

impl<'de> Deserialize<'de> for SegmJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SegmJson;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("polygons [[x0, y0, x1, y1, ...], ...] or an RLE {\"size\": [h, w], \"counts\": ...}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SegmJson, A::Error> {
                let mut polys = Vec::new();
                while let Some(p) = seq.next_element::<Vec<f64>>()? {
                    polys.push(p);
                }
                Ok(SegmJson::Polygons(polys))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SegmJson, A::Error> {
                let (mut size, mut counts) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "size" => size = Some(map.next_value::<[u32; 2]>()?),
                        "counts" => counts = Some(map.next_value::<CountsJson>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let size = size.ok_or_else(|| de::Error::missing_field("size"))?;
                let counts = counts.ok_or_else(|| de::Error::missing_field("counts"))?;
                Ok(SegmJson::Rle { size, counts })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CountsJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountsJson;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("RLE counts: a compressed string or a list of run lengths")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CountsJson, E> {
                Ok(CountsJson::Compressed(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<CountsJson, E> {
                Ok(CountsJson::Compressed(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CountsJson, A::Error> {
                let mut runs = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(r) = seq.next_element::<u32>()? {
                    runs.push(r);
                }
                Ok(CountsJson::Runs(runs))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Truthy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Truthy;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("0, 1 or a boolean")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Truthy, E> {
                Ok(Truthy::Bool(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Truthy, E> {
                Ok(Truthy::Num(n as f64))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Truthy, E> {
                Ok(Truthy::Num(n as f64))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Truthy, E> {
                Ok(Truthy::Num(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a results array straight into `loadRes`'s annotations. A semantic
/// error (unknown image, missing score) is parked in `failure` and the parse
/// stopped with a placeholder serde error.
pub(crate) struct ResultsSeed<'a> {
    pub gt: &'a CocoGt,
    pub source: &'a str,
    pub failure: &'a RefCell<Option<CocoError>>,
    /// Expected number of results (a capacity hint).
    pub capacity: usize,
}

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_> {
    type Value = CocoDt;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<CocoDt, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_> {
    type Value = CocoDt;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of results")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CocoDt, A::Error> {
        let mut annotations = Vec::with_capacity(self.capacity);
        let mut box_results = None;
        while let Some(det) = seq.next_element::<Detection>()? {
            let converted = match box_results {
                Some(b) => Ok(b),
                None => is_box_result(&det, self.source),
            }
            .and_then(|b| {
                box_results = Some(b);
                self.gt
                    .result_annotation(annotations.len(), det, b, self.source)
            });
            match converted {
                Ok(a) => annotations.push(a),
                Err(e) => {
                    *self.failure.borrow_mut() = Some(e);
                    return Err(de::Error::custom("stopped"));
                }
            }
        }
        if annotations.is_empty() {
            *self.failure.borrow_mut() = Some(no_detections(self.source));
            return Err(de::Error::custom("stopped"));
        }
        Ok(CocoDt { annotations })
    }
}
