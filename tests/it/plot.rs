//! `detc plot` on a real (tiny) run: a PNG with one panel per requested key,
//! each holding its curve, read back by Pillow; unknown keys and folders
//! that are not work dirs are input errors.

use std::ffi::OsStr;

use crate::support::{detc, python_stdout, root, shapes_data, train_briefly};

/// Panel size and plot-area margins of `src/visualization/plot.rs`.
const CHECK: &str = r#"
import sys
from PIL import Image
img = Image.open(sys.argv[1])
assert img.format == "PNG" and img.mode == "RGB", (img.format, img.mode)
panels = int(sys.argv[2])
assert img.size == (760, 340 * panels), img.size
line = (31, 119, 180)
px = img.load()
for p in range(panels):
    top = 340 * p
    hits = sum(px[x, y] == line for x in range(96, 760 - 24) for y in range(top + 40, top + 340 - 52))
    assert hits > 20, f"panel {p}: {hits} line pixels"
    outside = sum(px[x, y] == line for x in range(0, 90) for y in range(top + 40, top + 340))
    assert outside == 0, f"panel {p}: line drawn outside the plot area"
print("ok")
"#;

#[test]
fn plots_the_requested_keys_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    shapes_data(dir.path(), 8, 2);
    train_briefly(
        dir.path(),
        &root().join("configs/demo/faster-rcnn_r18_shapes.yaml"),
        3,
    );

    detc(dir.path())
        .args([
            "plot",
            "work",
            "--keys",
            "loss",
            "loss_cls",
            "coco/bbox_mAP_50",
            "--out",
            "curves.png",
        ])
        .assert()
        .success()
        .stdout_eq("wrote curves.png (3 panels: loss, loss_cls, coco/bbox_mAP_50)\n");
    let png = dir.path().join("curves.png");
    let checked = python_stdout(&[
        OsStr::new("-c"),
        OsStr::new(CHECK),
        png.as_os_str(),
        OsStr::new("3"),
    ]);
    assert_eq!(checked, "ok\n");

    // Without --keys: loss and bbox mAP.
    detc(dir.path())
        .args(["plot", "work"])
        .assert()
        .success()
        .stdout_eq("wrote curves.png (2 panels: loss, coco/bbox_mAP)\n");

    detc(dir.path())
        .args(["plot", "work", "--keys", "loss_clss"])
        .assert()
        .code(1)
        .stderr_eq("error: no work dir logged `loss_clss` (did you mean `loss_cls`?)\n");
    detc(dir.path())
        .args(["plot", "data"])
        .assert()
        .code(1)
        .stderr_eq("error: `data` holds no `<timestamp>/vis_data/scalars.json`: give the work dir of a `detc run`\n");
}
