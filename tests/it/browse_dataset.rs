//! `detc browse-dataset` on the shapes data: one PNG per sample, each box of
//! the ground truth drawn on its edges, masks blended inside, the rest of the
//! picture the image itself (checked against the JPEG with Pillow).

use std::ffi::OsStr;

use crate::support::{detc, python_stdout, root, shapes_data};

/// argv: the annotation file, the image folder, the pictures' folder.
const CHECK: &str = r#"
import json, os, sys
from PIL import Image
ann = json.load(open(sys.argv[1]))
checked = 0
for info in ann["images"]:
    stem = os.path.splitext(info["file_name"])[0]
    drawn = Image.open(os.path.join(sys.argv[3], stem + ".png")).convert("RGB")
    image = Image.open(os.path.join(sys.argv[2], info["file_name"])).convert("RGB")
    assert drawn.size == image.size, (drawn.size, image.size)
    d, o = drawn.load(), image.load()
    w, h = image.size
    boxes = [a["bbox"] for a in ann["annotations"] if a["image_id"] == info["id"]]
    for x, y, bw, bh in boxes:
        # the top and left edges of the box are drawn over
        edge = [(int(x + t * bw), int(y)) for t in (0.3, 0.5, 0.7)] + [(int(x), int(y + t * bh)) for t in (0.3, 0.5, 0.7)]
        edge = [(px, py) for px, py in edge if px < w and py < h]
        assert sum(d[p] != o[p] for p in edge) >= len(edge) - 1, ("edge", stem, (x, y, bw, bh))
        # the mask is blended into the middle of the box
        inner = [(int(x + i * bw / 8), int(y + j * bh / 8)) for i in range(3, 6) for j in range(3, 6)]
        assert sum(d[p] != o[p] for p in inner) >= 3, ("mask", stem, (x, y, bw, bh))
    def near(px, py):
        return any(x - 4 <= px <= x + bw + 4 and y - 16 <= py <= y + bh + 4 for x, y, bw, bh in boxes)
    far = [(px, py) for px in range(w) for py in range(h) if not near(px, py)]
    changed = sum(d[p] != o[p] for p in far)
    # label plates may stick out to the right of small boxes; nothing else changes
    assert changed <= 0.1 * len(far), ("outside", stem, changed, len(far))
    checked += 1
print(checked)
"#;

#[test]
fn draws_the_ground_truth_after_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 4, 3);
    let config = root().join("configs/demo/mask-rcnn_r18_shapes.yaml");
    detc(dir.path())
        .arg("browse-dataset")
        .arg(&config)
        .args(["--split", "val", "--num", "3", "--out-dir", "val_pictures"])
        .assert()
        .success()
        .stdout_eq("wrote 3 pictures to val_pictures\n");
    let (ann, images, pictures) = (
        dir.path()
            .join("data/shapes/annotations/instances_val.json"),
        dir.path().join("data/shapes/val"),
        dir.path().join("val_pictures"),
    );
    let checked = python_stdout(&[
        OsStr::new("-c"),
        OsStr::new(CHECK),
        ann.as_os_str(),
        images.as_os_str(),
        pictures.as_os_str(),
    ]);
    assert_eq!(checked, "3\n");

    // The training pipeline (random flips) draws as many pictures as asked.
    detc(dir.path())
        .arg("browse-dataset")
        .arg(&config)
        .args(["--num", "2", "--out-dir", "train_pictures"])
        .assert()
        .success()
        .stdout_eq("wrote 2 pictures to train_pictures\n");
    assert_eq!(
        std::fs::read_dir(dir.path().join("train_pictures"))
            .unwrap()
            .count(),
        2
    );
}
