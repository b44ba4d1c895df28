//! MMCV/MMDetection transforms with their names and semantics (MMCV 2.1,
//! MMDetection 3.3.0), built from the pipeline config, one struct per
//! transform, one file each.
//!
//! A [`Pipeline`] runs the transforms in order on a [`Sample`] and ends with
//! `PackDetInputs`, which turns it into a [`PackedSample`]. A transform may
//! drop a sample (`LoadImageFromFile` with `ignore_empty`), which the
//! pipeline reports as `None`. Random choices come from the sample's own
//! [`SampleRng`], so a sample is augmented the same way on any worker.
//!
//! Where detc deliberately differs from MMDetection (options it refuses
//! rather than silently treating differently), the transform's docs say so.

mod filter_annotations;
mod load_annotations;
mod load_image;
mod masks;
mod pack_det_inputs;
mod pad;
mod random_choice;
mod random_crop;
mod random_flip;
mod random_resize;
mod resize;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use filter_annotations::FilterAnnotations;
pub use load_annotations::LoadAnnotations;
pub use load_image::LoadImageFromFile;
pub use pack_det_inputs::PackDetInputs;
pub use pad::Pad;
pub use random_choice::RandomChoice;
pub use random_crop::RandomCrop;
pub use random_flip::RandomFlip;
pub use random_resize::{RandomChoiceResize, RandomResize};
pub use resize::Resize;

use super::{DataError, DataResult, PackedSample, Sample, SampleRng};

/// One step of the pipeline: MMCV's `BaseTransform.transform`.
pub trait Transform: Send + Sync {
    /// The transformed sample, or `None` when the sample is dropped.
    fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>>;
}

/// The transforms of a dataset's `pipeline`, ending with `PackDetInputs`.
pub struct Pipeline {
    transforms: Vec<Box<dyn Transform>>,
    pack: PackDetInputs,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("transforms", &self.transforms.len()).finish_non_exhaustive()
    }
}

/// The transform names [`Pipeline::from_config`] builds.
pub const TRANSFORMS: &[&str] = &[
    "LoadImageFromFile",
    "LoadAnnotations",
    "Resize",
    "RandomResize",
    "RandomChoiceResize",
    "RandomFlip",
    "RandomCrop",
    "RandomChoice",
    "FilterAnnotations",
    "Pad",
    "PackDetInputs",
];

impl Pipeline {
    /// Builds the pipeline from its config dicts (each with a `type`). The
    /// last one must be `PackDetInputs`.
    pub fn from_config(transforms: &[Value]) -> DataResult<Pipeline> {
        Self::build(transforms).map_err(|(_, e)| e)
    }

    /// What [`Pipeline::from_config`] refuses in `transforms`: the index of
    /// the transform at fault (`None`: the pipeline as a whole) and why.
    /// `detc check` reports it at that transform of the config file.
    pub fn check(transforms: &[Value]) -> Result<(), (Option<usize>, DataError)> {
        Self::build(transforms).map(drop)
    }

    fn build(transforms: &[Value]) -> Result<Pipeline, (Option<usize>, DataError)> {
        let mut built: Vec<Box<dyn Transform>> = Vec::new();
        let mut pack = None;
        for (i, cfg) in transforms.iter().enumerate() {
            let at_i = |e: DataError| (Some(i), e);
            let name = transform_name(cfg, &format!("pipeline transform {i}")).map_err(at_i)?;
            if pack.is_some() {
                return Err(at_i(DataError::new(format!(
                    "pipeline transform {i} (`{name}`) comes after `PackDetInputs`, which must be the last transform"
                ))));
            }
            let at = Site { index: i, name };
            match name {
                "PackDetInputs" => pack = Some(parse(at, cfg).and_then(|c| PackDetInputs::new(c, at)).map_err(at_i)?),
                _ => built.push(build_step(cfg, at).map_err(at_i)?),
            }
        }
        let pack = pack.ok_or_else(|| (None, DataError::new("the pipeline must end with `PackDetInputs`")))?;
        refuse_cropped_polygons(transforms)?;
        Ok(Pipeline { transforms: built, pack })
    }

    /// Runs every transform on `sample`, then packs it; `None` when a
    /// transform dropped the sample.
    pub fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<PackedSample>> {
        let mut sample = sample;
        for t in &self.transforms {
            match t.apply(sample, rng)? {
                Some(s) => sample = s,
                None => return Ok(None),
            }
        }
        self.pack.pack(sample).map(Some)
    }
}

/// The `type` of a transform dict; `what` names it in the error.
fn transform_name<'a>(cfg: &'a Value, what: &str) -> DataResult<&'a str> {
    cfg.get("type").and_then(Value::as_str).ok_or_else(|| {
        DataError::new(format!("{what}: a transform needs a `type` (one of {})", TRANSFORMS.join(", ")))
    })
}

/// `RandomCrop` (also inside a `RandomChoice`) after masks loaded as polygons
/// (`LoadAnnotations(poly2mask=False)`), refused when the pipeline is built
/// rather than at its first sample (see `random_crop`).
fn refuse_cropped_polygons(transforms: &[Value]) -> Result<(), (Option<usize>, DataError)> {
    fn crops(t: &Value) -> bool {
        t.get("type").and_then(Value::as_str) == Some("RandomCrop")
            || t.get("transforms").and_then(Value::as_array).is_some_and(|candidates| {
                candidates.iter().any(|c| c.as_array().map_or_else(|| crops(c), |list| list.iter().any(crops)))
            })
    }
    let polygons = transforms.iter().position(|t| {
        t.get("type").and_then(Value::as_str) == Some("LoadAnnotations")
            && t.get("with_mask").and_then(Value::as_bool) == Some(true)
            && t.get("poly2mask").and_then(Value::as_bool) == Some(false)
    });
    match (polygons, transforms.iter().position(crops)) {
        (Some(load), Some(crop)) if crop > load => Err((
            Some(crop),
            DataError::new(format!(
                "pipeline transform {crop}: `RandomCrop` cannot crop the polygon masks of transform {load} \
                 (`LoadAnnotations(poly2mask=False)`; MMDetection clips polygons with shapely): load bitmap \
                 masks with `poly2mask: true`"
            )),
        )),
        _ => Ok(()),
    }
}

/// A transform other than `PackDetInputs`, built from its dict.
fn build_step(cfg: &Value, at: Site<'_>) -> DataResult<Box<dyn Transform>> {
    Ok(match at.name {
        "LoadImageFromFile" => Box::new(LoadImageFromFile::new(parse(at, cfg)?, at)?),
        "LoadAnnotations" => Box::new(LoadAnnotations::new(parse(at, cfg)?, at)?),
        "Resize" => Box::new(Resize::new(parse(at, cfg)?, at)?),
        "RandomResize" => Box::new(RandomResize::new(parse(at, cfg)?, at)?),
        "RandomChoiceResize" => Box::new(RandomChoiceResize::new(parse(at, cfg)?, at)?),
        "RandomFlip" => Box::new(RandomFlip::new(parse(at, cfg)?, at)?),
        "RandomCrop" => Box::new(RandomCrop::new(parse(at, cfg)?, at)?),
        "RandomChoice" => Box::new(RandomChoice::new(parse(at, cfg)?, at)?),
        "FilterAnnotations" => Box::new(FilterAnnotations::new(parse(at, cfg)?, at)?),
        "Pad" => Box::new(Pad::new(parse(at, cfg)?, at)?),
        "PackDetInputs" => return Err(at.error("`PackDetInputs` must be the last transform of the pipeline")),
        other => {
            return Err(DataError::new(format!(
                "pipeline transform {}: unknown transform `{other}` (detc implements {})",
                at.index,
                TRANSFORMS.join(", ")
            )))
        }
    })
}

/// Where a transform sits in the pipeline, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub index: usize,
    pub name: &'a str,
}

impl Site<'_> {
    /// A build error of this transform.
    pub fn error(&self, message: impl std::fmt::Display) -> DataError {
        DataError::new(format!("pipeline transform {} (`{}`): {message}", self.index, self.name))
    }
}

/// The transform's config struct from its dict (without `type`).
fn parse<T: DeserializeOwned>(at: Site<'_>, cfg: &Value) -> DataResult<T> {
    let mut fields = cfg.as_object().cloned().ok_or_else(|| at.error("expected a dict"))?;
    fields.remove("type");
    serde_json::from_value(Value::Object(fields)).map_err(|e| at.error(e))
}

/// An error while transforming one sample: names the transform and the image.
fn sample_error(transform: &str, sample: &Sample, message: impl std::fmt::Display) -> DataError {
    DataError::new(format!(
        "{transform} on image `{}` (id {}): {message}",
        sample.info.img_path.display(),
        sample.info.img_id
    ))
}

/// Keeps the instances `keep` (boxes, labels, ignore flags, masks), in that order.
fn select_instances(sample: &mut Sample, keep: &[usize]) {
    sample.gt_bboxes = keep.iter().map(|&i| sample.gt_bboxes[i]).collect();
    if !sample.gt_bboxes_labels.is_empty() {
        sample.gt_bboxes_labels = keep.iter().map(|&i| sample.gt_bboxes_labels[i]).collect();
    }
    if !sample.gt_ignore_flags.is_empty() {
        sample.gt_ignore_flags = keep.iter().map(|&i| sample.gt_ignore_flags[i]).collect();
    }
    if let Some(m) = &sample.gt_masks {
        sample.gt_masks = Some(masks::select(m, keep));
    }
}

/// The sample's masks, or an error saying they must be loaded first.
fn need_masks<'a>(transform: &str, sample: &'a Sample) -> DataResult<&'a super::Masks> {
    sample
        .gt_masks
        .as_ref()
        .ok_or_else(|| sample_error(transform, sample, "no masks loaded: `LoadAnnotations(with_mask=True)` must come first"))
}

/// The sample's image, or an error saying which transform must come first.
fn need_image<'a>(transform: &str, sample: &'a Sample) -> DataResult<&'a super::Image> {
    sample.img.as_ref().ok_or_else(|| sample_error(transform, sample, "no image loaded: put `LoadImageFromFile` first"))
}
