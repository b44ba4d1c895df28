//! `LoadImageFromFile` (`mmcv.transforms.LoadImageFromFile`): decodes
//! `img_path` into `img` and sets `img_shape` and `ori_shape` from the
//! decoded pixels.
//!
//! Differences from MMCV, refused at build time rather than half-supported:
//! `to_float32: true` (detc keeps 8-bit images through the pipeline, as
//! MMCV's default does, and `DetDataPreprocessor` converts to float; float
//! images would resize without OpenCV's rounding), the `tifffile` backend, and
//! file backends other than local files. The `cv2`, `turbojpeg` and `pillow`
//! backends decode JPEG to the same pixels, so all three read the same here.

use super::{Site, Transform};
use crate::data::image::{read_image, ColorMode};
use crate::data::{DataResult, Sample, SampleRng};
use crate::registry::data::{ColorType, ImdecodeBackend, LoadImageFromFileConfig};

/// Reads the sample's image file.
#[derive(Debug, Clone)]
pub struct LoadImageFromFile {
    mode: ColorMode,
    ignore_empty: bool,
}

impl LoadImageFromFile {
    pub fn new(cfg: LoadImageFromFileConfig, at: Site<'_>) -> DataResult<Self> {
        if cfg.to_float32 {
            return Err(at.error(
                "`to_float32: true` is not supported: detc keeps images 8-bit until `DetDataPreprocessor` converts them",
            ));
        }
        if cfg.imdecode_backend == ImdecodeBackend::Tifffile {
            return Err(at.error("the `tifffile` backend is not supported; use `cv2`"));
        }
        check_local(at, cfg.backend_args.as_ref().and_then(|b| b.backend.as_deref()), "backend_args")?;
        let client = cfg.file_client_args.as_ref().and_then(|a| a.0.get("backend")).and_then(|b| b.as_str());
        check_local(at, client, "file_client_args")?;
        let mode = match cfg.color_type {
            ColorType::Color => ColorMode::Color,
            ColorType::ColorIgnoreOrientation => ColorMode::ColorIgnoreOrientation,
            ColorType::Grayscale => ColorMode::Grayscale,
            ColorType::GrayscaleIgnoreOrientation => ColorMode::GrayscaleIgnoreOrientation,
            ColorType::Unchanged => ColorMode::Unchanged,
        };
        Ok(LoadImageFromFile { mode, ignore_empty: cfg.ignore_empty })
    }
}

/// Only local files are read; `local` and `disk` name them.
fn check_local(at: Site<'_>, backend: Option<&str>, key: &str) -> DataResult<()> {
    match backend {
        None | Some("local") | Some("disk") => Ok(()),
        Some(other) => Err(at.error(format!("`{key}` backend `{other}` is not supported: detc reads local files"))),
    }
}

impl Transform for LoadImageFromFile {
    fn apply(&self, mut sample: Sample, _rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let img = match read_image(&sample.info.img_path, self.mode) {
            Ok(img) => img,
            Err(_) if self.ignore_empty => return Ok(None),
            Err(e) => return Err(e),
        };
        sample.img_shape = (img.height, img.width);
        sample.ori_shape = (img.height, img.width);
        sample.img = Some(img);
        Ok(Some(sample))
    }
}
