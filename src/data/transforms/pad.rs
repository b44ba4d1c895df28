//! `Pad` (`mmdet.datasets.transforms.Pad` over `mmcv.transforms.Pad`): pads
//! the image at the bottom and right to `size` `(w, h)`, to multiples of
//! `size_divisor`, or to a square (then to `size_divisor`), and the masks to
//! the same shape. As in MMCV 2.1, `img_shape` becomes the padded shape too,
//! and a target smaller than the image pads nothing on that side.
//!
//! Only `padding_mode: constant` is supported (refused at build time otherwise).

use super::{masks, need_image, Site, Transform};
use crate::data::image::pad;
use crate::data::{DataResult, Sample, SampleRng};
use crate::registry::data::{ImagePadVal, PadConfig, PadVal, PaddingMode};

/// Pads the image and masks.
#[derive(Debug, Clone)]
pub struct Pad {
    size: Option<(usize, usize)>,
    size_divisor: Option<usize>,
    pad_to_square: bool,
    img_val: Vec<u8>,
    mask_val: u8,
}

fn byte(at: Site<'_>, v: i64, what: &str) -> DataResult<u8> {
    u8::try_from(v).map_err(|_| at.error(format!("pad value {v} for `{what}` is not in 0..=255 (images are 8-bit)")))
}

impl Pad {
    pub fn new(cfg: PadConfig, at: Site<'_>) -> DataResult<Self> {
        if cfg.padding_mode != PaddingMode::Constant {
            return Err(at.error(format!("padding_mode `{:?}` is not supported; use `constant`", cfg.padding_mode)));
        }
        if cfg.pad_to_square && cfg.size.is_some() {
            return Err(at.error("`size` must be null with `pad_to_square: true`"));
        }
        if !cfg.pad_to_square && cfg.size.is_some() == cfg.size_divisor.is_some() {
            return Err(at.error("set exactly one of `size` and `size_divisor` (or `pad_to_square: true`)"));
        }
        if cfg.size_divisor == Some(0) {
            return Err(at.error("`size_divisor` must be positive"));
        }
        let (img, masks) = match &cfg.pad_val {
            PadVal::Int(v) => (ImagePadVal::One(*v), 0),
            PadVal::Dict(d) => (d.img.clone().unwrap_or(ImagePadVal::One(0)), d.masks.unwrap_or(0)),
        };
        let img_val = match img {
            ImagePadVal::One(v) => vec![byte(at, v, "img")?],
            ImagePadVal::PerChannel(vs) => vs.iter().map(|&v| byte(at, v, "img")).collect::<DataResult<_>>()?,
        };
        Ok(Pad {
            size: cfg.size.map(|(w, h)| (w as usize, h as usize)),
            size_divisor: cfg.size_divisor.map(|d| d as usize),
            pad_to_square: cfg.pad_to_square,
            img_val,
            mask_val: byte(at, masks, "masks")?,
        })
    }

    /// The padded `(h, w)` for an `h x w` image, as MMCV's `_pad_img`.
    fn target(&self, h: usize, w: usize) -> (usize, usize) {
        let mut size = self.pad_to_square.then(|| (h.max(w), h.max(w)));
        if let Some(d) = self.size_divisor {
            let (sh, sw) = size.unwrap_or((h, w));
            size = Some((sh.div_ceil(d) * d, sw.div_ceil(d) * d));
        } else if let Some((sw, sh)) = self.size {
            size = Some((sh, sw));
        }
        size.unwrap_or((h, w))
    }
}

impl Transform for Pad {
    fn apply(&self, mut sample: Sample, _rng: &mut SampleRng) -> DataResult<Option<Sample>> {
        let img = need_image("Pad", &sample)?;
        if self.img_val.len() != 1 && self.img_val.len() != img.channels {
            return Err(super::sample_error(
                "Pad",
                &sample,
                format!("pad_val has {} values for an image of {} channels", self.img_val.len(), img.channels),
            ));
        }
        let (h, w) = self.target(img.height, img.width);
        let padded = pad(img, h, w, &self.img_val);
        let shape = (padded.height, padded.width);
        sample.img = Some(padded);
        sample.pad_shape = Some(shape);
        sample.img_shape = shape;
        if let Some(m) = &sample.gt_masks {
            sample.gt_masks = Some(masks::pad(m, shape.0, shape.1, self.mask_val));
        }
        Ok(Some(sample))
    }
}
