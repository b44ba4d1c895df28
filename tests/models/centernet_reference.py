"""Reference outputs for detc's CenterNetUpdateHead and GaussianFocalLoss
(src/models/dense_heads/centernet_update_head.rs), tested in
src/models/dense_heads/centernet_tests.rs.

Usage: .venv-test/bin/python tests/models/centernet_reference.py OUT_DIR

Writes OUT_DIR/centernet.pth, a bare state dict of tensors, from MMDetection
3.3.0's own `CenterNetUpdateHead` (CASES below, which the Rust test builds
too), as tests/reference/dense_head_images.py's `record_head` records a
case; mmcv's compiled `batched_nms` is re-stated over torchvision's nms.
Shared: `x.{l}` a 2-image batch of features per level (strides 8, 16, 32),
`img.{i}.*` the ground truths (image 1 has none).

Cases: `plain` (the centernet-update configs' head) and `soft` (the box
loss weighted by the heatmap, fewer and looser extra positives, a wider
heatmap, no norm).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

import mmdet.models.dense_heads.base_dense_head as base_dense_head  # noqa: E402

base_dense_head.batched_nms = mmdet_standins.mmcv_batched_nms

import dense_head_images  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402

COMMON = dict(
    type="CenterNetUpdateHead", num_classes=3, in_channels=8, stacked_convs=2, feat_channels=8, strides=[8, 16, 32],
    regress_ranges=((0, 40), (32, 80), (64, 1000000000)), hm_min_radius=4, hm_min_overlap=0.8, more_pos_thresh=0.2,
    more_pos_topk=9, soft_weight_on_reg=False, norm_cfg=dict(type="GN", num_groups=4, requires_grad=True),
    loss_cls=dict(type="GaussianFocalLoss", pos_weight=0.25, neg_weight=0.75, loss_weight=1.0),
    loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    test_cfg=ConfigDict(nms_pre=50, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.6),
                        max_per_img=20),
)
# Keep in sync with centernet_tests.rs.
CASES = {
    "plain": COMMON,
    "soft": dict(COMMON, soft_weight_on_reg=True, more_pos_topk=5, more_pos_thresh=0.3, hm_min_overlap=0.7,
                 norm_cfg=None),
}


def main(out):
    dense_head_images.record_cases(out, "centernet.pth", CASES, "conv_cls")


if __name__ == "__main__":
    main(sys.argv[1])
