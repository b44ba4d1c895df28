//! Data-side component configs: datasets, pipeline transforms, data samplers,
//! batch samplers and evaluators (metrics), as MMDetection 3.x, MMCV 2.x and
//! MMEngine declare them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::models::common::{AnyObject, BackendArgs, FloatOrList, FloatOrPair, IntOrPair, Null, OneOrMany, StrOrList};
use super::refs::{DatasetCfg, TransformCfg};

fn default_max_refetch() -> u32 {
    1000
}

fn default_png() -> String {
    ".png".into()
}

// --------------------------------------------------------------------------
// Datasets

/// A dataset's `data_prefix`: folders joined to `data_root`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataPrefix {
    /// Image folder, e.g. `train2017/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img: Option<String>,
    /// Semantic segmentation map folder (panoptic/semantic annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seg: Option<String>,
    /// MMEngine's generic image key; `CocoDataset` reads `img`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img_path: Option<String>,
}

// MMEngine's `BaseDataset` default is `{img_path: ''}`, with which
// `CocoDataset` raises `KeyError: 'img'`; images directly under `data_root`
// is what that default means.
fn default_data_prefix() -> DataPrefix {
    DataPrefix { img: Some(String::new()), seg: None, img_path: None }
}

/// A dataset's `metainfo`: class names and their drawing colours. Other keys are kept as given.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DatasetMetainfo {
    /// Class names to keep (a subset of the dataset's, in this order), or a file with one name per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<StrOrList>,
    /// One `(r, g, b)` colour per class for visualisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<Vec<[u8; 3]>>,
}

/// A detection dataset's `filter_cfg`: which images are dropped when training.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Drop images without any (non-crowd) ground-truth box.
    #[serde(default)]
    pub filter_empty_gt: bool,
    /// Drop images whose shorter side is smaller than this many pixels.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub min_size: f64,
}

/// Image index or indices: the first `n` images, or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum Indices {
    /// Keep the first `n` samples.
    First(u64),
    /// Keep these sample indices.
    List(Vec<u64>),
}

/// `CocoDataset`: COCO-format detection / instance segmentation annotations
/// (`mmdet.datasets.CocoDataset`). `Objects365V1Dataset` and
/// `Objects365V2Dataset` take the same fields: V1 labels the categories in
/// id order, V2 reads each image as `<directory>/<file>` of its `file_name`
/// and skips MMDetection's three broken images.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CocoDatasetConfig {
    /// Annotation JSON, relative to `data_root` unless absolute.
    #[serde(default)]
    pub ann_file: String,
    /// Class names and palette; `classes` selects and orders a subset of COCO's 80.
    #[serde(default)]
    pub metainfo: Option<DatasetMetainfo>,
    /// Root joined to `ann_file` and `data_prefix`.
    #[serde(default)]
    pub data_root: String,
    /// Image (and segmentation) folders relative to `data_root`.
    #[serde(default = "default_data_prefix")]
    pub data_prefix: DataPrefix,
    /// Which images to drop when training (`filter_empty_gt`, `min_size`).
    #[serde(default)]
    pub filter_cfg: Option<FilterConfig>,
    /// Use only these samples (first `n`, or a list); all when null.
    #[serde(default)]
    pub indices: Option<Indices>,
    /// Keep annotations serialised in one buffer shared by loader workers.
    #[serde(default = "super::models::common::yes")]
    pub serialize_data: bool,
    /// Transforms applied to each sample, in order.
    #[serde(default)]
    pub pipeline: Vec<TransformCfg>,
    /// Test mode: no filtering, and no re-fetching of samples the pipeline drops.
    #[serde(default)]
    pub test_mode: bool,
    /// Defer loading annotations until first use.
    #[serde(default)]
    pub lazy_init: bool,
    /// How many times to draw another sample when the pipeline returns none.
    #[serde(default = "default_max_refetch")]
    #[schemars(range(min = 1))]
    pub max_refetch: u32,
    /// Suffix of segmentation map files.
    #[serde(default = "default_png")]
    pub seg_map_suffix: String,
    /// Precomputed proposals file (pickle); not supported by detc.
    #[serde(default)]
    pub proposal_file: Option<String>,
    /// Removed in MMDetection 3.0 (it raises): use `backend_args`.
    #[serde(default)]
    pub file_client_args: Null,
    /// File backend arguments; local files when null.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
    /// Add the class names to each sample (for open-vocabulary models).
    #[serde(default)]
    pub return_classes: bool,
    /// Caption prompts for grounding models (needs `return_classes`).
    #[serde(default)]
    pub caption_prompt: Option<AnyObject>,
    /// detc: drop images with a malformed annotation (unknown category, negative
    /// size, broken polygon) or a missing image file, with one warning giving
    /// the count, instead of stopping with an error that names the first one;
    /// in training, also skip an image that cannot be decoded (corrupt,
    /// truncated), drawing another sample in its place, with a counted warning.
    #[serde(default)]
    pub skip_invalid_samples: bool,
}

/// `RepeatDataset`: the inner dataset `times` times over in one epoch
/// (`mmengine.dataset.RepeatDataset`); MMDetection's 3x schedules use it to
/// make an epoch three passes over COCO.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepeatDatasetConfig {
    /// The dataset to repeat (a `CocoDataset` or another wrapper).
    pub dataset: DatasetCfg,
    /// How many passes over it one epoch makes.
    #[schemars(range(min = 1))]
    pub times: u32,
    /// Defer loading annotations until first use (detc loads them before training either way).
    #[serde(default)]
    pub lazy_init: bool,
}

/// `ClassBalancedDataset`: repeats each image by the rarity of its classes
/// (LVIS's repeat factor sampling, `mmengine.dataset.ClassBalancedDataset`):
/// an image is taken `ceil(max over its classes of max(1, sqrt(t / f)))`
/// times, `f` being the fraction of images with that class.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassBalancedDatasetConfig {
    /// The dataset to balance.
    pub dataset: DatasetCfg,
    /// The frequency `t` below which a class's images are repeated.
    #[schemars(range(min = 0.0))]
    pub oversample_thr: f64,
    /// Defer loading annotations until first use (detc loads them before training either way).
    #[serde(default)]
    pub lazy_init: bool,
}

/// `ConcatDataset`: the datasets one after another
/// (`mmdet.datasets.ConcatDataset`); they must have the same classes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcatDatasetConfig {
    /// The datasets, each with its own pipeline.
    #[schemars(length(min = 1))]
    pub datasets: Vec<DatasetCfg>,
    /// Defer loading annotations until first use (detc loads them before training either way).
    #[serde(default)]
    pub lazy_init: bool,
    /// `metainfo` keys that may differ between the datasets (not `classes`).
    #[serde(default)]
    pub ignore_keys: Option<StrOrList>,
}

// --------------------------------------------------------------------------
// Transforms

/// How `LoadImageFromFile` decodes colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColorType {
    /// Three-channel BGR, honouring EXIF orientation.
    Color,
    /// Single channel.
    Grayscale,
    /// As stored (keeps alpha and bit depth).
    Unchanged,
    /// Three-channel BGR, ignoring EXIF orientation.
    ColorIgnoreOrientation,
    /// Single channel, ignoring EXIF orientation.
    GrayscaleIgnoreOrientation,
}

fn default_color() -> ColorType {
    ColorType::Color
}

/// Image decoding library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImdecodeBackend {
    /// OpenCV.
    Cv2,
    /// libjpeg-turbo.
    Turbojpeg,
    /// Pillow.
    Pillow,
    /// tifffile.
    Tifffile,
}

fn default_cv2() -> ImdecodeBackend {
    ImdecodeBackend::Cv2
}

/// `LoadImageFromFile`: reads `img_path` into `img` (`mmcv.transforms.LoadImageFromFile`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadImageFromFileConfig {
    /// Convert the image to float32.
    #[serde(default)]
    pub to_float32: bool,
    /// `color`, `grayscale`, `unchanged`, …
    #[serde(default = "default_color")]
    pub color_type: ColorType,
    /// `cv2`, `turbojpeg`, `pillow` or `tifffile`.
    #[serde(default = "default_cv2")]
    pub imdecode_backend: ImdecodeBackend,
    /// Deprecated FileClient arguments; use `backend_args` (setting both is an error).
    #[serde(default)]
    pub file_client_args: Option<AnyObject>,
    /// Return no sample instead of raising when the file is missing.
    #[serde(default)]
    pub ignore_empty: bool,
    /// File backend arguments; local files when null.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
}

fn default_hbox() -> String {
    "hbox".into()
}

/// `LoadAnnotations`: loads boxes, labels and (optionally) masks of each image
/// (`mmdet.datasets.transforms.LoadAnnotations`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadAnnotationsConfig {
    /// Load ground-truth boxes.
    #[serde(default = "super::models::common::yes")]
    pub with_bbox: bool,
    /// Load ground-truth labels.
    #[serde(default = "super::models::common::yes")]
    pub with_label: bool,
    /// Load instance masks.
    #[serde(default)]
    pub with_mask: bool,
    /// Load semantic segmentation maps.
    #[serde(default)]
    pub with_seg: bool,
    /// Load keypoints (not used by detection).
    #[serde(default)]
    pub with_keypoints: bool,
    /// Convert polygons to bitmaps (false keeps polygons).
    #[serde(default = "super::models::common::yes")]
    pub poly2mask: bool,
    /// Box type of the loaded boxes (`hbox`).
    #[serde(default = "default_hbox")]
    pub box_type: String,
    /// Shift segmentation labels down by one (label 0 becomes `ignore_index`).
    #[serde(default)]
    pub reduce_zero_label: bool,
    /// Segmentation label that is ignored.
    #[serde(default = "super::models::common::int::<255>")]
    pub ignore_index: i64,
    /// `cv2`, `turbojpeg`, `pillow` or `tifffile` (segmentation maps).
    #[serde(default = "default_cv2")]
    pub imdecode_backend: ImdecodeBackend,
    /// Deprecated FileClient arguments; use `backend_args`.
    #[serde(default)]
    pub file_client_args: Option<AnyObject>,
    /// File backend arguments; local files when null.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
}

/// Interpolation of `Resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (the default).
    Bilinear,
    /// Bicubic.
    Bicubic,
    /// Pixel-area relation (cv2 only).
    Area,
    /// Lanczos (8x8 neighbourhood).
    Lanczos,
    /// Box filter (pillow only).
    Box,
    /// Hamming filter (pillow only).
    Hamming,
}

fn default_bilinear() -> Interpolation {
    Interpolation::Bilinear
}

/// Resizing library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResizeBackend {
    /// OpenCV (the default).
    Cv2,
    /// Pillow.
    Pillow,
}

fn default_cv2_resize() -> ResizeBackend {
    ResizeBackend::Cv2
}

/// `Resize`: resizes the image and its boxes, masks and maps to `scale` or by
/// `scale_factor` (`mmdet.datasets.transforms.Resize`); set exactly one of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeConfig {
    /// Target size `(w, h)`, e.g. `(1333, 800)`, or one int for a square; with `keep_ratio` the long/short side limits.
    #[serde(default)]
    pub scale: Option<IntOrPair>,
    /// Resize ratio, one float or `(w_ratio, h_ratio)`.
    #[serde(default)]
    pub scale_factor: Option<FloatOrPair>,
    /// Keep the aspect ratio: the largest size that fits within `scale`.
    #[serde(default)]
    pub keep_ratio: bool,
    /// Clip boxes to the resized image.
    #[serde(default = "super::models::common::yes")]
    pub clip_object_border: bool,
    /// `cv2` or `pillow`.
    #[serde(default = "default_cv2_resize")]
    pub backend: ResizeBackend,
    /// Interpolation method.
    #[serde(default = "default_bilinear")]
    pub interpolation: Interpolation,
}

/// A flip direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlipDirection {
    /// Left-right.
    Horizontal,
    /// Top-bottom.
    Vertical,
    /// Both (a 180° rotation).
    Diagonal,
}

fn default_horizontal() -> OneOrMany<FlipDirection> {
    OneOrMany::One(FlipDirection::Horizontal)
}

/// A flip probability, or one probability per direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum FlipProb {
    /// Probability of flipping.
    One(#[schemars(range(min = 0.0, max = 1.0))] f64),
    /// Probability of each direction in `direction`; they must sum to at most 1.
    PerDirection(#[schemars(inner(range(min = 0.0, max = 1.0)))] Vec<f64>),
}

/// `RandomFlip`: flips the image and its annotations with probability `prob`
/// (`mmdet.datasets.transforms.RandomFlip`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomFlipConfig {
    /// Flip probability (a float in [0, 1]), or one per direction. Required: MMCV rejects null.
    pub prob: FlipProb,
    /// `horizontal`, `vertical`, `diagonal`, or a list of them (with a list `prob`).
    #[serde(default = "default_horizontal")]
    pub direction: OneOrMany<FlipDirection>,
    /// Label pairs swapped in segmentation maps when flipping (e.g. left/right classes).
    #[serde(default)]
    pub swap_seg_labels: Option<Vec<Vec<i64>>>,
}

fn default_resize_type() -> String {
    "Resize".into()
}

/// `RandomResize`'s `scale`: a base size multiplied by a ratio from
/// `ratio_range`, or two sizes between which each side is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum RandomScale {
    /// `(w, h)`, multiplied by a ratio drawn from `ratio_range`.
    Pair((u32, u32)),
    /// `[(w0, h0), (w1, h1)]`: each side drawn uniformly between the two (inclusive).
    Range([(u32, u32); 2]),
}

/// `RandomResize`: resizes to a scale drawn at random, then as `Resize`
/// (`mmcv.transforms.RandomResize`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomResizeConfig {
    /// Base `(w, h)` with `ratio_range`, or `[(w0, h0), (w1, h1)]` to draw each side from.
    pub scale: RandomScale,
    /// `(min, max)` ratio multiplied with a `(w, h)` `scale`.
    #[serde(default)]
    pub ratio_range: Option<(f64, f64)>,
    /// The resize transform applied with the drawn scale (`Resize`).
    #[serde(default = "default_resize_type")]
    pub resize_type: String,
    /// Keep the aspect ratio (passed to the resize transform).
    #[serde(default)]
    pub keep_ratio: bool,
    /// Clip boxes to the resized image (passed to the resize transform).
    #[serde(default = "super::models::common::yes")]
    pub clip_object_border: bool,
    /// `cv2` or `pillow` (passed to the resize transform).
    #[serde(default = "default_cv2_resize")]
    pub backend: ResizeBackend,
    /// Interpolation method (passed to the resize transform).
    #[serde(default = "default_bilinear")]
    pub interpolation: Interpolation,
}

/// `RandomChoiceResize`: resizes to one of `scales`, drawn uniformly, then as
/// `Resize` (`mmcv.transforms.RandomChoiceResize`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomChoiceResizeConfig {
    /// Candidate `(w, h)` scales, e.g. `[(1333, 640), (1333, 800)]`.
    pub scales: OneOrMany<(u32, u32)>,
    /// The resize transform applied with the drawn scale (`Resize`).
    #[serde(default = "default_resize_type")]
    pub resize_type: String,
    /// Keep the aspect ratio (passed to the resize transform).
    #[serde(default)]
    pub keep_ratio: bool,
    /// Clip boxes to the resized image (passed to the resize transform).
    #[serde(default = "super::models::common::yes")]
    pub clip_object_border: bool,
    /// `cv2` or `pillow` (passed to the resize transform).
    #[serde(default = "default_cv2_resize")]
    pub backend: ResizeBackend,
    /// Interpolation method (passed to the resize transform).
    #[serde(default = "default_bilinear")]
    pub interpolation: Interpolation,
}

/// How `RandomCrop` reads `crop_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CropType {
    /// Crop `(min(w, crop_size[0]), min(h, crop_size[1]))` pixels.
    Absolute,
    /// Crop a height and a width each drawn from `[crop_size[0], crop_size[1]]` pixels (capped by the image).
    AbsoluteRange,
    /// Crop `(w * crop_size[0], h * crop_size[1])`, rounded.
    Relative,
    /// Crop `h * r_h` by `w * r_w`, `r_h` drawn from `[crop_size[0], 1]`, `r_w` from `[crop_size[1], 1]`.
    RelativeRange,
}

/// `RandomCrop`: crops a window of the drawn size at a random offset, with its
/// boxes (shifted and clipped) and masks; instances left outside are removed
/// (`mmdet.datasets.transforms.RandomCrop`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomCropConfig {
    /// `(width, height)` in pixels or as ratios of the image, read as `crop_type` says.
    pub crop_size: (f64, f64),
    /// How `crop_size` is read.
    #[serde(default = "default_crop_type")]
    pub crop_type: CropType,
    /// Keep a crop that holds no box (else the sample is dropped and another is drawn).
    #[serde(default)]
    pub allow_negative_crop: bool,
    /// Recompute the boxes from the cropped masks.
    #[serde(default)]
    pub recompute_bbox: bool,
    /// Clip the boxes to the crop.
    #[serde(default = "super::models::common::yes")]
    pub bbox_clip_border: bool,
}

fn default_crop_type() -> CropType {
    CropType::Absolute
}

/// `FilterAnnotations`: removes the instances whose box is too small
/// (width and height not above `min_gt_bbox_wh`) or whose mask covers fewer
/// than `min_gt_mask_area` pixels (`mmdet.datasets.transforms.FilterAnnotations`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterAnnotationsConfig {
    /// `(width, height)` a box must exceed to be kept.
    #[serde(default = "one_by_one")]
    pub min_gt_bbox_wh: (f64, f64),
    /// Pixels a mask must cover to be kept.
    #[serde(default = "one_pixel")]
    pub min_gt_mask_area: f64,
    /// Filter by box size.
    #[serde(default = "super::models::common::yes")]
    pub by_box: bool,
    /// Filter by mask area.
    #[serde(default)]
    pub by_mask: bool,
    /// MMDetection's name for its opposite: when true, a sample left without
    /// any instance is dropped (another is drawn in training).
    #[serde(default = "super::models::common::yes")]
    pub keep_empty: bool,
}

fn one_by_one() -> (f64, f64) {
    (1.0, 1.0)
}

fn one_pixel() -> f64 {
    1.0
}

/// `RandomChoice`: runs one of `transforms` (a transform or a list of them),
/// drawn with the probabilities `prob` (uniformly when null)
/// (`mmcv.transforms.RandomChoice`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomChoiceConfig {
    /// The candidates: each a transform or a list of transforms run in order.
    pub transforms: Vec<OneOrMany<TransformCfg>>,
    /// The probability of each candidate, summing to 1.
    #[serde(default)]
    pub prob: Option<Vec<f64>>,
}

/// A padding value for the image: one value for every channel, or one per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum ImagePadVal {
    /// The same value in every channel.
    One(i64),
    /// One value per channel (BGR order for colour images).
    PerChannel(Vec<i64>),
}

/// `Pad`'s values per target, as MMCV's dict form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PadValues {
    /// Image padding value (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img: Option<ImagePadVal>,
    /// Segmentation map padding value (255 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seg: Option<i64>,
    /// Instance mask padding value (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<i64>,
}

/// `Pad`'s `pad_val`: an int for the image (segmentation maps get 255), or a dict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum PadVal {
    /// Image padding value.
    Int(i64),
    /// `{img: 0, seg: 255, masks: 0}`.
    Dict(PadValues),
}

fn default_pad_val() -> PadVal {
    PadVal::Dict(PadValues { img: Some(ImagePadVal::One(0)), seg: Some(255), masks: None })
}

/// How `Pad` fills the new pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// A constant value (`pad_val`).
    Constant,
    /// The last value at the edge.
    Edge,
    /// Reflection without repeating the edge value.
    Reflect,
    /// Reflection repeating the edge value.
    Symmetric,
}

fn default_constant() -> PaddingMode {
    PaddingMode::Constant
}

/// `Pad`: pads the image (and masks) at the bottom and right to a fixed size,
/// a multiple of `size_divisor`, or a square (`mmdet.datasets.transforms.Pad`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PadConfig {
    /// Fixed padded size `(w, h)`; exclusive with `size_divisor` unless `pad_to_square`.
    #[serde(default)]
    pub size: Option<(u32, u32)>,
    /// Pad each side up to a multiple of this.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub size_divisor: Option<u32>,
    /// Pad to a square of the longer side (then to `size_divisor` if set); `size` must be null.
    #[serde(default)]
    pub pad_to_square: bool,
    /// Padding value: an int for the image, or `{img, seg, masks}`.
    #[serde(default = "default_pad_val")]
    pub pad_val: PadVal,
    /// `constant`, `edge`, `reflect` or `symmetric`.
    #[serde(default = "default_constant")]
    pub padding_mode: PaddingMode,
}

fn default_meta_keys() -> Vec<String> {
    ["img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "flip", "flip_direction"]
        .into_iter()
        .map(String::from)
        .collect()
}

/// `PackDetInputs`: packs the image into `inputs` and annotations and `meta_keys`
/// into a `DetDataSample` (`mmdet.datasets.transforms.PackDetInputs`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackDetInputsConfig {
    /// Sample keys copied into the image meta information.
    #[serde(default = "default_meta_keys")]
    pub meta_keys: Vec<String>,
}

/// `YOLOXHSVRandomAug`: shifts hue, saturation and value by random gains, each
/// drawn in `(-delta, delta)` and kept with probability 1/2
/// (`mmdet.datasets.transforms.YOLOXHSVRandomAug`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct YOLOXHSVRandomAugConfig {
    /// Largest hue shift, in OpenCV's 8-bit hue units (a full turn is 180).
    #[serde(default = "super::models::common::int::<5>")]
    #[schemars(range(min = 0, max = 255))]
    pub hue_delta: i64,
    /// Largest saturation shift (saturation is 0..=255).
    #[serde(default = "super::models::common::int::<30>")]
    #[schemars(range(min = 0, max = 255))]
    pub saturation_delta: i64,
    /// Largest value (brightness) shift (value is 0..=255).
    #[serde(default = "super::models::common::int::<30>")]
    #[schemars(range(min = 0, max = 255))]
    pub value_delta: i64,
}

/// A padding value of `CachedMosaic` and `CachedMixUp`: one number for every
/// channel, or one per channel (BGR). As in MMDetection, whether the number is
/// written as an integer (`114`) or a float (`114.0`, the default) decides
/// whether `CachedMixUp` rescales its padded partner in 8 bits or in floating
/// point (then truncates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(inline)]
pub enum MixPadVal {
    /// The same value in every channel, in [0, 255].
    One(serde_json::Number),
    /// One value per channel, e.g. `[114, 114, 114]`.
    PerChannel(Vec<serde_json::Number>),
}

fn default_mix_pad_val() -> MixPadVal {
    MixPadVal::One(serde_json::Number::from_f64(114.0).expect("finite"))
}

fn default_mix_scale() -> (u32, u32) {
    (640, 640)
}

fn default_mix_ratio() -> (f64, f64) {
    (0.5, 1.5)
}

fn one_f64() -> f64 {
    1.0
}

fn half_f64() -> f64 {
    0.5
}

/// `CachedMosaic`: combines the sample with three other images of the dataset
/// into one `2 * img_scale` mosaic around a random centre
/// (`mmdet.datasets.transforms.CachedMosaic`). detc draws the three uniformly
/// from the sample's dataset (through the transforms before this one) instead
/// of from a per-worker cache, so augmentation does not depend on the number
/// of workers and resumes exactly.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CachedMosaicConfig {
    /// `(w, h)` of one image's cell; the mosaic is `(2w, 2h)`.
    #[serde(default = "default_mix_scale")]
    pub img_scale: (u32, u32),
    /// Range of the mosaic centre, as a ratio of `img_scale`, in [0, 2].
    #[serde(default = "default_mix_ratio")]
    pub center_ratio_range: (f64, f64),
    /// Clip the boxes to the mosaic.
    #[serde(default = "super::models::common::yes")]
    pub bbox_clip_border: bool,
    /// Value of the mosaic's pixels no image covers, in [0, 255]: a number, or one per channel (BGR).
    #[serde(default = "default_mix_pad_val")]
    pub pad_val: MixPadVal,
    /// Probability of making a mosaic (the sample passes unchanged otherwise).
    #[serde(default = "one_f64")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub prob: f64,
    /// MMDetection's cache length (at least 4); accepted for compatibility,
    /// changes nothing in detc, which draws from the whole dataset.
    #[serde(default = "super::models::common::int::<40>")]
    #[schemars(range(min = 4))]
    pub max_cached_images: i64,
    /// MMDetection's cache eviction (random or first-in first-out); accepted
    /// for compatibility, changes nothing in detc.
    #[serde(default = "super::models::common::yes")]
    pub random_pop: bool,
}

/// `CachedMixUp`: blends the sample half and half with another image of the
/// dataset, rescaled to `img_scale`, jittered, maybe flipped and randomly
/// cropped or padded to the sample's size (`mmdet.datasets.transforms.CachedMixUp`).
/// detc draws the other image uniformly from the sample's dataset (through
/// the transforms before this one) instead of from a per-worker cache.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CachedMixUpConfig {
    /// `(w, h)` the other image is rescaled into (keeping its aspect ratio) before the jitter.
    #[serde(default = "default_mix_scale")]
    pub img_scale: (u32, u32),
    /// `(min, max)` of the random scale jitter of the other image; positive.
    #[serde(default = "default_mix_ratio")]
    pub ratio_range: (f64, f64),
    /// The other image is flipped horizontally when a uniform draw exceeds
    /// this (so with probability `1 - flip_ratio`, as in MMDetection).
    #[serde(default = "half_f64")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub flip_ratio: f64,
    /// Value of the padding around the other image, in [0, 255]: a number, or one per channel
    /// (BGR). As in MMDetection, written as a float (`114.0`) it makes the jitter resize in
    /// floating point (then truncate to 8 bits), as an integer (`114`) in 8 bits.
    #[serde(default = "default_mix_pad_val")]
    pub pad_val: MixPadVal,
    /// How many images to draw, at most, to find one with boxes; without, the sample passes unchanged.
    #[serde(default = "super::models::common::int::<15>")]
    #[schemars(range(min = 1))]
    pub max_iters: i64,
    /// Clip the boxes to the images.
    #[serde(default = "super::models::common::yes")]
    pub bbox_clip_border: bool,
    /// MMDetection's cache length (at least 2); accepted for compatibility,
    /// changes nothing in detc, which draws from the whole dataset.
    #[serde(default = "super::models::common::int::<20>")]
    #[schemars(range(min = 2))]
    pub max_cached_images: i64,
    /// MMDetection's cache eviction (random or first-in first-out); accepted
    /// for compatibility, changes nothing in detc.
    #[serde(default = "super::models::common::yes")]
    pub random_pop: bool,
    /// Probability of mixing (the sample passes unchanged otherwise).
    #[serde(default = "one_f64")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub prob: f64,
}

// --------------------------------------------------------------------------
// Samplers

/// `DefaultSampler`: the epoch sampler of MMEngine; each rank takes its share,
/// shuffled with a per-epoch seed (`mmengine.dataset.DefaultSampler`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultSamplerConfig {
    /// Shuffle every epoch (training) or keep dataset order (evaluation).
    #[serde(default = "super::models::common::yes")]
    pub shuffle: bool,
    /// Shuffle seed; shared across ranks, drawn at random when null.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Pad with repeated samples so that every rank gets the same count.
    #[serde(default = "super::models::common::yes")]
    pub round_up: bool,
}

/// `InfiniteSampler`: an endless stream of (shuffled) indices, for iteration-based
/// training (`mmengine.dataset.InfiniteSampler`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfiniteSamplerConfig {
    /// Shuffle the indices.
    #[serde(default = "super::models::common::yes")]
    pub shuffle: bool,
    /// Shuffle seed; shared across ranks, drawn at random when null.
    #[serde(default)]
    pub seed: Option<i64>,
}

/// `AspectRatioBatchSampler`: batches images of the same orientation (landscape
/// or portrait) together to reduce padding (`mmdet.datasets.AspectRatioBatchSampler`).
/// The runner supplies the sampler and the dataloader's `batch_size`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AspectRatioBatchSamplerConfig {
    /// Batch size; the dataloader's `batch_size` when absent.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub batch_size: Option<u32>,
    /// Drop the last incomplete batch of each orientation.
    #[serde(default)]
    pub drop_last: bool,
}

// --------------------------------------------------------------------------
// Evaluators

/// What `CocoMetric` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CocoMetricKind {
    /// Box AP.
    Bbox,
    /// Mask AP.
    Segm,
    /// Proposal recall through COCO's evaluator.
    Proposal,
    /// Fast proposal recall without COCO's evaluator.
    ProposalFast,
}

fn default_bbox_metric() -> OneOrMany<CocoMetricKind> {
    OneOrMany::One(CocoMetricKind::Bbox)
}

fn default_proposal_nums() -> Vec<u32> {
    vec![100, 300, 1000]
}

/// Where results are gathered for evaluation across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CollectDevice {
    /// Through the CPU (shared files or pickled objects).
    Cpu,
    /// Through GPU collectives.
    Gpu,
}

fn default_cpu() -> CollectDevice {
    CollectDevice::Cpu
}

/// `CocoMetric`: COCO box/mask AP and proposal recall (`mmdet.evaluation.CocoMetric`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CocoMetricConfig {
    /// Ground-truth COCO JSON; converted from the dataset when null.
    #[serde(default)]
    pub ann_file: Option<String>,
    /// `bbox`, `segm`, `proposal`, `proposal_fast`, or a list of them.
    #[serde(default = "default_bbox_metric")]
    pub metric: OneOrMany<CocoMetricKind>,
    /// Also report AP per class.
    #[serde(default)]
    pub classwise: bool,
    /// Proposal counts at which recall is reported.
    #[serde(default = "default_proposal_nums")]
    #[schemars(inner(range(min = 1)))]
    pub proposal_nums: Vec<u32>,
    /// IoU thresholds; COCO's 0.50:0.05:0.95 when null.
    #[serde(default)]
    pub iou_thrs: Option<FloatOrList>,
    /// Which summary numbers to report (e.g. `mAP`, `mAP_50`, `AR@100`); all when null.
    #[serde(default)]
    pub metric_items: Option<Vec<String>>,
    /// Only write result files (for the test-dev server), no evaluation; needs `outfile_prefix`.
    #[serde(default)]
    pub format_only: bool,
    /// Prefix of the JSON result files; a temporary directory when null.
    #[serde(default)]
    pub outfile_prefix: Option<String>,
    /// Removed in MMDetection 3.0 (it raises): use `backend_args`.
    #[serde(default)]
    pub file_client_args: Null,
    /// File backend arguments for `ann_file`; local files when null.
    #[serde(default)]
    pub backend_args: Option<BackendArgs>,
    /// `cpu` or `gpu`: how results are gathered across processes.
    #[serde(default = "default_cpu")]
    pub collect_device: CollectDevice,
    /// Prefix of the metric names (`coco` by default, giving `coco/bbox_mAP`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Sort categories by id before evaluating.
    #[serde(default)]
    pub sort_categories: bool,
    /// Evaluate categories in parallel processes.
    #[serde(default)]
    pub use_mp_eval: bool,
}
