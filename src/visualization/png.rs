//! PNG encoding of an [`RgbImage`]: 8-bit truecolour, no interlace, every
//! row with filter type 0, zlib-compressed by flate2 (already linked for
//! checkpoint zips). Lossless, which the thin lines of a plot need.

use std::io::Write;

use super::RgbImage;

/// The PNG file of `img`.
pub fn encode(img: &RgbImage) -> Vec<u8> {
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(img.width as u32).to_be_bytes());
    header.extend_from_slice(&(img.height as u32).to_be_bytes());
    // bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace
    header.extend_from_slice(&[8, 2, 0, 0, 0]);

    let row = img.width * 3;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for y in 0..img.height {
        // Writing to a Vec cannot fail.
        zlib.write_all(&[0]).expect("in memory");
        zlib.write_all(&img.data[y * row..(y + 1) * row])
            .expect("in memory");
    }
    let data = zlib.finish().expect("in memory");

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &data);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Length, type, data and the CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_holds_its_header_and_pixels() {
        let mut img = RgbImage::filled(3, 2, [10, 20, 30]);
        img.data[3..6].copy_from_slice(&[255, 0, 0]);
        let png = encode(&img);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 0, 3, 0, 0, 0, 2]);
        // IHDR's CRC, as every PNG reader computes it.
        let crc = crc32fast::hash(&png[12..29]);
        assert_eq!(&png[29..33], &crc.to_be_bytes());
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        use std::io::Read;
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 2 * (1 + 9));
        assert_eq!(&raw[..7], &[0, 10, 20, 30, 255, 0, 0]);
        assert!(png.ends_with(b"IEND\xae\x42\x60\x82"));
    }
}
