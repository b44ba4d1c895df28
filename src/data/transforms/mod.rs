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
//! Most steps are a [`Transform`] of one sample. The multi-image ones
//! (`CachedMosaic`, `CachedMixUp`) are a [`MixTransform`]: they also get
//! [`Partners`], other records of the sample's dataset run through the
//! steps before them ([`mix`] says why detc does not cache like MMDetection).
//! A pipeline with such a step runs with [`Pipeline::apply_with`], given the
//! dataset's [`Records`].
//!
//! Where detc deliberately differs from MMDetection (options it refuses
//! rather than silently treating differently), the transform's docs say so.

mod cached_mix_up;
mod cached_mosaic;
mod filter_annotations;
mod load_annotations;
mod load_image;
mod masks;
pub mod mix;
#[cfg(test)]
mod mix_test_support;
#[cfg(test)]
mod mix_tests;
mod pack_det_inputs;
mod pad;
mod random_choice;
mod random_crop;
mod random_flip;
mod random_resize;
mod resize;
mod yolox_hsv_random_aug;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use cached_mix_up::CachedMixUp;
pub use cached_mosaic::CachedMosaic;
pub use filter_annotations::FilterAnnotations;
pub use load_annotations::LoadAnnotations;
pub use load_image::LoadImageFromFile;
pub use mix::{MixTransform, Partners, Records};
pub use pack_det_inputs::PackDetInputs;
pub use pad::Pad;
pub use random_choice::RandomChoice;
pub use random_crop::RandomCrop;
pub use random_flip::RandomFlip;
pub use random_resize::{RandomChoiceResize, RandomResize};
pub use resize::Resize;
pub use yolox_hsv_random_aug::{augment_hsv, YOLOXHSVRandomAug};

use super::{DataError, DataResult, PackedSample, Sample, SampleRng};

/// One step of the pipeline: MMCV's `BaseTransform.transform`.
pub trait Transform: Send + Sync {
    /// The transformed sample, or `None` when the sample is dropped.
    fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<Sample>>;
}

/// One step of a [`Pipeline`] (before `PackDetInputs`).
pub(crate) enum Step {
    /// A transform of the sample alone.
    One(Box<dyn Transform>),
    /// A transform that mixes in other records of the dataset; `name` and
    /// `index` say which transform of the pipeline it is, for errors.
    Mix { transform: Box<dyn MixTransform>, name: &'static str, index: usize },
}

/// The transforms of a dataset's `pipeline`, ending with `PackDetInputs`.
pub struct Pipeline {
    steps: Vec<Step>,
    pack: PackDetInputs,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("transforms", &self.steps.len()).finish_non_exhaustive()
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
    "YOLOXHSVRandomAug",
    "CachedMosaic",
    "CachedMixUp",
    "PackDetInputs",
];

/// The transforms of [`TRANSFORMS`] that are a [`MixTransform`].
const MIX_TRANSFORMS: &[&str] = &["CachedMosaic", "CachedMixUp"];

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
        let mut built: Vec<Step> = Vec::new();
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
                name if MIX_TRANSFORMS.contains(&name) => built.push(build_mix(cfg, at).map_err(at_i)?),
                _ => built.push(Step::One(build_step(cfg, at).map_err(at_i)?)),
            }
        }
        let pack = pack.ok_or_else(|| (None, DataError::new("the pipeline must end with `PackDetInputs`")))?;
        refuse_cropped_polygons(transforms)?;
        Ok(Pipeline { steps: built, pack })
    }

    /// Whether a step mixes in other records (then run it with [`Pipeline::apply_with`]).
    pub fn mixes(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Mix { .. }))
    }

    /// Runs every transform on `sample`, then packs it; `None` when a
    /// transform dropped the sample. For pipelines without `CachedMosaic`
    /// or `CachedMixUp` (an error otherwise: they need [`Pipeline::apply_with`]).
    pub fn apply(&self, sample: Sample, rng: &mut SampleRng) -> DataResult<Option<PackedSample>> {
        self.run(sample, rng, None)
    }

    /// [`Pipeline::apply`] for a sample of `records` (its dataset, where the
    /// mixing transforms draw their partners from; `sample.index` is its
    /// index there).
    pub fn apply_with(
        &self,
        sample: Sample,
        rng: &mut SampleRng,
        records: &dyn Records,
    ) -> DataResult<Option<PackedSample>> {
        self.run(sample, rng, Some(records))
    }

    fn run(
        &self,
        sample: Sample,
        rng: &mut SampleRng,
        records: Option<&dyn Records>,
    ) -> DataResult<Option<PackedSample>> {
        match run_steps(&self.steps, sample, rng, records)? {
            Some(sample) => self.pack.pack(sample).map(Some),
            None => Ok(None),
        }
    }
}

/// Runs `steps` in order on `sample`; mixing steps draw their partners from
/// `records` through the steps before them.
fn run_steps(
    steps: &[Step],
    mut sample: Sample,
    rng: &mut SampleRng,
    records: Option<&dyn Records>,
) -> DataResult<Option<Sample>> {
    for (k, step) in steps.iter().enumerate() {
        let next = match step {
            Step::One(t) => t.apply(sample, rng)?,
            Step::Mix { transform, name, index } => {
                let records = records.ok_or_else(|| {
                    DataError::new(format!(
                        "pipeline transform {index} (`{name}`) mixes in other images of the dataset, and there is \
                         no dataset here (images given one by one): remove it from this pipeline, it belongs in \
                         `train_dataloader`'s"
                    ))
                })?;
                let partners = mix::Partners { earlier: &steps[..k], records, name };
                transform.apply(sample, rng, &partners)?
            }
        };
        match next {
            Some(s) => sample = s,
            None => return Ok(None),
        }
    }
    Ok(Some(sample))
}

/// The `type` of a transform dict; `what` names it in the error.
fn transform_name<'a>(cfg: &'a Value, what: &str) -> DataResult<&'a str> {
    cfg.get("type").and_then(Value::as_str).ok_or_else(|| {
        DataError::new(format!("{what}: a transform needs a `type` (one of {})", TRANSFORMS.join(", ")))
    })
}

/// `RandomCrop` (also inside a `RandomChoice`), `CachedMosaic` or
/// `CachedMixUp` after masks loaded as polygons
/// (`LoadAnnotations(poly2mask=False)`), refused when the pipeline is built
/// rather than at its first sample (see `random_crop`, `cached_mosaic`).
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
    let Some(load) = polygons else { return Ok(()) };
    for (i, t) in transforms.iter().enumerate().skip(load + 1) {
        let name = t.get("type").and_then(Value::as_str).unwrap_or_default();
        let why = if crops(t) {
            format!(
                "`RandomCrop` cannot crop the polygon masks of transform {load} \
                 (`LoadAnnotations(poly2mask=False)`; MMDetection clips polygons with shapely)"
            )
        } else if MIX_TRANSFORMS.contains(&name) {
            format!(
                "`{name}` cannot place the polygon masks of transform {load} \
                 (`LoadAnnotations(poly2mask=False)`; detc mixes bitmap masks only)"
            )
        } else {
            continue;
        };
        return Err((
            Some(i),
            DataError::new(format!("pipeline transform {i}: {why}: load bitmap masks with `poly2mask: true`")),
        ));
    }
    Ok(())
}

/// A multi-image transform, built from its dict.
fn build_mix(cfg: &Value, at: Site<'_>) -> DataResult<Step> {
    let (transform, name): (Box<dyn MixTransform>, &'static str) = match at.name {
        "CachedMosaic" => (Box::new(CachedMosaic::new(parse(at, cfg)?, at)?), "CachedMosaic"),
        "CachedMixUp" => (Box::new(CachedMixUp::new(parse(at, cfg)?, at)?), "CachedMixUp"),
        other => return Err(at.error(format!("`{other}` is not a multi-image transform"))),
    };
    Ok(Step::Mix { transform, name, index: at.index })
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
        "YOLOXHSVRandomAug" => Box::new(YOLOXHSVRandomAug::new(parse(at, cfg)?, at)?),
        "PackDetInputs" => return Err(at.error("`PackDetInputs` must be the last transform of the pipeline")),
        name if MIX_TRANSFORMS.contains(&name) => {
            return Err(at.error(format!(
                "`{name}` mixes in other images and must be a step of the pipeline itself, not inside another transform"
            )))
        }
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
