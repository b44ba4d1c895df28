"""MMDetection 3.3.0's `YOLOXHSVRandomAug` (OpenCV 4.10) on a small image, for
detc's `yolox_hsv_random_aug` test.

Writes `tests/fixtures/hsv_aug.json`: a 4 x 40 BGR image (grey pixels,
saturated pixels of every hue sector, random pixels; 40 columns so that
both OpenCV's 32-pixel AVX2 blocks and its scalar tail are covered) and, for
several fixed gain triples, MMDetection's output with its gain draw replaced
by that triple. Images are hex strings of the HWC bytes.

Regenerate (from the repository root, on x86-64 with AVX2):

    .venv-test/bin/python tests/data/hsv_reference.py
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
from mmdet.datasets.transforms import YOLOXHSVRandomAug  # noqa: E402

HEIGHT, WIDTH = 4, 40
GAINS = [(0, 0, 0), (4, -29, 29), (-4, 29, -29), (3, 0, -17), (-2, 17, 0), (90, 128, -128)]


def image() -> np.ndarray:
    rng = np.random.default_rng(20240611)
    img = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    # Greys, black and white.
    for x, v in enumerate([0, 1, 2, 17, 64, 127, 128, 200, 254, 255]):
        img[0, x] = v
    # Saturated and near-saturated pixels in each of the six hue sectors.
    sectors = [(0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0), (255, 0, 255),
               (10, 80, 250), (5, 250, 120), (250, 240, 3), (120, 2, 250), (240, 30, 200), (90, 250, 250)]
    for x, bgr in enumerate(sectors):
        img[1, 10 + x] = bgr
        img[2, 30 + x % 10] = bgr
    return img


def main() -> None:
    img = image()
    cases = []
    for gains in GAINS:
        aug = YOLOXHSVRandomAug()
        aug._get_hsv_gains = lambda g=gains: np.array(g, dtype=np.int16)
        out = aug.transform({"img": img.copy()})["img"]
        cases.append({"gains": list(gains), "output": out.tobytes().hex()})
    fixture = {"height": HEIGHT, "width": WIDTH, "image": img.tobytes().hex(), "cases": cases}
    out = Path(__file__).resolve().parents[1] / "fixtures" / "hsv_aug.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
