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

import os
import sys

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
from mmengine.config import ConfigDict  # noqa: E402

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


def main(out):
    dense_head_images.record_cases(out, "fovea.pth", CASES, "conv_cls")


if __name__ == "__main__":
    main(sys.argv[1])
