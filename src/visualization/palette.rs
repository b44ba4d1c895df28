//! Class colours as MMDetection picks them (`mmdet/visualization/palette.py`):
//! the dataset's `metainfo.palette` when given, else COCO's 80 colours (a
//! `CocoDataset` keeps `METAINFO['palette']` whatever its classes), plus the
//! per-instance jitter of mask colours.

use crate::registry::models::common::Color;

/// `CocoDataset.METAINFO['palette']` of MMDetection 3.3.0, RGB, one per COCO class.
#[rustfmt::skip]
pub const COCO_PALETTE: [[u8; 3]; 80] = [
    [220, 20, 60], [119, 11, 32], [0, 0, 142], [0, 0, 230], [106, 0, 228], [0, 60, 100], [0, 80, 100], [0, 0, 70],
    [0, 0, 192], [250, 170, 30], [100, 170, 30], [220, 220, 0], [175, 116, 175], [250, 0, 30], [165, 42, 42], [255, 77, 255],
    [0, 226, 252], [182, 182, 255], [0, 82, 0], [120, 166, 157], [110, 76, 0], [174, 57, 255], [199, 100, 0], [72, 0, 118],
    [255, 179, 240], [0, 125, 92], [209, 0, 151], [188, 208, 182], [0, 220, 176], [255, 99, 164], [92, 0, 73], [133, 129, 255],
    [78, 180, 255], [0, 228, 0], [174, 255, 243], [45, 89, 255], [134, 134, 103], [145, 148, 174], [255, 208, 186], [197, 226, 255],
    [171, 134, 1], [109, 63, 54], [207, 138, 255], [151, 0, 95], [9, 80, 61], [84, 105, 51], [74, 65, 105], [166, 196, 102],
    [208, 195, 210], [255, 109, 65], [0, 143, 149], [179, 0, 194], [209, 99, 106], [5, 121, 0], [227, 255, 205], [147, 186, 208],
    [153, 69, 1], [3, 95, 161], [163, 255, 0], [119, 0, 170], [0, 182, 199], [0, 165, 120], [183, 130, 88], [95, 32, 0],
    [130, 114, 135], [110, 129, 133], [166, 74, 118], [219, 142, 185], [79, 210, 114], [178, 90, 62], [65, 70, 15], [127, 167, 115],
    [59, 105, 106], [142, 108, 45], [196, 172, 0], [95, 54, 80], [128, 76, 255], [201, 57, 1], [246, 0, 122], [191, 162, 208],
];

/// One colour per class: `given` (the dataset's `metainfo.palette`) when it
/// covers every class, else COCO's palette, extended past 80 classes with
/// evenly spread hues (MMDetection stops there with an assertion).
pub fn class_palette(num_classes: usize, given: Option<&[[u8; 3]]>) -> Vec<[u8; 3]> {
    if let Some(given) = given.filter(|g| g.len() >= num_classes && !g.is_empty()) {
        return given.to_vec();
    }
    (0..num_classes.max(1))
        .map(|i| COCO_PALETTE.get(i).copied().unwrap_or_else(|| hue(i)))
        .collect()
}

/// A saturated colour whose hue steps by the golden angle with `i`.
fn hue(i: usize) -> [u8; 3] {
    let h = (i as f64 * 0.618_033_988_75).fract() * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let (r, g, b) = match h as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        4 => (x, 0.0, 1.0),
        _ => (1.0, 0.0, x),
    };
    [
        (r * 230.0) as u8 + 25,
        (g * 230.0) as u8 + 25,
        (b * 230.0) as u8 + 25,
    ]
}

/// MMCV's `Color` names (`mmcv.color_val`), as RGB.
fn named(name: &str) -> Option<[u8; 3]> {
    Some(match name {
        "red" => [255, 0, 0],
        "green" => [0, 255, 0],
        "blue" => [0, 0, 255],
        "cyan" => [0, 255, 255],
        "yellow" => [255, 255, 0],
        "magenta" => [255, 0, 255],
        "white" => [255, 255, 255],
        "black" => [0, 0, 0],
        _ => return None,
    })
}

/// `get_palette(color, num_classes)` for a visualizer colour setting
/// (`bbox_color`, `mask_color`, `text_color`): `None`, `random` or a palette
/// name give `class_colors`; a name or a triple colours every class alike; a
/// list is one colour per class. An unknown name is an error naming `key`.
pub fn resolve(
    color: Option<&Color>,
    class_colors: &[[u8; 3]],
    key: &str,
) -> Result<Vec<[u8; 3]>, String> {
    let n = class_colors.len();
    match color {
        None => Ok(class_colors.to_vec()),
        Some(Color::Rgb(rgb)) => Ok(vec![*rgb; n]),
        Some(Color::List(list)) if !list.is_empty() => Ok(list.clone()),
        Some(Color::List(_)) => Err(format!("visualizer.{key}: an empty colour list")),
        Some(Color::Name(name)) => match name.as_str() {
            "random" | "coco" | "citys" | "voc" => Ok(class_colors.to_vec()),
            other => named(other).map(|rgb| vec![rgb; n]).ok_or_else(|| {
                format!(
                    "visualizer.{key}: unknown colour `{other}`; use an (r, g, b) triple or one of \
                     red, green, blue, cyan, yellow, magenta, white, black"
                )
            }),
        },
    }
}

/// `jitter_color`: `color` shifted by up to a quarter of the range so that
/// instances of one class stay apart. MMDetection draws the shift from NumPy's
/// global generator; here it comes from the instance index, so a rerun draws
/// the same picture.
pub fn jitter(color: [u8; 3], instance: usize) -> [u8; 3] {
    // SplitMix64 of the index: three uniform numbers in [0, 1).
    let mut z = (instance as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut unit = || {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut v = z;
        v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((v ^ (v >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let j = [unit(), unit(), unit()];
    let norm = j.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    let mut out = [0u8; 3];
    for c in 0..3 {
        let shift = (j[c] / norm - 0.5) * 0.5 * 255.0;
        out[c] = (color[c] as f64 + shift).clamp(0.0, 255.0) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco_palette_unless_the_dataset_gives_one() {
        assert_eq!(class_palette(4, None), COCO_PALETTE[..4].to_vec());
        let given = [[1, 2, 3], [4, 5, 6]];
        assert_eq!(class_palette(2, Some(&given)), given.to_vec());
        // A palette shorter than the classes is not used (MMDetection asserts).
        assert_eq!(class_palette(3, Some(&given)), COCO_PALETTE[..3].to_vec());
        let many = class_palette(90, None);
        assert_eq!(many.len(), 90);
        assert_eq!(many[79], COCO_PALETTE[79]);
        assert_ne!(many[80], many[81]);
    }

    #[test]
    fn colour_settings_resolve_as_get_palette() {
        let classes = class_palette(2, None);
        assert_eq!(resolve(None, &classes, "bbox_color").unwrap(), classes);
        assert_eq!(
            resolve(Some(&Color::Rgb([200, 200, 200])), &classes, "text_color").unwrap(),
            vec![[200, 200, 200]; 2]
        );
        assert_eq!(
            resolve(Some(&Color::Name("red".into())), &classes, "bbox_color").unwrap(),
            vec![[255, 0, 0]; 2]
        );
        let err = resolve(Some(&Color::Name("teal".into())), &classes, "bbox_color").unwrap_err();
        assert!(
            err.contains("visualizer.bbox_color") && err.contains("`teal`"),
            "{err}"
        );
    }

    #[test]
    fn jitter_stays_near_the_colour_and_repeats() {
        for i in 0..50 {
            let c = jitter([100, 150, 200], i);
            assert_eq!(c, jitter([100, 150, 200], i));
            for (a, b) in c.iter().zip([100, 150, 200]) {
                assert!((*a as i32 - b).abs() <= 64, "{c:?}");
            }
        }
        assert_ne!(jitter([100, 150, 200], 0), jitter([100, 150, 200], 1));
    }
}
