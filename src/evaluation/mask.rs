//! pycocotools' mask API (`maskApi.c`) in Rust: column-major run-length
//! encoding, the compressed string form, polygon rasterisation, area, bounding
//! box and IoU with crowd regions. No crate reproduces these semantics (see
//! `shared/notes/ecosystem.md`), and COCO mAP depends on them bit for bit.

/// A binary mask as COCO's run-length encoding: alternating runs of 0s and 1s
/// over the mask in column-major (Fortran) order, starting with 0s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub height: u32,
    pub width: u32,
    pub counts: Vec<u32>,
}

impl Rle {
    /// Encodes a row-major `height x width` mask (non-zero bytes are 1).
    pub fn from_row_major(mask: &[u8], height: u32, width: u32) -> Rle {
        let _ = (mask, height, width);
        todo!("evaluation::mask::Rle::from_row_major")
    }

    /// Decodes into a row-major `height x width` mask of 0/1 bytes.
    pub fn to_row_major(&self) -> Vec<u8> {
        todo!("evaluation::mask::Rle::to_row_major")
    }

    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` as `rleFrPoly` does.
    pub fn from_polygon(polygon: &[f64], height: u32, width: u32) -> Rle {
        let _ = (polygon, height, width);
        todo!("evaluation::mask::Rle::from_polygon")
    }

    /// The union of several polygons (`frPyObjects` then `merge`, as `annToRLE`).
    pub fn from_polygons(polygons: &[Vec<f64>], height: u32, width: u32) -> Rle {
        let _ = (polygons, height, width);
        todo!("evaluation::mask::Rle::from_polygons")
    }

    /// A box `[x, y, w, h]` as a mask (`rleFrBbox`).
    pub fn from_bbox(bbox: [f64; 4], height: u32, width: u32) -> Rle {
        let _ = (bbox, height, width);
        todo!("evaluation::mask::Rle::from_bbox")
    }

    /// Union (or intersection) of masks of one size (`rleMerge`).
    pub fn merge(rles: &[Rle], intersect: bool) -> Rle {
        let _ = (rles, intersect);
        todo!("evaluation::mask::Rle::merge")
    }

    /// Number of foreground pixels (`rleArea`).
    pub fn area(&self) -> u64 {
        todo!("evaluation::mask::Rle::area")
    }

    /// Tight box `[x, y, w, h]` (`rleToBbox`).
    pub fn to_bbox(&self) -> [f64; 4] {
        todo!("evaluation::mask::Rle::to_bbox")
    }

    /// COCO's compressed `counts` string (`rleToString`).
    pub fn to_compressed(&self) -> String {
        todo!("evaluation::mask::Rle::to_compressed")
    }

    /// Parses a compressed `counts` string (`rleFrString`).
    pub fn from_compressed(counts: &str, height: u32, width: u32) -> Result<Rle, String> {
        let _ = (counts, height, width);
        todo!("evaluation::mask::Rle::from_compressed")
    }
}

/// IoU of every detection with every ground truth, row-major `dt.len() x gt.len()`;
/// for a crowd ground truth the union is the detection's area (`rleIou`).
pub fn iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool]) -> Vec<f64> {
    let _ = (dt, gt, iscrowd);
    todo!("evaluation::mask::iou")
}

/// The same for boxes `[x, y, w, h]` (`bbIou`).
pub fn bbox_iou(dt: &[[f64; 4]], gt: &[[f64; 4]], iscrowd: &[bool]) -> Vec<f64> {
    let _ = (dt, gt, iscrowd);
    todo!("evaluation::mask::bbox_iou")
}
