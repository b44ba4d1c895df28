//! The EXIF orientation of a JPEG and how `cv2.imread` applies it: OpenCV
//! reads tag 0x0112 from the APP1 `Exif` segment of IFD0 and transposes and
//! flips the decoded pixels (`ApplyExifOrientation` in `imgcodecs/loadsave.cpp`).
//! Hand-written: a few dozen lines against a whole EXIF crate for one tag.

use super::{flip_in_place, Flip, Image};

/// The orientation tag (1..=8) of a JPEG, 1 when absent or unreadable.
pub fn jpeg_orientation(jpeg: &[u8]) -> u16 {
    let mut pos = 2; // after SOI
    while pos + 4 <= jpeg.len() {
        if jpeg[pos] != 0xFF {
            return 1;
        }
        let marker = jpeg[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        // SOS or EOI: the headers are over.
        if marker == 0xDA || marker == 0xD9 {
            return 1;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        let body = jpeg.get(pos + 4..pos + 2 + len).unwrap_or(&[]);
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") {
            return tiff_orientation(&body[6..]).unwrap_or(1);
        }
        pos += 2 + len;
    }
    1
}

/// Tag 0x0112 of IFD0 of a TIFF structure.
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let le = match tiff.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        tiff.get(at..at + 2)
            .map(|b| if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) })
    };
    let u32_at = |at: usize| {
        tiff.get(at..at + 4).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        })
    };
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    for i in 0..entries {
        let entry = ifd + 2 + 12 * i;
        if u16_at(entry)? == 0x0112 {
            let value = u16_at(entry + 8)?;
            return (1..=8).contains(&value).then_some(value);
        }
    }
    None
}

/// The image as OpenCV shows it for EXIF `orientation`.
pub fn apply_orientation(img: Image, orientation: u16) -> Image {
    let (mut img, dir) = match orientation {
        2 => (img, Some(Flip::Horizontal)),
        3 => (img, Some(Flip::Diagonal)),
        4 => (img, Some(Flip::Vertical)),
        5 => (transpose(&img), None),
        6 => (transpose(&img), Some(Flip::Horizontal)),
        7 => (transpose(&img), Some(Flip::Diagonal)),
        8 => (transpose(&img), Some(Flip::Vertical)),
        _ => (img, None),
    };
    if let Some(dir) = dir {
        flip_in_place(&mut img, dir);
    }
    img
}

/// Rows become columns (`cv2.transpose`).
fn transpose(img: &Image) -> Image {
    let (h, w, c) = (img.height, img.width, img.channels);
    let mut data = vec![0u8; img.data.len()];
    for y in 0..h {
        for x in 0..w {
            let (src, dst) = ((y * w + x) * c, (x * h + y) * c);
            data[dst..dst + c].copy_from_slice(&img.data[src..src + c]);
        }
    }
    Image { data, height: w, width: h, channels: c }
}
