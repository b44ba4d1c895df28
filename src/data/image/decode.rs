//! Image files into [`Image`]s, as `mmcv.imfrombytes` with the `cv2` backend
//! returns them. JPEG goes through libjpeg-turbo, the decoder OpenCV's own
//! `imread` uses, with the same settings (accurate integer IDCT, fancy
//! upsampling), so the pixels are identical to `cv2.imread`'s.

use std::cell::RefCell;
use std::path::Path;

use turbojpeg::{Colorspace, Decompressor, PixelFormat};

use super::exif::{apply_orientation, jpeg_orientation};
use super::Image;
use crate::data::{DataError, DataResult};

/// How to decode, as MMCV's `color_type` (`cv2.IMREAD_*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// Three channels, BGR, turned upright per EXIF orientation (`IMREAD_COLOR`).
    Color,
    /// Three channels, BGR, pixels as stored.
    ColorIgnoreOrientation,
    /// One channel, turned upright per EXIF orientation.
    Grayscale,
    /// One channel, pixels as stored.
    GrayscaleIgnoreOrientation,
    /// The channels the file has (1 for grayscale JPEGs, else 3), pixels as stored.
    Unchanged,
}

thread_local! {
    // A decompressor per thread: creating one costs an allocation of libjpeg's state.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Reads and decodes the image file at `path`.
pub fn read_image(path: &Path, mode: ColorMode) -> DataResult<Image> {
    let bytes =
        std::fs::read(path).map_err(|e| DataError::new(format!("cannot read image `{}`: {e}", path.display())))?;
    decode(&bytes, mode).map_err(|e| DataError::new(format!("cannot decode image `{}`: {}", path.display(), e.message)))
}

/// Decodes an encoded image (JPEG).
pub fn decode(bytes: &[u8], mode: ColorMode) -> DataResult<Image> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(DataError::new("not a JPEG file (detc decodes JPEG images only; convert the image to JPEG)"));
    }
    let img = DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(Decompressor::new().map_err(|e| DataError::new(format!("libjpeg-turbo: {e}")))?);
        }
        let dec = cell.as_mut().expect("set above");
        decode_jpeg(dec, bytes, mode)
    })?;
    let orient = matches!(mode, ColorMode::Color | ColorMode::Grayscale);
    Ok(if orient { apply_orientation(img, jpeg_orientation(bytes)) } else { img })
}

fn decode_jpeg(dec: &mut Decompressor, bytes: &[u8], mode: ColorMode) -> DataResult<Image> {
    let header = dec.read_header(bytes).map_err(|e| DataError::new(e.to_string()))?;
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return Err(DataError::new("CMYK JPEGs are not supported; convert the image to RGB"));
    }
    let gray = match mode {
        ColorMode::Grayscale | ColorMode::GrayscaleIgnoreOrientation => true,
        ColorMode::Unchanged => header.colorspace == Colorspace::Gray,
        ColorMode::Color | ColorMode::ColorIgnoreOrientation => false,
    };
    let (format, channels) = if gray { (PixelFormat::GRAY, 1) } else { (PixelFormat::BGR, 3) };
    let (width, height) = (header.width, header.height);
    let mut data = vec![0u8; width * height * channels];
    let out = turbojpeg::Image { pixels: data.as_mut_slice(), width, pitch: width * channels, height, format };
    dec.decompress(bytes, out).map_err(|e| DataError::new(e.to_string()))?;
    Ok(Image { data, height, width, channels })
}
