//! `detc test --show-dir DIR` (MMDetection's `tools/test.py --show-dir`):
//! a checkpoint from one tiny epoch of the demo config, then every test
//! image drawn as `WORK_DIR/<timestamp>/DIR/<image name>`: a JPEG twice the
//! image's width, the ground-truth boxes on the left in their class colours,
//! the predictions on the right.

use std::path::Path;

use detc::data::image::{read_image, ColorMode};
use detc::visualization::palette::COCO_PALETTE;
use detc::visualization::RgbImage;
use serde_json::Value;

use crate::support::{detc, file_names, root, run_dir, shapes_data, shapes_val_annotations};

/// Settings that keep the demo config tiny: one epoch of 2 iterations, no
/// validation, a checkpoint at its end.
const TINY: &[&str] = &[
    "train_dataloader.batch_size=4",
    "train_dataloader.num_workers=0",
    "test_dataloader.num_workers=0",
    "val_dataloader=None",
    "val_evaluator=None",
    "val_cfg=None",
    "train_cfg.max_epochs=1",
    "default_hooks.checkpoint.interval=1",
];

fn read_rgb(path: &Path) -> RgbImage {
    RgbImage::from_bgr(&read_image(path, ColorMode::Color).unwrap())
}

fn distance(a: [u8; 3], b: [u8; 3]) -> i32 {
    a.iter()
        .zip(&b)
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .sum()
}

#[test]
fn show_dir_draws_ground_truth_and_predictions_per_test_image() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 4, 3);
    let config = root().join("configs/demo/queryinst_r18_shapes.yaml");
    let engine = env!("CARGO_BIN_EXE_detc-engine");
    detc(dir.path())
        .env("DETC_ENGINE", engine)
        .arg("run")
        .arg(&config)
        .args(["--work-dir", "trained", "--cfg-options"])
        .args(TINY)
        .assert()
        .success();
    // `detc test` of the checkpoint into `work_dir` with `args` and
    // `options`, every prediction drawn (score_thr 0, so the right half
    // shows some); its log.
    let test = |work_dir: &str, args: &[&str], options: &[&str]| {
        let out = detc(dir.path())
            .env("DETC_ENGINE", engine)
            .arg("test")
            .arg(&config)
            .args(["trained/epoch_1.pth", "--work-dir", work_dir])
            .args(args)
            .arg("--cfg-options")
            .args(TINY)
            .arg("default_hooks.visualization.score_thr=0.0")
            .args(options)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        String::from_utf8_lossy(&out).into_owned()
    };
    let log = test("tested", &["--show-dir", "vis"], &[]);
    assert!(log.contains("3 images drawn in "), "{log}");

    let run = run_dir(&dir.path().join("tested"));
    let vis = run.join("vis");
    let ann = shapes_val_annotations(dir.path());
    let classes = ["rectangle", "ellipse", "triangle", "cross"];
    let label_of = |cat: u64| {
        let name = ann["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == cat)
            .unwrap()["name"]
            .clone();
        classes
            .iter()
            .position(|c| *c == name.as_str().unwrap())
            .unwrap()
    };
    let images = ann["images"].as_array().unwrap();
    assert_eq!(
        std::fs::read_dir(&vis).unwrap().count(),
        images.len(),
        "one drawing per test image"
    );
    // Pixels on the left edges of the ground-truth boxes that show a box
    // colour (of the drawing, of the original image), and all of them.
    let (mut in_drawing, mut in_original, mut edge_pixels) = (0, 0, 0);
    let mut right_changed = 0usize;
    for image in images {
        let name = image["file_name"].as_str().unwrap();
        let original = read_rgb(&dir.path().join("data/shapes/val").join(name));
        let drawn = read_rgb(&vis.join(name));
        assert_eq!(
            (drawn.width, drawn.height),
            (2 * original.width, original.height),
            "{name}"
        );
        let boxes: Vec<&Value> = ann["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["image_id"] == image["id"])
            .collect();
        assert!(!boxes.is_empty(), "{name} has ground truth");
        let colors: Vec<[u8; 3]> = boxes
            .iter()
            .map(|a| COCO_PALETTE[label_of(a["category_id"].as_u64().unwrap())])
            .collect();
        // A stroke is its colour blended at alpha 0.8 over whatever lies
        // below: 0.8 * colour + [0, 51] per channel, give or take JPEG's error.
        let box_coloured = |p: [u8; 3]| {
            colors.iter().any(|c| {
                (0..3).all(|i| {
                    let low = 0.8 * c[i] as f64 - 20.0;
                    (low..=low + 51.0 + 40.0).contains(&(p[i] as f64))
                })
            })
        };
        for a in &boxes {
            let b: Vec<f64> = a["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let x = b[0].round() as usize;
            for y in (b[1].ceil() as usize + 2)..((b[1] + b[3]) as usize).saturating_sub(2) {
                edge_pixels += 1;
                in_drawing += box_coloured(drawn.pixel(x, y)) as usize;
                in_original += box_coloured(original.pixel(x, y)) as usize;
            }
        }
        let w = original.width;
        let differs = (0..original.height)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| distance(drawn.pixel(w + x, y), original.pixel(x, y)) > 60)
            .count();
        right_changed += differs;
    }
    // Other boxes' labels cover some edge pixels; most show a box colour,
    // where the image alone rarely does.
    assert!(edge_pixels > 100, "{edge_pixels}");
    assert!(
        in_drawing * 4 >= edge_pixels * 3 && in_original * 5 <= edge_pixels * 2,
        "{in_drawing} of {edge_pixels} box-edge pixels have a box colour ({in_original} in the original images)"
    );
    assert!(
        right_changed > 100,
        "predictions are drawn on the right: {right_changed} pixels changed"
    );

    // `draw: true` without `test_out_dir`: the drawings go to the
    // visualizer's LocalVisBackend as `vis_data/vis_image/test_img_{n}.png`
    // (n from 1), the PNG of the same drawing.
    let log = test("backends", &[], &["default_hooks.visualization.draw=True"]);
    assert!(
        log.contains("3 images drawn for the visualizer's backends"),
        "{log}"
    );
    let run = run_dir(&dir.path().join("backends"));
    let names = file_names(&run.join("vis_data/vis_image"));
    assert_eq!(
        names,
        ["test_img_1.png", "test_img_2.png", "test_img_3.png"]
    );
    for (i, image) in images.iter().enumerate() {
        let png =
            std::fs::read(run.join(format!("vis_data/vis_image/test_img_{}.png", i + 1))).unwrap();
        // IHDR: width and height, big-endian, after the signature and chunk header.
        let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as u64;
        let (width, height) = (
            image["width"].as_u64().unwrap(),
            image["height"].as_u64().unwrap(),
        );
        assert_eq!((size(16), size(20)), (2 * width, height), "test image {i}");
    }
    assert!(run.join("vis_data/config.py").is_file());

    // Drawing reads each image again from its path: a test pipeline that
    // does not pack `img_path` stops at the first batch with what to do.
    let out = detc(dir.path())
        .env("DETC_ENGINE", engine)
        .arg("test")
        .arg(&config)
        .args(["trained/epoch_1.pth", "--work-dir", "no_path", "--show-dir", "vis", "--cfg-options"])
        .args(TINY)
        .arg("test_dataloader.dataset.pipeline.3.meta_keys=[img_id,ori_shape,img_shape,scale_factor]")
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(
        err.contains("keep `img_path` in the pipeline's PackDetInputs.meta_keys"),
        "{err}"
    );
}
