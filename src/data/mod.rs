//! The data side of training and testing, free of tch: COCO-format datasets,
//! the synthetic shapes generator, MMDetection's transforms, MMEngine's
//! samplers and a threaded loader. Tensors are made from a packed batch by
//! the engine's `DetDataPreprocessor`.
//!
//! A sample moves through the pipeline as a [`Sample`] (MMCV's `results`
//! dict, with typed fields) and leaves `PackDetInputs` as a [`PackedSample`]
//! (MMDetection's `inputs` + `DetDataSample`).

pub mod coco;
pub mod dataset;
pub mod image;
pub mod loader;
pub mod pipeline_check;
pub mod samplers;
pub mod shapes;
pub mod transforms;

use std::path::PathBuf;
use std::sync::Arc;

use crate::evaluation::mask::Rle;

/// An error in the data: which file, which annotation or image, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    pub message: String,
}

impl DataError {
    pub fn new(message: impl Into<String>) -> Self {
        DataError { message: message.into() }
    }
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {}

pub type DataResult<T> = std::result::Result<T, DataError>;

/// `type` names of the data side's builders outside the pipeline:
/// [`coco::CocoDataset`] and its [`dataset`] wrappers, the [`samplers`], and
/// `CocoMetric` ([`crate::evaluation::metric`]).
const COMPONENTS: &[&str] = &[
    "CocoDataset",
    "Objects365V1Dataset",
    "Objects365V2Dataset",
    "RepeatDataset",
    "ClassBalancedDataset",
    "ConcatDataset",
    "DefaultSampler",
    "InfiniteSampler",
    "AspectRatioBatchSampler",
    "CocoMetric",
];

/// Whether the data side builds the component `name` from its config (the
/// engine counts these as buildable, beside its model builders).
pub fn has_builder(name: &str) -> bool {
    COMPONENTS.contains(&name) || transforms::TRANSFORMS.contains(&name)
}

/// The random stream of one sample's transforms.
pub type SampleRng = rand_pcg::Pcg64Mcg;

/// The random stream for dataset record `index` in `epoch`: fixed by the seed,
/// so a resumed run augments each sample as the uninterrupted run would, on
/// whichever worker thread it lands.
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> SampleRng {
    use rand::SeedableRng;
    // SplitMix64 finaliser over the three numbers: nearby inputs, unrelated streams.
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    SampleRng::seed_from_u64(z)
}

/// A COCO segmentation as stored in the annotation file.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// One or more polygons `[x0, y0, x1, y1, ...]` in image pixels.
    Polygons(Vec<Vec<f64>>),
    /// Run-length encoding (uncompressed `counts` lists are decoded into this too).
    Rle(Rle),
}

/// One annotated object of an image, as `CocoDataset.parse_data_info` makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `[x1, y1, x2, y2]` in pixels of the original image.
    pub bbox: [f32; 4],
    /// Contiguous label: the index of the category in the dataset's `classes`.
    pub bbox_label: i64,
    /// Crowd regions (`iscrowd: 1`) are kept as ignored instances.
    pub ignore_flag: bool,
    pub mask: Option<Segmentation>,
}

/// One image of a dataset and its annotations (MMDetection's `data_info`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataInfo {
    pub img_id: u64,
    pub img_path: PathBuf,
    pub height: u32,
    pub width: u32,
    pub instances: Vec<Instance>,
}

/// An 8-bit image, row-major, channels interleaved (HWC), BGR when it has three
/// channels, as OpenCV holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub data: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

/// Instance masks of one image, as MMDetection's `BitmapMasks` / `PolygonMasks`.
#[derive(Debug, Clone, PartialEq)]
pub enum Masks {
    /// `count` masks of `height x width` bytes (0 or 1), row-major, one after another.
    Bitmap { data: Vec<u8>, count: usize, height: usize, width: usize },
    /// Polygons per instance (`poly2mask: false`).
    Polygons { polygons: Vec<Vec<Vec<f64>>>, height: usize, width: usize },
}

/// A flip applied by `RandomFlip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Horizontal,
    Vertical,
    Diagonal,
}

impl Flip {
    /// MMCV's name for the direction (`flip_direction` in the meta information).
    pub fn name(self) -> &'static str {
        match self {
            Flip::Horizontal => "horizontal",
            Flip::Vertical => "vertical",
            Flip::Diagonal => "diagonal",
        }
    }
}

/// A sample inside the pipeline: MMCV's `results` dict with typed fields.
/// Shapes are `(height, width)`; `scale_factor` is `(w_scale, h_scale)` as MMCV keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The dataset record it came from.
    pub info: Arc<DataInfo>,
    /// Index of the record in the dataset.
    pub index: usize,
    pub img: Option<Image>,
    pub ori_shape: (usize, usize),
    pub img_shape: (usize, usize),
    /// Set by `Pad`; the preprocessor pads the batch further.
    pub pad_shape: Option<(usize, usize)>,
    pub scale: Option<(usize, usize)>,
    pub scale_factor: (f64, f64),
    pub keep_ratio: bool,
    pub flip: bool,
    pub flip_direction: Option<Flip>,
    /// Set by `LoadAnnotations`: `[x1, y1, x2, y2]` per instance.
    pub gt_bboxes: Vec<[f32; 4]>,
    pub gt_bboxes_labels: Vec<i64>,
    pub gt_ignore_flags: Vec<bool>,
    pub gt_masks: Option<Masks>,
}

impl Sample {
    /// A fresh sample for dataset record `index`, before any transform.
    pub fn new(info: Arc<DataInfo>, index: usize) -> Self {
        let shape = (info.height as usize, info.width as usize);
        Sample {
            info,
            index,
            img: None,
            ori_shape: shape,
            img_shape: shape,
            pad_shape: None,
            scale: None,
            scale_factor: (1.0, 1.0),
            keep_ratio: false,
            flip: false,
            flip_direction: None,
            gt_bboxes: Vec::new(),
            gt_bboxes_labels: Vec::new(),
            gt_ignore_flags: Vec::new(),
            gt_masks: None,
        }
    }
}

/// Ground-truth (or ignored) instances of a packed sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PackedInstances {
    pub bboxes: Vec<[f32; 4]>,
    pub labels: Vec<i64>,
    pub masks: Option<Masks>,
}

/// The meta information `PackDetInputs` copies per its `meta_keys`; keys not
/// listed there are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SampleMeta {
    pub img_id: Option<u64>,
    pub img_path: Option<PathBuf>,
    pub ori_shape: Option<(usize, usize)>,
    pub img_shape: Option<(usize, usize)>,
    pub pad_shape: Option<(usize, usize)>,
    pub scale_factor: Option<(f64, f64)>,
    pub flip: Option<bool>,
    pub flip_direction: Option<Option<Flip>>,
}

/// What `PackDetInputs` hands to the loader: the image and a `DetDataSample`
/// (meta information, ground truth and ignored instances).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedSample {
    /// The image, still HWC and BGR: the preprocessor permutes it to CHW on the
    /// device, which saves MMDetection's transpose pass on the CPU.
    pub inputs: Image,
    pub meta: SampleMeta,
    pub gt_instances: PackedInstances,
    pub ignored_instances: PackedInstances,
}

#[cfg(test)]
mod tests {
    use crate::registry::Role;

    /// Every registered dataset, transform, sampler and evaluator has a
    /// builder here, and every builder name is registered with a data role.
    #[test]
    fn data_builders_match_the_registry() {
        let data_roles = [Role::Dataset, Role::Transform, Role::DataSampler, Role::BatchSampler, Role::Evaluator];
        for component in crate::registry::all() {
            if data_roles.contains(&component.role) {
                assert!(super::has_builder(component.name), "`{}` has no data builder", component.name);
            }
        }
        for name in super::COMPONENTS.iter().chain(super::transforms::TRANSFORMS) {
            let component = crate::registry::lookup(name).unwrap_or_else(|| panic!("`{name}` is not registered"));
            assert!(data_roles.contains(&component.role), "`{name}` is registered with role {:?}", component.role);
        }
    }
}
