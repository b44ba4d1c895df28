//! Test support for the multi-image transforms: in-memory samples and
//! records, and MMDetection's outputs from `tests/fixtures/mix_transforms.json`
//! (written by `tests/data/mix_reference.py`).

use std::sync::Arc;

use serde_json::Value;

use super::mix::Partners;
use super::{Step, Transform};
use crate::data::{DataInfo, DataResult, Image, Instance, Masks, Sample, SampleRng};

/// A record of a `height x width` image of one colour `[b, g, r]` (kept in
/// its path, which [`Paint`] reads) with boxes labelled `labels`.
pub fn record(img_id: u64, (height, width): (u32, u32), colour: [u8; 3], boxes: &[([f32; 4], i64)]) -> Arc<DataInfo> {
    Arc::new(DataInfo {
        img_id,
        img_path: format!("{}-{}-{}.png", colour[0], colour[1], colour[2]).into(),
        height,
        width,
        instances: boxes
            .iter()
            .map(|&(bbox, bbox_label)| Instance { bbox, bbox_label, ignore_flag: false, mask: None })
            .collect(),
    })
}

/// Stands in for `LoadImageFromFile` + `LoadAnnotations` on [`record`]s:
/// paints the image in its colour and loads the boxes (with a mask each: the
/// box's pixels, when `masks`).
pub struct Paint {
    pub masks: bool,
}

impl Transform for Paint {
    fn apply(&self, mut sample: Sample, _rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let colour: Vec<u8> = sample
            .info
            .img_path
            .to_string_lossy()
            .trim_end_matches(".png")
            .split('-')
            .map(|c| c.parse().unwrap())
            .collect();
        let (h, w) = (sample.info.height as usize, sample.info.width as usize);
        sample.img = Some(Image {
            data: colour.iter().copied().cycle().take(h * w * 3).collect(),
            height: h,
            width: w,
            channels: 3,
        });
        sample.gt_bboxes = sample.info.instances.iter().map(|i| i.bbox).collect();
        sample.gt_bboxes_labels = sample.info.instances.iter().map(|i| i.bbox_label).collect();
        sample.gt_ignore_flags = sample.info.instances.iter().map(|i| i.ignore_flag).collect();
        if self.masks {
            let mut data = vec![0u8; sample.gt_bboxes.len() * h * w];
            for (k, b) in sample.gt_bboxes.iter().enumerate() {
                for y in (b[1] as usize).min(h)..(b[3] as usize).min(h) {
                    for x in (b[0] as usize).min(w)..(b[2] as usize).min(w) {
                        data[k * h * w + y * w + x] = 1;
                    }
                }
            }
            sample.gt_masks = Some(Masks::Bitmap { data, count: sample.gt_bboxes.len(), height: h, width: w });
        }
        Ok(Some(sample))
    }
}

/// Runs `f` with partners drawn from `records` through [`Paint`].
pub fn with_partners<T>(records: &[Arc<DataInfo>], masks: bool, f: impl FnOnce(&Partners<'_>) -> T) -> T {
    let earlier = [Step::One(Box::new(Paint { masks }))];
    let records = records.to_vec();
    f(&Partners { earlier: &earlier, records: &records, name: "test" })
}

/// Record `index` of `records` through [`Paint`].
pub fn painted(records: &[Arc<DataInfo>], index: usize, masks: bool) -> Sample {
    let sample = Sample::new(records[index].clone(), index);
    Paint { masks }.apply(sample, &mut crate::data::sample_rng(0, 0, 0)).unwrap().unwrap()
}

/// The bytes of a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `n` 0/1 values packed 8 a byte, first in the high bit (`np.packbits`).
pub fn unbits(s: &str, n: usize) -> Vec<u8> {
    unhex(s).iter().flat_map(|b| (0..8).rev().map(move |k| (b >> k) & 1)).take(n).collect()
}

/// `tests/fixtures/mix_transforms.json`.
pub fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mix_transforms.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<[f32; 4]> {
    let flat: Vec<f32> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    flat.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

/// Fixture sample `name` as a detc sample after loading.
pub fn fixture_sample(fx: &Value, name: &str) -> Sample {
    let s = &fx["samples"][name];
    let image = &fx["images"][s["image"].as_str().unwrap()];
    let (h, w) = (image["height"].as_u64().unwrap() as usize, image["width"].as_u64().unwrap() as usize);
    let info = DataInfo {
        img_id: 0,
        img_path: format!("{name}.png").into(),
        height: h as u32,
        width: w as u32,
        instances: vec![],
    };
    let mut sample = Sample::new(Arc::new(info), 0);
    sample.img = Some(Image { data: unhex(image["img"].as_str().unwrap()), height: h, width: w, channels: 3 });
    sample.gt_bboxes = floats(&s["bboxes"]);
    sample.gt_bboxes_labels = ints(&s["labels"]);
    sample.gt_ignore_flags = bools(&s["flags"]);
    let n = sample.gt_bboxes.len();
    sample.gt_masks =
        s["masks"].as_str().map(|m| Masks::Bitmap { data: unbits(m, n * h * w), count: n, height: h, width: w });
    sample
}

/// Asserts that `sample` is MMDetection's `out` (masks only when `masks`).
pub fn assert_output(case: &str, sample: &Sample, out: &Value, masks: bool) {
    let (h, w) = (out["height"].as_u64().unwrap() as usize, out["width"].as_u64().unwrap() as usize);
    let img = sample.img.as_ref().unwrap();
    assert_eq!((img.height, img.width, sample.img_shape), (h, w, (h, w)), "{case}: shape");
    let expected = unhex(out["img"].as_str().unwrap());
    let wrong: Vec<(usize, usize)> = (0..h * w)
        .filter(|&p| img.data[3 * p..3 * p + 3] != expected[3 * p..3 * p + 3])
        .map(|p| (p / w, p % w))
        .collect();
    let show: Vec<String> = wrong
        .iter()
        .take(4)
        .map(|&(y, x)| {
            format!("({y}, {x}): {:?} vs {:?}", &img.data[3 * (y * w + x)..][..3], &expected[3 * (y * w + x)..][..3])
        })
        .collect();
    assert!(wrong.is_empty(), "{case}: pixels (y, x) {wrong:?} differ from MMDetection's: {show:?}");
    assert_eq!(sample.gt_bboxes, floats(&out["bboxes"]), "{case}: boxes");
    assert_eq!(sample.gt_bboxes_labels, ints(&out["labels"]), "{case}: labels");
    assert_eq!(sample.gt_ignore_flags, bools(&out["flags"]), "{case}: ignore flags");
    let n = sample.gt_bboxes.len();
    match (out["masks"].as_str(), &sample.gt_masks) {
        (None, None) => {}
        (Some(m), Some(Masks::Bitmap { data, count, height, width })) => {
            assert_eq!((*count, *height, *width), (n, h, w), "{case}: masks' shape");
            if masks {
                let expected = unbits(m, n * h * w);
                let wrong: Vec<(usize, usize, usize)> = (0..n * h * w)
                    .filter(|&i| data[i] != expected[i])
                    .map(|i| (i / (h * w), i % (h * w) / w, i % w))
                    .collect();
                assert!(wrong.is_empty(), "{case}: mask pixels (mask, y, x) {wrong:?} differ from MMDetection's");
            }
        }
        (m, ours) => panic!("{case}: MMDetection's masks {m:?}, detc's {ours:?}"),
    }
}
