"""Reference outputs for detc's FoveaHead (src/models/dense_heads/fovea_head.rs),
tested in src/models/dense_heads/fovea_tests.rs.

Usage: .venv-test/bin/python tests/models/fovea_reference.py OUT_DIR

Writes OUT_DIR/fovea.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `FoveaHead` (CASES below, which the Rust test builds too), as
tests/reference/dense_head_images.py's `record_head` records a case. MMCV's
`DeformConv2d` runs over torchvision's `deform_conv2d`
(`mmdet_standins.install_mmcv_deform_convs`), mmcv's compiled `batched_nms`
over torchvision's nms, and the focal loss MMDetection's Python path, as it
does on the CPU. Shared: `x.{l}` a 2-image batch of features per level
(strides 8, 16, 32), `img.{i}.*` the ground truths (image 1 has none).

Cases: `plain` (the foveabox/ configs' head, scale ranges that overlap so
that some objects train two levels) and `align` (`with_deform`: the
classification branch aligned to the predicted box by a deformable conv of
2 offset groups, GroupNorm, a wider fovea).
"""

import logging
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
mmdet_standins.install_mmcv_deform_convs()
import mmcv.ops  # noqa: E402

# fovea_head.py imports `DeformConv2d` from the package.
mmcv.ops.DeformConv2d = sys.modules["mmcv.ops.deform_conv"].DeformConv2d

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

COMMON = dict(
    type="FoveaHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8, strides=[8, 16, 32],
    base_edge_list=[16, 32, 64], scale_ranges=((1, 32), (16, 64), (32, 128)), sigma=0.4, with_deform=False,
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=1.5, alpha=0.4, loss_weight=1.0),
    loss_bbox=dict(type="SmoothL1Loss", beta=0.11, loss_weight=1.0),
    train_cfg=ConfigDict(),
    test_cfg=ConfigDict(nms_pre=50, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=20),
)
# Keep in sync with fovea_tests.rs.
CASES = {
    "plain": COMMON,
    "align": dict(COMMON, with_deform=True, deform_groups=2, sigma=0.6,
                  norm_cfg=dict(type="GN", num_groups=4, requires_grad=True)),
}
IMAGES = [
    dict(img_shape=(60, 76), scale_factor=(1.25, 1.28),
         bboxes=[[4.0, 6.0, 30.0, 40.0], [35.0, 10.0, 70.0, 30.0], [10.0, 30.0, 50.0, 58.0], [40.0, 36.0, 48.0, 44.0]],
         labels=[0, 2, 1, 1]),
    dict(img_shape=(64, 72), scale_factor=(1.5, 1.5), bboxes=[], labels=[]),
]


def main(out):
    register_all_modules()
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    d = {}
    dense_head_images.record(d, IMAGES)
    x = dense_head_images.features(d)
    for name, cfg in CASES.items():
        dense_head_images.record_head(d, name, MODELS.build(cfg), x, IMAGES, "conv_cls")
    torch.save(d, os.path.join(out, "fovea.pth"))


if __name__ == "__main__":
    main(sys.argv[1])
