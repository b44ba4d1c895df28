//! `detc infer` with a checkpoint of two tiny epochs of the Mask R-CNN demo
//! config: one PNG per input, the predictions scoring above `--score-thr`
//! drawn where `predictions.json` puts them (box edges drawn over, masks
//! blended, checked against the JPEGs with Pillow and pycocotools), the
//! rest of each picture the image itself.

use std::ffi::OsStr;

use serde_json::Value;

use crate::support::{detc, python_stdout, root, shapes_data};

/// argv: the folder `detc infer` ran in, its output folder, the score threshold. Pictures are
/// named as `detc infer` names them: the stem, `_1`, `_2`... when repeated.
const CHECK: &str = r#"
import json, os, sys
from PIL import Image
from pycocotools import mask as mask_utils
os.chdir(sys.argv[1])
out, thr = sys.argv[2], float(sys.argv[3])
pred = json.load(open(os.path.join(out, "predictions.json")))
seen, drawn_total = {}, 0
for info in pred["images"]:
    stem = os.path.splitext(os.path.basename(info["file_name"]))[0]
    n = seen[stem] = seen.get(stem, -1) + 1
    name = stem + (f"_{n}" if n else "") + ".png"
    drawn = Image.open(os.path.join(out, "vis", name))
    assert drawn.format == "PNG", name
    drawn = drawn.convert("RGB")
    image = Image.open(info["file_name"]).convert("RGB")
    assert drawn.size == image.size == (info["width"], info["height"]), (name, drawn.size, image.size)
    d, o = drawn.load(), image.load()
    w, h = image.size
    shown = [a for a in pred["annotations"] if a["image_id"] == info["id"] and a["score"] > thr]
    for a in shown:
        x, y, bw, bh = a["bbox"]
        # the top and left edges of the box are drawn over
        edge = [(int(x + t * bw), int(y)) for t in (0.3, 0.5, 0.7)] + [(int(x), int(y + t * bh)) for t in (0.3, 0.5, 0.7)]
        edge = [(px, py) for px, py in edge if px < w and py < h]
        assert sum(d[p] != o[p] for p in edge) >= len(edge) - 1, ("edge", name, a["bbox"])
        # the mask is blended over the image
        m = mask_utils.decode(a["segmentation"])
        inside = [(px, py) for py in range(h) for px in range(w) if m[py, px]]
        assert sum(d[p] != o[p] for p in inside) >= 0.9 * len(inside), ("mask", name, a["bbox"])
    # A label plate sits at its box's top-left corner, moved left to stay in
    # the picture: the rows just below a box's top edge may change anywhere.
    def near(px, py):
        return any((x - 4 <= px <= x + bw + 4 or y - 4 <= py <= y + 20) and y - 4 <= py <= y + bh + 4
                   for x, y, bw, bh in (a["bbox"] for a in shown))
    far = [(px, py) for px in range(w) for py in range(h) if not near(px, py)]
    changed = sum(d[p] != o[p] for p in far)
    assert changed <= 0.02 * len(far), ("outside", name, changed, len(far))
    drawn_total += len(shown)
print(len(pred["images"]), drawn_total > 0)
"#;

fn infer(dir: &std::path::Path, out: &str, score_thr: &str) -> String {
    let config = root().join("configs/demo/mask-rcnn_r18_shapes.yaml");
    let output = detc(dir)
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("infer")
        .arg(&config)
        .args([
            "trained/epoch_2.pth",
            "data/shapes/val",
            "data/shapes/val/000002.jpg",
        ])
        .args(["--out-dir", out, "--score-thr", score_thr])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).unwrap()
}

#[test]
fn draws_the_predictions_of_every_input_and_writes_them_as_coco_json() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 3);
    detc(dir.path())
        .env("DETC_ENGINE", env!("CARGO_BIN_EXE_detc-engine"))
        .arg("run")
        .arg(root().join("configs/demo/mask-rcnn_r18_shapes.yaml"))
        .args(["--work-dir", "trained", "--cfg-options"])
        .args([
            "train_dataloader.batch_size=4",
            "train_dataloader.num_workers=0",
            "val_dataloader=None",
            "val_evaluator=None",
            "val_cfg=None",
            "train_cfg.max_epochs=2",
            "default_hooks.checkpoint.interval=2",
        ])
        .assert()
        .success();

    // Nothing scores above 1: the pictures are the images, the JSON has every prediction.
    let printed = infer(dir.path(), "plain", "1.0");
    assert_eq!(
        printed,
        "4 images: drawings in plain/vis, predictions in plain/predictions.json\n"
    );
    let pred: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("plain/predictions.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = pred["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["rectangle", "ellipse", "triangle", "cross"],
        "the checkpoint's classes"
    );
    let mut pictures: Vec<String> = std::fs::read_dir(dir.path().join("plain/vis"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pictures.sort();
    assert_eq!(
        pictures,
        ["000001.png", "000002.png", "000002_1.png", "000003.png"],
        "one picture per input"
    );
    let checked = python_stdout(&[
        OsStr::new("-c"),
        OsStr::new(CHECK),
        dir.path().as_os_str(),
        OsStr::new("plain"),
        OsStr::new("1.0"),
    ]);
    assert_eq!(checked, "4 False\n");

    // A threshold that draws at least the best three predictions of every image.
    let mut third_best = f64::INFINITY;
    for image in pred["images"].as_array().unwrap() {
        let mut scores: Vec<f64> = pred["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["image_id"] == image["id"])
            .map(|a| a["score"].as_f64().unwrap())
            .collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        assert!(scores.len() >= 3, "{} predictions", scores.len());
        third_best = third_best.min(scores[2]);
    }
    let thr = format!("{}", third_best - 1e-4);
    infer(dir.path(), "drawn", &thr);
    let checked = python_stdout(&[
        OsStr::new("-c"),
        OsStr::new(CHECK),
        dir.path().as_os_str(),
        OsStr::new("drawn"),
        OsStr::new(&thr),
    ]);
    assert_eq!(checked, "4 True\n");
}
