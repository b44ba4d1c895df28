"""Reference outputs for detc's RepPointsHead and PointAssigner
(src/models/dense_heads/reppoints_head.rs), tested in
src/models/dense_heads/reppoints_tests.rs.

Usage: .venv-test/bin/python tests/models/reppoints_reference.py OUT_DIR

Writes OUT_DIR/reppoints.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `RepPointsHead` (CASES below, which the Rust test builds too), as
tests/reference/dense_head_images.py's `record_head` records a case. MMCV's
`DeformConv2d` runs over torchvision's `deform_conv2d`
(`mmdet_standins.install_mmcv_deform_convs`), mmcv's compiled `batched_nms`
over torchvision's nms, and the focal loss MMDetection's Python path, as it
does on the CPU. Shared: `x.{l}` a 2-image batch of features per level
(strides 8, 16, 32), `img.{i}.*` the ground truths (image 1 has none).

Cases: `moment` (the reppoints-moment configs' head: `PointAssigner`, the
moment transform, GroupNorm), `minmax` (the extent of the points, points
starting on a square, no norm, two points per object, weighted positives)
and `grid` (the reppoints-bbox configs: regressed boxes sampled as a grid,
the initial stage assigned by `MaxIoUAssigner` on boxes around the points).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
mmdet_standins.install_mmcv_deform_convs()
import mmcv.ops  # noqa: E402

# reppoints_head.py imports `DeformConv2d` from the package.
mmcv.ops.DeformConv2d = sys.modules["mmcv.ops.deform_conv"].DeformConv2d

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

MAX_IOU = dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1)
TRAIN = ConfigDict(init=dict(assigner=dict(type="PointAssigner", scale=4, pos_num=1), allowed_border=-1, pos_weight=-1,
                             debug=False),
                   refine=dict(assigner=MAX_IOU, allowed_border=-1, pos_weight=-1, debug=False))
COMMON = dict(
    type="RepPointsHead", num_classes=3, in_channels=8, feat_channels=8, point_feat_channels=8, stacked_convs=2,
    num_points=9, gradient_mul=0.1, point_strides=[8, 16, 32], point_base_scale=4,
    norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox_init=dict(type="SmoothL1Loss", beta=0.11, loss_weight=0.5),
    loss_bbox_refine=dict(type="SmoothL1Loss", beta=0.11, loss_weight=1.0),
    transform_method="moment",
    train_cfg=TRAIN,
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                        max_per_img=20),
)
# Keep in sync with reppoints_tests.rs.
CASES = {
    "moment": COMMON,
    "minmax": dict(COMMON, transform_method="minmax", center_init=False, norm_cfg=None,
                   train_cfg=ConfigDict(init=dict(TRAIN.init, assigner=dict(type="PointAssigner", scale=4, pos_num=2)),
                                        refine=dict(TRAIN.refine, pos_weight=2.0))),
    "grid": dict(COMMON, transform_method="minmax", use_grid_points=True,
                 train_cfg=ConfigDict(init=dict(TRAIN.init, assigner=MAX_IOU), refine=TRAIN.refine)),
}


def main(out):
    dense_head_images.record_cases(out, "reppoints.pth", CASES, "reppoints_cls_out")


if __name__ == "__main__":
    main(sys.argv[1])
