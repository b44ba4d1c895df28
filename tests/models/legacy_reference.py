"""Reference outputs for detc's MMDetection 1.x anchors and box coder
(`LegacyAnchorGenerator` in src/models/task_modules/anchor_generator.rs,
`LegacyDeltaXYWHBBoxCoder` in src/models/ops/boxes.rs), tested in
src/models/task_modules/legacy_tests.rs.

Usage: .venv-test/bin/python tests/models/legacy_reference.py OUT_DIR

Writes OUT_DIR/legacy.pth, a bare state dict of tensors, from MMDetection
3.3.0's own classes:

* anchors.{l}: `LegacyAnchorGenerator(strides=[4, 8], ratios=[0.5, 1, 2],
  scales=[8], center_offset=0.5).grid_priors` of feature maps 5x6 and 3x3,
  and anchors_major.{l} with `scale_major=False`, scales [4, 6] and
  `center_offset` 0.25;
* boxes, gt, deltas: `encode(boxes, gt)` of 40 random pairs with
  `target_stds` (0.1, 0.1, 0.2, 0.2) and means (0.01, -0.02, 0.0, 0.03);
* rois, pred, decoded, decoded_clip: `decode` of 40 rois and (40, 8) deltas
  (two classes), without and with `max_shape` (30, 40), some boxes outside.
"""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmdet.registry import TASK_UTILS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402


def boxes(n, scale):
    xy = torch.rand(n, 2) * scale
    wh = torch.rand(n, 2) * scale * 0.5 + 1.0
    return torch.cat([xy, xy + wh], 1)


def main(out):
    register_all_modules()
    torch.manual_seed(0)
    d = {}
    gen = TASK_UTILS.build(dict(type="LegacyAnchorGenerator", strides=[4, 8], ratios=[0.5, 1.0, 2.0], scales=[8],
                                center_offset=0.5))
    for i, a in enumerate(gen.grid_priors([(5, 6), (3, 3)], device="cpu")):
        d[f"anchors.{i}"] = a
    gen = TASK_UTILS.build(dict(type="LegacyAnchorGenerator", strides=[4, 8], ratios=[0.5, 1.0, 2.0], scales=[4, 6],
                                scale_major=False, center_offset=0.25))
    for i, a in enumerate(gen.grid_priors([(5, 6), (3, 3)], device="cpu")):
        d[f"anchors_major.{i}"] = a
    coder = TASK_UTILS.build(dict(type="LegacyDeltaXYWHBBoxCoder", target_means=[0.01, -0.02, 0.0, 0.03],
                                  target_stds=[0.1, 0.1, 0.2, 0.2]))
    d["boxes"], d["gt"] = boxes(40, 30.0), boxes(40, 30.0)
    d["deltas"] = coder.encode(d["boxes"], d["gt"])
    d["rois"] = boxes(40, 40.0)
    d["pred"] = torch.randn(40, 8) * 0.5
    d["decoded"] = coder.decode(d["rois"], d["pred"])
    d["decoded_clip"] = coder.decode(d["rois"], d["pred"], max_shape=(30, 40))
    os.makedirs(out, exist_ok=True)
    torch.save(d, os.path.join(out, "legacy.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
